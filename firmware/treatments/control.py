# Force control (DESIGN section 6): per finger, move the position target so the measured force
# tracks the demand (the flow's share of the strength's force), relative to the contact height
# found by the scan, within the board's stroke, speed and force cap.
#
# The law is an integral controller on position whose gain is scaled by the tissue's stiffness:
#
#     dx = (demand - force) / (4 * k)          [um per tick, k in cN/mm]
#
# so each tick removes about a quarter of the force error whatever the stiffness (1..30 N/mm
# between people and along one back). k is estimated every tick from the force and indentation
# (force / (x - contact)), bounded to 1..30 N/mm; while that quotient is not trustworthy (light
# force or less than 0.3 mm indentation) the stiffest value is used, which is the slow, stable
# side. A stiffness-normalised integral law keeps the loop well damped across the whole range;
# a fixed gain would either oscillate on stiff tissue or take seconds on soft tissue.
#
# Limits, checked every tick for every finger:
#   - a force at or above board.force_cap_cn retracts the finger in that same step;
#   - demand is bounded to 90 % of the cap, so the law never aims at the cap;
#   - the target moves at most board.max_speed_um_s * dt per step and stays in 0..stroke;
#   - demand 0 returns the finger to its contact height minus a 2 mm clearance;
#   - fingers without contact (contact_um -1) go home (0).
# Each step starts from what targets_um holds: the command of the previous tick as it was finally
# written (after the safety supervisor's clamp). So a supervisor retract is never undone by a
# jump back, nothing winds up while a limit holds the finger, and the hand-over from the scan is
# smooth.

from array import array

from firmware.runtime import const, micropython

K_MIN_CN_MM = const(100)  # 1 N/mm
K_MAX_CN_MM = const(3_000)  # 30 N/mm
CLEARANCE_UM = const(2_000)
_GAIN_DIV = const(4)  # a quarter of the force error per tick
_TRUST_UM = const(300)
_DT_MAX_MS = const(50)  # a late tick moves a finger by at most this much time's worth
_TICK_MS = const(10)  # the nominal tick, for the over-cap retract step


class ForceControl:
    def __init__(self, board):
        n = board.finger_count
        self._n = n
        self._cap = board.force_cap_cn
        self._demand_max = board.force_cap_cn * 9 // 10
        self._trust_cn = board.contact_threshold_cn
        self._speed = board.max_speed_um_s
        self._stroke = board.stroke_um
        self._retract = board.max_speed_um_s * _TICK_MS // 1000
        self.contact_um = array("l", [-1] * n)

    def set_contact(self, contact_um):
        for i in range(self._n):
            self.contact_um[i] = contact_um[i]

    @micropython.native
    def step(self, dt_ms, forces_cn, demand_cn, targets_um):
        # targets_um: in, the previous command; out, this tick's command
        n = self._n
        stroke = self._stroke
        if dt_ms < 0:
            dt_ms = 0
        elif dt_ms > _DT_MAX_MS:
            dt_ms = _DT_MAX_MS
        max_step = dt_ms * self._speed // 1000
        retract = max_step if max_step > self._retract else self._retract
        cap = self._cap
        dmax = self._demand_max
        trust_cn = self._trust_cn
        touch = trust_cn >> 1
        contact = self.contact_um
        for i in range(n):
            x = targets_um[i]
            if x < 0:
                x = 0
            elif x > stroke:
                x = stroke
            c = contact[i]
            f = forces_cn[i]
            if f >= cap:
                x -= retract  # over the cap: back off now, whatever the demand
            elif c < 0:
                # no back above this finger: home
                x -= max_step
                if x < 0:
                    x = 0
            else:
                d = demand_cn[i]
                if d > dmax:
                    d = dmax
                if d <= 0:
                    g = c - CLEARANCE_UM
                    if g < 0:
                        g = 0
                    if x > g + max_step:
                        x -= max_step
                    elif x < g - max_step:
                        x += max_step
                    else:
                        x = g
                elif x < c and f < touch:
                    # below the contact height and not touching: close the gap at full speed;
                    # the law takes over at the contact height or as soon as there is force
                    x += max_step
                    if x > c:
                        x = c
                else:
                    ind = x - c
                    k = K_MAX_CN_MM
                    if f >= trust_cn and ind >= _TRUST_UM:
                        k = f * 1000 // ind
                        if k < K_MIN_CN_MM:
                            k = K_MIN_CN_MM
                        elif k > K_MAX_CN_MM:
                            k = K_MAX_CN_MM
                    dx = (d - f) * 1000 // (k * _GAIN_DIV)
                    if dx > max_step:
                        dx = max_step
                    elif dx < -max_step:
                        dx = -max_step
                    x += dx
            if x < 0:
                x = 0
            elif x > stroke:
                x = stroke
            targets_um[i] = x
