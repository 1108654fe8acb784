"""The leg-rest driver on emulated pins, PWMs and ADC: H-bridge outputs per command, limit
switches it never drives into, and the stops poll() makes on its own (limit, travel time,
over-current after the start-up inrush, both switches closed)."""

import pytest

from backhug_host import emul
from backhug_host.emul import world as W
from firmware import boardspec
from firmware.drivers import legrest as lr
from firmware.drivers.fault import DriverFault

emul.use_fake_machine()
from firmware import hal  # noqa: E402 - after the fake machine is on sys.path

BOARD = boardspec.load("sim")
CFG = BOARD.legrest
FULL = 65535
DUTY = CFG["duty_pct"] * FULL // 100


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


class Rig:
    def __init__(self, world, vclock):
        self.world = world
        self.clock = vclock
        self.current_ma = 0
        emul.attach_board(world, BOARD)
        world.adc_source(
            CFG["current_adc"],
            lambda: (
                min(4095, self.current_ma * 4095 // CFG["current_full_scale_ma"]) * 65535 // 4095
            ),
        )
        self.hw = hal.build(BOARD)
        self.drv = self.hw.legrest

    def limit(self, which, closed):
        # active-low switches: closed pulls the line to ground
        self.world.pins.drive(CFG["limit_" + which], 0 if closed else None)

    def outputs(self):
        return (
            self.world.pwm_out(CFG["in1"]).duty_u16,
            self.world.pwm_out(CFG["in2"]).duty_u16,
        )


@pytest.fixture
def rig(world, vclock):
    return Rig(world, vclock)


def test_starts_braked(rig):
    assert rig.outputs() == (FULL, FULL)
    assert rig.drv.poll() == lr.IDLE
    assert rig.world.pwm_out(CFG["in1"]).freq == CFG["pwm_freq_hz"]


def test_up_down_brake_coast_outputs(rig):
    d = rig.drv
    assert d.up() is True
    assert rig.outputs() == (DUTY, 0) and d.poll() == lr.MOVING_UP
    assert d.down() is True
    assert rig.outputs() == (0, DUTY) and d.poll() == lr.MOVING_DOWN
    d.brake()
    assert rig.outputs() == (FULL, FULL) and d.poll() == lr.IDLE
    d.coast()
    assert rig.outputs() == (0, 0) and d.poll() == lr.IDLE


def test_refuses_to_drive_up_into_closed_top_limit(rig):
    rig.limit("top", True)
    assert rig.drv.at_top()
    in1 = rig.world.pwm_out(CFG["in1"])
    changes = in1.changes
    assert rig.drv.up() is False
    assert rig.outputs() == (FULL, FULL)
    assert rig.drv.poll() == lr.REACHED_TOP
    # in1 was never given a drive duty: only the brake (full on both sides) was written
    assert in1.changes - changes <= 1 and in1.duty_u16 == FULL
    assert rig.drv.down() is True  # away from the limit is allowed


def test_refuses_to_drive_down_into_closed_bottom_limit(rig):
    rig.limit("bottom", True)
    assert rig.drv.down() is False
    assert rig.outputs() == (FULL, FULL)
    assert rig.drv.up() is True


def test_stops_when_the_limit_closes_while_moving(rig):
    rig.drv.up()
    rig.clock.advance_ms(3000)
    assert rig.drv.poll() == lr.MOVING_UP
    rig.limit("top", True)
    assert rig.drv.poll() == lr.REACHED_TOP
    assert rig.outputs() == (FULL, FULL)
    assert rig.drv.poll() == lr.REACHED_TOP  # the reason stays until the next command


def test_travel_time_limit(rig):
    rig.drv.down()
    rig.clock.advance_ms(CFG["travel_ms"])
    assert rig.drv.poll() == lr.MOVING_DOWN
    rig.clock.advance_ms(1)
    assert rig.drv.poll() == lr.TIMEOUT
    assert rig.outputs() == (FULL, FULL)


def test_repeating_up_does_not_restart_the_travel_timer(rig):
    rig.drv.up()
    for _ in range(10):
        rig.clock.advance_ms(CFG["travel_ms"] // 9)
        rig.drv.up()
    assert rig.drv.poll() == lr.TIMEOUT


def test_over_current_stops_after_the_inrush_window(rig):
    rig.current_ma = CFG["current_limit_ma"] + 500
    rig.drv.up()
    rig.clock.advance_ms(CFG["inrush_ms"] - 10)
    assert rig.drv.poll() == lr.MOVING_UP  # start-up current is not an obstruction
    rig.clock.advance_ms(20)
    assert rig.drv.poll() == lr.OVERCURRENT
    assert rig.outputs() == (FULL, FULL)
    assert rig.drv.last_ma > CFG["current_limit_ma"]


def test_normal_current_keeps_moving(rig):
    rig.current_ma = CFG["current_limit_ma"] - 300
    rig.drv.up()
    rig.clock.advance_ms(2000)
    assert rig.drv.poll() == lr.MOVING_UP


def test_current_reading_scale(rig):
    rig.current_ma = 1234
    assert rig.drv.current_ma() == pytest.approx(1234, abs=CFG["current_full_scale_ma"] / 4095 + 1)


def test_both_limits_closed_is_a_fault(rig):
    rig.limit("top", True)
    rig.limit("bottom", True)
    assert rig.drv.up() is False
    assert rig.drv.down() is False
    assert rig.drv.poll() == lr.BOTH_LIMITS
    assert rig.outputs() == (FULL, FULL)
    assert lr.STATUS_NAMES[lr.BOTH_LIMITS] == "both limits closed"


def test_both_limits_closing_while_moving(rig):
    rig.drv.up()
    rig.limit("top", True)
    rig.limit("bottom", True)
    assert rig.drv.poll() == lr.BOTH_LIMITS
    assert rig.outputs() == (FULL, FULL)


def test_use_before_init_is_a_fault(world):
    emul.attach_board(world, BOARD)
    hw = hal.build(BOARD, init=False)
    for call in (hw.legrest.up, hw.legrest.down, hw.legrest.brake, hw.legrest.poll):
        with pytest.raises(DriverFault, match="legrest"):
            call()
    assert world.pwm_out(CFG["in1"]).duty_u16 == 0  # created at its off level


def test_active_high_switches(world, vclock):
    cfg = dict(CFG, limit_active_low=False)
    machine = emul.use_fake_machine()
    pins = {
        n: machine.Pin(CFG[n], machine.Pin.IN, machine.Pin.PULL_DOWN)
        for n in ("limit_top", "limit_bottom")
    }
    d = lr.LegRest(
        machine.PWM(machine.Pin(CFG["in1"]), freq=20_000, duty_u16=0),
        machine.PWM(machine.Pin(CFG["in2"]), freq=20_000, duty_u16=0),
        pins["limit_top"],
        pins["limit_bottom"],
        machine.ADC(machine.Pin(CFG["current_adc"])),
        cfg,
    )
    d.init()
    assert not d.at_top()
    world.pins.drive(CFG["limit_top"], 1)
    assert d.at_top() and d.up() is False
