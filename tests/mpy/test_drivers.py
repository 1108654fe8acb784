# The drivers on the real MicroPython interpreter: they import and run there, a full control-tick
# cycle (26 finger positions written to two PCA9685s, 26 forces read through the muxes) allocates
# nothing on the heap, and the conversions give the same numbers as on the host.
#
# The machine objects are the tiny fakes below: preallocated, allocation-free, so gc.mem_alloc()
# around a driver call measures the driver alone. tests/mpy/bench_cycle.py reuses them.

import gc
from array import array

import mpytest

from firmware import boardspec
from firmware.drivers import fault, fingers, forcearray, legrest, pca9685


class FakeI2C:
    # Register files per address; a write stores bytes from the register address on (the chip's
    # auto-increment), a read returns them. Counts transactions and bytes (register address
    # included) like the host emulator; fail_next makes the next N transactions NACK.
    def __init__(self, addresses):
        self.addresses = tuple(addresses)
        self.files = tuple(bytearray(256) for _ in self.addresses)
        self.transactions = 0
        self.bytes = 0
        self.fail_next = 0
        self._nack = OSError(19)  # ENODEV, preallocated

    def _file(self, addr):
        for k in range(len(self.addresses)):
            if self.addresses[k] == addr:
                return self.files[k]
        raise self._nack

    def _begin(self):
        self.transactions += 1
        if self.fail_next:
            self.fail_next -= 1
            raise self._nack

    def writeto_mem(self, addr, reg, buf):
        self._begin()
        regs = self._file(addr)
        n = len(buf)
        for i in range(n):
            regs[(reg + i) & 0xFF] = buf[i]
        self.bytes += n + 1

    def readfrom_mem_into(self, addr, reg, buf):
        self._begin()
        regs = self._file(addr)
        n = len(buf)
        for i in range(n):
            buf[i] = regs[(reg + i) & 0xFF]
        self.bytes += n + 1


class FakePin:
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, level=0):
        self.level = level
        self.handler = None

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0

    def irq(self, handler=None, trigger=3):
        self.handler = handler


class FakeAdc:
    # read_u16() gives values[channel] for the channel the shared select pins choose.
    def __init__(self, select_pins, values):
        self.sel = select_pins
        self.values = values
        self.reads = 0

    def read_u16(self):
        s = self.sel
        ch = s[0].level | s[1].level << 1 | s[2].level << 2 | s[3].level << 3
        self.reads += 1
        return self.values[ch]


class FakePwm:
    def __init__(self):
        self.duty = 0

    def duty_u16(self, v=None):
        if v is None:
            return self.duty
        self.duty = v


def raw16(adc_index, ch):
    # the 16-bit reading the fake ADC gives: 12-bit raw 500 + 100 * adc + ch, scaled up
    return (500 + 100 * adc_index + ch) << 4


def make(board_id="sim"):
    # FingerBank + ForceArray of a board on fakes, initialised: (board, bank, forces, i2c, adcs)
    board = boardspec.load(board_id)
    i2c = FakeI2C(board.pwm["chips"])
    chips = [pca9685.PCA9685(i2c, a) for a in board.pwm["chips"]]
    bank = fingers.FingerBank(chips, board, FakePin(1))
    sel = (FakePin(), FakePin(), FakePin(), FakePin())
    adcs = tuple(
        FakeAdc(sel, array("H", [raw16(a, ch) for ch in range(16)]))
        for a in range(len(board.force["adc"]))
    )
    forces = forcearray.ForceArray(sel, adcs, board)
    bank.init()
    forces.init()
    return board, bank, forces, i2c, adcs


def cycle(bank, forces, t):
    # one control tick's driver work: read all forces, move every finger, write both chips
    forces.read()
    targets = bank.targets_um
    for i in range(bank.count):
        targets[i] = (t * 997 + i * 1531) % 40_001
    bank.write()


def test_full_cycle_allocates_nothing():
    board, bank, forces, i2c, adcs = make()
    cycle(bank, forces, 0)  # warm-up: anything lazily made is made now
    gc.collect()
    before = gc.mem_alloc()
    for t in range(1, 21):
        cycle(bank, forces, t)
    after = gc.mem_alloc()
    assert after - before == 0, "%d bytes allocated in 20 cycles" % (after - before)


def test_write_is_one_burst_per_chip():
    board, bank, forces, i2c, adcs = make()
    t0, b0 = i2c.transactions, i2c.bytes
    bank.write()
    assert i2c.transactions - t0 == 2
    assert i2c.bytes - b0 == (1 + 4 * 16) + (1 + 4 * 10)


def test_register_contents_follow_calibration():
    board, bank, forces, i2c, adcs = make()
    bank.set_um(0, 0)
    bank.set_um(17, board.stroke_um)
    bank.set_um(5, board.stroke_um // 2)
    bank.write()
    prescale = i2c.files[0][0xFE]
    div = prescale + 1

    def width_counts(chip, ch):
        r = i2c.files[chip]
        base = 6 + 4 * ch
        on = r[base] | r[base + 1] << 8
        off = r[base + 2] | r[base + 3] << 8
        return (off - on) & 0xFFF

    for finger, chip, ch in ((0, 0, 0), (17, 1, 1), (5, 0, 5)):
        p0, p1 = board.pulse_cal[finger]
        um = bank.targets_um[finger]
        want_us = p0 + (p1 - p0) * um / board.stroke_um
        got_us = width_counts(chip, ch) * div / 25
        assert abs(got_us - want_us) <= div / 25, (finger, got_us, want_us)


def test_force_conversion_matches_formula():
    board, bank, forces, i2c, adcs = make()
    cn = forces.read()
    for i, (a, ch) in enumerate(board.force["channels"]):
        raw = 500 + 100 * a + ch
        assert forces.raw[i] == raw
        off, gain = board.force_cal[i]
        assert cn[i] == (raw - off) * gain >> 12


def test_out_of_range_and_unknown_finger_raise():
    board, bank, forces, i2c, adcs = make()
    with mpytest.raises(ValueError):
        bank.set_um(0, board.stroke_um + 1)
    with mpytest.raises(ValueError):
        bank.set_um(0, -1)
    with mpytest.raises(ValueError):
        bank.set_um(board.finger_count, 0)
    bank.targets_um[3] = -5  # written past set_um: write() refuses instead of clamping
    with mpytest.raises(ValueError):
        bank.write()


def test_nack_retried_once_then_fault():
    board, bank, forces, i2c, adcs = make()
    i2c.fail_next = 1
    bank.write()  # one NACK: the retry succeeds
    i2c.fail_next = 2
    with mpytest.raises(fault.DriverFault) as e:
        bank.write()
    assert e.value.part == "pca9685@0x40"
    assert str(e.value).startswith("pca9685@0x40: ")


def test_use_before_init_is_a_fault():
    board = boardspec.load("sim")
    i2c = FakeI2C(board.pwm["chips"])
    chips = [pca9685.PCA9685(i2c, a) for a in board.pwm["chips"]]
    bank = fingers.FingerBank(chips, board)
    with mpytest.raises(fault.DriverFault):
        bank.write()
    sel = (FakePin(), FakePin(), FakePin(), FakePin())
    fa = forcearray.ForceArray(sel, (FakeAdc(sel, array("H", bytes(32))),) * 2, board)
    with mpytest.raises(fault.DriverFault):
        fa.read()
    assert i2c.transactions == 0


def test_legrest_refuses_to_drive_into_closed_limit():
    board = boardspec.load("sim")
    top = FakePin(0)  # active low: 0 = closed
    bottom = FakePin(1)
    in1, in2 = FakePwm(), FakePwm()
    lr = legrest.LegRest(
        in1, in2, top, bottom, FakeAdc((top, top, top, top), array("H", bytes(32))), board.legrest
    )
    lr.init()
    assert lr.up() is False
    assert lr.poll() == legrest.REACHED_TOP
    assert (in1.duty, in2.duty) == (65535, 65535)  # braked
    assert lr.down() is True
    assert in1.duty == 0 and in2.duty > 0


def test_status_led_and_leg_rest_poll_allocate_nothing():
    # both run every few tens of ms from their tasks
    from firmware.drivers import led

    board = boardspec.load("sim")
    sl = led.StatusLed(FakePwm(), FakePwm(), FakePwm())
    sl.init()
    top, bottom = FakePin(1), FakePin(1)
    lr = legrest.LegRest(
        FakePwm(),
        FakePwm(),
        top,
        bottom,
        FakeAdc((top,) * 4, array("H", bytes(32))),
        board.legrest,
    )
    lr.init()
    lr.up()
    sl.set(0, 120, 0)
    lr.poll()
    gc.collect()
    before = gc.mem_alloc()
    for k in range(50):
        sl.set(k, 120, 0)
        lr.poll()
    assert gc.mem_alloc() - before == 0
    assert sl.rgb[0] == 49
