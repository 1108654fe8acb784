# The safety supervisor's stage of the control tick (DESIGN section 5). It sits between the
# sensors and the session and between the session and the actuators, so no request, programme
# or bug upstream can command past its limits:
#   check()  after the forces are read: the 60-minute cap, over-force bookkeeping;
#   clamp()  after the session computed its targets: stroke bounds, no pressing without a person,
#            a finger at or over the force cap retracts in this same tick, everything home while
#            the safe-stop funnel is active.
# The Safety issue extends this module with the full fault model; the limits here hold already.

from array import array

from firmware import session as ses
from firmware.runtime import const

RETRACT_UM = const(5_000)  # an over-force finger backs off this far in the same tick
MAX_INDENT_UM = const(20_000)  # deepest a finger may go past the back's contact height
OVERFORCE_LATCH = const(3)  # over-cap ticks within the window that make a fault
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
        self._overforce_recent = 0
        self._overforce_window_ms = 0
        self.max_force_cn = 0  # highest reading seen since boot, for reports

    def check(self, dt_ms, forces_cn):
        s = self.session
        if s.pressing:
            self.pressing_ms += dt_ms
            if self.pressing_ms >= ses.MAX_SESSION_MS:
                s.stop(ses.END_TIME_CAP)
        elif s.state == ses.IDLE:
            self.pressing_ms = 0
        peak = self.max_force_cn
        for i in range(self._n):
            if forces_cn[i] > peak:
                peak = forces_cn[i]
        self.max_force_cn = peak
        self._overforce_window_ms += dt_ms
        if self._overforce_window_ms >= OVERFORCE_WINDOW_MS:
            self._overforce_window_ms = 0
            self._overforce_recent = 0

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
        if over:
            self.overforce_events += 1
            self._overforce_recent += 1
            if self._overforce_recent >= OVERFORCE_LATCH:
                self._overforce_recent = 0
                self.safestop.trigger("repeated over-force")
