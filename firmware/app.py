# The device: builds the hardware from the board, wires the session, the supervisor and the
# safe-stop funnel together, and runs the asyncio tasks (DESIGN section 3):
#   control   100 Hz tick (firmware/controller.py)
#   legrest   leg-rest control at 50 Hz
#   button    stop / start / pairing-window events
#   watchdog  feeds the hardware watchdog only while the control loop is on time and every task
#             is alive; otherwise the watchdog resets the device, which boots into the safe state
#   status    LED colour and buzzer
# plus the services other modules attach (BLE, updates) through add_service().
# A task that raises or returns triggers the safe-stop funnel and stops the watchdog feeding.

import asyncio

from firmware import (
    boardspec,
    controller,
    faults,
    legrestctl,
    plausibility,
    safestop,
    supervisor,
)
from firmware import session as ses
from firmware.commands import Commands
from firmware.drivers import button as btn
from firmware.runtime import sleep_ms, ticks_add, ticks_diff, ticks_ms

WATCHDOG_FEED_MS = 100
LEGREST_PERIOD_MS = 20
STATUS_PERIOD_MS = 100

# LED colour per session state (r, g, b), and the fault colour
_STATE_COLOURS = (
    (0, 0, 40),  # idle: dim blue
    (0, 80, 80),  # scanning
    (0, 80, 80),  # leg rest rising
    (0, 120, 0),  # warm-up
    (0, 160, 0),  # treating
    (0, 120, 0),  # cool-down
    (120, 80, 0),  # paused
    (0, 80, 80),  # finishing
)
_FAULT_COLOUR = (200, 0, 0)
_PAIRING_COLOUR = (0, 0, 200)  # bright blue while a new phone may bond
_FAULT_TONE_HZ = 2_000
FAULTLOG_FLUSH_MS = 500


class Device:
    def __init__(self, board_id, hw=None, history=None, faultlog=None):
        # Building the hardware puts every output in its safe state first (hal.build).
        self.board = boardspec.load(board_id)
        if hw is None:
            from firmware import hal  # the only module that imports machine

            hw = hal.build(self.board)
        self.hw = hw
        self.safestop = safestop.SafeStop()
        self.legrest = legrestctl.LegRestControl(self.hw.legrest)
        self.session = ses.Session(self.board, self.legrest)
        self.supervisor = supervisor.Supervisor(self.board, self.session, self.safestop)
        self.controller = controller.Controller(self.hw, self.session, self.supervisor)
        self.controller.plausibility = plausibility.SensorCheck(self.board)
        self.commands = Commands(self)
        self.supervisor.log = faultlog
        self.supervisor.probe = self._fault_cleared
        self.faultlog = faultlog
        self.boot_count = 0
        self.reset_cause = None
        self.history = history
        self.update_in_progress = False
        self.crashed = None  # name of a task that died: no more watchdog feeding
        self.last_result = None
        self.selftest_report = None
        self.services = []
        self._tasks = []
        self._press_began_idle = False
        self._beep_left = 0
        self.session.on_finished = self._finished
        self.safestop.register("fingers", self._stop_fingers)
        self.safestop.register("legrest", self._stop_legrest)
        self.safestop.register("session", self._stop_session)
        self.safestop.register("status", self._stop_status)

    # -- safe-stop handlers: outputs first --------------------------------------------------------

    def _stop_fingers(self, reason):
        f = self.hw.fingers
        if not self.controller.outputs_failed:
            try:
                f.home()
                return
            except Exception:  # noqa: BLE001 - a chip that fails now: switch outputs off
                self.controller.outputs_failed = True
        f.off()  # output enable off, then all-off on every chip that still answers

    def _stop_legrest(self, reason):
        self.legrest.stop()

    def _legrest_faulted(self):
        code = self.supervisor.fault_code or self.legrest.fault_code
        return faults.LEGREST_OBSTRUCTED <= code <= faults.LEGREST_LIMIT_STUCK

    def _stop_session(self, reason):
        why = ses.END_STOPPED if reason == "stop button" else reason
        self.session.stop(why, lower=not self._legrest_faulted())

    def _stop_status(self, reason):
        self.hw.led.set(*_FAULT_COLOUR)
        if reason != "stop button":
            self.hw.buzzer.tone(_FAULT_TONE_HZ)
            self._beep_left = 3  # status ticks

    def _fault_cleared(self, code, detail):
        # Is the latched fault's condition gone? Checked when the user acknowledges it.
        hw = self.hw
        if code == faults.SENSOR_OPEN or code == faults.SENSOR_SHORT:
            raw = hw.forces.raw
            for i in range(self.board.finger_count):
                if raw[i] >= 4090 or raw[i] <= 4:
                    return False
            return True
        if code == faults.I2C_FAULT:
            try:
                hw.fingers.init()
                hw.fingers.home()
            except Exception:  # noqa: BLE001 - still not answering
                return False
            self.controller.outputs_failed = False
            return True
        if code == faults.LEGREST_BOTH_LIMITS:
            if hw.legrest.at_top() and hw.legrest.at_bottom():
                return False
        if faults.LEGREST_OBSTRUCTED <= code <= faults.LEGREST_LIMIT_STUCK:
            self.legrest.clear_fault()
        self.controller.plausibility.reset()
        return True

    def _finished(self, result):
        self.last_result = result
        stop_button = self.safestop.reason == "stop button"
        if self.safestop.active and stop_button and not self.supervisor.fault_code:
            # a user's stop is over once the session has wound down
            self.safestop.clear()
        if self.history is not None and result["tracked"]:
            record = {
                "duration_s": result["elapsed_ms"] // 1000,
                "area": result["area"],
                "flow": result["flow"],
                "strength": result["strength"],
                "before": result["before"],
                "after": result["after"],
            }
            try:
                self.history.add(result["user"], record)
            except Exception as e:  # noqa: BLE001 - a full or broken flash must not stop the device
                result["history_error"] = str(e)

    def add_service(self, service):
        # service: an object with `async run(device)`; its failure is treated like any task's
        self.services.append(service)

    # -- tasks ------------------------------------------------------------------------------------

    async def _guard(self, name, job):
        try:
            await job()
            why = "task %s ended" % name
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure must end in the safe state
            why = "task %s failed: %r" % (name, e)
        self.crashed = name  # the watchdog is no longer fed: the device will reset
        self.supervisor.fault(faults.TASK_DIED, why[:24])

    async def _control(self):
        period = controller.PERIOD_MS
        tick = self.controller.tick
        next_ms = ticks_ms()
        while True:
            now = ticks_ms()
            wait = ticks_diff(next_ms, now)
            await sleep_ms(wait if wait > 0 else 0)
            now = ticks_ms()
            tick(now)
            next_ms = ticks_add(next_ms, period)
            if ticks_diff(now, next_ms) > period:
                next_ms = ticks_add(now, period)  # overrun: don't catch up with a burst

    async def _legrest(self):
        s = self.session
        lr = self.legrest
        reported = 0
        while True:
            lr.poll(s.occupied)
            if lr.fault_code != reported:
                reported = lr.fault_code
                if reported:
                    self.supervisor.fault(reported, lr.problem or "")
            await sleep_ms(LEGREST_PERIOD_MS)

    async def _button(self):
        b = self.hw.button
        while True:
            await b.flag.wait()
            events = b.take()
            s = self.session
            if events & btn.PRESSED:
                self._press_began_idle = s.state == ses.IDLE
                if s.state != ses.IDLE and s.state != ses.FINISHING:
                    self.safestop.trigger("stop button")
            if events & btn.SHORT and self._press_began_idle and s.state == ses.IDLE:
                if self.safestop.active:
                    self.commands.acknowledge()  # a short press at idle acknowledges a fault
                else:
                    # lying down without the phone: a default session, never above level 3
                    s.set_strength(min(s.strength, 3))
                    self.commands.start()
            if events & btn.LONG and self._press_began_idle:
                for svc in self.services:
                    if hasattr(svc, "open_pairing_window"):
                        svc.open_pairing_window()
            if events & btn.VERY_LONG and self._press_began_idle:
                for svc in self.services:
                    if hasattr(svc, "clear_bonds"):
                        svc.clear_bonds()

    async def _watchdog(self):
        wd = self.hw.watchdog
        wd.arm()
        limit = 3 * controller.PERIOD_MS
        while True:
            last = self.controller._last_ms
            on_time = last is not None and ticks_diff(ticks_ms(), last) <= limit
            if on_time and self.crashed is None:
                wd.feed()
            await sleep_ms(WATCHDOG_FEED_MS)

    async def _status(self):
        led = self.hw.led
        blink = False
        while True:
            if not self.safestop.active:
                if self.session.state == ses.IDLE and self._pairing_window_open():
                    led.set(*_PAIRING_COLOUR)
                else:
                    led.set(*_STATE_COLOURS[self.session.state])
            elif self.supervisor.fault_code:
                blink = not blink  # a latched fault blinks red until acknowledged
                led.set(*(_FAULT_COLOUR if blink else (0, 0, 0)))
            if self._beep_left:
                self._beep_left -= 1
                if not self._beep_left:
                    self.hw.buzzer.off()
            await sleep_ms(STATUS_PERIOD_MS)

    def _pairing_window_open(self):
        for svc in self.services:
            if hasattr(svc, "pairing_window_open") and svc.pairing_window_open():
                return True
        return False

    async def _flush_log(self):
        # faults are noted in RAM inside the tick; flash writes happen here, outside it
        log = self.faultlog
        while True:
            await sleep_ms(FAULTLOG_FLUSH_MS)
            if log is not None:
                log.flush()

    def start_tasks(self):
        # coroutines are made inside the guard, so a task cancelled before it ever ran leaves
        # no un-awaited coroutine behind
        jobs = [
            ("control", self._control),
            ("legrest", self._legrest),
            ("button-input", self.hw.button.run),
            ("button", self._button),
            ("watchdog", self._watchdog),
            ("status", self._status),
            ("faultlog", self._flush_log),
        ]
        for svc in self.services:
            jobs.append((type(svc).__name__, lambda svc=svc: svc.run(self)))
        for name, job in jobs:
            self._tasks.append(asyncio.create_task(self._guard(name, job)))

    def cancel_tasks(self):
        for t in self._tasks:
            t.cancel()
        self._tasks = []

    async def boot(self):
        # The quick self-test (nothing moves outward: someone may be lying on the device). A
        # failed part latches the safe state, so no session can start until it is dealt with.
        from firmware import hal, selftest

        self.reset_cause = hal.reset_cause()
        if self.faultlog is not None:
            self.boot_count = self.faultlog.start(self.reset_cause)
        report = await selftest.run(self.hw, self.board, selftest.QUICK)
        self.selftest_report = report
        if not report["ok"]:
            self.supervisor.fault(faults.SELFTEST_FAILED, ",".join(report["failed"])[:24])
        return report

    async def run(self):
        await self.boot()
        self.start_tasks()
        while True:
            await sleep_ms(1000)
