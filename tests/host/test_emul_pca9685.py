"""The register-level PCA9685 emulator against the datasheet's rules, driven with raw I2C bytes
(not through the firmware driver, so a driver bug cannot hide an emulator bug)."""

import pytest

from backhug_host.emul import pca9685 as E
from backhug_host.emul.world import World


class Clock:
    def __init__(self):
        self.t = 0

    def now_us(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def chip(clock):
    return E.PCA9685(clock.now_us)


def w(chip, reg, *data):
    chip.i2c_write(bytes((reg,) + data))


def r(chip, reg, n=1):
    chip.i2c_write(bytes((reg,)))
    return chip.i2c_read(n)


def wake(chip, clock, mode1=E.AI):
    w(chip, E.MODE1, mode1)
    clock.t += 500


def test_power_on_state():
    chip = E.PCA9685()
    assert r(chip, E.MODE1)[0] == 0x11  # asleep, all-call on
    assert r(chip, E.MODE2)[0] == 0x04
    assert chip.prescale == 0x1E
    assert all(chip.counts(ch) == 0 for ch in range(16))  # full off
    assert chip.pulse_us(0) == 0.0


def test_prescale_only_while_asleep(chip, clock):
    w(chip, E.PRESCALE, 121)
    assert chip.prescale == 121
    wake(chip, clock)
    w(chip, E.PRESCALE, 3)
    assert chip.prescale == 121
    assert any("PRE_SCALE" in e for e in chip.errors)


def test_prescale_hardware_minimum_is_3(chip):
    w(chip, E.PRESCALE, 0)
    assert chip.prescale == 3


def test_auto_increment_writes_consecutive_registers(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L, 0x00, 0x00, 0xCD, 0x00, 0x10, 0x00, 0x20, 0x01)
    assert chip.on_off(0) == (0, 0xCD)
    assert chip.on_off(1) == (0x10, 0x120)
    assert chip.counts(1) == 0x110


def test_without_auto_increment_bytes_overwrite_one_register(chip, clock):
    wake(chip, clock, 0)
    w(chip, E.LED0_ON_L + 2, 0x11, 0x22, 0x33)
    assert chip.regs[E.LED0_ON_L + 2] == 0x33
    assert chip.regs[E.LED0_ON_L + 3] == 0x10  # untouched: still full off


def test_auto_increment_rolls_over_after_led15(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.LED15_OFF_H, 0x01, E.AI | 0x01)  # LED15_OFF_H, then MODE1 again
    assert chip.regs[E.LED15_OFF_H] == 0x01
    assert chip.regs[E.MODE1] == E.AI | 0x01


def test_read_with_auto_increment(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L + 4, 1, 2, 3, 4)
    assert r(chip, E.LED0_ON_L + 4, 4) == b"\x01\x02\x03\x04"


def test_all_led_sets_every_channel_and_reads_zero(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.ALL_LED_ON_L, 0, 0, 0x00, 0x01)  # every channel 256 counts
    assert [chip.counts(ch) for ch in range(16)] == [256] * 16
    assert r(chip, E.ALL_LED_ON_L, 4) == b"\x00\x00\x00\x00"
    w(chip, E.ALL_LED_OFF_H, E.FULL)
    assert [chip.counts(ch) for ch in range(16)] == [0] * 16


def test_full_on_and_full_off_bits(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L, 0, E.FULL, 0, 0)
    assert chip.counts(0) == 4096
    w(chip, E.LED0_ON_L, 0, E.FULL, 0, E.FULL)  # both: full off wins
    assert chip.counts(0) == 0


def test_pulse_wraps_around_the_period(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L, 0x00, 0x0F, 0x64, 0x00)  # ON 3840, OFF 100: high across the wrap
    assert chip.counts(0) == 4096 - 3840 + 100


def test_pulse_us_follows_the_prescale(chip, clock):
    w(chip, E.PRESCALE, 121)  # 50 Hz
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L, 0, 0, 205, 0)
    assert chip.pulse_us(0) == pytest.approx(205 * 122 / 25)
    assert chip.freq_hz() == pytest.approx(25e6 / (4096 * 122))
    w(chip, E.MODE1, E.SLEEP | E.AI)
    assert chip.pulse_us(0) == 0.0  # asleep: outputs off


def test_restart_bit(chip, clock):
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L, 0, 0, 205, 0)
    w(chip, E.MODE1, E.SLEEP | E.AI)  # sleeping with PWM running sets RESTART
    assert r(chip, E.MODE1)[0] & E.RESTART
    w(chip, E.MODE1, E.AI)
    clock.t += 100
    w(chip, E.MODE1, E.RESTART | E.AI)  # too early after wake: ignored
    assert r(chip, E.MODE1)[0] & E.RESTART
    assert any("500 us" in e for e in chip.errors)
    clock.t += 400
    w(chip, E.MODE1, E.RESTART | E.AI)
    assert not r(chip, E.MODE1)[0] & E.RESTART


def test_bad_writes_are_recorded_not_raised(chip):
    w(chip, 0x50, 1)
    w(chip, E.TESTMODE, 1)
    w(chip, E.MODE1, E.EXTCLK)
    assert len(chip.errors) == 3
    assert not chip.regs[E.MODE1] & E.EXTCLK
    assert chip.i2c_write(b"") is True


def test_output_enable_line(clock):
    world = World(clock)
    chip = E.PCA9685(clock.now_us, (world.pins, 21))
    w(chip, E.PRESCALE, 121)
    wake(chip, clock, E.AI)
    w(chip, E.LED0_ON_L, 0, 0, 205, 0)
    world.pins.drive(21, 1)
    assert chip.pulse_us(0) == 0.0
    world.pins.drive(21, 0)
    assert chip.pulse_us(0) > 0
