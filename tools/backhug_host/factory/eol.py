"""End-of-line test: `backhug-eol` (docs/factory.md, "End-of-line test").

    backhug-eol --port /dev/ttyACM0 --serial BH3-000123 [--rig manual] [--out build/eol]
    backhug-eol --sim --serial BH3-SAMPLE-0001 --out docs/examples   (the emulated device)

On a provisioned unit with the test rig's plate clamped over the fingers:
  1. checks the unit: identity (serial, board), a confirmed firmware in the slots (a provisioning
     that did not finish is refused), the firmware's version (--expect-version), MicroPython and
     its .mpy ABI, the PWM chips on the board's I2C bus;
  2. runs the full self-test (firmware/selftest.py) on the device, over the raw REPL;
  3. calibrates each finger's force sensor against the rig's reference load cell: the zero
     reading with the finger retracted gives the offset; the finger then presses the plate at
     two depths beyond its contact height (press_um) and, at each, the device's raw reading is
     paired with the rig's reference load (read from the rig, or typed in by the operator from
     its display). gain_q12 is the least-squares slope through the zero; the residual at both
     loads must stay within LINEARITY_PCT, and offset and gain within the bounds below;
  4. writes a JSON report per serial number (pass/fail per part, the reasons, the calibration
     values, the self-test's measurements) and, when every part passed, stores the force
     calibration in the unit's identity file (tmp + rename; the rest of the identity is kept).
Exit 0: PASS. 1: FAIL (the report says which parts and why). 2: refused before testing
(nothing written on the device, no report). 3: the device was lost during the test.

The rig interface (for a real rig's driver): an object with `plate_um` and `reference_n(finger)`
returning the load in newtons its cell under that finger reads now. `--rig manual` asks the
operator for each value.
"""

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

from backhug_host import bundler
from backhug_host.factory import devlink, provision
from firmware import boardspec, identity, storage
from firmware.update import boot

REPO = bundler.REPO
PLATE_UM = 20_000  # firmware.selftest.RIG_PLATE_UM: the rig's plate height
PRESS_UM = (1_000, 2_000)  # calibration depths beyond each finger's contact height
SETTLE_MS = 400
SAMPLES = 16
OFFSET_TOL = 200  # raw counts from the board's nominal offset
GAIN_TOL_PCT = 30  # from the board's nominal gain
LINEARITY_PCT = 5
MIN_SPAN_COUNTS = 40
REF_MIN_N = 10.0
SPREAD_MAX = 40  # raw counts at rest
REPORT_FORMAT = 1

# Sent once per test: MicroPython code that stays in the raw REPL's globals (mpy-cross clean:
# tests/host/test_eol.py compiles it). Every function prints one line "BH>" + JSON.
DEVICE_HELPER = """\
import asyncio, json, machine
from firmware import boardspec, hal, selftest
from firmware.drivers.fault import DriverFault
from firmware.runtime import sleep_ms, ticks_diff, ticks_ms

_bh = {}


def _bh_out(obj):
    machine.WDT(timeout=%(leash)d)  # the self-test armed it with the board's timeout
    print("BH>" + json.dumps(obj))


def _bh_setup(board_id):
    board = boardspec.load(board_id)
    hw = hal.build(board, init=False)
    try:
        hw.init()
    except DriverFault:
        pass  # in hw.faults: the self-test reports them
    _bh["board"] = board
    _bh["hw"] = hw
    _bh_out({"fingers": board.finger_count})


def _bh_selftest(plate_um):
    _bh_out(asyncio.run(selftest.run(_bh["hw"], _bh["board"], "full", plate_um)))


async def _bh_hold(i, um, settle_ms, samples, cap_cn):
    hw = _bh["hw"]
    fb = hw.fingers
    fa = hw.forces
    wd = hw.watchdog
    fb.set_um(i, um)
    fb.write()
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < settle_ms:
        await sleep_ms(10)
        if wd.armed:
            wd.feed()
        cn = fa.read()
        if cn[i] > cap_cn:
            fb.set_um(i, 0)
            fb.write()
            return {"error": "over-force: %%d cN at %%d um" %% (cn[i], um)}
    total = 0
    lo = 4095
    hi = 0
    for _ in range(samples):
        await sleep_ms(5)
        fa.read()
        r = fa.raw[i]
        total += r
        lo = min(lo, r)
        hi = max(hi, r)
    return {"sum": total, "n": samples, "lo": lo, "hi": hi, "um": um}


def _bh_measure(i, um, settle_ms, samples):
    try:
        r = asyncio.run(_bh_hold(i, um, settle_ms, samples, _bh["board"].force_cap_cn * 9 // 10))
    except DriverFault as e:
        r = {"error": "%%s: %%s" %% (e.part, e.detail)}
    _bh_out(r)
"""

_MANIFEST_HEAD = """\
import json
try:
    _f = open(%r, "rb")
    _h = _f.read(8)
    _m = json.loads(_f.read(int.from_bytes(_h[4:8], "little")))
    _f.close()
    print(json.dumps({"version": _m["version"], "board": _m["board"], "counter": _m["counter"],
                      "abi": _m["abi"]}))
except Exception as e:
    print(json.dumps({"error": repr(e)}))
"""


class Refused(Exception):
    pass


class Lost(Exception):
    pass


def log_print(msg):
    print(msg, flush=True)


# --- rigs ---------------------------------------------------------------------------------------


class ManualRig:
    """The operator reads the rig's load display and types each value in."""

    source = "manual"

    def __init__(self, plate_um=PLATE_UM, ask=input):
        self.plate_um = plate_um
        self._ask = ask

    def reference_n(self, finger):
        while True:
            text = self._ask("finger %d pressed: the rig's load in N? " % finger)
            try:
                v = float(text)
            except ValueError:
                continue
            if v >= 0:
                return v


class SimRig:
    """The emulated device's rig: its reference cell reads the true force on the fingertip."""

    source = "sim"

    def __init__(self, standin, plate_um=PLATE_UM):
        self.standin = standin
        self.plate_um = plate_um

    def reference_n(self, finger):
        return round(self.standin.dev.forces_n()[finger], 2)


# --- on the device ------------------------------------------------------------------------------


def _call(link, code):
    try:
        out = link.exec(code)
    except devlink.DeviceExecError as exc:
        raise Refused("the device could not run the test: %s" % exc) from exc
    for line in out.splitlines():
        if line.startswith("BH>"):
            return json.loads(line[3:])
    raise Lost("no answer from the device to %r" % code[:40])


def check_unit(link, serial=None, board_id=None, expect_version=None):
    """The preconditions; returns (identity, board, firmware manifest head, probe)."""
    ident, how = provision.read_identity(link)
    st = provision.read_state(link)
    if ident is None:
        if how.startswith("damaged"):
            raise Refused("the identity file is damaged (%s): see docs/factory.md" % how[9:])
        ours = hashlib.sha256(provision.BOOT_PY.read_bytes()).hexdigest()
        if st is not None or link.exists(boot.ROOT) or link.sha256("/boot.py") == ours:
            raise Refused(
                "provisioning did not finish on this unit (no identity file): run "
                "backhug-provision again"
            )
        raise Refused("the unit is not provisioned: run backhug-provision first")
    if how == "tmp":
        raise Refused("provisioning did not finish (identity not committed): run it again")
    try:
        identity.check(ident)
    except ValueError as exc:
        raise Refused("the identity on the unit is not valid: %s" % exc) from exc
    if serial and ident["serial"] != serial:
        raise Refused("this unit is serial %s, not %s" % (ident["serial"], serial))
    if board_id and ident["board"] != board_id:
        raise Refused("this unit is a %s, not a %s" % (ident["board"], board_id))
    board = boardspec.load(ident["board"])
    if st is None or not st["confirmed"] or st["active"] not in st["hashes"]:
        raise Refused(
            "provisioning did not finish on this unit (no confirmed firmware in the slots): run "
            "backhug-provision again"
        )
    head = json.loads(
        link.exec(_MANIFEST_HEAD % boot.join(boot.ROOT, st["active"], boot.BUNDLE_FILE)).strip()
    )
    if "error" in head:
        raise Refused(
            "the unit's firmware cannot be identified (%s): provision it again" % head["error"]
        )
    if head["board"] != board.id:
        raise Refused(
            "the unit runs firmware for board %s, its identity says %s" % (head["board"], board.id)
        )
    if expect_version and head["version"] != expect_version:
        raise Refused(
            "the unit runs firmware %s, this line tests %s: provision it with the current bundle"
            % (head["version"], expect_version)
        )
    p = provision.probe(link, board)
    try:
        provision.check_device(p, board, {"abi": head["abi"]}, allow_missing=True)
    except provision.Refused as exc:
        raise Refused(str(exc)) from exc
    return ident, board, head, p


def _mean(m):
    return m["sum"] / m["n"]


def calibrate_finger(link, rig, board, i, contact_um, press_um, nominal):
    """(ok, detail, values, (offset, gain_q12) or None) for finger i."""
    values = {"contact_um": contact_um}
    retract_ms = (contact_um + max(press_um)) * 1000 // board.max_speed_um_s + SETTLE_MS
    points = []
    try:
        z = _call(link, "_bh_measure(%d, 0, %d, %d)" % (i, retract_ms, SAMPLES))
        if "error" in z:
            return False, z["error"], values, None
        raw0 = _mean(z)
        values["raw0"] = round(raw0, 2)
        values["spread0"] = z["hi"] - z["lo"]
        for d in press_um:
            um = min(board.stroke_um, contact_um + d)
            travel_ms = um * 1000 // board.max_speed_um_s  # from retracted, at most
            m = _call(
                link, "_bh_measure(%d, %d, %d, %d)" % (i, um, travel_ms + SETTLE_MS, SAMPLES)
            )
            if "error" in m:
                return False, m["error"], values, None
            ref = rig.reference_n(i)
            points.append((_mean(m) - raw0, ref * 100.0))
            values.setdefault("points", []).append(
                {"um": um, "raw": round(_mean(m), 2), "ref_n": ref}
            )
    finally:
        _call(link, "_bh_measure(%d, 0, %d, 1)" % (i, retract_ms))
    off_nom, gain_nom = nominal
    if values["spread0"] > SPREAD_MAX:
        return False, "unsteady at rest: %d counts" % values["spread0"], values, None
    offset = int(round(raw0))
    if abs(offset - off_nom) > OFFSET_TOL:
        return (
            False,
            "zero reading %d counts, nominal %d +- %d" % (offset, off_nom, OFFSET_TOL),
            values,
            None,
        )
    for x, f in points:
        if f < REF_MIN_N * 100:
            return (
                False,
                "the rig reads only %.1f N on this finger: plate not clamped, or its "
                "cell not under this finger" % (f / 100),
                values,
                None,
            )
        if x < MIN_SPAN_COUNTS:
            return (
                False,
                "the sensor barely responds: %.1f counts at %.1f N" % (x, f / 100),
                values,
                None,
            )
    slope = sum(x * f for x, f in points) / sum(x * x for x, _ in points)  # cN per count
    gain = int(round(slope * 4096))
    values["offset"] = offset
    values["gain_q12"] = gain
    dev_pct = 100.0 * (gain - gain_nom) / gain_nom
    values["gain_vs_nominal_pct"] = round(dev_pct, 1)
    worst = max(abs(slope * x - f) / f * 100.0 for x, f in points)
    values["linearity_pct"] = round(worst, 2)
    if abs(dev_pct) > GAIN_TOL_PCT:
        return (
            False,
            "gain %d is %+.0f%% from nominal %d (limit %d%%): wrong or damaged sensor"
            % (gain, dev_pct, gain_nom, GAIN_TOL_PCT),
            values,
            None,
        )
    if worst > LINEARITY_PCT:
        return (
            False,
            "non-linear: %.1f%% off at a reference load (limit %d%%)" % (worst, LINEARITY_PCT),
            values,
            None,
        )
    try:
        identity.check_force((offset, gain), "force[%d]" % i, board)
    except ValueError as exc:
        return False, str(exc), values, None
    return (
        True,
        "offset %d, gain_q12 %d (%+.1f%%), linear within %.1f%%" % (offset, gain, dev_pct, worst),
        values,
        (offset, gain),
    )


def _now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_eol(
    link,
    rig,
    serial=None,
    board_id=None,
    expect_version=None,
    press_um=PRESS_UM,
    write_cal=True,
    station="",
    log=log_print,
    now=_now,
):
    """Test the unit behind `link`; returns the report. Refused / Lost as documented above."""
    started = now()
    try:
        ident, board, head, p = check_unit(link, serial, board_id, expect_version)
        log(
            "unit %s: %s, firmware %s, MicroPython %s"
            % (ident["serial"], board.id, head["version"], ".".join(map(str, p["version"])))
        )
        try:
            link.exec(DEVICE_HELPER % {"leash": devlink.LEASH_MS})
        except devlink.DeviceExecError as exc:
            raise Refused(
                "the unit's firmware cannot be imported (%s): provision it again" % exc
            ) from exc
        _call(link, "_bh_setup(%r)" % board.id)
        log("full self-test (rig plate at %.1f mm) ..." % (rig.plate_um / 1000))
        st = _call(link, "_bh_selftest(%d)" % rig.plate_um)
        parts = list(st["parts"])
        contact = {}
        for part in parts:
            if part["part"].startswith("finger[") and part["ok"]:
                contact[int(part["part"][7:-1])] = part["values"]["contact_um"]
        nominal = board.force_cal
        cal = []
        points = []
        for i in range(board.finger_count):
            name = "cal[%d]" % i
            if i not in contact:
                parts.append(
                    {
                        "part": name,
                        "ok": False,
                        "values": {},
                        "detail": "not calibrated: finger[%d] failed the self-test" % i,
                    }
                )
                cal.append(None)
                continue
            ok, detail, values, pair = calibrate_finger(
                link, rig, board, i, contact[i], press_um, nominal[i]
            )
            parts.append({"part": name, "ok": ok, "detail": detail, "values": values})
            cal.append(list(pair) if pair else None)
            points.append(dict(values, finger=i))
            log("%s %s: %s" % (name, "ok" if ok else "FAIL", detail))
    except devlink.DevLinkError as exc:
        raise Lost("%s: the unit was lost during the test" % exc) from exc
    failed = [{"part": q["part"], "reason": q["detail"]} for q in parts if not q["ok"]]
    ok = not failed
    report = {
        "format": REPORT_FORMAT,
        "tool": "backhug-eol",
        "serial": ident["serial"],
        "board": board.id,
        "hardware": ident["hardware"],
        "firmware": head,
        "micropython": ".".join(map(str, p["version"])),
        "unique_id": p.get("uid"),
        "station": station,
        "started": started,
        "finished": now(),
        "result": "PASS" if ok else "FAIL",
        "ok": ok,
        "failed": failed,
        "selftest": {"mode": st["mode"], "ok": st["ok"], "elapsed_ms": st["elapsed_ms"]},
        "calibration": {
            "force": cal if ok else None,
            "stored": False,
            "rig": {"source": rig.source, "plate_um": rig.plate_um, "press_um": list(press_um)},
            "limits": {
                "offset_tol": OFFSET_TOL,
                "gain_tol_pct": GAIN_TOL_PCT,
                "linearity_pct": LINEARITY_PCT,
            },
        },
        "parts": parts,
    }
    if ok and write_cal:
        try:
            store_calibration(link, ident, board, cal)
        except devlink.DevLinkError as exc:
            raise Lost("storing the calibration: %s" % exc) from exc
        report["calibration"]["stored"] = True
    return report


def store_calibration(link, ident, board, cal):
    new = dict(ident)
    new["calibration"] = dict(ident.get("calibration") or {}, force=[list(c) for c in cal])
    identity.check(new, board)
    link.write_atomic(provision.IDENTITY_PATH, storage.encode(new))
    back, how = provision.read_identity(link)
    if back != new or how != "ok":
        raise devlink.DevLinkError("the identity does not read back as written")


def write_report(report, out_dir):
    """Writes <out>/<serial>.json (the latest) and <out>/history/<serial>-<time>.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1) + "\n"
    stamp = report["started"].replace(":", "").replace("-", "")
    hist = out / "history" / ("%s-%s.json" % (report["serial"], stamp))
    hist.parent.mkdir(exist_ok=True)
    hist.write_text(text)
    path = out / ("%s.json" % report["serial"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


# --- the emulated device (--sim) ----------------------------------------------------------------


def sim_device(board="backhug_v3", serial="BH3-SAMPLE-0001", faults=(), log=log_print):
    """A provisioned emulated unit (backhug_host.factory.standin, the dev key, the firmware's
    sources as its bundle, no packages); returns (transport factory, stand-in)."""
    from backhug_host.factory import standin as rs

    files = [(rel, p.read_bytes()) for p, rel in bundler.sources(board)]
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    manifest = bundler.make_manifest(files, bundler.firmware_version(), board, rs.ABI_1_29, 1)
    blob = bundler.pack(manifest, files, key)
    tmp = REPO / "build" / "eol-sim" / "bundle.bhb"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(blob)
    fs = rs.MemFs()
    dev = rs.StandIn(fs, hardware=board)
    provision.provision(
        devlink.DevLink(dev),
        board,
        tmp,
        bundler.dev_public_key(),
        serial,
        "v3.1-sim",
        (),
        reset=False,
        log=lambda m: None,
    )
    dev = rs.StandIn(fs, hardware=board, faults=faults)
    return (lambda port: dev), dev


def main(argv=None, transport_factory=None, rig=None, log=log_print, now=_now):
    ap = argparse.ArgumentParser(
        prog="backhug-eol",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--port", help="serial port of the unit")
    ap.add_argument("--serial", help="the serial number expected (refuses another unit)")
    ap.add_argument("--board", help="the board expected")
    ap.add_argument("--expect-version", help="the firmware version this line tests")
    ap.add_argument(
        "--rig",
        choices=("manual",),
        default="manual",
        help="where reference loads come from (default: typed in by the operator)",
    )
    ap.add_argument("--plate-um", type=int, default=PLATE_UM)
    ap.add_argument(
        "--press-um",
        default="%d,%d" % PRESS_UM,
        help="calibration depths beyond contact, um (default 1000,2000)",
    )
    ap.add_argument("--out", default=str(REPO / "build" / "eol"), help="report directory")
    ap.add_argument("--station", default="", help="test station name for the report")
    ap.add_argument("--no-store", action="store_true", help="do not store the calibration")
    ap.add_argument("--no-reset", action="store_true", help="leave the unit at the REPL")
    ap.add_argument("--sim", action="store_true", help="test an emulated unit (no hardware)")
    ap.add_argument("--sim-board", default="backhug_v3")
    ap.add_argument(
        "--sim-fault",
        action="append",
        default=[],
        help="a simulator fault on the emulated unit (e.g. open:3)",
    )
    args = ap.parse_args(argv)
    try:
        press = tuple(int(v) for v in args.press_um.split(","))
        if len(press) != 2 or not 0 < press[0] < press[1]:
            raise ValueError
    except ValueError:
        log("backhug-eol: --press-um: two increasing depths in um, e.g. 1000,2000")
        return 2
    port = args.port
    if args.sim:
        transport_factory, dev = sim_device(
            args.sim_board, args.serial or "BH3-SAMPLE-0001", args.sim_fault, log
        )
        rig = rig or SimRig(dev, args.plate_um)
        port = port or "sim"
    if not port:
        log("backhug-eol: give --port (or --sim)")
        return 2
    rig = rig or ManualRig(args.plate_um)
    try:
        try:
            link = devlink.DevLink.open(port, factory=transport_factory)
        except devlink.DevLinkError as exc:
            raise Refused(str(exc)) from exc
        try:
            report = run_eol(
                link,
                rig,
                args.serial,
                args.board,
                args.expect_version,
                press,
                not args.no_store,
                args.station,
                log,
                now,
            )
            if not args.no_reset:
                link.reset()
        finally:
            link.close()
    except Refused as exc:
        log("backhug-eol: refused: %s" % exc)
        return 2
    except Lost as exc:
        log("backhug-eol: FAILED: %s" % exc)
        return 3
    path = write_report(report, args.out)
    if report["ok"]:
        log(
            "%s: PASS, calibration %s; report %s"
            % (
                report["serial"],
                "stored" if report["calibration"]["stored"] else "not stored",
                path,
            )
        )
        return 0
    log(
        "%s: FAIL: %s; report %s"
        % (
            report["serial"],
            "; ".join("%s: %s" % (f["part"], f["reason"]) for f in report["failed"]),
            path,
        )
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
