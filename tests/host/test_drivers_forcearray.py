"""The force array on the sim board's emulated muxes and ADCs: each finger's injected reading
comes back as that finger's raw value and centinewtons, after the mux has settled."""

import copy
import importlib

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


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


@pytest.fixture
def sim(world):
    raw = [0] * BOARD.finger_count  # 12-bit readings the sensors present, per finger
    chips = emul.attach_board(world, BOARD, force_source=lambda i: raw[i] << 4)
    hw = hal.build(BOARD)
    return world, chips, hw, raw


def cn_of(board, i, raw):
    off, gain = board.force_cal[i]
    return (raw - off) * gain >> 12


def test_each_finger_reads_its_own_sensor(sim):
    world, chips, hw, raw = sim
    raw[:] = [100 + 37 * i for i in range(BOARD.finger_count)]
    cn = hw.forces.read()
    assert list(hw.forces.raw) == raw
    assert list(cn) == [cn_of(BOARD, i, raw[i]) for i in range(BOARD.finger_count)]
    assert cn is hw.forces.cn  # the preallocated buffer, every time


def test_conversion_of_a_known_reading(sim):
    # 12-bit 1678 with offset 40, gain 25000/4096: (1638 * 25000) >> 12 = 9997 cN, about 100 N
    world, chips, hw, raw = sim
    raw[12] = 1678
    assert hw.forces.read()[12] == 9997


def test_reading_below_the_offset_is_negative_not_clipped(sim):
    world, chips, hw, raw = sim
    raw[0] = 0
    assert hw.forces.read()[0] == (0 - 40) * 25_000 >> 12


def test_mux_is_given_time_to_settle(sim):
    world, chips, hw, raw = sim
    hw.forces.read()
    assert [m.early_reads for m in chips.muxes] == [0, 0]


def test_without_settle_time_fingers_would_read_their_neighbours(world):
    # The emulator's settling model is what makes the test above meaningful.
    data = copy.deepcopy(importlib.import_module("boards.sim.board").BOARD)
    data["force"]["settle_us"] = 0
    fast = boardspec.validate(data)
    raw = list(range(100, 100 + BOARD.finger_count))
    chips = emul.attach_board(world, BOARD, force_source=lambda i: raw[i] << 4, settle_us=10)
    hw = hal.build(fast)
    hw.forces.read()
    assert sum(m.early_reads for m in chips.muxes) > 0
    assert list(hw.forces.raw) != raw


def test_one_conversion_per_finger(sim):
    world, chips, hw, raw = sim
    before = world.adc_conversions
    hw.forces.read()
    assert world.adc_conversions - before == BOARD.finger_count


def test_per_finger_calibration(sim):
    world, chips, hw, raw = sim
    raw[4] = 2000
    hw.forces.set_cal(4, 1000, 4096)  # gain 1.0
    assert hw.forces.read()[4] == 1000
    with pytest.raises(ValueError):
        hw.forces.set_cal(4, 5000, 4096)
    with pytest.raises(ValueError):
        hw.forces.set_cal(26, 0, 4096)


def test_read_before_init_is_a_fault(world):
    emul.attach_board(world, BOARD)
    hw = hal.build(BOARD, init=False)
    with pytest.raises(DriverFault, match="forces"):
        hw.forces.read()
    assert world.adc_conversions == 0


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(readings=st.lists(st.integers(0, 4095), min_size=26, max_size=26))
def test_any_readings_convert_exactly(sim, readings):
    world, chips, hw, raw = sim
    raw[:] = readings
    cn = hw.forces.read()
    assert list(cn) == [cn_of(BOARD, i, r) for i, r in enumerate(readings)]
