"""The simulated device: finger and leg-rest mechanics on their own, then assembled with the
emulated chips behind the fake `machine` module."""

import asyncio

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


# -- the assembled device: firmware drivers on the emulated chips, physics behind them -----------

from backhug_host.emul import world as W  # noqa: E402
from backhug_host.sim import faults  # noqa: E402
from backhug_host.sim.device import SimDevice, WatchdogExpired  # noqa: E402
from firmware.drivers import button as btn  # noqa: E402
from firmware.drivers import legrest as lrd  # noqa: E402
from firmware.runtime import sleep_ms  # noqa: E402


@pytest.fixture
def make_device(vclock):
    previous = W.install(None)  # what was installed, put back afterwards
    W.install(previous)

    def make(person=None, board_id="sim", seed=0, **kw):
        return SimDevice(board_id, person=person, seed=seed, clock=vclock, **kw)

    yield make
    W.install(previous)


def settle(vclock, dev, ms):
    vclock.advance_ms(ms)
    dev.catch_up()


def test_fingers_follow_the_firmware_through_the_emulated_pwm_chips(make_device, vclock):
    dev = make_device()
    hw = dev.build_hal()
    hw.fingers.set_um(3, 10_000)
    hw.fingers.set_um(20, 35_000)  # on the second chip
    hw.fingers.write()
    settle(vclock, dev, 250)
    # 20 mm/s: 5 mm after a quarter second, then the targets (to one PWM count, ~0.2 mm)
    assert dev.finger_um(3) == pytest.approx(5_000, abs=50)
    settle(vclock, dev, 2_000)
    pos = dev.positions_um()
    assert pos[3] == pytest.approx(10_000, abs=250)
    assert pos[20] == pytest.approx(35_000, abs=250)
    # nobody else moved (home is within one PWM count of 0)
    assert all(p < 100 for i, p in enumerate(pos) if i not in (3, 20))
    hw.fingers.off()  # no pulses: the fingers hold where they are
    hw.fingers.set_um(3, 0)
    settle(vclock, dev, 1_000)
    assert dev.finger_um(3) == pytest.approx(10_000, abs=250)


def test_firmware_reads_the_true_force_through_mux_and_adc(make_device, vclock):
    person_opts = {"height_cm": 180, "stiff": ("middle_left",)}
    dev = make_device(person_opts)
    hw = dev.build_hal()
    contacts = dev.contacts_um()
    for i in (0, 9, 25):
        hw.fingers.set_um(i, int(contacts[i]) + 6_000)
    hw.fingers.write()
    settle(vclock, dev, 2_500)
    cn = hw.forces.read()
    truth = dev.forces_n()
    for i in (0, 9, 25):
        assert truth[i] > 20
        assert cn[i] == pytest.approx(truth[i] * 100, abs=30)  # a few ADC counts
    assert all(abs(cn[i]) < 30 for i in range(26) if i not in (0, 9, 25))


def test_the_same_seed_replays_exactly(make_device, vclock):
    def script(seed):
        vclock.advance_ms(1_000)
        dev = make_device({"weight_kg": 90}, seed=seed)
        hw = dev.build_hal()
        hw.fingers.set_um(5, 30_000)
        hw.fingers.write()
        out = []
        for _ in range(40):
            vclock.advance_ms(50)
            out.append(tuple(hw.forces.read()))
        return out, dev.positions_um()

    a, pa = script(4)
    b, pb = script(4)
    c, _ = script(5)
    assert a == b and pa == pb
    assert a != c


def test_leg_rest_through_the_driver_with_the_host_task(make_device, vrun):
    dev = make_device({"weight_kg": 80})
    hw = dev.build_hal()
    lr = hw.legrest
    seen = {}

    async def main():
        host = asyncio.create_task(dev.run())
        t0 = dev.elapsed_ms()
        assert lr.up()
        while lr.poll() == lrd.MOVING_UP:
            await sleep_ms(20)
            if dev.legrest_position() > 0.5 and "ma" not in seen:
                seen["ma"] = lr.current_ma()
        seen["status"] = lr.poll()
        seen["ms"] = dev.elapsed_ms() - t0
        host.cancel()

    vrun(main())
    assert seen["status"] == lrd.REACHED_TOP
    assert 5_900 <= seen["ms"] <= 6_200
    assert 300 < seen["ma"] < hw.board.legrest["current_limit_ma"]
    assert dev.legrest_position() == pytest.approx(1.0, abs=0.01)


def test_limit_switch_closes_on_time_without_any_polling(make_device, vrun):
    # nothing reads an ADC while waiting: only the host task can close the switch on time
    dev = make_device()
    hw = dev.build_hal()
    edges = []
    top = hw.board.legrest["limit_top"]
    dev.world.pins.watch(top, lambda gpio, level: edges.append((dev.elapsed_ms(), level)))

    async def main():
        host = asyncio.create_task(dev.run())
        hw.legrest.up()
        await sleep_ms(7_000)
        host.cancel()

    vrun(main())
    assert len(edges) == 1 and edges[0][1] == 0
    assert 5_990 <= edges[0][0] <= 6_010


def test_jammed_leg_rest_trips_the_drivers_over_current_stop(make_device, vrun):
    dev = make_device({"weight_kg": 70})
    hw = dev.build_hal()
    dev.inject("jam:0.3")
    result = {}

    async def main():
        host = asyncio.create_task(dev.run())
        hw.legrest.up()
        for _ in range(500):
            await sleep_ms(20)
            st = hw.legrest.poll()
            if st != lrd.MOVING_UP:
                break
        result["status"] = st
        host.cancel()

    vrun(main())
    assert result["status"] == lrd.OVERCURRENT
    assert dev.legrest_position() == pytest.approx(0.3, abs=0.01)
    assert dev.legrest.max_ma > hw.board.legrest["current_limit_ma"]


def test_button_press_reaches_the_firmware_at_its_time(make_device, vrun):
    dev = make_device()
    hw = dev.build_hal()
    dev.inject("button:500+100")
    got = {}

    async def main():
        host = asyncio.create_task(dev.run())
        task = asyncio.create_task(hw.button.run())
        await hw.button.flag.wait()
        got["t"] = dev.elapsed_ms()
        got["events"] = hw.button.take()
        task.cancel()
        host.cancel()

    vrun(main())
    assert got["events"] & btn.PRESSED
    assert 500 <= got["t"] <= 500 + 2 * hw.board.button["debounce_ms"]


def test_person_getting_up_takes_the_load_away(make_device, vclock):
    dev = make_device({})
    hw = dev.build_hal()
    c = dev.contacts_um()[8]
    hw.fingers.set_um(8, int(c) + 5_000)
    hw.fingers.write()
    dev.inject("getup:3000")
    settle(vclock, dev, 2_900)
    assert hw.forces.read()[8] > 1_000
    assert hw.legrest.current_ma() == 0  # not driven
    settle(vclock, dev, 200)
    assert abs(hw.forces.read()[8]) < 30
    assert dev.contacts_um()[8] is None


def test_someone_lying_down_on_the_empty_device_loads_the_fingers(make_device, vclock):
    dev = make_device()
    hw = dev.build_hal()
    hw.fingers.set_um(2, 20_000)
    hw.fingers.write()
    settle(vclock, dev, 1_500)
    assert abs(hw.forces.read()[2]) < 30
    dev.set_load({"weight_kg": 95})
    settle(vclock, dev, 10)
    assert hw.forces.read()[2] > 3_000  # the finger stood 20 mm up: the back lands on it


def test_an_unfed_watchdog_ends_the_host_task(make_device, vrun):
    dev = make_device()
    hw = dev.build_hal()

    async def main():
        hw.watchdog.arm()
        for _ in range(10):
            await sleep_ms(200)
            hw.watchdog.feed()
        await dev.run()  # nobody feeds from here on

    with pytest.raises(WatchdogExpired, match="watchdog expired at"):
        vrun(main())
    assert dev.elapsed_ms() == pytest.approx(3_000, abs=5)


def test_nacking_chip_fails_the_drivers_init_naming_it(make_device):
    dev = make_device()
    dev.inject("nack:0x41")
    hw = dev.build_hal(init=False)
    with pytest.raises(faults.FaultError):
        dev.inject("nack:0x42")  # no such chip on the sim board
    try:
        hw.init()
    except Exception:  # noqa: BLE001 - the fault is what we look at
        pass
    assert [f.part for f in hw.faults] == ["pca9685@0x41"]


@pytest.mark.parametrize(
    "spec",
    [
        "melt:3",
        "open:26",
        "open:x",
        "swap:3",
        "swap:4,4",
        "stall:2@-1",
        "jam:1.5",
        "limits:top",
        "limit:top=ajar",
        "button:-5",
    ],
)
def test_bad_fault_specs_are_refused_with_a_reason(board, spec):
    with pytest.raises(faults.FaultError, match=spec.split(":")[0]):
        faults.parse(spec, board)
