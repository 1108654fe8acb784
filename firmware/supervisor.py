# The safety supervisor's stage of the control tick (DESIGN section 5). It sits between the
# sensors and the session and between the session and the actuators, so no request, programme
# or bug upstream can command past its limits:
#   check()  after the forces are read: the 60-minute cap, over-force bookkeeping;
#   clamp()  after the session computed its targets: stroke bounds, no pressing without a person,
#            a finger at or over the force cap retracts in this same tick, everything home while
#            the safe-stop funnel is active.
# The Safety issue extends this module with the full fault model; the limits here hold already.

from array import array

from firmware import faults
from firmware import session as ses
from firmware.runtime import const, micropython

RETRACT_UM = const(5_000)  # an over-force finger backs off this far in the same tick
MAX_INDENT_UM = const(20_000)  # deepest a finger may go past the back's contact height
OVERFORCE_LATCH = const(3)  # over-cap episodes within the window that make a fault
OVERFORCE_WINDOW_MS = const(10_000)


class Supervisor:
    def __init__(self, board, session, safestop):
        self.board = board
        self.session = session
        self.safestop = safestop
        n = board.finger_count
        self._n = n
        self.cap_cn = board.force_cap_cn
        self.stroke_um = board.stroke_um
        self.last_um = array("i", [0] * n)  # what was written last tick
        self.pressing_ms = 0  # time spent pressing in the current session
        self.overforce_events = 0  # since boot
        # when the previous OVERFORCE_LATCH - 1 episodes began (ms on this supervisor's clock,
        # a ring): a sliding window, so three episodes 4 s apart are a fault wherever they fall
        # (a window restarted every 10 s missed them when a restart fell between two)
        self._episode_ms = array("i", [0] * (OVERFORCE_LATCH - 1))
        self._episode_next = 0
        self._clock_ms = 0
        self._over_last = False
        self.max_force_cn = 0  # highest reading seen since boot, for reports
        self.fault_code = 0  # the latched fault (firmware.faults), 0 when none
        self.fault_detail = ""
        self.fault_count = 0  # faults detected since boot
        self.log = None  # firmware.faultlog.FaultLog, when the system has one
        self.probe = None  # callable(code, detail) -> True once the condition has cleared

    @micropython.native
    def check(self, dt_ms, forces_cn):
        s = self.session
        if s.pressing:
            self.pressing_ms += dt_ms
            if self.pressing_ms >= ses.MAX_SESSION_MS:
                s.stop(ses.END_TIME_CAP)
        elif s.state == ses.IDLE:
            self.pressing_ms = 0
        peak = max(forces_cn)  # one C loop over the readings (small ints: nothing allocated)
        if peak > self.max_force_cn:
            self.max_force_cn = peak
        self._clock_ms += dt_ms

    @micropython.native
    def clamp(self, forces_cn, targets_um):
        cap = self.cap_cn
        stroke = self.stroke_um
        last = self.last_um
        s = self.session
        home_all = self.safestop.active or not (s.occupied or s.state == ses.SCANNING)
        contact = s.scan.contact_um
        scanning = s.state == ses.SCANNING
        over = False
        for i in range(self._n):
            t = targets_um[i]
            if home_all or t < 0:
                t = 0
            elif t > stroke:
                t = stroke
            if not scanning and t > 0:
                c = contact[i]
                if c < 0:
                    t = 0  # a finger that found no back never presses
                elif t > c + MAX_INDENT_UM:
                    t = c + MAX_INDENT_UM
            if forces_cn[i] >= cap:
                back = last[i] - RETRACT_UM
                if back < 0:
                    back = 0
                if t > back:
                    t = back
                over = True
            targets_um[i] = t
            last[i] = t
        # An episode is a run of consecutive over-cap ticks: the actuator needs a few ticks to
        # back off, so one pressure spike is one episode; three within the window is a fault.
        new_episode = over and not self._over_last
        self._over_last = over
        if new_episode:
            self.overforce_events += 1
            ring = self._episode_ms
            k = self._episode_next
            oldest = ring[k]  # the episode OVERFORCE_LATCH - 1 before this one (0: none)
            now = self._clock_ms + 1  # + 1: 0 marks an empty slot
            ring[k] = now
            self._episode_next = (k + 1) % (OVERFORCE_LATCH - 1)
            if oldest and now - oldest <= OVERFORCE_WINDOW_MS:
                for j in range(OVERFORCE_LATCH - 1):
                    ring[j] = 0
                self.fault(faults.OVER_FORCE, "")

    # -- faults: latch, log, acknowledge ------------------------------------------------------

    def fault(self, code, detail):
        # Latch a fault: the first one is kept as the reason until acknowledged; every one is
        # logged. The safe-stop funnel runs now, inside the tick that found it.
        self.fault_count += 1
        log = self.log
        if log is not None:
            try:
                log.note(code, detail, self.pressing_ms)
            except Exception:  # noqa: BLE001 - logging must never stop the safe stop
                pass
        if not self.fault_code:
            self.fault_code = code
            self.fault_detail = detail
        reason = faults.name(code)
        if detail:
            reason = reason + ": " + detail
        self.safestop.trigger(reason)

    def acknowledge(self):
        # (ok, why): clears the latched fault once its condition has gone and nothing moves.
        if not self.fault_code:
            return False, "no fault latched"
        if self.session.state != ses.IDLE:
            return False, "the device is still stopping"
        if self.fault_code == faults.TASK_DIED:
            return False, "a task died: the device resets itself"
        if self.probe is not None and not self.probe(self.fault_code, self.fault_detail):
            return False, "the fault is still present: " + faults.name(self.fault_code)
        self.fault_code = 0
        self.fault_detail = ""
        self.safestop.clear()
        return True, ""
