"""The finger bank on the sim board's emulated PCA9685s (built by firmware.hal): positions reach
the chips as the pulse widths each finger's calibration asks for, in one transaction per chip,
and nothing out of range is ever clamped silently."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backhug_host import emul
from backhug_host.emul import world as W
from firmware import boardspec
from firmware.drivers.fault import DriverFault

emul.use_fake_machine()
from firmware import hal  # noqa: E402 - after the fake machine is on sys.path

BOARD = boardspec.load("sim")
COUNT_US = 122 / 25  # one PCA9685 count at 50 Hz (prescale 121)


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


@pytest.fixture
def sim(world):
    chips = emul.attach_board(world, BOARD)
    hw = hal.build(BOARD)
    world.i2c(0).reset_counters()
    return world, chips, hw


def expected_us(board, i, um):
    p0, p1 = board.pulse_cal[i]
    return p0 + (p1 - p0) * um / board.stroke_um


def test_after_init_every_finger_is_home_and_outputs_enabled(sim):
    world, chips, hw = sim
    for i in range(BOARD.finger_count):
        assert chips.finger_pulse_us(i) == pytest.approx(expected_us(BOARD, i, 0), abs=COUNT_US)
    assert world.pins.level(BOARD.pwm["oe_pin"]) == 0


def test_outputs_enabled_only_after_home_pulses_are_written(world):
    chips = emul.attach_board(world, BOARD)
    seen = []

    def on_oe(gpio, level):
        # the pulses the fingers get the moment the outputs turn on
        if level == 0:
            seen.append([chips.chips[a].counts(ch) for a, ch in BOARD.fingers["channels"]])

    world.pins.watch(BOARD.pwm["oe_pin"], on_oe)
    hal.build(BOARD)
    assert len(seen) == 1
    home = [round(expected_us(BOARD, i, 0) / COUNT_US) for i in range(BOARD.finger_count)]
    assert seen[0] == home


def test_set_and_write_reach_the_registers(sim):
    world, chips, hw = sim
    fb = hw.fingers
    targets = {0: 0, 1: 40_000, 7: 12_345, 16: 20_000, 25: 39_999}
    for i, um in targets.items():
        fb.set_um(i, um)
    fb.write()
    for i, um in targets.items():
        assert chips.finger_pulse_us(i) == pytest.approx(expected_us(BOARD, i, um), abs=COUNT_US)


def test_full_update_is_one_transaction_per_chip(sim):
    world, chips, hw = sim
    bus = world.i2c(0)
    for i in range(BOARD.finger_count):
        hw.fingers.set_um(i, 1000 * i)
    hw.fingers.write()
    assert bus.transactions == 2
    assert bus.bytes == (1 + 16 * 4) + (1 + 10 * 4)


def test_per_finger_calibration(sim):
    world, chips, hw = sim
    hw.fingers.set_cal(3, 2000, 1000)  # a finger mounted the other way round
    hw.fingers.set_um(3, 10_000)
    hw.fingers.write()
    assert chips.finger_pulse_us(3) == pytest.approx(1750, abs=COUNT_US)
    with pytest.raises(ValueError):
        hw.fingers.set_cal(3, 100, 2000)


def test_home_retracts_everything_at_once(sim):
    world, chips, hw = sim
    for i in range(BOARD.finger_count):
        hw.fingers.set_um(i, 30_000)
    hw.fingers.write()
    world.i2c(0).reset_counters()
    hw.fingers.home()
    assert world.i2c(0).transactions == 2
    assert all(
        chips.finger_pulse_us(i) == pytest.approx(expected_us(BOARD, i, 0), abs=COUNT_US)
        for i in range(BOARD.finger_count)
    )


def test_off_stops_every_pulse_and_disables_outputs(sim):
    world, chips, hw = sim
    hw.fingers.off()
    assert world.pins.level(BOARD.pwm["oe_pin"]) == 1
    assert all(c.counts(ch) == 0 for c in chips.chips.values() for ch in range(16))


def test_out_of_range_and_unknown_index_raise_without_bus_traffic(sim):
    world, chips, hw = sim
    fb = hw.fingers
    for i, um in ((0, -1), (0, BOARD.stroke_um + 1), (26, 0), (-1, 0)):
        with pytest.raises(ValueError):
            fb.set_um(i, um)
    fb.targets_um[5] = BOARD.stroke_um + 1  # bypassing set_um: write() refuses, never clamps
    with pytest.raises(ValueError, match="finger 5"):
        fb.write()
    assert world.i2c(0).transactions == 0


def test_write_before_init_is_a_fault(world):
    emul.attach_board(world, BOARD)
    hw = hal.build(BOARD, init=False)
    with pytest.raises(DriverFault, match="fingers"):
        hw.fingers.write()
    assert world.i2c(0).transactions == 0
    assert world.pins.level(BOARD.pwm["oe_pin"]) == 1  # outputs stay disabled


def test_chip_fault_names_the_chip(sim):
    world, chips, hw = sim
    world.i2c(0).inject(0x41, "nack", count=None)
    with pytest.raises(DriverFault) as e:
        hw.fingers.write()
    assert e.value.part == "pca9685@0x41"


def test_nack_once_on_each_chip_still_writes(sim):
    world, chips, hw = sim
    bus = world.i2c(0)
    hw.fingers.set_um(20, 20_000)
    bus.inject(0x40, "nack", 1)
    bus.inject(0x41, "nack", 1)
    hw.fingers.write()
    assert chips.finger_pulse_us(20) == pytest.approx(expected_us(BOARD, 20, 20_000), abs=COUNT_US)
    assert (bus.transactions, bus.failed) == (4, 2)


REUSE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)


@REUSE
@given(i=st.integers(0, BOARD.finger_count - 1), um=st.integers(0, BOARD.stroke_um))
def test_any_position_round_trips_within_one_count(sim, i, um):
    world, chips, hw = sim
    hw.fingers.set_um(i, um)
    hw.fingers.write()
    assert abs(chips.finger_pulse_us(i) - expected_us(BOARD, i, um)) <= COUNT_US


@REUSE
@given(
    i=st.integers(0, BOARD.finger_count - 1),
    um=st.one_of(st.integers(max_value=-1), st.integers(min_value=BOARD.stroke_um + 1)),
)
def test_any_position_out_of_range_raises(sim, i, um):
    world, chips, hw = sim
    before = hw.fingers.targets_um[i]
    with pytest.raises(ValueError):
        hw.fingers.set_um(i, um)
    assert hw.fingers.targets_um[i] == before
