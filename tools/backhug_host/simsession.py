"""A complete simulated treatment session: the unchanged firmware (firmware.app.Device) on the
simulated device (sim.device.SimDevice) with a simulated person, in virtual time.

SimRun is the harness tests and `make sim` share: it boots the device, sends the same commands
the app sends (firmware.commands), samples what the firmware measured and what the physics says
really happened, and hands back a report. main() is the `session` command of
`python -m backhug_host.sim`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from backhug_host import emul, hostrt, report
from backhug_host.sim.device import SimDevice, WatchdogExpired
from firmware import app, faultlog, history, runtime, storage
from firmware import session as ses

# Loop passes a rebooting device waits for the old firmware's tasks to end (each pass cancels
# the ones still running again); they end within two or three.
_REBOOT_PASSES = 100


class SimRun:
    def __init__(
        self, board_id="sim", person=None, seed=0, data_dir=None, clock=None, services=None
    ):
        # the clock the running virtual loop and firmware.runtime share (hostrt.run installed it)
        self.clock = clock or runtime._host
        if not isinstance(self.clock, hostrt.VirtualClock):
            raise RuntimeError("SimRun runs inside hostrt.run(..., virtual=True)")
        if person is None:
            person = {}
        self.sim = SimDevice(board_id, person=person, seed=seed, clock=self.clock)
        hw = self.sim.build_hal()
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="backhug-sim-")
            data_dir = self._tmp.name
        self.board_id = board_id
        self.store_root = str(data_dir)
        self.store = storage.Store(self.store_root)
        self.history = history.TensionHistory(self.store)
        self.faultlog = faultlog.FaultLog(self.store)
        # services(device, store) -> objects to attach (BLE, updates), called at every boot
        self._services = services
        self.device = self._make_device(hw)
        self.board = self.device.board
        self.boots = 1
        self.resets = []  # (elapsed_ms, why) of every reset the simulated device went through
        self._selftest = True
        self.times_s = []
        self.forces_cn = []  # what the firmware measured, one list per sample
        self.states = []
        self.peak_truth_n = 0.0  # the highest force the physics saw on any finger
        self._tasks = []

    def _make_device(self, hw):
        d = app.Device(self.board_id, hw=hw, history=self.history, faultlog=self.faultlog)
        if self._services is not None:
            for svc in self._services(d, self.store):
                d.add_service(svc)
        return d

    async def start(self, selftest=True):
        # the physics host task first: the boot self-test waits on the simulated hardware
        self._selftest = selftest
        self._tasks.append(asyncio.create_task(self._physics()))
        await self._boot()

    async def _boot(self):
        if self._selftest:
            report = await self.device.boot()
            if not report["ok"]:
                raise RuntimeError("boot self-test failed: " + ", ".join(report["failed"]))
        self.device.start_tasks()

    async def _physics(self):
        # The simulated hardware. When the firmware stops feeding the watchdog, the device
        # resets like the real one: the MCU restarts (the chips keep their state), the firmware
        # boots again from scratch on the same flash (the data folder) and must bring every
        # output to its safe state before anything else.
        while True:
            try:
                await self.sim.run()
            except WatchdogExpired as e:
                await self._reboot(str(e), emul.use_fake_machine().WDT_RESET)

    async def _reboot(self, why, cause):
        self.resets.append((self.sim.elapsed_ms(), why))
        await self._end_firmware_tasks()
        self.sim.world.reboot(cause)
        hw = self.sim.build_hal()
        # RAM is gone: the flash store, history and fault log are read afresh
        self.store = storage.Store(self.store_root)
        self.history = history.TensionHistory(self.store)
        self.faultlog = faultlog.FaultLog(self.store)
        self.device = self._make_device(hw)
        self.boots += 1
        self._tasks.append(asyncio.create_task(self._boot()))

    async def _end_firmware_tasks(self):
        # A reset ends every task at once; here the old firmware's tasks are cancelled, and the
        # new one boots only when they have all ended, in the same instant of virtual time. One
        # cancel is not always enough: aioble's DeviceTimeout turns a cancellation that lands as
        # its own timeout fires into TimeoutError, and the BLE service's advertising loop then
        # advertises again, which would wake the next boot's radio before its bond store is
        # registered. So whatever still runs is cancelled again at each loop pass.
        tasks = list(self.device._tasks)
        self.device.cancel_tasks()
        for _ in range(_REBOOT_PASSES):
            alive = [t for t in tasks if not t.done()]
            if not alive:
                return
            for t in alive:
                t.cancel()
            await asyncio.sleep(0)
        raise RuntimeError("firmware tasks outlived the reboot: %r" % alive)

    def reset(self, why="reset"):
        """The firmware's machine.reset(): the device reboots as from the watchdog path, with
        the reset cause machine.reset() gives. Called from inside a firmware task, so the
        reboot happens just after, from the loop."""
        cause = emul.use_fake_machine().HARD_RESET
        self._tasks.append(asyncio.ensure_future(self._reboot(why, cause)))

    async def close(self):
        self.device.cancel_tasks()
        for t in self._tasks:
            t.cancel()
        await asyncio.sleep(0)
        if self._tmp is not None:
            self._tmp.cleanup()

    def sample(self):
        d = self.device
        t = self.sim.elapsed_ms() / 1000
        forces = d.controller.forces_cn
        if forces is None:
            forces = [0] * self.board.finger_count
        self.times_s.append(t)
        self.forces_cn.append(list(forces))
        self.states.append(d.session.state)

    async def run_session(
        self,
        duration_min=None,
        programme=None,
        strength=None,
        area=None,
        flow=None,
        user=0,
        sample_ms=250,
        on_progress=None,
    ):
        """Start a session with the given settings and wait for it to end; returns its result."""
        cmds = self.device.commands
        for what, value, call in (
            ("strength", strength, cmds.set_strength),
            ("area", area, cmds.set_area),
            ("flow", flow, cmds.set_flow),
        ):
            if value is not None:
                code, why = call(value)
                if code:
                    raise ValueError(f"{what}: {why}")
        code, why = cmds.start(duration_min=duration_min, programme_obj=programme, user=user)
        if code:
            raise ValueError(why)
        s = self.device.session
        # a session is bounded by its 60-minute cap; give the scan and the leg rest time on top
        deadline_s = (s.total_ms + 5 * 60_000) / 1000
        start_s = self.sim.elapsed_ms() / 1000
        while True:
            await asyncio.sleep(sample_ms / 1000)
            self.sample()
            self.peak_truth_n = max(self.peak_truth_n, max(self.sim.max_forces_n()))
            if on_progress is not None:
                on_progress(self)
            if s.state == ses.IDLE and s.result is not None:
                return s.result
            if self.sim.elapsed_ms() / 1000 - start_s > deadline_s:
                raise TimeoutError(f"session still {ses.STATE_NAMES[s.state]} at the deadline")


def _person_from_args(args):
    if args.nobody:
        return "nobody"
    opts = {"height_cm": args.height_cm, "curvature": args.curvature, "weight_kg": args.weight_kg}
    if args.stiff:
        opts["stiff"] = tuple(x.strip() for x in args.stiff.split(",") if x.strip())
    return opts


class _Progress:
    # One line that redraws on a terminal; a line per simulated minute otherwise (CI logs).
    def __init__(self, out):
        self.out = out
        self.tty = out.isatty()
        self._last_minute = -1

    def __call__(self, run):
        s = run.device.session
        total = max(1, s.total_ms)
        frac = min(1.0, s.elapsed_ms / total)
        bar = "#" * int(frac * 30)
        forces = run.forces_cn[-1]
        pressing = [f for f, c in zip(forces, s.scan.mask, strict=False) if c]
        mean_n = sum(pressing) / len(pressing) / 100 if pressing else 0.0
        line = (
            f"[{bar:<30}] {s.elapsed_ms // 60000:2d}:{s.elapsed_ms // 1000 % 60:02d}"
            f" / {total // 60000}:{total // 1000 % 60:02d}  {ses.STATE_NAMES[s.state]:<14}"
            f" level {s._level():>2}  target {s.ramp.current_cn / 100:5.1f} N"
            f"  mean {mean_n:5.1f} N  contacts {s.scan.contacts:2d}"
        )
        if self.tty:
            self.out.write("\r" + line)
            self.out.flush()
        else:
            minute = int(run.times_s[-1] // 60)
            if minute != self._last_minute:
                self._last_minute = minute
                self.out.write(line + "\n")

    def done(self):
        if self.tty:
            self.out.write("\n")


async def _direct(args, person, programme, progress):
    run = SimRun(args.board, person=person, seed=args.seed)
    try:
        await run.start()
        result = await run.run_session(
            duration_min=None if programme else (args.duration or 20),
            programme=programme,
            strength=None if programme else args.strength,
            area=None if programme else args.area,
            flow=None if programme else args.flow,
            on_progress=progress,
        )
        return run, result
    finally:
        await run.close()


async def _through_ble(args, person, programme, out, vdev=False):
    # The phone's way: the reference client pairs over BLE (Bumble) in the pairing window and
    # runs the session with the protocol's commands; progress and the picture come from the
    # state and telemetry notifications it receives. The physics is sampled on the side for
    # the true peak force. vdev: the device is the virtual one (the firmware on MicroPython,
    # backhug_host.vdev.session) instead of the CPython firmware (BleSim).
    from backhug_host.client.cli import state_line
    from backhug_host.client.core import CommandRefused

    if args.board != "sim":
        raise ValueError("--board: the BLE session runs the sim board (use --direct)")
    if vdev:
        from backhug_host.vdev.session import VdevSession

        sim = VdevSession(person=person, seed=args.seed, out=out)
    else:
        from backhug_host.blesim import BleSim

        sim = BleSim(person=person, seed=args.seed)
    run = sim.run
    progress = _BleProgress(out, run)
    truth = asyncio.create_task(_watch_truth(run))
    try:
        await sim.start()
        client = await sim.phone()
        client.on_frame = progress.frame
        client.on_state = progress.state
        progress.line = state_line
        try:
            if programme is not None:
                await client.upload_programme(json.dumps(programme).encode())
                await client.start_programme(0)
            else:
                if not 0 <= args.strength <= 255:
                    raise ValueError("strength: must be 1..10")
                await client.set_strength(args.strength)
                await client.set_area(args.area)
                await client.set_flow(args.flow)
                await client.start(args.duration or 20, 0)
        except CommandRefused as e:
            raise ValueError(e.reason or e.result_name) from None
        st = await client.wait_state(lambda s: s["state"] != "idle", timeout_s=5)
        await client.wait_state(lambda s: s["state"] == "idle", timeout_s=st["total_s"] + 300)
        rep = await client.tension_report()
        result = {
            "reason": rep["end"],
            "user": rep["user"],
            "elapsed_ms": rep["elapsed_s"] * 1000,
            "contacts": rep["contacts"],
            "strength": rep["strength"],
            "before": rep["before"],
            "after": rep["after"],
            "tracked": rep["tracked"],
            "telemetry_frames": client.frames,
        }
        progress.done()
        if vdev:
            # the firmware's own count is inside MicroPython: what the phone received instead
            result["telemetry_notifications"] = sim.packets
            sent = f"{sim.packets} telemetry notifications received"
        else:
            result["ble_notifications"] = sim.service.sent
            sent = f"{sim.service.sent} notifications"
        out.write(f"over BLE: {client.frames} telemetry frames, {sent} at MTU {client.link.mtu}\n")
        if vdev:
            out.write(sim.summary() + "\n")
        return run, result
    except Exception as e:
        tail = sim.console_tail() if vdev and not isinstance(e, ValueError) else ""
        if tail:  # what the firmware printed before it went wrong
            progress.done()
            sys.stderr.write("virtual device console (last lines):\n" + tail + "\n")
        raise
    finally:
        truth.cancel()
        await sim.close()


async def _watch_truth(run):
    while True:
        await asyncio.sleep(0.25)
        run.peak_truth_n = max(run.peak_truth_n, max(run.sim.max_forces_n()))


class _BleProgress:
    # What the phone sees: the state line (progress bar) redrawn on a terminal, one line per
    # simulated minute otherwise; the frames are kept for the picture.
    def __init__(self, out, run):
        self.out = out
        self.run = run
        self.tty = out.isatty()
        self.line = None
        self._frame = None
        self._minute = -1

    def frame(self, f):
        self._frame = f
        run = self.run
        run.times_s.append(run.sim.elapsed_ms() / 1000)
        run.forces_cn.append(list(f["forces_cn"]))

    def state(self, st):
        if self.line is None:
            return
        text = self.line(st, self._frame)
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif st["elapsed_s"] // 60 != self._minute or st["state"] == "idle":
            self._minute = st["elapsed_s"] // 60
            self.out.write(text + "\n")

    def done(self):
        if self.tty:
            self.out.write("\n")


def main(argv=None, out=sys.stdout):
    p = argparse.ArgumentParser(
        prog="python -m backhug_host.sim session",
        description="Run a complete treatment session on the simulated device in virtual time.",
    )
    p.add_argument("--board", default="sim")
    p.add_argument("--duration", type=int, default=None, help="minutes: 10, 20, 30 or 40")
    p.add_argument("--strength", type=int, default=5, help="level 1..10 (starts at 3 or below)")
    p.add_argument("--area", default="full", help="upper, middle, lower or full")
    p.add_argument("--flow", default="wave", help="wave, pulse, alternate, hold or walk")
    p.add_argument("--programme", type=Path, help="a programme file (JSON) instead of the above")
    p.add_argument("--height-cm", type=float, default=175.0)
    p.add_argument("--curvature", type=float, default=1.0)
    p.add_argument("--weight-kg", type=float, default=75.0)
    p.add_argument(
        "--stiff",
        default="upper_left,middle_right",
        help="comma-separated stiff regions of the simulated person ('' for none)",
    )
    p.add_argument("--nobody", action="store_true", help="nobody lies on the device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", type=Path, default=Path("build/sim-session.png"))
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    p.add_argument(
        "--direct",
        action="store_true",
        help="call the firmware's commands directly instead of through BLE and the client",
    )
    p.add_argument(
        "--vdev",
        action="store_true",
        help="run the session on the virtual device: the firmware on MicroPython's unix port"
        " (built on first use), driven over BLE by the client as usual",
    )
    args = p.parse_args(argv)
    if args.vdev and args.direct:
        print(
            "--vdev: the virtual device's firmware runs inside MicroPython, where its commands"
            " cannot be called directly; drop --direct (the session goes over BLE)",
            file=sys.stderr,
        )
        return 2
    if args.vdev and args.board != "sim":
        print(f"--vdev: the virtual device is the sim board, not {args.board}", file=sys.stderr)
        return 2

    programme = None
    if args.programme is not None:
        try:
            programme = json.loads(args.programme.read_text())
        except (OSError, ValueError) as e:
            print(f"programme: cannot read {args.programme}: {e}", file=sys.stderr)
            return 2
    try:
        person = _person_from_args(args)
    except ValueError as e:
        print(f"person: {e}", file=sys.stderr)
        return 2

    if args.vdev:
        from backhug_host.vdev import build

        try:
            from backhug_host.vdev.session import ensure_interpreter

            ensure_interpreter(out)
        except build.BuildError as e:
            print(f"--vdev: cannot build the interpreter: {e}", file=sys.stderr)
            return 2

    progress = _Progress(out)
    wall0 = time.perf_counter()
    try:
        if args.direct:
            run, result = hostrt.run(_direct(args, person, programme, progress))
        elif args.vdev:
            # the idle grace tests/vdev use: the interpreter is a real process
            coro = _through_ble(args, person, programme, out, vdev=True)
            run, result = hostrt.run(coro, idle_grace_s=5.0)
        else:
            run, result = hostrt.run(_through_ble(args, person, programme, out))
    except ValueError as e:
        progress.done()
        print(f"refused: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - wall0
    if args.direct:
        progress.done()
    sim_s = run.sim.elapsed_ms() / 1000
    out.write(
        f"\nsession ended: {result['reason']} after {result['elapsed_ms'] / 60000:.1f} min of"
        f" treatment ({sim_s / 60:.1f} simulated minutes in {wall:.1f} s wall,"
        f" {sim_s / max(wall, 1e-9):.0f}x real time)\n"
    )
    out.write(
        f"fingers in contact: {result['contacts']} of {run.board.finger_count};"
        f" peak force on any finger {run.peak_truth_n:.1f} N (cap"
        f" {run.board.force_cap_cn / 100:.0f} N); leg rest"
        f" {'down' if run.sim.legrest_position() <= 0.01 else 'NOT down'}\n\n"
    )
    if result["contacts"] and result["reason"] != ses.END_NO_PERSON:
        out.write(report.tension_table(result["before"], result["after"]) + "\n")
        stiff = getattr(run.sim.load, "stiff", None)
        if stiff:
            out.write(f"simulated stiff regions: {', '.join(sorted(stiff))}\n")
        args.png.parent.mkdir(parents=True, exist_ok=True)
        report.save_png(
            args.png,
            times_s=run.times_s,
            forces_cn=run.forces_cn,
            rows=run.board.rows,
            cols=run.board.cols,
            before=result["before"],
            after=result["after"],
            title=f"BackHug simulated session: {result['reason']}",
            cap_cn=run.board.force_cap_cn,
        )
        out.write(f"picture: {args.png}\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["reason"] == ses.END_COMPLETED else 1
