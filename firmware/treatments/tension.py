# Tension: per-finger tissue stiffness (how much force each millimetre of indentation costs,
# cN/mm) estimated during presses, aggregated to the six report regions, and the before/after
# grade (DESIGN sections 1 and 6).
#
# Estimate: a running least-squares regression of force on finger position. For every finger
# observe() keeps the means of position and force and their (co)variances; the stiffness is
# cov(position, force) / var(position). It is the slope of the force/indentation line, so it
# does not depend on the exact contact height. Samples are weighted 1/n for the first 256 (a
# plain average), then exponentially with weight 1/256 (a few presses): it follows the tissue
# as it relaxes.
# Only informative samples count, which makes the estimate robust to pauses and holds:
#   - the finger found the back (contact_um >= 0) and carries at least the contact threshold
#     and less than the force cap;
#   - it moved at least 96 um since the last sample counted (a hold or a pause adds nothing,
#     so a long hold cannot drown the presses in identical points).
# Each force is paired with the position commanded in the previous call: forces are measured at
# the start of a tick, at the targets written in the tick before (observe() is called after the
# control step with the targets it just wrote).
#
# Grades (grade()): the relative change from before to after, as the report shows it:
#   relief = (before - after) / before
#   >= 15 % "major", >= 8 % "moderate", >= 3 % "minor", > -3 % "no change", else "tighter";
#   "not measured" when either value is 0.

from array import array

from firmware.runtime import const, micropython

REGION_NAMES = (
    "upper_left",
    "upper_right",
    "middle_left",
    "middle_right",
    "lower_left",
    "lower_right",
)
GRADES = ("not measured", "tighter", "no change", "minor", "moderate", "major")
MAJOR_PCT = const(15)
MODERATE_PCT = const(8)
MINOR_PCT = const(3)

_U_SHIFT = const(4)  # positions in units of 16 um (a 40 mm stroke is 2500 units)
_STEP_U = const(6)  # 96 um between counted samples
_W_MAX = const(256)  # the averaging window, in samples
_N_MAX = const(16_384)
_MIN_SAMPLES = const(64)
# position spread needed for a slope: 0.3 mm, as a variance in (4 um)^2
_MIN_VAR = const(5_625)


def grade(before, after):
    if before <= 0 or after <= 0:
        return GRADES[0]
    relief = (before - after) * 100 // before
    if relief >= MAJOR_PCT:
        return "major"
    if relief >= MODERATE_PCT:
        return "moderate"
    if relief >= MINOR_PCT:
        return "minor"
    if relief > -MINOR_PCT:
        return "no change"
    return "tighter"


def grades(before, after):
    # the six regions' grades, in REGION_NAMES order
    return [grade(before[r], after[r]) for r in range(len(REGION_NAMES))]


class Tension:
    def __init__(self, board):
        n = board.finger_count
        self._n = n
        self._cols = board.cols
        self._region_rows = (
            board.region_rows["upper"],
            board.region_rows["middle"],
            board.region_rows["lower"],
        )
        self._threshold = board.contact_threshold_cn
        self._cap = board.force_cap_cn
        self._prev = array("l", [-1] * n)  # position commanded in the previous call
        self._last_u = array("l", [0] * n)  # position of the last sample counted
        self._count = array("l", [0] * n)
        self._mx = array("l", [0] * n)  # mean position, units << 8
        self._mf = array("l", [0] * n)  # mean force, cN << 8
        self._cxx = array("l", [0] * n)  # var(position), (4 um)^2
        self._cxf = array("l", [0] * n)  # cov(position, force), 4 um * cN
        self._k = array("l", [0] * n)  # finger_stiffness() result, cN/mm
        self._regions = array("l", [0] * len(REGION_NAMES))
        self.reset()

    def reset(self):
        for i in range(self._n):
            self._prev[i] = -1
            self._last_u[i] = 0
            self._count[i] = 0
            self._mx[i] = 0
            self._mf[i] = 0
            self._cxx[i] = 0
            self._cxf[i] = 0

    @micropython.native
    def observe(self, forces_cn, positions_um, contact_um):
        thr = self._threshold
        cap = self._cap
        prev = self._prev
        count = self._count
        last_u = self._last_u
        mx = self._mx
        mf = self._mf
        cxx = self._cxx
        cxf = self._cxf
        for i in range(self._n):
            x = prev[i]
            prev[i] = positions_um[i]
            f = forces_cn[i]
            if x < 0 or contact_um[i] < 0 or f < thr or f >= cap:
                continue
            u = x >> _U_SHIFT
            k = count[i]
            if k == 0:
                mx[i] = u << 8
                mf[i] = f << 8
                last_u[i] = u
                count[i] = 1
                continue
            d = u - last_u[i]
            if -_STEP_U < d < _STEP_U:
                continue
            last_u[i] = u
            k += 1
            if k < _N_MAX:
                count[i] = k
            w = k if k < _W_MAX else _W_MAX
            half = w >> 1
            # deviations from the means before this sample (Welford), position in 4 um
            dx = ((u << 8) - mx[i]) >> 6
            df = ((f << 8) - mf[i]) >> 8
            mx[i] += ((u << 8) - mx[i] + half) // w
            mf[i] += ((f << 8) - mf[i] + half) // w
            # exponentially weighted (co)variances; the (w-1)/w factor is common to both and
            # cancels in the slope
            cxx[i] += (dx * dx - cxx[i] + half) // w
            cxf[i] += (dx * df - cxf[i] + half) // w

    def finger_stiffness(self):
        # cN/mm per finger (0: not enough presses seen). Not for the tick: may use long ints.
        out = self._k
        for i in range(self._n):
            v = 0
            var = self._cxx[i]
            if self._count[i] >= _MIN_SAMPLES and var >= _MIN_VAR:
                # cov / var is cN per 4 um (a quarter unit); cN/mm = that * 250
                v = self._cxf[i] * 250 // var
                if v < 0:
                    v = 0
            out[i] = v
        return out

    def regions(self):
        # average stiffness of the measured fingers of each region, REGION_NAMES order
        k = self.finger_stiffness()
        cols = self._cols
        out = self._regions
        for r in range(3):
            start, end = self._region_rows[r]
            for side in range(2):
                total = 0
                m = 0
                for row in range(start, end):
                    for col in range(cols):
                        if (col * 2 >= cols) != (side == 1):
                            continue
                        v = k[row * cols + col]
                        if v > 0:
                            total += v
                            m += 1
                out[r * 2 + side] = total // m if m else 0
        return out
