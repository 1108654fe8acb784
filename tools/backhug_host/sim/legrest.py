"""The leg rest: a DC motor on an H-bridge, two limit switches and a current sense resistor.

Position is a fraction of the travel, 0 = down (bottom switch closed) to 1 = up (top switch
closed). The switches close at the ends of the travel; the mechanism runs on a little further
(OVERTRAVEL) to its hard end stops, where a motor still being driven stalls. The bridge inputs are
two PWM duties (0..1); the motor sees their difference, so IN1 alone raises, IN2 alone lowers,
both equal brake or coast. Speed is proportional to that drive: the full travel takes travel_s
(6 s) at the board's duty_pct.

Current (mA, what the sense amplifier reports): nothing while the motor is not driven; while it is,
an idle part (gearbox friction) plus a part proportional to the leg weight being lifted (a fifth of
it when lowering: the worm gear does not give energy back), and the stall current whenever the
motor is driven but cannot move (hard end stop, a jam, an obstruction in the way). Both scale with
the drive, as the average of a PWM-driven motor's current does.
"""

from .actuators import _mix

OVERTRAVEL = 0.03  # beyond each switch, as a fraction of the travel
IDLE_MA = 300.0  # at the board's duty
MA_PER_N = 6.0  # extra current per newton of leg weight lifted
LOWER_SHARE = 0.2
STALL_MA = 4_000.0  # at the board's duty: well above every board's current limit


class LegRestMechanics:
    def __init__(self, board, load, travel_s=6.0, noise_ma=5.0, seed=0):
        cfg = board.legrest
        self.board = board
        self.load = load
        self.duty_ref = cfg["duty_pct"] / 100.0
        self.full_scale_ma = cfg["current_full_scale_ma"]
        self.active_low = cfg.get("limit_active_low", True)
        self.travel_s = float(travel_s)
        self.noise_ma = noise_ma
        self.seed = seed
        self.pos = 0.0
        self.in1 = 0.0
        self.in2 = 0.0
        self.blocked = False  # driven, but not moving
        self.jam_at = None  # None: free; a position: obstruction there; "here": seized
        self.switch_fault = {"top": None, "bottom": None}  # None, "open" or "closed"
        self.max_ma = 0.0
        self.driven_ms = 0  # total time the motor was driven

    # -- inputs --------------------------------------------------------------------------------

    def set_inputs(self, in1, in2):
        """Bridge input duties, each 0..1."""
        self.in1 = min(1.0, max(0.0, in1))
        self.in2 = min(1.0, max(0.0, in2))

    def drive(self):
        return self.in1 - self.in2

    # -- faults --------------------------------------------------------------------------------

    def jam(self, at=None):
        """Seize the mechanism where it is (at=None) or put an obstruction at position at."""
        self.jam_at = "here" if at is None else float(at)

    def clear_jam(self):
        self.jam_at = None

    def set_switch_fault(self, which, kind):
        if which not in self.switch_fault or kind not in (None, "open", "closed"):
            raise ValueError("switch fault %r:%r" % (which, kind))
        self.switch_fault[which] = kind

    # -- physics -------------------------------------------------------------------------------

    def speed_per_s(self):
        return self.drive() / self.duty_ref / self.travel_s

    def advance(self, ms):
        if ms <= 0:
            return
        d = self.drive()
        if d == 0.0:
            self.blocked = False
            return
        self.driven_ms += ms
        lo, hi = -OVERTRAVEL, 1.0 + OVERTRAVEL
        if self.jam_at == "here":
            lo = hi = self.pos
        elif self.jam_at is not None:
            if self.pos <= self.jam_at:
                hi = min(hi, self.jam_at)
            else:
                lo = max(lo, self.jam_at)
        new = self.pos + self.speed_per_s() * ms / 1000.0
        new = lo if new < lo else hi if new > hi else new
        # at a stop (or reaching it within this step) the motor stalls
        self.blocked = (d > 0 and new >= hi) or (d < 0 and new <= lo)
        if new != self.pos:
            self.pos = new
            self.load.set_legrest(min(1.0, max(0.0, new)))
        ma = self.current_ma(noise=False)
        if ma > self.max_ma:
            self.max_ma = ma

    def current_ma(self, t_ms=0, noise=True):
        d = self.drive()
        if d == 0.0:
            ma = 0.0
        else:
            scale = abs(d) / self.duty_ref
            if self.blocked:
                ma = STALL_MA * scale
            else:
                load_ma = MA_PER_N * self.load.leg_load_n()
                if d < 0:
                    load_ma *= LOWER_SHARE
                ma = (IDLE_MA + load_ma) * scale
        if noise and self.noise_ma:
            h = _mix(self.seed * 7919 + t_ms * 104_729 + 0xC0FFEE)
            ma += ((h & 0xFFFF) / 65536.0 - 0.5) * 2.0 * self.noise_ma
        return max(0.0, ma)

    def current_u16(self, t_ms):
        u = int(self.current_ma(t_ms) * 65535 / self.full_scale_ma)
        return 0 if u < 0 else 65535 if u > 65535 else u

    def switch_closed(self, which):
        fault = self.switch_fault[which]
        if fault is not None:
            return fault == "closed"
        return self.pos >= 1.0 if which == "top" else self.pos <= 0.0

    def switch_level(self, which):
        closed = self.switch_closed(which)
        return (0 if closed else 1) if self.active_low else (1 if closed else 0)

    def moving(self):
        return self.drive() != 0.0
