# Contour scan at session start (DESIGN section 6): every finger rises slowly from home until
# its force crosses the board's contact threshold. The heights where contact began are the
# back's curvature profile; fingers that reach the top without contact are left out.
#
# The force crosses the threshold only after the finger has pushed into the tissue by
# threshold / stiffness (3 mm on soft tissue at 1 N/mm). To report where contact began, the scan
# remembers the first height at which the force rose above a quarter of the threshold and
# extrapolates the line through that point and the crossing point back to zero force.
# A crossing must hold for two consecutive ticks (one noisy sample does not end a finger's scan);
# the finger waits in place while it is confirmed.
# Each step starts from what targets_um holds (the previous command as finally written, after the
# safety supervisor's clamp) and writes the new command there.

from array import array

from firmware.runtime import const

_RISING = const(0)
_CONFIRMING = const(1)
_CONTACT = const(2)
_NO_CONTACT = const(3)
_DT_MAX_MS = const(100)  # a late tick moves a finger by at most this much time's worth


class ContourScan:
    def __init__(self, board, speed_um_s=5_000, max_um=None):
        if max_um is None:
            max_um = board.stroke_um
        if type(speed_um_s) is not int or not 0 < speed_um_s <= board.max_speed_um_s:
            raise ValueError("speed_um_s must be 1..%d" % board.max_speed_um_s)
        if type(max_um) is not int or not 0 < max_um <= board.stroke_um:
            raise ValueError("max_um must be 1..%d" % board.stroke_um)
        n = board.finger_count
        self._n = n
        self._speed = speed_um_s
        self._retract = board.max_speed_um_s
        self._max = max_um
        self._threshold = board.contact_threshold_cn
        low = board.contact_threshold_cn // 4
        self._low = low if low > 0 else 1
        self._min_contacts = board.min_contacts
        self.contact_um = array("l", [-1] * n)  # where contact began; -1 = no back above it
        self.mask = bytearray(n)  # 1 = finger found the back
        self._state = bytearray(n)
        self._low_pos = array("l", [-1] * n)  # first height with force above the low level
        self._low_cn = array("l", [0] * n)
        self.reset()

    def reset(self):
        for i in range(self._n):
            self.contact_um[i] = -1
            self.mask[i] = 0
            self._state[i] = _RISING
            self._low_pos[i] = -1
            self._low_cn[i] = 0
        self._acc = 0
        self.contacts = 0
        self.done = False

    @property
    def occupied(self):
        # enough fingers found a back for a person to be lying on the device
        return self.contacts >= self._min_contacts

    def _contact_height(self, i, x, f):
        # extrapolate (low point, crossing point) to zero force; a linear spring gives the exact
        # height where the tissue was first touched
        lp = self._low_pos[i]
        if lp < 0:
            return x
        lf = self._low_cn[i]
        if f <= lf or x <= lp:
            return lp
        c = lp - lf * (x - lp) // (f - lf)
        if c < 0:
            return 0
        return c

    def step(self, dt_ms, forces_cn, targets_um):
        # forces_cn[i] was measured at the height commanded in the previous step
        if dt_ms < 0:
            dt_ms = 0
        elif dt_ms > _DT_MAX_MS:
            dt_ms = _DT_MAX_MS
        acc = self._acc + dt_ms * self._speed
        rise = acc // 1000
        self._acc = acc - rise * 1000
        retract = dt_ms * self._retract // 1000
        thr = self._threshold
        low = self._low
        top = self._max
        state = self._state
        settled = True
        for i in range(self._n):
            st = state[i]
            x = targets_um[i]
            if x < 0:
                x = 0
            if st == _NO_CONTACT:
                x -= retract  # nothing above: back home at full speed
                if x < 0:
                    x = 0
            elif st == _RISING or st == _CONFIRMING:
                f = forces_cn[i]
                if f >= thr:
                    if st == _CONFIRMING:
                        self.contact_um[i] = self._contact_height(i, x, f)
                        self.mask[i] = 1
                        self.contacts += 1
                        state[i] = _CONTACT
                    else:
                        state[i] = _CONFIRMING
                        settled = False
                else:
                    state[i] = _RISING
                    if f >= low:
                        if self._low_pos[i] < 0:
                            self._low_pos[i] = x
                            self._low_cn[i] = f
                    else:
                        self._low_pos[i] = -1
                    if x >= top:
                        state[i] = _NO_CONTACT
                    else:
                        x += rise
                        if x > top:
                            x = top
                        settled = False
            targets_um[i] = x
        self.done = settled
        return settled
