"""`backhug`: the reference phone-side client on the command line.

    backhug scan                          find BackHugs nearby
    backhug pair                          bond (hold the device's button 3 s first)
    backhug status | strength 6 | area upper | flow pulse --tempo 120
    backhug start --minutes 20 --user 0 | pause | resume | stop | ack
    backhug programme plan.json --user 1  upload, commit and run a programme
    backhug watch                         live state and telemetry until the session ends
    backhug tension --png t.png | history --user 1 | faults
    backhug session --minutes 20 --png t.png   start, watch to the end, report the tension

Transport: the computer's radio through bleak (default; --address or the first one found),
`--hci tcp-client:127.0.0.1:9000` for Bumble on an HCI transport (the simulator offers one), or
`--sim` for the in-process simulator. Exit codes: 0 ok, 1 the device refused (result and reason
printed), 2 usage or connection problems.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from backhug_host.client.core import (
    BackHugClient,
    ClientError,
    CommandRefused,
    CommandTimeout,
    Disconnected,
)
from backhug_host.client.link import (
    BleakLink,
    BumbleLink,
    LinkError,
    default_keystore_path,
    scan_bleak,
    scan_bumble,
)
from firmware import faults as fault_codes
from firmware.ble import proto

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
PAIR_SETTLE_S = 0.3  # the device drops a link it paired without bonding within 100 ms


class UsageError(Exception):
    """A problem with what was asked (bad file, nothing found): exit code 2."""


async def open_sim_link(args):
    """A fresh simulated device (the firmware and its BLE service on Bumble, in virtual time,
    a person with stiff upper-left and middle-right back lying on it) and a phone bonded to it
    through the pairing window. The simulator goes when the link is closed."""
    from backhug_host.blesim import BleSim

    sim = await BleSim(person={"stiff": ("upper_left", "middle_right")}).start()
    try:
        link = BumbleLink(await sim.central())
        await sim.connect(link, mtu=args.mtu or None)
    except BaseException:
        await sim.close()
        raise
    link.sim = sim
    return link


def _u8(text):
    v = int(text)
    if not 0 <= v <= 255:
        raise argparse.ArgumentTypeError("%d does not fit in a byte (0..255)" % v)
    return v


def build_parser():
    p = argparse.ArgumentParser(
        prog="backhug", description="Drive a BackHug over Bluetooth LE, as the phone app does."
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--hci", metavar="TRANSPORT", help="Bumble on this HCI transport")
    how.add_argument("--sim", action="store_true", help="the in-process simulator")
    p.add_argument("--address", help="the device's address (default: the first one found)")
    p.add_argument(
        "--keystore",
        default=None,
        help="bonds file for --hci (default %s)" % default_keystore_path(),
    )
    p.add_argument("--mtu", type=int, default=proto.ATT_MAX_MTU, help="ATT MTU to ask (--hci)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    p.add_argument("--scan-time", type=float, default=5.0, help="seconds to scan")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    sub.add_parser("scan", help="list BackHugs nearby")
    sub.add_parser("pair", help="bond with the device (its pairing window must be open)")
    sub.add_parser("status", help="state, settings and board")
    s = sub.add_parser("strength", help="set the strength level (1..10)")
    s.add_argument("level", type=_u8)
    s = sub.add_parser("area", help="set the treatment area")
    s.add_argument("name", choices=proto.AREA_IDS)
    s = sub.add_parser("flow", help="set the flow")
    s.add_argument("name", choices=proto.FLOW_IDS)
    s.add_argument("--tempo", type=_u8, default=100, metavar="PCT", help="50..200 (100)")
    s = sub.add_parser("start", help="start a session")
    s.add_argument("--minutes", type=_u8, default=20, help="10, 20, 30 or 40 (20)")
    s.add_argument("--user", type=_u8, default=0, help="0..4 (0)")
    s = sub.add_parser("programme", help="upload a programme (JSON) and run it")
    s.add_argument("file")
    s.add_argument("--user", type=_u8, default=0)
    s.add_argument("--no-start", action="store_true", help="upload and commit only")
    for name, what in (
        ("pause", "pause the session"),
        ("resume", "resume a paused session"),
        ("stop", "stop the session"),
        ("ack", "acknowledge a latched fault once its cause has cleared"),
    ):
        sub.add_parser(name, help=what)
    s = sub.add_parser("watch", help="live state and telemetry until the session ends")
    s.add_argument("--seconds", type=float, default=None, help="stop watching after this")
    s = sub.add_parser("tension", help="the last session's tension report")
    s.add_argument("--png", metavar="PATH", help="also draw it")
    s = sub.add_parser("history", help="a user's stored sessions")
    s.add_argument("--user", type=_u8, default=0)
    s.add_argument("--png", metavar="PATH", help="also draw tension over the sessions")
    sub.add_parser("faults", help="the device's fault log")
    s = sub.add_parser(
        "session", help="run a whole session: start, watch it to the end, report the tension"
    )
    s.add_argument("--minutes", type=_u8, default=20, help="10, 20, 30 or 40 (20)")
    s.add_argument("--user", type=_u8, default=0)
    s.add_argument("--programme", metavar="FILE", help="upload and run this programme instead")
    s.add_argument("--png", metavar="PATH", help="also draw the tension report")
    return p


# -- transports ------------------------------------------------------------------------------


async def _scan(args):
    if args.sim:
        raise UsageError("scan: not with --sim (there is one simulated device)")
    if args.hci:
        link = await BumbleLink.open_hci(args.hci)
        try:
            return await scan_bumble(link.device, args.scan_time)
        finally:
            await link.close()
    return await scan_bleak(args.scan_time)


async def open_link(args):
    """The connected link the options ask for (encrypted when this central is bonded)."""
    if args.sim:
        return await open_sim_link(args)
    if args.hci:
        link = await BumbleLink.open_hci(
            args.hci, keystore_path=args.keystore or default_keystore_path()
        )
        try:
            address = args.address
            if address is None:
                found = await scan_bumble(link.device, args.scan_time, first=True)
                if not found:
                    raise UsageError("no BackHug found on %s" % args.hci)
                address = found[0].address
            await link.connect(address, mtu=args.mtu or None)
        except BaseException:
            await link.close()
            raise
        return link
    address = args.address
    if address is None:
        found = await scan_bleak(args.scan_time)
        if not found:
            raise UsageError("no BackHug found nearby (is Bluetooth on and the device awake?)")
        address = found[0].address
    link = BleakLink(address)
    await link.connect()
    return link


# -- output ----------------------------------------------------------------------------------


def _mmss(s):
    return "%02d:%02d" % (s // 60, s % 60)


def _bar(done, total, width=24):
    n = width * done // total if total else 0
    return "[" + "#" * n + "." * (width - n) + "]"


def state_line(st, frame=None):
    if st["fault"]:
        head = "%s, FAULT %d (%s)" % (st["state"], st["fault"], fault_codes.name(st["fault"]))
    else:
        head = st["state"]
    parts = [head, "strength %d" % st["strength"]]
    parts.append("%s/%s" % (st["area"] or "mixed", st["flow"] or "mixed"))
    if st["step"] is not None:
        parts.append("step %d" % (st["step"] + 1))
    if st["total_s"]:
        parts.append(
            "%s / %s %s"
            % (_mmss(st["elapsed_s"]), _mmss(st["total_s"]), _bar(st["elapsed_s"], st["total_s"]))
        )
    if frame is not None:
        forces = frame["forces_cn"]
        parts.append("mean force %.1f N" % (sum(forces) / len(forces) / 100 if forces else 0))
        parts.append("leg rest %s" % frame["legrest"])
    flags = [n for n in ("person", "programme", "updating", "pairing", "safe_stop") if st[n]]
    if flags:
        parts.append("(" + ", ".join(f.replace("_", " ") for f in flags) + ")")
    return "  ".join(parts)


def _region_names():
    from firmware.treatments.tension import REGION_NAMES

    return REGION_NAMES


def save_tension_png(path, before, after, title):
    """A bar chart, before and after per region (cN/mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _region_names()
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.bar([i - 0.2 for i in x], before, 0.4, label="before")
    ax.bar([i + 0.2 for i in x], after, 0.4, label="after")
    ax.set_xticks(list(x))
    ax.set_xticklabels([n.replace("_", "\n") for n in names])
    ax.set_ylabel("stiffness (cN/mm)")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_history_png(path, records, user):
    """Tension per region over the stored sessions (oldest left): before solid, after dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = list(reversed(records))
    xs = [r["seq"] for r in recs]
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    for k, name in enumerate(_region_names()):
        (line,) = ax.plot(xs, [r["before"][k] for r in recs], marker="o", label=name)
        ax.plot(xs, [r["after"][k] for r in recs], ls="--", color=line.get_color())
    ax.set_xlabel("session")
    ax.set_ylabel("stiffness (cN/mm), before solid, after dashed")
    ax.set_title("tension history, user %d" % user)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- commands --------------------------------------------------------------------------------


def _say(out, text):
    print(text, file=out, flush=True)


async def _cmd_status(client, args, out):
    info = client.protocol
    st = client.latest_state
    _say(
        out,
        "protocol %d.%d, %d fingers (%d x %d), areas %s, programmes up to %d bytes"
        % (
            info["major"],
            info["minor"],
            info["fingers"],
            info["rows"],
            info["cols"],
            ", ".join(info["areas"]),
            info["programme_max"],
        ),
    )
    _say(out, state_line(st))
    s = client.settings
    _say(
        out,
        "settings: strength %s, area %s, flow %s at %s %%"
        % (s.get("strength"), s.get("area"), s.get("flow"), s.get("tempo")),
    )
    if st["state"] == "idle" and st["end"]:
        _say(out, "last session: %s" % st["end"])
    return EXIT_OK


async def _cmd_strength(client, args, out):
    await client.set_strength(args.level)
    _say(out, "strength %d" % args.level)
    return EXIT_OK


async def _cmd_area(client, args, out):
    await client.set_area(args.name)
    _say(out, "area %s" % args.name)
    return EXIT_OK


async def _cmd_flow(client, args, out):
    await client.set_flow(args.name, args.tempo)
    _say(out, "flow %s at %d %%" % (args.name, args.tempo))
    return EXIT_OK


async def _cmd_start(client, args, out):
    await client.start(args.minutes, args.user)
    _say(out, "started: %d minutes for user %d" % (args.minutes, args.user))
    return EXIT_OK


async def _cmd_programme(client, args, out):
    try:
        with open(args.file, "rb") as f:
            data = f.read()
        json.loads(data)
    except (OSError, ValueError) as e:
        raise UsageError("programme %s: %s" % (args.file, e)) from None
    limit = client.protocol["programme_max"]
    if len(data) > limit:
        raise UsageError(
            "programme %s: %d bytes, the device takes %d" % (args.file, len(data), limit)
        )
    await client.upload_programme(data)
    _say(out, "programme uploaded and accepted (%d bytes)" % len(data))
    if not args.no_start:
        await client.start_programme(args.user)
        _say(out, "programme started for user %d" % args.user)
    return EXIT_OK


async def _cmd_session(client, args, out):
    if args.programme:
        args.file, args.no_start = args.programme, False
        await _cmd_programme(client, args, out)
    else:
        await _cmd_start(client, args, out)
    await client.wait_state(lambda s: s["state"] != "idle")
    args.seconds = None
    await _cmd_watch(client, args, out)
    return await _cmd_tension(client, args, out)


def _simple(method, done):
    async def run(client, args, out):
        await getattr(client, method)()
        _say(out, done)
        return EXIT_OK

    return run


async def _cmd_watch(client, args, out):
    st = client.latest_state
    if st["state"] == "idle":
        _say(out, state_line(st))
        _say(out, "no session running")
        return EXIT_OK
    tty = out.isatty()
    loop = asyncio.get_running_loop()
    until = None if args.seconds is None else loop.time() + args.seconds
    shown = None
    while True:
        st = client.latest_state
        line = state_line(st, client.latest_frame)
        if tty:  # one line rewritten in place
            print("\r\033[K" + line, end="", file=out, flush=True)
        elif (st["state"], st["elapsed_s"] // 60) != shown:  # a log: a line a minute
            shown = (st["state"], st["elapsed_s"] // 60)
            _say(out, line)
        if client.latest_state["state"] == "idle":
            break
        left = 1.5 if until is None else min(1.5, until - loop.time())
        if left <= 0:
            break
        try:
            await client.wait_state(timeout_s=left)
        except Disconnected:
            raise ClientError(
                "link lost; a running session keeps running on the device (its button stops it)"
            ) from None
        except CommandTimeout:  # quiet for a while: redraw and keep watching
            pass
    if tty:
        print(file=out)
    st = client.latest_state
    if st["state"] == "idle":
        _say(out, "session ended: %s" % (st["end"] or "-"))
    return EXIT_OK


async def _cmd_tension(client, args, out):
    from backhug_host.report import tension_table

    rep = await client.tension_report()
    if rep is None:
        _say(out, "no session has finished since the device started")
        return EXIT_OK
    _say(
        out,
        "user %d, %s after %s at strength %d, %d fingers in contact%s"
        % (
            rep["user"],
            rep["end"] or "-",
            _mmss(rep["elapsed_s"]),
            rep["strength"],
            rep["contacts"],
            "" if rep["tracked"] else " (under 20 min: not kept in the history)",
        ),
    )
    _say(out, tension_table(rep["before"], rep["after"]))
    if args.png:
        save_tension_png(args.png, rep["before"], rep["after"], "tension, user %d" % rep["user"])
        _say(out, "picture: %s" % args.png)
    return EXIT_OK


async def _cmd_history(client, args, out):
    recs = await client.history(args.user)
    if not recs:
        _say(out, "no sessions stored for user %d" % args.user)
        return EXIT_OK
    _say(
        out,
        "%-4s%8s%8s  %-8s%-11s%4s%12s%12s"
        % ("#", "session", "time", "area", "flow", "str", "mean before", "mean after"),
    )
    for r in recs:
        b = [v for v in r["before"] if v]
        a = [v for v in r["after"] if v]
        _say(
            out,
            "%-4d%8d%8s  %-8s%-11s%4d%12s%12s"
            % (
                r["index"],
                r["seq"],
                _mmss(r["duration_s"]),
                r["area"],
                r["flow"],
                r["strength"],
                sum(b) // len(b) if b else "-",
                sum(a) // len(a) if a else "-",
            ),
        )
    if args.png:
        save_history_png(args.png, recs, args.user)
        _say(out, "picture: %s" % args.png)
    return EXIT_OK


async def _cmd_faults(client, args, out):
    entries = await client.faults()
    if not entries:
        _say(out, "the fault log is empty")
        return EXIT_OK
    for e in entries:
        _say(
            out,
            "#%d  code %d %s  boot %d  at %s in session  %s"
            % (
                e["index"],
                e["code"],
                fault_codes.name(e["code"]),
                e["boot"],
                _mmss(e["session_ms"] // 1000),
                e["detail"],
            ),
        )
    return EXIT_OK


_COMMANDS = {
    "status": _cmd_status,
    "strength": _cmd_strength,
    "area": _cmd_area,
    "flow": _cmd_flow,
    "start": _cmd_start,
    "programme": _cmd_programme,
    "pause": _simple("pause", "paused"),
    "resume": _simple("resume", "resumed"),
    "stop": _simple("stop", "stopped"),
    "ack": _simple("acknowledge", "fault acknowledged"),
    "watch": _cmd_watch,
    "tension": _cmd_tension,
    "history": _cmd_history,
    "faults": _cmd_faults,
    "session": _cmd_session,
}


async def _run(args, out, link_factory, scanner):
    if args.cmd == "scan":
        found = await scanner(args)
        if not found:
            raise UsageError("no BackHug found")
        for f in found:
            _say(
                out,
                "%-20s %-14s rssi %4d%s"
                % (f.address_text, f.name, f.rssi, "  pairing window open" if f.pairing else ""),
            )
        return EXIT_OK
    link = await link_factory(args)
    try:
        client = BackHugClient(link, timeout_s=args.timeout)
        if args.cmd == "pair":
            await link.pair()
            await asyncio.sleep(PAIR_SETTLE_S)
            if not link.is_connected:
                raise LinkError(
                    "the device paired but did not keep the bond: hold its button for 3 s to "
                    "open the pairing window, then run `backhug pair` again"
                )
            await client.connect()
            _say(out, "paired and bonded")
            _say(out, state_line(client.latest_state))
            return EXIT_OK
        await client.connect()
        return await _COMMANDS[args.cmd](client, args, out)
    finally:
        # also when the link already dropped: BumbleLink closes its HCI transport here
        try:
            await asyncio.wait_for(link.disconnect(), args.timeout)
        except Exception:  # leaving anyway
            pass
        sim = getattr(link, "sim", None)
        if sim is not None:
            await sim.close()


def main(argv=None, *, link_factory=None, scanner=None, out=None, err=None):
    """Run the console script; returns the exit code. link_factory(args) / scanner(args):
    coroutines to replace the transports (tests)."""
    out = out or sys.stdout
    err = err or sys.stderr
    # the device may notify before this client has subscribed (a fresh link): not a problem
    logging.getLogger("bumble.gatt_client").setLevel(logging.ERROR)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    job = _run(args, out, link_factory or open_link, scanner or _scan)
    try:
        if args.sim:
            from backhug_host import hostrt

            return hostrt.run(job, virtual=True)  # the simulated minutes pass in seconds
        return asyncio.run(job)
    except CommandRefused as e:
        print("refused: %s%s" % (e.result_name, ": " + e.reason if e.reason else ""), file=err)
        return EXIT_REFUSED
    except (ClientError, LinkError, UsageError, NotImplementedError, OSError) as e:
        print("backhug: %s" % e, file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted (a running session keeps running on the device)", file=err)
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
