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
from firmware.drivers import forcearray
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


class _Line:
    # a select line that records its writes into a shared log: (line, level)
    def __init__(self, log, k):
        self.log = log
        self.k = k

    def value(self, v=None):
        self.log.append((self.k, v))


class _MuxAdc:
    # reads the channel the lines select: 100 * adc + channel
    def __init__(self, lines_state, adc):
        self.state = lines_state
        self.adc = adc

    def read_u16(self):
        return (100 * self.adc + self.state[0]) << 4


def _recording_array(board):
    log = []
    state = [0]

    class Line(_Line):
        def value(self, v=None):
            super().value(v)
            state[0] = (state[0] & ~(1 << self.k)) | ((1 if v else 0) << self.k)

    lines = tuple(Line(log, k) for k in range(4))
    adcs = tuple(_MuxAdc(state, a) for a in range(len(board.force["adc"])))
    fa = forcearray.ForceArray(lines, adcs, board)
    fa.init()
    return fa, log, state


@pytest.mark.parametrize("board_id", ["sim", "devkit", "backhug_v3"])
def test_select_lines_step_in_gray_code_one_write_per_channel(vclock, board_id):
    board = boardspec.load(board_id)
    fa, log, state = _recording_array(board)
    for n in range(3):
        del log[:]
        fa.read()
        used = sorted(set(ch for _, ch in board.force["channels"]))
        if used == list(range(16)):
            # one line per channel, not four (the first read starts at channel 0, where init()
            # left the lines; then the cycle back from the last channel to the first is a step)
            assert len(log) == (15 if n == 0 else 16)
        # every finger read its own channel (the ADC echoes the selected channel)
        for i, (a, ch) in enumerate(board.force["channels"]):
            assert fa.raw[i] == 100 * a + ch
        # each write changes a line's level (no redundant writes)
        levels = {}
        for k, v in log:
            assert levels.get(k) != v
            levels[k] = v


def test_a_read_cut_short_rewrites_every_line_next_time(vclock):
    board = boardspec.load("sim")
    fa, log, state = _recording_array(board)
    fa.read()

    class Broken:
        def read_u16(self):
            raise OSError(5)

    good = fa._adcs
    fa._adcs = (Broken(),) + good[1:]
    with pytest.raises(OSError):
        fa.read()
    fa._adcs = good
    state[0] = 0b1010  # whatever the lines were left at
    del log[:]
    fa.read()
    assert sorted(k for k, _ in log[:4]) == [0, 1, 2, 3]  # all four written at the first channel
    for i, (a, ch) in enumerate(board.force["channels"]):
        assert fa.raw[i] == 100 * a + ch
