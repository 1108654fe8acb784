"""`python -m backhug_host.sim [COMMAND] [options]` (`make sim ARGS="..."`): the simulated device.

Commands:
    session    (the default) a complete treatment session with a simulated person lying on the
               device, in virtual time: progress, the tension report and a PNG picture
               (backhug_host/simsession.py; `session --help` lists its options; with --vdev
               on the virtual device, the firmware on MicroPython: backhug_host/vdev/session.py)
    serve      the simulated device in wall-clock time, its BLE radio reachable as HCI over TCP
               on loopback, so the client (`backhug --hci tcp-client:127.0.0.1:PORT ...`) or
               smpclient's Bumble transport can drive it from another process; with
               --udp-port it also answers SMP (firmware updates) on UDP, as smpclient's UDP
               transport expects
    selftest   boot the simulated board in virtual time and run the hardware self-test on it
               (full: the factory test with the test rig's plate over the fingers; quick: the
               boot-time test, with a person lying on the device).

Faults (--fault KIND:TARGET, repeatable) are injected before the board boots; see
backhug_host/sim/faults.py or docs/simulator.md for the kinds. Exit status: 0 pass, 1 fail,
2 bad usage.
"""

import argparse
import asyncio
import sys
import time

COMMANDS = ("session", "selftest", "serve")
DEFAULT_COMMAND = "session"


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m backhug_host.sim",
        description="The simulated BackHug: the unchanged firmware on emulated chips and physics.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("session", help="a complete simulated treatment session (the default)")
    st = sub.add_parser("selftest", help="run the hardware self-test on the simulated device")
    st.add_argument("--board", default="sim", help="board id under boards/ (default sim)")
    st.add_argument("--mode", choices=("quick", "full"), default="full")
    st.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    st.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:TARGET",
        help="inject a fault before boot, e.g. open:3, swap:4,5, stall:7, nack:0x41, jam, "
        "limits:both (repeatable)",
    )
    st.add_argument(
        "--load",
        choices=("rig", "person", "nobody"),
        help="what lies on the device (default: the rig for full, a person for quick)",
    )
    st.add_argument(
        "--plate-mm",
        type=float,
        default=None,
        help="rig plate height above the retracted fingers (default: the rig's 20 mm)",
    )
    st.add_argument("--all", action="store_true", help="list every part, passing ones too")
    sv = sub.add_parser("serve", help="the simulated device on an HCI socket, in real time")
    sv.add_argument("--port", type=int, default=9000, help="TCP port on 127.0.0.1 (0: any)")
    sv.add_argument("--seconds", type=float, default=None, help="stop after this (default never)")
    sv.add_argument("--open-window", action="store_true", help="open the pairing window at start")
    sv.add_argument(
        "--udp-port", type=int, default=None, help="also serve SMP on UDP 127.0.0.1 (1337; 0: any)"
    )
    sv.add_argument(
        "--data-dir", default=None, help="keep the device's flash here (default: a temporary one)"
    )
    return p


def _argv_with_default(argv):
    # no command given: the default one (options still apply to it)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        return [DEFAULT_COMMAND] + list(argv)
    return list(argv)


def run_selftest(board="sim", mode="full", seed=0, faults=(), load=None, plate_um=None):
    """Boot a SimDevice in virtual time and self-test it; returns (report, device)."""
    from backhug_host import hostrt
    from backhug_host.sim.device import SimDevice, WatchdogExpired
    from backhug_host.sim.person import Person
    from backhug_host.sim.rig import PLATE_UM, Rig
    from firmware import boardspec

    clock = hostrt.install_virtual()
    board_obj = boardspec.load(board)
    load = load or ("rig" if mode == "full" else "person")
    plate_um = PLATE_UM if plate_um is None else plate_um
    if load == "rig":
        person = Rig(board_obj, plate_um=plate_um)
    elif load == "person":
        person = Person(board_obj)
    else:
        person = None
    dev = SimDevice(board, person=person, seed=seed, clock=clock)
    for spec in faults:
        dev.inject(spec)
    hw = dev.build_hal(init=False)
    from firmware import selftest
    from firmware.drivers.fault import DriverFault

    try:
        hw.init()
    except DriverFault:
        pass  # kept in hw.faults; the self-test reports them

    async def main():
        host = asyncio.create_task(dev.run())
        try:
            report = await selftest.run(hw, dev.board, mode, plate_um)
        finally:
            host.cancel()
        try:
            await host
        except asyncio.CancelledError:
            pass
        except WatchdogExpired as e:
            report["ok"] = False
            report["failed"].append("watchdog")
            report["parts"].append(
                {"part": "watchdog", "ok": False, "detail": str(e), "values": {}}
            )
        return report

    return hostrt.run(main(), clock=clock), dev


def cmd_selftest(args):
    from backhug_host.sim.faults import FaultError
    from backhug_host.sim.selftest_report import format_report
    from firmware.boardspec import BoardError

    plate_um = None if args.plate_mm is None else int(round(args.plate_mm * 1000))
    t0 = time.monotonic()
    try:
        report, dev = run_selftest(
            args.board, args.mode, args.seed, args.fault, args.load, plate_um
        )
    except (FaultError, BoardError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    wall = time.monotonic() - t0
    title = "%s self-test: %s" % (args.mode, dev.describe())
    if args.fault:
        title += "; faults: " + ", ".join(args.fault)
    print(format_report(report, every_part=args.all, title=title))
    print("(%.1f s of device time in %.1f s)" % (dev.elapsed_ms() / 1000, wall))
    return 0 if report["ok"] else 1


def cmd_serve(args):
    from backhug_host import blesim, hostrt

    person = {"stiff": ("upper_left", "middle_right")}
    try:
        hostrt.run(
            blesim.serve(
                args.port,
                args.seconds,
                args.open_window,
                person,
                udp_port=args.udp_port,
                data_dir=args.data_dir,
            ),
            virtual=True,
            paced=True,
        )
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    argv = _argv_with_default(argv)
    if argv[0] == "session":
        from backhug_host import simsession

        return simsession.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "selftest":
        return cmd_selftest(args)
    if args.command == "serve":
        return cmd_serve(args)
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
