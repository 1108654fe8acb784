"""Provision a BackHug over USB with mpremote: `backhug-provision` (docs/factory.md).

    backhug-provision --port /dev/ttyACM0 --board backhug_v3 --serial BH3-000123 \\
        --hardware v3.1 --bundle build/bundle/backhug-backhug_v3-1.0.0.bhb --public-key key.hex

Installs, in this order, each step skipped when the device already has exactly that content:
  1. the micropython-lib packages (aioble, cbor2, hashlib-sha512) into /lib at the versions
     pinned in tools/backhug_host/mplib.json, from the local cache (mipcache.py; the line has no
     internet), each file checked by SHA-256 on the device; a file in those packages' folders
     that the pin does not list (left by another version) is removed;
  2. the fixed /boot.py (firmware/update/boot.py, verbatim) and /main.py;
  3. the identity file /data/identity (firmware/identity.py: board, serial, hardware revision,
     update key, factory calibration), in the data store's format, tmp + rename;
  4. the signed bundle into slot a: the unpacked files, then /slots/a/bundle.bin, each through
     a .tmp and a rename and checked by SHA-256 on the device;
  5. last, /slots/state (docs/updates.md) naming slot a active and confirmed with the bundle's
     hash and counter: one rename. Until then boot.py does not run the new slot, so a
     provisioning cut short anywhere is recognisable (no state for this bundle) and a re-run
     resumes it, keeping every file that is already right.
Then the device is reset into its firmware.

Everything that can refuse is checked before the first write: the bundle (signature with the
given key, board), the package cache (the pinned versions, every file's SHA-256), the device
(MicroPython and its .mpy ABI, the PWM chips the board's I2C bus answers with, free flash), an
existing identity (same board, serial, hardware and key, or --update-identity), and
anti-rollback (a device holding a bundle with a higher security counter). A refusal exits 2
having written nothing. Bonds (/data/bonds), tension history
(/data/tension*) and the fault log (/data/faultlog) are never touched; an existing calibration is
kept unless --calibration gives a new one.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

from backhug_host import bundler
from backhug_host.factory import devlink, mipcache
from firmware import boardspec, identity, storage
from firmware.update import boot, bundle

REPO = bundler.REPO
BOOT_PY = REPO / "firmware" / "update" / "boot.py"
MAIN_PY = (
    b"# BackHug: run the firmware of the slot /boot.py chose (docs/updates.md)\n"
    b"from firmware import main\n\nmain.start()\n"
)
DATA = "/data"
IDENTITY_PATH = DATA + "/" + identity.NAME
SLOT = "a"
SLOT_DIR = boot.join(boot.ROOT, SLOT)
STATE_PATH = boot.join(boot.ROOT, boot.STATE)
FREE_MARGIN = 64 * 1024  # leave room for the data store and the next update's upload
PCA9685_ADDRESSES = tuple(a for a in range(0x40, 0x80) if a != 0x70)
# never written or removed by provisioning (checked by the tests)
PRESERVED = ("/data/bonds", "/data/tension", "/data/faultlog")


class Refused(Exception):
    """Provisioning will not start: the message says why and what to do. Nothing was written."""


class Failed(Exception):
    """Provisioning stopped part-way (device lost, a write failed); a re-run resumes it."""


def log_print(msg):
    print(msg, flush=True)


# --- host-side checks ---------------------------------------------------------------------------


def public_key_arg(value, dev):
    if dev:
        return bundler.dev_public_key()
    if not value:
        raise Refused("give the update public key: --public-key HEX|FILE (or --dev on a bench)")
    try:
        return bundler.parse_public_key(value)
    except ValueError as e:
        raise Refused(str(e)) from None


def load_bundle(path, public_key, board_id):
    """Verify the bundle on the host; (manifest, bytes, sha256 hex, {path: bytes})."""
    path = Path(path)
    if not path.is_file():
        raise Refused("no bundle at %s: build one with `make bundle BOARD=%s`" % (path, board_id))
    try:
        manifest = bundle.read_manifest(str(path))
    except bundle.BundleError as exc:
        raise Refused("%s: not a bundle (%s)" % (path, exc)) from exc
    if manifest.get("board") != board_id:
        raise Refused(
            "the bundle %s is built for board %r, not %r: build it for this board or give the "
            "right --board" % (path.name, manifest.get("board"), board_id)
        )
    try:
        manifest = bundle.verify(str(path), public_key, board_id, None, 0, None)
    except bundle.BundleError as exc:
        raise Refused("%s does not verify: %s" % (path.name, exc)) from exc
    data = path.read_bytes()
    off = 8 + int.from_bytes(data[4:8], "little") + 64
    files = {}
    for e in manifest["files"]:
        files[e["path"]] = data[off : off + e["size"]]
        off += e["size"]
    return manifest, data, hashlib.sha256(data).hexdigest(), files


def read_calibration(path, board):
    try:
        cal = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise Refused("--calibration %s: %s" % (path, exc)) from exc
    if isinstance(cal, dict) and "calibration" in cal:
        cal = cal["calibration"]
    probe = {"board": board.id, "serial": "x", "hardware": "x", "calibration": cal}
    try:
        identity.check(probe, board)
    except ValueError as exc:
        raise Refused("--calibration %s: %s" % (path, exc)) from exc
    return cal


# --- the device ---------------------------------------------------------------------------------

_PROBE = """\
import sys, os, json, machine, binascii
_i = sys.implementation
_r = {"impl": _i.name, "version": list(_i.version[:3]), "mpy": getattr(_i, "_mpy", None),
      "platform": sys.platform}
try:
    _r["uid"] = binascii.hexlify(machine.unique_id()).decode()
except Exception:
    _r["uid"] = None
try:
    _s = os.statvfs("/")
    _r["free"] = _s[0] * _s[3]
except Exception:
    _r["free"] = None
try:
    _b = machine.I2C(%(i2c)d, sda=machine.Pin(%(sda)d), scl=machine.Pin(%(scl)d), freq=100000)
    _r["i2c"] = _b.scan()
except Exception as e:
    _r["i2c"] = None
    _r["i2c_error"] = repr(e)
print(json.dumps(_r))
"""

_UNKNOWN = (
    "the device does not run MicroPython (it answers as %r): flash MicroPython 1.29 for the "
    "ESP32-S3 first (docs/bench.md, 'Flashing MicroPython')"
)


def probe(link, board):
    """What the device is: MicroPython version and ABI, unique id, free flash, I2C addresses."""
    i2c = board.i2c
    try:
        r = link.eval(_PROBE % {"i2c": i2c["id"], "sda": i2c["sda"], "scl": i2c["scl"]})
    except devlink.DeviceExecError as exc:
        raise Refused(_UNKNOWN % exc.error.strip().splitlines()[-1]) from exc
    return r if isinstance(r, dict) else json.loads(r) if isinstance(r, str) else r


def check_device(p, board, manifest, allow_missing=False):
    # allow_missing: a PWM chip of the board that does not answer is the self-test's to report
    # (the end-of-line test knows the board from the identity); an address the board does not
    # have is always another board.
    if p.get("impl") != "micropython" or p.get("mpy") is None:
        raise Refused(_UNKNOWN % p.get("impl"))
    version = ".".join(str(v) for v in p["version"])
    if p["mpy"] != manifest["abi"]:
        raise Refused(
            "the device runs MicroPython %s (.mpy ABI %d); the bundle is compiled for ABI %d "
            "(MicroPython %s*): flash the matching MicroPython first (docs/bench.md)"
            % (version, p["mpy"], manifest["abi"], bundler.mpycheck.MPY_CROSS_VERSION)
        )
    scan = p.get("i2c")
    if scan is None:
        raise Refused("cannot scan the I2C bus of board %s: %s" % (board.id, p.get("i2c_error")))
    want = set(board.pwm["chips"])
    seen = set(a for a in scan if a in PCA9685_ADDRESSES)
    if seen != want and not (allow_missing and seen < want):
        raise Refused(
            "this hardware is not a %s: its I2C bus answers at %s, the board has PWM chips at %s "
            "(wrong --board, or a chip is missing or not soldered)"
            % (board.id, _addrs(seen) or "no PWM address", _addrs(want))
        )


def _addrs(s):
    return ", ".join("0x%02x" % a for a in sorted(s))


def read_identity(link):
    """(identity or None, state): state is 'ok', 'missing', 'tmp' (only a complete .tmp left by a
    cut) or 'damaged: reason'."""
    raw = link.read(IDENTITY_PATH)
    if raw is None:
        tmp = link.read(IDENTITY_PATH + ".tmp")
        if tmp is not None:
            obj, why = storage.decode(tmp)
            if why is None:
                return obj, "tmp"
        return None, "missing"
    obj, why = storage.decode(raw)
    if why is not None:
        return None, "damaged: " + why
    return obj, "ok"


def read_state(link):
    raw = link.read(STATE_PATH)
    if raw is None:
        return None
    try:
        st = json.loads(raw)
    except ValueError:
        return None
    return st if boot.valid_state(st) else None


def _state_bytes(st):
    return json.dumps(st, separators=(",", ":")).encode()


class Plan:
    """The decisions made before anything is written."""

    def __init__(self):
        self.identity = None
        self.identity_note = ""
        self.resuming = []  # why this looks like a half-finished provisioning


def plan(link, board, manifest, serial, hardware, key_hex, calibration, update_identity):
    pl = Plan()
    current, how = read_identity(link)
    if how.startswith("damaged"):
        raise Refused(
            "the identity file on the device is damaged (%s): its serial and calibration cannot "
            "be read. Nothing was changed; see docs/factory.md 'Damaged identity'" % how[9:]
        )
    if current is not None:
        try:
            identity.check(current)
        except ValueError as exc:
            raise Refused(
                "the identity on the device is not valid (%s): nothing was changed; see "
                "docs/factory.md 'Damaged identity'" % exc
            ) from exc
        if how == "tmp":
            pl.resuming.append("the identity was written but not committed")
        if current["board"] != board.id:
            raise Refused(
                "the device is provisioned as board %r (serial %s), not %r: nothing was changed"
                % (current["board"], current["serial"], board.id)
            )
        want = {"serial": serial or current["serial"], "hardware": hardware or current["hardware"]}
        want["update_key"] = key_hex
        diff = [k for k in want if current.get(k) != want[k]]
        if diff and not update_identity:
            raise Refused(
                "the device is already provisioned with a different %s (%s): nothing was "
                "changed; re-run with --update-identity to replace %s (the calibration is kept)"
                % (
                    " and ".join(diff),
                    ", ".join("%s %r" % (k, current.get(k)) for k in diff),
                    "them" if len(diff) > 1 else "it",
                )
            )
        new = dict(current)
        new.update(want)
        pl.identity_note = "kept" if not diff else "updated " + ", ".join(diff)
    else:
        if not serial or not hardware:
            raise Refused("a new device needs --serial and --hardware")
        new = {"board": board.id, "serial": serial, "hardware": hardware, "update_key": key_hex}
        pl.identity_note = "new"
    if calibration is not None:
        new["calibration"] = calibration
        pl.identity_note += ", calibration from file"
    try:
        identity.check(new, board)
    except ValueError as exc:
        raise Refused(str(exc)) from exc
    pl.identity = new
    return pl


def _needs(link, path, sha):
    return link.sha256(path) != sha


def _strays(link, paths):
    # Files under the top folders of `paths` (/lib/aioble, /lib/cbor2, /lib/hashlib) that are not
    # in `paths`: left by another version of a package. A .py there would even win over the
    # pinned .mpy of the same name (MicroPython's import looks for .py first).
    tops = sorted({p.rsplit("/", 1)[0] for p in paths if p.count("/") >= 3})
    out = []
    todo = [t for t in tops if not any(t.startswith(o + "/") for o in tops)]
    while todo:
        d = todo.pop()
        for name in link.listdir(d) or ():
            full = d + "/" + name
            st = link.stat(full)
            if st is None:
                continue
            if st[0]:
                todo.append(full)
            elif full not in paths:
                out.append(full)
    return sorted(out)


def provision(
    link,
    board_id,
    bundle_path,
    public_key,
    serial=None,
    hardware=None,
    packages=(),
    calibration=None,
    update_identity=False,
    reset=True,
    log=log_print,
):
    """Provision the device behind `link` (a DevLink). packages: mipcache.load()'s Packages
    ([(device path, bytes, sha)] with their versions), or () for none. Returns a summary dict.
    Refused before any write; Failed part-way."""
    try:
        board = boardspec.load(board_id)
    except (ImportError, boardspec.BoardError) as exc:
        raise Refused("unknown board %r (%s)" % (board_id, exc)) from exc
    manifest, blob, bundle_sha, files = load_bundle(bundle_path, public_key, board_id)
    key_hex = public_key.hex()
    try:
        p = probe(link, board)
        check_device(p, board, manifest)
        log(
            "device: MicroPython %s (ABI %d), id %s, PWM chips at %s"
            % (".".join(map(str, p["version"])), p["mpy"], p.get("uid"), _addrs(set(p["i2c"])))
        )
        pl = plan(link, board, manifest, serial, hardware, key_hex, calibration, update_identity)
        st = read_state(link)
        if st is not None and st["counter"] > manifest["counter"]:
            raise Refused(
                "the device holds firmware with security counter %d; this bundle has %d and "
                "would be refused by it later (anti-rollback): use a newer bundle"
                % (st["counter"], manifest["counter"])
            )
        done_before = (
            st is not None
            and st["hashes"].get(SLOT) == bundle_sha
            and st["active"] == SLOT
            and st["confirmed"]
        )
        if not done_before:
            if st is None and (link.exists(SLOT_DIR) or link.exists(STATE_PATH + ".tmp")):
                pl.resuming.append("slot a holds files but there is no slot state")
            elif st is not None and SLOT not in st["hashes"]:
                pl.resuming.append("the slot state does not vouch for slot a yet")
        if pl.resuming:
            log("a previous provisioning did not finish (%s): resuming" % "; ".join(pl.resuming))
        need = len(blob) + sum(len(d) for d in files.values()) + FREE_MARGIN
        need += sum(len(d) for _, d, _ in packages)
        if p.get("free") is not None and p["free"] < need and not done_before:
            raise Refused(
                "only %d KB free on the device, the bundle needs %d KB"
                % (p["free"] // 1024, need // 1024)
            )
    except devlink.DevLinkError as exc:
        raise Failed(
            "%s, before anything was written: check the cable and run the same command again" % exc
        ) from exc

    summary = {
        "serial": pl.identity["serial"],
        "board": board_id,
        "version": manifest["version"],
        "written": [],
        "kept": 0,
        "identity": pl.identity_note,
        "resumed": bool(pl.resuming),
        "packages": dict(getattr(packages, "versions", {})),
    }

    def put(path, data, sha=None):
        sha = sha or hashlib.sha256(data).hexdigest()
        if not _needs(link, path, sha):
            summary["kept"] += 1
            return
        link.mkdir(path.rsplit("/", 1)[0] or "/")
        link.write_atomic(path, data)
        if link.sha256(path) != sha:
            raise Failed("%s: written, but the device reads it back differently" % path)
        summary["written"].append(path)

    try:
        if packages:
            before = len(summary["written"])
            for path, data, sha in packages:
                put(path, data, sha)
            stray = _strays(link, {p for p, _, _ in packages})
            for path in stray:
                link.remove(path)
            what = packages.describe() if hasattr(packages, "describe") else "packages"
            log(
                "libraries: %s: %d files, %d written, %d stray removed%s"
                % (
                    what,
                    len(packages),
                    len(summary["written"]) - before,
                    len(stray),
                    (" (" + ", ".join(stray) + ")") if stray else "",
                )
            )
            summary["removed"] = stray
        put("/boot.py", BOOT_PY.read_bytes())
        put("/main.py", MAIN_PY)
        ident_bytes = storage.encode(pl.identity)
        cur, how = read_identity(link)
        if cur != pl.identity or how != "ok":
            link.mkdir(DATA)
            link.write_atomic(IDENTITY_PATH, ident_bytes)
            summary["written"].append(IDENTITY_PATH)
        else:
            summary["kept"] += 1
        # the slot: first make sure no state vouches for slot a while its files change
        st = read_state(link)
        if st is not None and SLOT in st["hashes"] and st["hashes"][SLOT] != bundle_sha:
            st2 = boot.copy_state(st)
            del st2["hashes"][SLOT]
            if st2["pending"] == SLOT:
                st2["pending"] = None
            link.write_atomic(STATE_PATH, _state_bytes(st2))
            summary["written"].append(STATE_PATH)
        for e in manifest["files"]:
            put(boot.join(SLOT_DIR, e["path"]), files[e["path"]], e["sha256"])
        put(boot.join(SLOT_DIR, boot.BUNDLE_FILE), blob, bundle_sha)
        final = {
            "active": SLOT,
            "confirmed": True,
            "pending": None,
            "previous": None,
            "counter": manifest["counter"],
            "hashes": {SLOT: bundle_sha},
        }
        if read_state(link) != final:
            link.write_atomic(STATE_PATH, _state_bytes(final))
            summary["written"].append(STATE_PATH)
        else:
            summary["kept"] += 1
        # check what a boot will see
        if read_state(link) != final or read_identity(link)[0] != pl.identity:
            raise Failed("the device does not read back the state or identity just written")
    except devlink.DevLinkError as exc:
        raise Failed(
            "%s. The device is partly provisioned: run the same command again to resume "
            "(nothing is lost)" % exc
        ) from exc
    if reset:
        link.reset()
    return summary


# --- command line -------------------------------------------------------------------------------


def default_bundle(board):
    return bundler.DEFAULT_OUT_DIR / ("backhug-%s-%s.bhb" % (board, bundler.firmware_version()))


def main(argv=None, transport_factory=None, log=log_print):
    ap = argparse.ArgumentParser(
        prog="backhug-provision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--port", required=True, help="serial port of the device (/dev/ttyACM0)")
    ap.add_argument("--board", required=True, help="board id (a directory of boards/)")
    ap.add_argument("--serial", help="serial number (required for a new device)")
    ap.add_argument("--hardware", help="hardware revision (required for a new device)")
    ap.add_argument("--bundle", help="signed bundle (default build/bundle/backhug-BOARD-VER.bhb)")
    ap.add_argument("--public-key", help="update public key: 64 hex digits or a file with them")
    ap.add_argument("--dev", action="store_true", help="use the DEVELOPMENT key (bench only)")
    ap.add_argument(
        "--packages",
        default=str(REPO / "build" / "mipcache"),
        help="package cache from `mipcache prepare` (default build/mipcache): the pinned "
        "versions of tools/backhug_host/mplib.json",
    )
    ap.add_argument("--calibration", help="JSON calibration {force, pulse_us} to store")
    ap.add_argument(
        "--update-identity",
        action="store_true",
        help="replace a different serial/hardware/key (calibration is kept)",
    )
    ap.add_argument("--no-reset", action="store_true", help="do not reset the device at the end")
    args = ap.parse_args(argv)
    try:
        key = public_key_arg(args.public_key, args.dev)
        try:
            board = boardspec.load(args.board)
        except (ImportError, boardspec.BoardError) as exc:
            raise Refused("unknown board %r (%s)" % (args.board, exc)) from exc
        bundle_path = Path(args.bundle) if args.bundle else default_bundle(args.board)
        manifest = load_bundle(bundle_path, key, args.board)[0]
        cal = read_calibration(args.calibration, board) if args.calibration else None
        try:
            packages = mipcache.load(args.packages, mpy=manifest["abi"] & 0xFF)
        except mipcache.CacheError as exc:
            raise Refused(str(exc)) from exc
        try:
            link = devlink.DevLink.open(args.port, factory=transport_factory)
        except devlink.DevLinkError as exc:
            raise Refused(str(exc)) from exc
        try:
            s = provision(
                link,
                args.board,
                bundle_path,
                key,
                args.serial,
                args.hardware,
                packages,
                cal,
                args.update_identity,
                not args.no_reset,
                log,
            )
        finally:
            link.close()
    except Refused as exc:
        log("backhug-provision: refused: %s" % exc)
        return 2
    except Failed as exc:
        log("backhug-provision: FAILED: %s" % exc)
        return 3
    log(
        "provisioned %s (%s, firmware %s, %s): %d files written, %d already right; identity %s%s"
        % (
            s["serial"],
            s["board"],
            s["version"],
            ", ".join("%s %s" % nv for nv in s["packages"].items()) or "no libraries",
            len(s["written"]),
            s["kept"],
            s["identity"],
            "; resumed a previous run" if s["resumed"] else "",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
