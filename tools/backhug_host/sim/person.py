"""A person lying on the device: back profile, tissue stiffness, relaxation, leg weight.

Geometry. Each finger's tip, fully retracted, sits below the surface the person lies on. The
*contact height* of a finger is the extension (micrometres) at which its tip meets the back; beyond
it the tip indents the tissue and the finger carries a force. Lying supine, the thoracic spine
(kyphosis) bulges down towards the device, so the rows under the shoulder blades meet the back
early; the lumbar spine (lordosis) arches away from it, so the low rows have to rise further. A
taller person's spine is longer, so the fixed row pitch of the device covers less of it and the
lowest rows stay on the lumbar curve; a short person's lowest rows reach the sacrum, where the back
comes down again. Heavier people sink further into the cushion.

Tissue. Each finger presses on tissue with a stiffness in N/mm (ribcage stiffer than the lumbar
muscles, named stiff regions clearly stiffer). Force = stiffness x indentation x
(1 + indentation / 30 mm): mildly stiffening, like soft tissue. Pressing relaxes the tissue: the
loading work done on a finger's tissue lowers its stiffness by up to 18 % (25 % in a stiff
region), approaching that bound exponentially with the work (RELAX_WORK_J for 63 % of it), so a
gentle 20-minute session relaxes it a few per cent and a strong one close to the bound.

The same interface is offered by the flat test rig (rig.py) and by ``Nobody`` (an empty device):
``present``, ``contact_um(i)``, ``force_n(i, pos_um)``, ``stiffness_n_mm(i)``,
``press(i, from_um, to_um)`` (the finger moved: account the work), ``relax()`` (apply the work
to the stiffness), ``set_legrest(fraction)``, ``leg_load_n()``.
"""

import math

REGION_NAMES = (
    "upper_left",
    "upper_right",
    "middle_left",
    "middle_right",
    "lower_left",
    "lower_right",
)
SIDES = ("left", "right")  # col 0 is left of the spine

ROW_PITCH_MM = 32.0  # distance between finger rows along the back
NONLINEAR_MM = 30.0  # force = k * x * (1 + x / NONLINEAR_MM)
RELAX_WORK_J = 25.0  # loading work (per finger) for 63 % of the full relaxation
RELAX_MAX = 0.18  # fraction of the stiffness that treatment can relax, normal tissue
RELAX_MAX_STIFF = 0.25  # same, in a stiff region
DEFAULT_EXTRA_N_MM = 6.0  # extra stiffness of a stiff region when only its name is given
LEG_SHARE = 0.16  # share of the body weight resting on the leg rest (calves and heels)
G = 9.81


def _bump(s, centre, width):
    d = (s - centre) / width
    return math.exp(-0.5 * d * d)


def tissue_force_n(k_n_mm, indent_um):
    """Force of tissue of stiffness k indented by indent_um (0 when not touching)."""
    if indent_um <= 0:
        return 0.0
    x = indent_um / 1000.0
    return k_n_mm * x * (1.0 + x / NONLINEAR_MM)


def tissue_work_j(k_n_mm, from_um, to_um):
    """Work (J) done on the tissue while the indentation grows from from_um to to_um."""
    a = max(0.0, from_um / 1000.0)
    b = max(0.0, to_um / 1000.0)
    if b <= a:
        return 0.0

    def energy(x):  # integral of k * x * (1 + x / X) dx, N*mm = mJ
        return k_n_mm * (x * x / 2.0 + x * x * x / (3.0 * NONLINEAR_MM))

    return (energy(b) - energy(a)) / 1000.0


def tissue_indent_um(k_n_mm, force_n):
    """Indentation at which tissue of stiffness k carries force_n (inverse of tissue_force_n)."""
    if force_n <= 0:
        return 0.0
    # k/X x^2 + k x - F = 0
    a = k_n_mm / NONLINEAR_MM
    b = k_n_mm
    x = (-b + math.sqrt(b * b + 4.0 * a * force_n)) / (2.0 * a)
    return x * 1000.0


def region_of(board, index):
    """Report region name ("upper_left", ...) of a finger, or None for a row outside them."""
    row, col = divmod(index, board.cols)
    for name, (start, end) in board.region_rows.items():
        if start <= row < end:
            return name + "_" + SIDES[min(col, 1)]
    return None


class Person:
    """A person lying on the device.

    height_cm: body height (140..210); curvature: scales both spinal curves (0.3..2.0, 1 is
    typical); weight_kg: body weight (35..200); stiff: region names, or {name: extra N/mm};
    asymmetry_um: how far the left side sits above the right at mid-back (a slight rotation
    everybody has); flattening: how much of the lumbar curve a fully raised leg rest takes out.
    """

    def __init__(
        self,
        board,
        height_cm=175.0,
        curvature=1.0,
        weight_kg=75.0,
        stiff=(),
        asymmetry_um=600.0,
        flattening=0.3,
    ):
        if not 140.0 <= height_cm <= 210.0:
            raise ValueError("height_cm: %r outside 140..210" % (height_cm,))
        if not 0.3 <= curvature <= 2.0:
            raise ValueError("curvature: %r outside 0.3..2.0" % (curvature,))
        if not 35.0 <= weight_kg <= 200.0:
            raise ValueError("weight_kg: %r outside 35..200" % (weight_kg,))
        if not isinstance(stiff, dict):
            stiff = {name: DEFAULT_EXTRA_N_MM for name in stiff}
        for name, extra in stiff.items():
            if name not in REGION_NAMES:
                raise ValueError("stiff: unknown region %r (one of %s)" % (name, REGION_NAMES))
            if not 0.0 <= extra <= 50.0:
                raise ValueError("stiff[%s]: extra %r outside 0..50 N/mm" % (name, extra))
        self.board = board
        self.height_cm = float(height_cm)
        self.curvature = float(curvature)
        self.weight_kg = float(weight_kg)
        self.stiff = dict(stiff)
        self._asym_um = float(asymmetry_um)
        self.flattening = float(flattening)
        self._legrest = 0.0  # leg rest position, 0 = down .. 1 = up
        self.present = True
        n = board.rows * board.cols
        self.regions = tuple(region_of(board, i) for i in range(n))
        self._contact_um = tuple(self._profile_um(i) for i in range(n))
        self.base_stiffness = tuple(self._base_stiffness(i) for i in range(n))
        self._relax_max = tuple(
            RELAX_MAX_STIFF if self.regions[i] in self.stiff else RELAX_MAX for i in range(n)
        )
        self.work_j = [0.0] * n  # loading work done on each finger's tissue
        self._k = list(self.base_stiffness)

    # -- geometry ------------------------------------------------------------------------------

    def spine_s(self, row):
        """Position of a row along the spine: 0 = T1, 1 = S1 (sacrum beyond)."""
        spine_mm = 2.63 * self.height_cm  # T1..S1 is about 26 % of body height
        return 0.12 + row * ROW_PITCH_MM / spine_mm  # row 0 under the shoulder blades, ~T3

    def _profile_um(self, index):
        row, col = divmod(index, self.board.cols)
        s = self.spine_s(row)
        c = self.curvature
        base_mm = 15.0 - 0.05 * (self.weight_kg - 75.0)  # heavier: sinks deeper into the cushion
        kyphosis_mm = 8.0 * c * _bump(s, 0.35, 0.17)  # apex ~T7, bulges towards the fingers
        lordosis_mm = 16.0 * c * _bump(s, 0.82, 0.12)  # apex ~L3, arches away
        lordosis_mm *= 1.0 - self.flattening * self._legrest  # raised legs flatten it
        side = 1.0 if col == 0 else -1.0
        twist_mm = 0.5 * side * self.asymmetry_um_at(s) / 1000.0
        um = (base_mm - kyphosis_mm + lordosis_mm + twist_mm) * 1000.0
        stroke = self.board.stroke_um
        return max(0.08 * stroke, min(0.9 * stroke, um))

    def asymmetry_um_at(self, s):
        return self._asym_um * math.sin(math.pi * min(1.0, max(0.0, s)))

    def set_legrest(self, fraction):
        """The leg rest moved (0 = down, 1 = up): raised legs flatten the lower back."""
        q = round(min(1.0, max(0.0, fraction)) * 100.0) / 100.0  # recompute per 1 % of travel
        if q != self._legrest:
            self._legrest = q
            self._contact_um = tuple(self._profile_um(i) for i in range(len(self._contact_um)))

    def contact_um(self, index):
        """Finger extension at which the tip meets the back; None when nobody lies there."""
        if not self.present:
            return None
        return self._contact_um[index]

    # -- tissue --------------------------------------------------------------------------------

    def _base_stiffness(self, index):
        row, col = divmod(index, self.board.cols)
        s = self.spine_s(row)
        k = 5.0 + 4.0 * _bump(s, 0.35, 0.25)  # ribcage stiffer than the lumbar muscles
        k *= 1.0 + (0.03 if col == 0 else -0.03)  # the sides differ a little
        k *= 0.85 + 0.15 * self.weight_kg / 75.0
        region = self.regions[index]
        if region in self.stiff:
            k += self.stiff[region]
        return k

    def stiffness_n_mm(self, index):
        return self._k[index]

    def relaxation(self, index):
        """Fraction by which treatment has lowered this finger's tissue stiffness (0..0.25)."""
        return 1.0 - self._k[index] / self.base_stiffness[index]

    def force_n(self, index, pos_um):
        if not self.present:
            return 0.0
        return tissue_force_n(self._k[index], pos_um - self._contact_um[index])

    def limit_um(self, index, force_n):
        """Extension at which the finger carries force_n (None: nobody there, never)."""
        if not self.present:
            return None
        return self._contact_um[index] + tissue_indent_um(self._k[index], force_n)

    def press(self, index, from_um, to_um):
        """The finger moved from from_um to to_um: account the loading work (see relax())."""
        if not self.present or to_um <= from_um:
            return
        c = self._contact_um[index]
        w = tissue_work_j(self._k[index], from_um - c, to_um - c)
        if w > 0.0:
            self.work_j[index] += w

    def relax(self):
        """Let the work done so far relax the tissue. The actuators call this on a fixed time grid
        (not after every movement), so the result does not depend on how time was chopped up."""
        for i, w in enumerate(self.work_j):
            if w > 0.0:
                relax = self._relax_max[i] * (1.0 - math.exp(-w / RELAX_WORK_J))
                self._k[i] = self.base_stiffness[i] * (1.0 - relax)

    def get_up(self):
        self.present = False

    def lie_down(self):
        self.present = True

    def leg_load_n(self):
        return LEG_SHARE * self.weight_kg * G if self.present else 0.0

    def describe(self):
        return "person %.0f cm, %.0f kg, curvature %.2f, stiff %s" % (
            self.height_cm,
            self.weight_kg,
            self.curvature,
            ", ".join(sorted(self.stiff)) or "none",
        )


class Nobody:
    """The empty device: nothing touches any finger, nothing rests on the leg rest."""

    present = False

    def __init__(self, board=None):
        self.board = board

    def contact_um(self, index):
        return None

    def force_n(self, index, pos_um):
        return 0.0

    def limit_um(self, index, force_n):
        return None

    def stiffness_n_mm(self, index):
        return 0.0

    def press(self, index, from_um, to_um):
        pass

    def relax(self):
        pass

    def leg_load_n(self):
        return 0.0

    def set_legrest(self, fraction):
        pass

    def describe(self):
        return "nobody"
