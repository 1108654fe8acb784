# The finger bank: every finger as one position in micrometres, whatever chip and channel it sits
# on. write() turns the targets into pulse counts through each finger's calibration (pulse width
# at 0 and at full stroke) and sends each chip its channels in one burst: for 26 fingers on two
# PCA9685s, two I2C transactions per control tick. Callers index fingers, never chips.

from array import array

from firmware.drivers.fault import DriverFault, not_ready
from firmware.runtime import const, micropython

_OSC_MHZ = const(25)  # PCA9685 oscillator: one count lasts (prescale + 1) / 25 us


class FingerBank:
    def __init__(self, chips, board, oe=None):
        # chips: PCA9685 drivers (any order); oe: optional active-low output-enable Pin shared by
        # the chips (high = all outputs off), held high until init() has written the home pulses.
        self.part = "fingers"
        n = board.finger_count
        self.count = n
        self.stroke_um = board.stroke_um
        self.targets_um = array("i", bytes(4 * n))
        self._freq_hz = board.pwm["freq_hz"]
        self._oe = oe
        self._chips = tuple(chips)
        by_addr = {}
        for k, c in enumerate(self._chips):
            by_addr[c.address] = k
        self._counts = tuple(c.counts for c in self._chips)
        self._chip = bytearray(n)
        self._ch = bytearray(n)
        self._n_ch = bytearray(len(self._chips))  # channels to burst per chip: highest used + 1
        for i, (addr, ch) in enumerate(board.fingers["channels"]):
            if addr not in by_addr:
                raise DriverFault(self.part, "finger %d: no driver for chip 0x%02x" % (i, addr))
            k = by_addr[addr]
            self._chip[i] = k
            self._ch[i] = ch
            if ch + 1 > self._n_ch[k]:
                self._n_ch[k] = ch + 1
        self._p0 = array("i", bytes(4 * n))
        self._dp = array("i", bytes(4 * n))
        for i, (p0, p1) in enumerate(board.pulse_cal):
            self._p0[i] = p0
            self._dp[i] = p1 - p0
        self._div = 0  # count length in 1/25 us (prescale + 1), 0 until init()

    def init(self):
        # Chips up, every finger at its home (fully retracted) pulse, then outputs enabled.
        if self._oe is not None:
            self._oe.value(1)
        self._div = 0
        div = 0
        for c in self._chips:
            c.init(self._freq_hz)
            if div and c.prescale + 1 != div:
                raise DriverFault(c.part, "prescale differs from the other chips")
            div = c.prescale + 1
        period = self._chips[0].period_us() if self._chips else 0
        for i in range(self.count):
            for us in (self._p0[i], self._p0[i] + self._dp[i]):
                if us >= period:
                    raise DriverFault(self.part, "finger %d pulse %d us >= period" % (i, us))
        self._div = div
        self.home()
        if self._oe is not None:
            self._oe.value(0)

    def set_cal(self, i, pulse_us_at_0, pulse_us_at_full):
        # Factory calibration of one finger; takes effect at the next write().
        self._index(i)
        period = self._chips[0].period_us() if self._div else 1_000_000
        for us in (pulse_us_at_0, pulse_us_at_full):
            if not 500 <= us <= 2500 or us >= period:
                raise ValueError("finger %d: pulse %d us outside 500..2500 or period" % (i, us))
        self._p0[i] = pulse_us_at_0
        self._dp[i] = pulse_us_at_full - pulse_us_at_0

    def _index(self, i):
        if not 0 <= i < self.count:
            raise ValueError("no finger %d (board has %d)" % (i, self.count))

    def set_um(self, i, um):
        self._index(i)
        if not 0 <= um <= self.stroke_um:
            raise ValueError("finger %d: %d um outside 0..%d" % (i, um, self.stroke_um))
        self.targets_um[i] = um

    def pulse_us(self, i):
        # The pulse write() sends finger i for its current target (rounded to 1 us).
        self._index(i)
        return self._p0[i] + (self._dp[i] * self.targets_um[i] + (self.stroke_um >> 1)) // (
            self.stroke_um
        )

    @micropython.native
    def write(self):
        # targets_um -> counts -> one burst per chip. Allocation-free; every intermediate stays a
        # small int (|dp| * stroke <= 2000 * 100_000 < 2**30).
        div = self._div
        if not div:
            raise not_ready(self.part)
        t = self.targets_um
        p0 = self._p0
        dp = self._dp
        chip = self._chip
        chan = self._ch
        counts = self._counts
        stroke = self.stroke_um
        half_stroke = stroke >> 1
        half_div = div >> 1
        for i in range(self.count):
            um = t[i]
            if um < 0 or um > stroke:
                raise ValueError("finger %d: target %d um outside 0..%d" % (i, um, stroke))
            us = p0[i] + (dp[i] * um + half_stroke) // stroke
            counts[chip[i]][chan[i]] = (us * _OSC_MHZ + half_div) // div
        chips = self._chips
        n_ch = self._n_ch
        for k in range(len(chips)):
            if n_ch[k]:
                chips[k].write_all(n_ch[k])

    def home(self):
        # Every finger fully retracted (the safe position), written at once.
        t = self.targets_um
        for i in range(self.count):
            t[i] = 0
        self.write()

    def off(self):
        # No pulse at all: the actuators stop driving and hold where they are. Disables the
        # outputs in hardware too when the board has an output-enable line.
        if self._oe is not None:
            self._oe.value(1)
        for c in self._chips:
            c.all_off()
