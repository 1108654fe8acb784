"""The factory test rig: a rigid plate clamped over the fingers at a known height.

Same interface as person.Person, so the device model does not care which one lies on it. The plate
is stiff and linear (50 N/mm by default: a finger that reaches it sees its force climb quickly), it
never relaxes, and it rests nothing on the leg rest unless a test weight is given.
"""

PLATE_UM = 20_000  # plate height above the retracted finger tips
PLATE_N_MM = 50.0


class Rig:
    present = True

    def __init__(self, board, plate_um=PLATE_UM, stiffness_n_mm=PLATE_N_MM, leg_load_n=0.0):
        if not 0 < plate_um < board.stroke_um:
            raise ValueError("plate_um: %r outside the stroke 0..%d" % (plate_um, board.stroke_um))
        if stiffness_n_mm <= 0:
            raise ValueError("stiffness_n_mm: must be positive")
        self.board = board
        self.plate_um = plate_um
        self.k_n_mm = float(stiffness_n_mm)
        self._leg_load_n = float(leg_load_n)

    def contact_um(self, index):
        return self.plate_um

    def force_n(self, index, pos_um):
        indent = pos_um - self.plate_um
        return self.k_n_mm * indent / 1000.0 if indent > 0 else 0.0

    def limit_um(self, index, force_n):
        return self.plate_um + max(0.0, force_n) / self.k_n_mm * 1000.0

    def stiffness_n_mm(self, index):
        return self.k_n_mm

    def press(self, index, from_um, to_um):
        pass  # steel does not relax

    def relax(self):
        pass

    def set_legrest(self, fraction):
        pass

    def leg_load_n(self):
        return self._leg_load_n

    def describe(self):
        return "test rig, plate at %.1f mm, %.0f N/mm" % (self.plate_um / 1000.0, self.k_n_mm)
