"""The safety invariants of DESIGN section 5, checked after every control tick of a SimRun.

`watch(run)` (a context manager) wraps firmware.controller.Controller.tick for the whole class:
the device's control task binds `self.controller.tick` once when it starts, and after a watchdog
reset the simulator builds a new Device, so an instance wrapper would miss ticks. The wrapper
runs the unchanged tick, then checks what it did. It never raises into the firmware (the
device would take an AssertionError for a dying task): the first violation is kept in
`Monitor.violation` and the driver of the scenario stops and reports it.

What is checked after every tick (numbers as in the Safety issue):
  1 a finger measured at or over the force cap is not commanded deeper: its target is below
    the previous tick's (or 0);
  2 ... and it retracts by the supervisor's 5 mm per tick while it stays over the cap; the
    physics' true force on a finger never exceeds the board's absolute maximum (200 N), except
    where the person changed the load under a still finger faster than any actuator can move
    (tensing, lying down on raised fingers: see `disturbed()`); and whenever a finger's true
    force is over 200 N and its sensor works, the firmware is pulling it back (target below the
    finger's actual position);
  3 the session's pressing time never passes 60 minutes (by more than the tick that found it)
    and the session stops pressing in the tick that reaches it;
  4 the strength target never rises faster than one table span per 60 s (plus integer rounding)
    and each session's first target is at or below level 3's force;
  5 no pressing without a person: idle, finishing, or a scan that found nobody means every
    target is 0; the leg rest drives up only while the session has a person (an obstruction
    back-off excepted, for at most its 0.5 s);
  6 by the end of the second tick that sees a latched fault, and from 20 ms (two ticks) after a
    stop-button press during a session until the session is idle again: every target 0 (or,
    after a PWM chip failed, the finger outputs switched off or every pulse at home) and the
    leg rest not driving up (an obstruction back-off excepted). A control task that died is
    checked between ticks: its safe stop must have left the fingers safe.
"""

import contextlib

from firmware import controller, legrestctl
from firmware import session as ses
from firmware import supervisor as supmod
from firmware.boardspec import FORCE_CAP_MAX_CN
from firmware.runtime import ticks_diff

RAMP_SPAN_MS = 60_000  # DESIGN 5 / docs/session.md: one full strength table span per minute
START_MAX_LEVEL = 3
STOP_TICKS_MS = 20  # stop button: safe within two 10 ms control ticks
FAULT_TICKS = 2  # a latched fault: safe by the end of the second tick that sees it
LIEDOWN_WINDOW_MS = 3_000  # full stroke back at 20 mm/s is 2 s
TENSE_GRACE_MS = 200  # after a muscle relaxes again
BACKOFF_SLACK_MS = 2 * 20  # the leg-rest task's period, twice
ABS_MAX_N = FORCE_CAP_MAX_CN / 100

_orig_tick = controller.Controller.tick
_active = None


def _tick(ctl, now_ms):
    mon = _active
    if mon is None:
        return _orig_tick(ctl, now_ms)
    return mon.tick(ctl, now_ms)


@contextlib.contextmanager
def watch(run):
    """Check every control tick of `run` (a SimRun, before run.start()) while in the block."""
    global _active
    if _active is not None:
        raise RuntimeError("one monitored run at a time")
    mon = Monitor(run)
    _active = mon
    controller.Controller.tick = _tick
    try:
        yield mon
    finally:
        controller.Controller.tick = _orig_tick
        _active = None


class _PerDevice:
    # what the monitor remembers between ticks of one Device (a reset makes a new one)
    def __init__(self, n):
        self.over_run = [0] * n
        self.fault_ticks = 0
        self.up_unoccupied_ms = 0


class Monitor:
    def __init__(self, run):
        self.run = run
        self.board = b = run.board
        self.n = b.finger_count
        self.cap_cn = b.force_cap_cn
        self.span_cn = b.strength_cn[-1] - b.strength_cn[0]
        self.start_max_cn = b.strength_cn[START_MAX_LEVEL - 1]
        self.violation = None
        self.log = []  # (virtual ms, what the scenario did)
        self.ticks = 0
        self.sessions = 0  # warm-ups entered
        self.states_seen = set()
        self.max_true_n = 0.0
        self.overcap_ticks = 0
        self.faults_seen = set()
        self.presses = []  # [press_ms, still being checked] of presses during a session
        self.bad_sensors = set()  # fingers whose force sensor was broken on purpose
        self.tensed_until = {}  # finger -> ms until which its tissue may be tensed
        self.liedown_until = -1
        self.button_free_ms = 0  # a new press needs the button released (the scenario's job)
        self.backoff_up_ticks = 0  # ticks the leg rest backed up off an obstruction, no person
        self.crash_checks = 0
        self.press_checks = 0  # ticks checked under a stop press
        self.fault_checks = 0  # ticks checked under a latched fault
        self.endings = []  # end reasons of the sessions that wound down
        self._dev = {}

    # -- what the scenario tells the monitor ---------------------------------------------------

    def now_ms(self):
        return self.run.sim.elapsed_ms()

    def note(self, what):
        self.log.append((self.now_ms(), what))

    def stop_pressed(self, press_ms):
        s = self.run.device.session.state
        if s != ses.IDLE and s != ses.FINISHING:
            self.presses.append([press_ms, True])

    def disturbed(self, i, now_ms):
        # the person changed the load on finger i faster than a finger can move away
        return now_ms <= self.liedown_until or now_ms <= self.tensed_until.get(i, -1)

    def between_ticks(self):
        # A control task that died ticks no more: the safe-stop funnel must have left the
        # fingers safe by itself (checked whenever the scenario looks between its steps).
        if self.violation is None and self.run.device.crashed is not None:
            self.crash_checks += 1
            why = self._outputs_unsafe()
            if why:
                self.violation = "%d ms: task %s died and %s" % (
                    self.now_ms(), self.run.device.crashed, why)

    def report(self):
        lines = ["%8d ms  %s" % (t, what) for t, what in self.log]
        return "\n".join(lines)

    # -- the tick ------------------------------------------------------------------------------

    def tick(self, ctl, now_ms):
        sess = ctl.session
        before = list(ctl.targets_um)
        ramp_before = sess.ramp.current_cn
        state_before = sess.state
        last_ms = ctl._last_ms
        result = _orig_tick(ctl, now_ms)
        if self.violation is None:
            dt = controller.PERIOD_MS if last_ms is None else ticks_diff(now_ms, last_ms)
            dt = 0 if dt < 0 else 50 if dt > 50 else dt  # what the controller stepped by
            problem = self._check(ctl, dt, before, ramp_before, state_before)
            if problem:
                self.violation = "%d ms (tick %d, %s): %s" % (
                    self.now_ms(), self.ticks, ses.STATE_NAMES[sess.state], problem)
        self.ticks += 1
        return result

    def _check(self, ctl, dt, before, ramp_before, state_before):
        run = self.run
        sess = ctl.session
        sup = ctl.supervisor
        dev = self._dev.get(ctl)
        if dev is None:
            dev = self._dev[ctl] = _PerDevice(self.n)
        t = ctl.targets_um
        forces = ctl.forces_cn
        state = sess.state
        now = self.now_ms()
        self.states_seen.add(state)
        if state == ses.IDLE and state_before != ses.IDLE and sess.result is not None:
            self.endings.append(sess.result["reason"])
        if sup.fault_code:
            self.faults_seen.add(sup.fault_code)
        n = self.n

        # After a PWM chip failed the finger outputs are off (output enable) and nothing is
        # written: the emulated chips and the OE line say what the fingers really get.
        off = ctl.outputs_failed
        if off:
            why = self._outputs_unsafe()
            if why:
                return "6: PWM chip failed: " + why

        # 1, 2: over the cap means retracting, this very tick
        cap = self.cap_cn
        for i in range(n):
            if forces[i] >= cap and not off:
                self.overcap_ticks += 1
                dev.over_run[i] += 1
                if t[i] != 0 and t[i] >= before[i]:
                    return "1: finger %d reads %d cN (cap %d) but its target went %d -> %d um" % (
                        i, forces[i], cap, before[i], t[i])
                back = before[i] - supmod.RETRACT_UM
                if t[i] > (back if back > 0 else 0):
                    return "2: finger %d over the cap for %d ticks retracts only %d -> %d um" % (
                        i, dev.over_run[i], before[i], t[i])
            else:
                dev.over_run[i] = 0

        # 2: the physics' true force
        sim = run.sim
        true_n = sim.forces_n()
        for i in range(n):
            f = true_n[i]
            if f > self.max_true_n:
                self.max_true_n = f
            if f <= ABS_MAX_N:
                continue
            if not self.disturbed(i, now):
                return "2: finger %d really carries %.1f N (> %.0f N), no disturbance" % (
                    i, f, ABS_MAX_N)
            pos_um = sim.fingers.pos_um(i)
            if i not in self.bad_sensors and not off and t[i] != 0 and t[i] >= pos_um:
                return (
                    "2: finger %d carries %.1f N (measured %d cN), target %d um is not behind"
                    " its position %.0f um" % (i, f, forces[i], t[i], pos_um)
                )

        # 3: the 60-minute cap on pressing
        if sup.pressing_ms >= ses.MAX_SESSION_MS:
            if sup.pressing_ms > ses.MAX_SESSION_MS + dt:
                return "3: pressing for %d ms" % sup.pressing_ms
            if sess.pressing:
                return "3: still pressing (%s) at %d ms of pressing" % (
                    ses.STATE_NAMES[state], sup.pressing_ms)

        # 4: the strength ramp
        cur = sess.ramp.current_cn
        if state == ses.WARMUP and state_before == ses.LEGREST_RISING:
            self.sessions += 1
            if cur > self.start_max_cn:
                return "4: the session starts at %d cN (level %d is %d cN)" % (
                    cur, START_MAX_LEVEL, self.start_max_cn)
        elif cur - ramp_before > self.span_cn * dt // RAMP_SPAN_MS + 1:
            return "4: strength target rose %d -> %d cN in %d ms" % (ramp_before, cur, dt)

        # 5: no pressing without a person
        nobody = state != ses.SCANNING and not sess.occupied
        if (state == ses.IDLE or state == ses.FINISHING or nobody) and not off:
            # a session that ends (from any state) homes the fingers in that same tick
            for i in range(n):
                if t[i]:
                    return "5: finger %d at %d um while %s (occupied %s)" % (
                        i, t[i], ses.STATE_NAMES[state], sess.occupied)
        up = sim.legrest.drive() > 0.0
        lr = sess.legrest
        backing_off = lr._backoff_until is not None
        if up and not sess.occupied:
            dev.up_unoccupied_ms += dt
            self.backoff_up_ticks += 1
            if not backing_off:
                return "5: the leg rest drives up without a person (goal %d)" % lr.goal
            if dev.up_unoccupied_ms > legrestctl.BACKOFF_MS + BACKOFF_SLACK_MS:
                return "5: an obstruction back-off drives up for %d ms" % dev.up_unoccupied_ms
        else:
            dev.up_unoccupied_ms = 0

        # 6: safe within two ticks of a latched fault, 20 ms after a stop press
        dev.fault_ticks = dev.fault_ticks + 1 if sup.fault_code else 0
        if dev.fault_ticks >= FAULT_TICKS:
            self.fault_checks += 1
            why = self._unsafe(ctl, t, up, backing_off)
            if why:
                return "6: fault %d latched %d ticks ago: %s" % (
                    sup.fault_code, dev.fault_ticks - 1, why)
        for press in self.presses:
            if not press[1]:
                continue
            if state == ses.IDLE:
                press[1] = False  # wound down: 5 covers it from here
                continue
            if now >= press[0] + STOP_TICKS_MS:
                self.press_checks += 1
                why = self._unsafe(ctl, t, up, backing_off)
                if why:
                    return "6: stop pressed at %d ms: %s" % (press[0], why)
        return None

    def _outputs_unsafe(self):
        # outputs switched off, or every finger's pulse at its home position
        run = self.run
        board = self.board
        if run.sim.world.pins.level(board.pwm["oe_pin"]) == 1:
            return None
        chips = run.sim.chips
        for i in range(self.n):
            if abs(chips.finger_pulse_us(i) - board.pulse_cal[i][0]) > 5:
                return "output enable on and finger %d's pulse is %d us" % (
                    i, chips.finger_pulse_us(i))
        return None

    def _unsafe(self, ctl, t, up, backing_off):
        if not ctl.outputs_failed:
            for i in range(self.n):
                if t[i]:
                    return "finger %d target %d um" % (i, t[i])
        if up and not backing_off:
            return "the leg rest drives up"
        return None
