"""The simulated device: finger and leg-rest mechanics on their own, then assembled with the
emulated chips behind the fake `machine` module."""

import pytest

from backhug_host.sim.actuators import FingerActuators, ForceSensors, raw_to_u16
from backhug_host.sim.legrest import LegRestMechanics
from backhug_host.sim.person import Nobody, Person
from backhug_host.sim.rig import Rig
from firmware import boardspec


@pytest.fixture(scope="module")
def board():
    return boardspec.load("sim")


# -- finger mechanics ---------------------------------------------------------------------------


def test_finger_travels_at_the_board_speed_and_stops_at_its_target(board):
    fingers = FingerActuators(board, Nobody(board))
    fingers.command_um(0, 30_000)
    fingers.advance(500)
    assert fingers.pos_um(0) == pytest.approx(board.max_speed_um_s * 0.5)
    fingers.advance(5_000)
    assert fingers.pos_um(0) == 30_000
    fingers.command_um(0, 0)
    fingers.advance(100)
    assert fingers.pos_um(0) == pytest.approx(30_000 - board.max_speed_um_s * 0.1)
    assert fingers.pos_um(1) == 0  # the others never moved


def test_advancing_at_once_or_step_by_step_lands_in_the_same_place(board):
    a = FingerActuators(board, Person(board))
    b = FingerActuators(board, Person(board))
    for f in (a, b):
        f.command_um(4, board.stroke_um)
    a.advance(1_700)
    for _ in range(1_700):
        b.advance(1)
    assert a.pos_nm[4] == b.pos_nm[4]


def test_pulse_width_maps_through_the_calibration_and_clamps_at_the_ends(board):
    fingers = FingerActuators(board, Nobody(board))
    p0, p1 = board.pulse_cal[0]
    fingers.command_pulse(0, (p0 + p1) / 2)
    fingers.command_pulse(1, p1 + 300)  # beyond the end: the mechanism stops at full stroke
    fingers.advance(5_000)
    assert fingers.pos_um(0) == pytest.approx(board.stroke_um / 2)
    assert fingers.pos_um(1) == board.stroke_um
    fingers.command_pulse(0, None)  # no pulse: the lead screw holds
    fingers.advance(1_000)
    assert fingers.pos_um(0) == pytest.approx(board.stroke_um / 2)


def test_finger_stalls_at_its_stall_force_against_the_rig(board):
    rig = Rig(board, plate_um=20_000)
    fingers = FingerActuators(board, rig)
    fingers.command_um(2, board.stroke_um)
    fingers.advance(3_000)
    # 250 N against 50 N/mm: 5 mm into the plate, then no further
    assert fingers.force_n(2) == pytest.approx(250.0, abs=2.0)
    assert fingers.force_n(2) <= 250.0
    assert fingers.pos_um(2) < board.stroke_um
    fingers.command_um(2, 0)  # retracting is never hindered
    fingers.advance(3_000)
    assert fingers.pos_um(2) == 0
    assert fingers.max_force_n[2] == pytest.approx(250.0, abs=2.0)


def test_injected_stall_and_stuck_fingers(board):
    person = Person(board)
    fingers = FingerActuators(board, person)
    fingers.set_stall(0, 5.0)
    fingers.set_stuck(1)
    fingers.command_um(0, board.stroke_um)
    fingers.command_um(1, board.stroke_um)
    fingers.advance(3_000)
    assert fingers.pos_um(0) == pytest.approx(person.contact_um(0), abs=2_000)
    assert fingers.force_n(0) <= 5.0
    assert fingers.pos_um(1) == 0


def test_pressing_through_the_actuators_relaxes_the_person(board):
    person = Person(board)
    fingers = FingerActuators(board, person)
    c = person.contact_um(6)
    for _ in range(150):  # ten minutes of 4-second presses 8 mm deep
        fingers.command_um(6, c + 8_000)
        fingers.advance(2_000)
        fingers.command_um(6, c - 2_000)
        fingers.advance(2_000)
    assert 0.03 < person.relaxation(6) < 0.2
    assert person.relaxation(7) == 0.0


# -- force sensors ------------------------------------------------------------------------------


def test_sensor_reading_converts_back_to_the_force_through_the_firmware_formula(board):
    sensors = ForceSensors(board, seed=3, noise_counts=0)
    offset, gain = board.force_cal[0]
    for force_n in (0.0, 10.0, 75.0, 150.0):
        raw = sensors.raw12(0, force_n, t_ms=0)
        cn = (raw - offset) * gain >> 12
        assert abs(cn - force_n * 100) <= gain / 4096 + 1
        assert raw_to_u16(raw) >> 4 == raw
    assert sensors.raw12(0, 1_000.0, 0) == 4095  # saturates at the rail, never beyond


def test_sensor_noise_is_small_and_repeatable(board):
    a = ForceSensors(board, seed=7)
    b = ForceSensors(board, seed=7)
    c = ForceSensors(board, seed=8)
    ra = [a.raw12(3, 50.0, t) for t in range(200)]
    assert ra == [b.raw12(3, 50.0, t) for t in range(200)]
    assert ra != [c.raw12(3, 50.0, t) for t in range(200)]
    ideal = a.ideal_raw(3, 50.0)
    assert max(abs(r - ideal) for r in ra) <= 4
    assert len(set(ra)) > 1


def test_sensor_faults_read_like_broken_hardware(board):
    s = ForceSensors(board, seed=1)
    s.raw12(0, 30.0, 0)
    s.inject(0, "stuck")
    s.inject(1, "open")
    s.inject(2, "short")
    s.inject(3, "noisy")
    frozen = s.raw12(0, 30.0, 0)
    assert [s.raw12(0, f, t) for t, f in enumerate((0.0, 80.0, 120.0))] == [frozen] * 3
    assert s.raw12(1, 0.0, 5) == 4095
    assert s.raw12(2, 50.0, 5) == 0
    noisy = [s.raw12(3, 0.0, t) for t in range(100)]
    assert max(noisy) - min(noisy) > 1_000
    with pytest.raises(ValueError):
        s.inject(4, "melted")


# -- leg rest mechanics -------------------------------------------------------------------------


def run_until(legrest, cond, limit_ms):
    for t in range(limit_ms):
        if cond():
            return t
        legrest.advance(1)
    return None


def test_leg_rest_travels_between_its_limits_in_about_six_seconds(board):
    person = Person(board)
    lr = LegRestMechanics(board, person)
    duty = board.legrest["duty_pct"] / 100
    assert lr.switch_closed("bottom") and not lr.switch_closed("top")
    assert lr.switch_level("bottom") == 0  # active low
    lr.set_inputs(duty, 0)
    up_ms = run_until(lr, lambda: lr.switch_closed("top"), 10_000)
    assert 5_500 <= up_ms <= 6_500
    assert not lr.switch_closed("bottom")
    lr.set_inputs(0, duty)
    down_ms = run_until(lr, lambda: lr.switch_closed("bottom"), 10_000)
    assert 5_500 <= down_ms <= 6_500
    # half the duty, half the speed
    lr.set_inputs(duty / 2, 0)
    assert 11_000 <= run_until(lr, lambda: lr.switch_closed("top"), 20_000) <= 13_000


def test_leg_rest_current_follows_the_load_and_soars_when_jammed(board):
    duty = board.legrest["duty_pct"] / 100
    limit = board.legrest["current_limit_ma"]
    empty = LegRestMechanics(board, Nobody(board), noise_ma=0)
    heavy = LegRestMechanics(board, Person(board, weight_kg=110), noise_ma=0)
    assert empty.current_ma() == 0  # not driven: no current
    for lr in (empty, heavy):
        lr.set_inputs(duty, 0)
        lr.advance(1_000)
    assert 100 < empty.current_ma() < heavy.current_ma() < limit
    heavy.jam()
    heavy.advance(10)
    assert heavy.current_ma() > limit
    pos = heavy.pos
    heavy.advance(1_000)
    assert heavy.pos == pos


def test_leg_rest_stalls_against_an_obstruction_and_at_its_hard_stop(board):
    duty = board.legrest["duty_pct"] / 100
    limit = board.legrest["current_limit_ma"]
    lr = LegRestMechanics(board, Nobody(board), noise_ma=0)
    lr.jam(at=0.4)
    lr.set_inputs(duty, 0)
    lr.advance(6_000)
    assert lr.pos == pytest.approx(0.4)
    assert lr.current_ma() > limit
    lr.set_inputs(0, duty)  # backing off is free
    lr.advance(100)
    assert lr.pos < 0.4 and lr.current_ma() < limit
    lr.clear_jam()
    lr.set_inputs(duty, 0)
    lr.advance(10_000)  # driven past the top switch into the hard stop
    assert lr.switch_closed("top") and lr.current_ma() > limit
    lr.set_inputs(0, 0)
    assert lr.current_ma() == 0


def test_leg_rest_switch_faults(board):
    lr = LegRestMechanics(board, Nobody(board))
    lr.set_switch_fault("top", "closed")
    assert lr.switch_closed("top") and lr.switch_closed("bottom")
    lr.set_switch_fault("bottom", "open")
    assert not lr.switch_closed("bottom")


def test_raising_the_leg_rest_flattens_the_persons_lower_back(board):
    person = Person(board)
    low = (board.rows - 3) * board.cols
    before = person.contact_um(low)
    lr = LegRestMechanics(board, person)
    lr.set_inputs(board.legrest["duty_pct"] / 100, 0)
    lr.advance(7_000)
    assert person.contact_um(low) < before - 2_000
