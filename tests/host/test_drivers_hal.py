"""hal.build() on the emulated boards, and the small drivers (LED, buzzer, watchdog): every output
starts in its safe state, a broken part does not stop the others reaching theirs, and the
watchdog only resets the device when it is not fed."""

import pytest

from backhug_host import emul
from backhug_host.emul import world as W
from firmware import boardspec
from firmware.drivers.buzzer import Buzzer
from firmware.drivers.fault import DriverFault
from firmware.drivers.led import StatusLed
from firmware.drivers.watchdog import Watchdog

machine = emul.use_fake_machine()
from firmware import hal  # noqa: E402 - after the fake machine is on sys.path

SIM = boardspec.load("sim")


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


@pytest.mark.parametrize("board_id", ["sim", "devkit", "backhug_v3"])
def test_build_leaves_every_output_safe(world, board_id):
    board = boardspec.load(board_id)
    chips = emul.attach_board(world, board)
    hw = hal.build(board)
    lr = board.legrest
    assert world.pwm_out(lr["in1"]).duty_u16 == 65535  # leg rest braked
    assert world.pwm_out(lr["in2"]).duty_u16 == 65535
    for colour in ("r", "g", "b"):
        assert world.pwm_out(board.led[colour]).duty_u16 == 0
    assert world.pwm_out(board.buzzer["pin"]).duty_u16 == 0
    for i in range(board.finger_count):  # fingers at home, outputs on
        p0, _ = board.pulse_cal[i]
        assert chips.finger_pulse_us(i) == pytest.approx(p0, abs=5)
    assert world.wdt_timeout_ms is None  # built, not armed
    assert hw.faults == []
    assert len(hw.chips) == len(board.pwm["chips"])
    assert world.errors == []


def test_pins_are_configured_as_the_board_says(world):
    emul.attach_board(world, SIM)
    hal.build(SIM)
    pins = world.pins
    assert pins.mode(SIM.pwm["oe_pin"]) == machine.Pin.OUT
    for p in SIM.force["mux_select"]:
        assert pins.mode(p) == machine.Pin.OUT
    for p in (SIM.legrest["limit_top"], SIM.legrest["limit_bottom"], SIM.button["pin"]):
        assert pins.mode(p) == machine.Pin.IN
        assert pins.level(p) == 1  # pulled up: active-low inputs read "open"
    bus = world.i2c(SIM.i2c["id"])
    assert bus.freq_hz == SIM.i2c["freq_hz"]
    assert bus.pins == (SIM.i2c["scl"], SIM.i2c["sda"])


def test_outputs_are_off_before_any_bus_traffic(world):
    # The first I2C transaction must find the finger outputs disabled and the motor stopped.
    emul.attach_board(world, SIM)
    seen = []
    bus = world.i2c(0)
    original = bus._begin

    def spy(address):
        if not seen:
            seen.append(
                (
                    world.pins.level(SIM.pwm["oe_pin"]),
                    world.pwm_out(SIM.legrest["in1"]).duty_u16,
                    world.pwm_out(SIM.legrest["in2"]).duty_u16,
                )
            )
        return original(address)

    bus._begin = spy
    hal.build(SIM)
    assert seen[0][0] == 1
    assert seen[0][1] in (0, 65535) and seen[0][1] == seen[0][2]


def test_missing_chip_still_leaves_the_rest_safe(world):
    emul.attach_board(world, SIM)
    world.i2c(0).detach(0x41)
    with pytest.raises(DriverFault) as e:
        hal.build(SIM)
    assert e.value.part == "pca9685@0x41"
    # the leg rest was braked first, and the LED and buzzer still reached their off state
    assert world.pwm_out(SIM.legrest["in1"]).duty_u16 == 65535
    assert world.pwm_out(SIM.buzzer["pin"]).duty_u16 == 0
    assert world.pins.level(SIM.pwm["oe_pin"]) == 1  # finger outputs never enabled


def test_reset_cause_and_identity(world):
    assert hal.reset_cause() == "power-on"
    world.reboot(W.WDT_RESET)
    assert hal.reset_cause() == "watchdog"
    assert hal.unique_id() == world.unique_id
    with pytest.raises(W.ResetRequested):
        hal.reset()


# -- LED, buzzer --------------------------------------------------------------------------------


def test_led_levels(world):
    pwms = [machine.PWM(machine.Pin(n), freq=1000, duty_u16=0) for n in (15, 16, 17)]
    led = StatusLed(*pwms)
    with pytest.raises(DriverFault):
        led.set(1, 2, 3)
    led.init()
    led.set(255, 128, 0)
    assert [world.pwm_out(n).duty_u16 for n in (15, 16, 17)] == [65535, 128 * 257, 0]
    assert tuple(led.rgb) == (255, 128, 0)
    with pytest.raises(ValueError):
        led.set(256, 0, 0)
    with pytest.raises(ValueError):
        led.set(0, -1, 0)
    assert tuple(led.rgb) == (255, 128, 0)
    changes = world.pwm_out(15).changes
    led.set(255, 128, 0)  # unchanged: nothing written
    assert world.pwm_out(15).changes == changes
    led.off()
    assert [world.pwm_out(n).duty_u16 for n in (15, 16, 17)] == [0, 0, 0]


def test_buzzer_tone_and_off(world):
    bz = Buzzer(machine.PWM(machine.Pin(18), freq=2000, duty_u16=0))
    with pytest.raises(DriverFault):
        bz.tone(440)
    bz.init()
    bz.tone(880)
    out = world.pwm_out(18)
    assert (out.freq, out.duty_u16) == (880, 32768)
    with pytest.raises(ValueError):
        bz.tone(5)
    bz.off()
    assert out.duty_u16 == 0


# -- watchdog -----------------------------------------------------------------------------------


def test_watchdog_through_hal_resets_when_starved(world, vclock):
    emul.attach_board(world, SIM)
    wd = hal.build(SIM).watchdog
    with pytest.raises(DriverFault, match="before arm"):
        wd.feed()
    wd.arm()
    wd.arm()  # idempotent
    assert world.wdt_timeout_ms == SIM.watchdog_ms
    for _ in range(20):
        vclock.advance_ms(SIM.watchdog_ms // 2)
        wd.feed()
    assert not world.watchdog_expired()
    vclock.advance_ms(SIM.watchdog_ms + 1)
    assert world.watchdog_expired()


def test_watchdog_arms_with_the_factory():
    made = []

    class FakeWdt:
        def __init__(self, t):
            made.append(t)
            self.fed = 0

        def feed(self):
            self.fed += 1

    wd = Watchdog(FakeWdt, 1500)
    assert not wd.armed and made == []
    wd.arm()
    wd.feed()
    assert wd.armed and made == [1500] and wd._wdt.fed == 1
    with pytest.raises(ValueError):
        Watchdog(FakeWdt, 0)


@pytest.mark.parametrize("board_id", ["sim", "devkit", "backhug_v3"])
def test_build_sets_the_cpu_clock_from_the_board(world, board_id):
    # the emulated ESP32-S3 boots at 160 MHz, as a stock build may; the tick budget needs 240
    board = boardspec.load(board_id)
    emul.attach_board(world, board)
    assert world.cpu_freq_hz == 160_000_000
    hal.build(board)
    assert world.cpu_freq_hz == board.cpu_freq_hz == 240_000_000
