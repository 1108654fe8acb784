"""The PCA9685 driver against the register-level emulator: what the chip's registers hold after
init and writes, one transaction per burst, the retry-once rule, and refusals."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backhug_host import emul
from backhug_host.emul import pca9685 as E
from backhug_host.emul import world as W
from firmware.drivers.fault import DriverFault
from firmware.drivers.pca9685 import PCA9685

machine = emul.use_fake_machine()


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


@pytest.fixture
def rig(world):
    bus = world.i2c(0)
    chip = bus.attach(0x41, E.PCA9685(world.now_us))
    drv = PCA9685(machine.I2C(0, scl=9, sda=8), 0x41)
    return bus, chip, drv


def ready(rig, freq_hz=50):
    bus, chip, drv = rig
    drv.init(freq_hz)
    bus.reset_counters()
    return bus, chip, drv


def test_init_sets_up_the_chip(rig):
    bus, chip, drv = ready(rig)
    assert chip.prescale == 121  # round(25 MHz / (4096 * 50 Hz)) - 1
    assert drv.prescale == 121
    assert not chip.asleep and chip.auto_increment
    assert chip.regs[E.MODE2] == 0x04  # totem-pole outputs
    assert [chip.counts(ch) for ch in range(16)] == [0] * 16
    assert chip.errors == []  # the wake -> 500 us -> RESTART order was kept


@pytest.mark.parametrize("freq_hz,prescale", [(24, 253), (50, 121), (200, 30), (1526, 3)])
def test_prescale_for_frequency(rig, freq_hz, prescale):
    _, chip, drv = ready(rig, freq_hz)
    assert chip.prescale == prescale
    assert abs(chip.freq_hz() - freq_hz) / freq_hz < 0.02


def test_reinit_of_a_running_chip(rig):
    # A soft reboot of the MCU finds the chip still pulsing; init must still take the prescale.
    bus, chip, drv = ready(rig, 200)
    drv.set_pulse_us(3, 1500)
    drv.write_all(4)
    drv.init(50)
    assert chip.prescale == 121 and chip.counts(3) == 0 and chip.errors == []


def test_pulse_lands_in_the_channel_registers(rig):
    bus, chip, drv = ready(rig)
    drv.set_pulse_us(0, 1000)
    drv.set_pulse_us(9, 2000)
    drv.write_all(10)
    assert chip.pulse_us(0) == pytest.approx(1000, abs=122 / 25 / 2)
    assert chip.pulse_us(9) == pytest.approx(2000, abs=122 / 25 / 2)
    assert chip.counts(5) == 0


def test_write_all_is_one_transaction(rig):
    bus, chip, drv = ready(rig)
    for ch in range(16):
        drv.set_pulse_us(ch, 1000 + 50 * ch)
    drv.write_all(16)
    assert (bus.transactions, bus.bytes) == (1, 65)
    drv.write_all(10)
    assert (bus.transactions, bus.bytes) == (2, 65 + 41)


def test_all_off_uses_the_all_led_full_off_bit(rig):
    bus, chip, drv = ready(rig)
    for ch in range(16):
        drv.set_counts(ch, 300)
    drv.write_all(16)
    drv.all_off()
    assert bus.transactions == 2
    assert all(chip.regs[E.LED0_ON_L + 4 * ch + 3] & E.FULL for ch in range(16))
    assert list(drv.counts) == [0] * 16


def test_nack_once_is_retried(rig):
    bus, chip, drv = ready(rig)
    drv.set_pulse_us(0, 1500)
    bus.inject(0x41, "nack", 1)
    drv.write_all(1)
    assert chip.pulse_us(0) == pytest.approx(1500, abs=3)
    assert (bus.transactions, bus.failed) == (2, 1)


@pytest.mark.parametrize("kind", ["nack", "timeout"])
def test_twice_is_a_fault_naming_the_chip(rig, kind):
    bus, chip, drv = ready(rig)
    bus.inject(0x41, kind, 2)
    with pytest.raises(DriverFault) as e:
        drv.write_all(1)
    assert e.value.part == "pca9685@0x41"
    assert str(e.value).startswith("pca9685@0x41: ")
    assert bus.transactions == 2


def test_missing_chip_fails_init(world):
    drv = PCA9685(machine.I2C(0, scl=9, sda=8), 0x40)
    with pytest.raises(DriverFault, match="pca9685@0x40"):
        drv.init(50)


def test_chip_ignoring_prescale_fails_init(world):
    class Stubborn(E.PCA9685):
        def _store(self, reg, value):
            if reg == E.PRESCALE:
                return
            super()._store(reg, value)

    world.i2c(0).attach(0x40, Stubborn(world.now_us))
    drv = PCA9685(machine.I2C(0, scl=9, sda=8), 0x40)
    with pytest.raises(DriverFault, match="prescale"):
        drv.init(50)


def test_use_before_init_is_a_fault(rig):
    bus, chip, drv = rig
    for call in (
        lambda: drv.set_counts(0, 1),
        lambda: drv.write_all(1),
        lambda: drv.us_to_counts(1000),
        drv.all_off,
    ):
        with pytest.raises(DriverFault, match="before init"):
            call()
    assert bus.transactions == 0


def test_refusals(rig):
    bus, chip, drv = ready(rig)
    with pytest.raises(ValueError):
        drv.set_counts(16, 100)
    with pytest.raises(ValueError):
        drv.set_counts(0, 4096)
    with pytest.raises(ValueError):
        drv.set_counts(0, -1)
    with pytest.raises(ValueError):
        drv.write_all(17)
    with pytest.raises(ValueError):
        drv.write_all(0)
    with pytest.raises(ValueError):
        drv.init(2000)
    assert bus.transactions == 0


PERIOD_US_50HZ = 4096 * 122 / 25  # 19988.48 us
# One chip per test function is enough: each example sets and writes the same channel afresh.
REUSE_RIG = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@REUSE_RIG
@given(us=st.integers(0, int(PERIOD_US_50HZ) - 3))
def test_any_pulse_in_range_round_trips_within_one_count(rig, us):
    bus, chip, drv = rig
    if not drv.prescale:
        drv.init(50)
    drv.set_pulse_us(7, us)
    drv.write_all(8)
    assert abs(chip.pulse_us(7) - us) <= 122 / 25


@REUSE_RIG
@given(us=st.one_of(st.integers(max_value=-1), st.integers(min_value=int(PERIOD_US_50HZ) + 3)))
def test_any_pulse_out_of_range_raises(rig, us):
    bus, chip, drv = rig
    if not drv.prescale:
        drv.init(50)
    before = list(drv.counts)
    with pytest.raises(ValueError):
        drv.set_pulse_us(7, us)
    assert list(drv.counts) == before


def test_failed_reinit_leaves_the_chip_unusable(rig):
    bus, chip, drv = ready(rig)
    bus.inject(0x41, "nack", count=None)
    with pytest.raises(DriverFault):
        drv.init(50)
    bus.clear()
    with pytest.raises(DriverFault, match="before init"):
        drv.write_all(1)
