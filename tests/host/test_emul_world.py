"""The fake `machine` module and the World behind it: MicroPython's signatures and errors, pins
with pulls and IRQ edges, I2C with fault injection and counters, ADC sources, PWM outputs, the
watchdog against the virtual clock, and resets."""

import errno

import pytest

from backhug_host import emul
from backhug_host.emul import world as W

machine = emul.use_fake_machine()


@pytest.fixture
def world(vclock):
    w = W.World(vclock, pins=range(49))
    previous = W.install(w)
    yield w
    W.install(previous)


class Reg8:
    """A minimal I2C device: a 256-byte register file with auto-increment."""

    def __init__(self):
        self.regs = bytearray(256)
        self.ptr = 0

    def i2c_write(self, data):
        self.ptr = data[0]
        for b in data[1:]:
            self.regs[self.ptr] = b
            self.ptr = (self.ptr + 1) & 0xFF
        return True

    def i2c_read(self, n):
        out = bytes(self.regs[(self.ptr + k) & 0xFF] for k in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out


# -- pins ---------------------------------------------------------------------------------------


def test_esp32_constants():
    assert (machine.Pin.IN, machine.Pin.OUT, machine.Pin.OPEN_DRAIN) == (1, 3, 7)
    assert (machine.Pin.PULL_DOWN, machine.Pin.PULL_UP) == (1, 2)
    assert (machine.Pin.IRQ_RISING, machine.Pin.IRQ_FALLING) == (1, 2)
    assert (machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET) == (1, 2, 3)
    assert (machine.DEEPSLEEP_RESET, machine.SOFT_RESET) == (4, 5)
    assert machine.ADC.ATTN_11DB == 3


def test_no_world_installed_is_an_error(vclock):
    previous = W.install(None)
    try:
        with pytest.raises(RuntimeError, match="no emulated World"):
            machine.Pin(1)
    finally:
        W.install(previous)


def test_pin_is_one_object_per_gpio_and_keeps_config(world):
    p = machine.Pin(5, machine.Pin.OUT, value=1)
    again = machine.Pin(5)
    assert again is p
    assert again.value() == 1  # Pin(5) without arguments keeps mode and level
    assert world.pins.mode(5) == machine.Pin.OUT


def test_invalid_pin_and_mode(world):
    with pytest.raises(ValueError, match="invalid pin"):
        machine.Pin(49)
    with pytest.raises(ValueError):
        machine.Pin(4, 99)


def test_input_levels_follow_pulls_and_drives(world):
    up = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
    down = machine.Pin(6, machine.Pin.IN, machine.Pin.PULL_DOWN)
    assert (up.value(), down.value()) == (1, 0)
    world.pins.drive(4, 0)
    world.pins.drive(6, 1)
    assert (up.value(), down.value()) == (0, 1)
    world.pins.release(4)
    assert up.value() == 1


def test_output_is_readable_by_the_world(world):
    p = machine.Pin(7, machine.Pin.OUT, value=0)
    p.value(1)
    assert world.pins.level(7) == 1
    p.off()
    assert world.pins.level(7) == 0
    p(1)
    assert world.pins.level(7) == 1


def test_value_kwarg_is_set_before_the_mode(world):
    # The ESP32 port sets the level first: an output made with value=1 never shows a low level.
    seen = []
    world.pins.watch(8, lambda n, lvl: seen.append(lvl))
    machine.Pin(8, machine.Pin.OUT, value=1)
    assert seen == [1]


def test_output_against_external_drive_is_recorded(world):
    world.pins.drive(9, 0)
    machine.Pin(9, machine.Pin.OUT, value=1)
    assert any("pin 9" in e for e in world.errors)


def test_open_drain(world):
    p = machine.Pin(10, machine.Pin.OPEN_DRAIN, machine.Pin.PULL_UP, value=1)
    assert p.value() == 1
    world.pins.drive(10, 0)  # another device pulls the line low
    assert p.value() == 0
    world.pins.release(10)
    p.value(0)
    assert p.value() == 0


def test_irq_fires_on_chosen_edges_only(world):
    calls = []
    p = machine.Pin(11, machine.Pin.IN, machine.Pin.PULL_UP)
    p.irq(lambda pin: calls.append(("fall", pin)), machine.Pin.IRQ_FALLING)
    world.pins.drive(11, 0)
    world.pins.drive(11, 0)  # no edge
    world.pins.drive(11, 1)  # rising: not asked for
    assert calls == [("fall", p)]
    p.irq(lambda pin: calls.append("any"))  # default trigger: both edges
    world.pins.drive(11, 0)
    world.pins.drive(11, 1)
    assert calls[1:] == ["any", "any"]
    p.irq(None)
    world.pins.drive(11, 0)
    assert len(calls) == 3


# -- I2C ----------------------------------------------------------------------------------------


def test_i2c_signature_and_bad_id(world):
    machine.I2C(0, scl=machine.Pin(9), sda=machine.Pin(8), freq=400_000)
    with pytest.raises(ValueError):
        machine.I2C(2, scl=9, sda=8)
    assert world.i2c(0).freq_hz == 400_000


def test_i2c_memory_access_and_counters(world):
    dev = world.i2c(0).attach(0x50, Reg8())
    i2c = machine.I2C(0, scl=9, sda=8)
    i2c.writeto_mem(0x50, 0x10, b"\x01\x02\x03")
    assert dev.regs[0x10:0x13] == b"\x01\x02\x03"
    assert i2c.readfrom_mem(0x50, 0x11, 2) == b"\x02\x03"
    buf = bytearray(3)
    i2c.readfrom_mem_into(0x50, 0x10, memoryview(buf))
    assert buf == b"\x01\x02\x03"
    assert i2c.writeto(0x50, b"\x20\xaa") == 2
    assert dev.regs[0x20] == 0xAA
    bus = world.i2c(0)
    assert bus.transactions == 4
    assert bus.bytes == 4 + 3 + 4 + 2  # register address bytes included
    assert i2c.scan() == [0x50]


def test_i2c_missing_device_is_enodev(world):
    i2c = machine.I2C(0, scl=9, sda=8)
    with pytest.raises(OSError) as e:
        i2c.writeto_mem(0x41, 0, b"\x00")
    assert e.value.errno == errno.ENODEV


def test_i2c_fault_injection_counted_and_persistent(world):
    bus = world.i2c(0)
    bus.attach(0x40, Reg8())
    i2c = machine.I2C(0, scl=9, sda=8)
    bus.inject(0x40, "nack", count=2)
    for _ in range(2):
        with pytest.raises(OSError) as e:
            i2c.writeto_mem(0x40, 0, b"\x01")
        assert e.value.errno == errno.ENODEV
    i2c.writeto_mem(0x40, 0, b"\x01")  # the fault is used up
    bus.inject(0x40, "timeout", count=None)
    for _ in range(5):
        with pytest.raises(OSError) as e:
            i2c.readfrom_mem(0x40, 0, 1)
        assert e.value.errno == errno.ETIMEDOUT
    assert i2c.scan() == []
    bus.clear(0x40)
    assert i2c.readfrom_mem(0x40, 0, 1) == b"\x01"
    assert bus.failed == 7
    with pytest.raises(ValueError):
        bus.inject(0x40, "smoke")


# -- ADC, PWM -----------------------------------------------------------------------------------


def test_adc_reads_its_source_and_saturates(world):
    level = [1000]
    world.adc_source(3, lambda: level[0])
    adc = machine.ADC(machine.Pin(3), atten=machine.ADC.ATTN_11DB)
    assert adc.read_u16() == 1000
    assert adc.read() == 1000 >> 4
    level[0] = 70_000
    assert adc.read_u16() == 65535
    level[0] = -3
    assert adc.read_u16() == 0
    assert world.adc_conversions == 4
    with pytest.raises(ValueError, match="attenuation"):
        adc.atten(7)


def test_adc_only_on_adc_pins():
    w = W.World(clock=None, adc_pins=range(1, 11))
    previous = W.install(w)
    try:
        with pytest.raises(ValueError, match="invalid pin"):
            machine.ADC(machine.Pin(12))
    finally:
        W.install(previous)


def test_pwm_state_and_ranges(world):
    pwm = machine.PWM(machine.Pin(15), freq=1000, duty_u16=0)
    out = world.pwm_out(15)
    assert (out.freq, out.duty_u16, out.active) == (1000, 0, True)
    pwm.duty_u16(65535)
    pwm.freq(20_000)
    assert (pwm.freq(), pwm.duty_u16()) == (20_000, 65535)
    with pytest.raises(ValueError):
        pwm.duty_u16(65536)
    with pytest.raises(ValueError):
        pwm.freq(0)
    pwm.deinit()
    assert (out.active, out.duty_u16) == (False, 0)
    assert machine.PWM(16).freq() == 5000  # the ESP32 port's default


# -- watchdog, reset ----------------------------------------------------------------------------


def test_watchdog_expires_in_virtual_time(world, vclock):
    wdt = machine.WDT(timeout=1000)
    vclock.advance_ms(900)
    wdt.feed()
    vclock.advance_ms(1000)
    assert not world.watchdog_expired()
    vclock.advance_ms(1)
    assert world.watchdog_expired()
    wdt.feed()  # too late: a fired watchdog stays fired
    assert world.watchdog_expired()
    assert world.wdt_feeds == 1


def test_watchdog_bad_arguments(world):
    with pytest.raises(ValueError, match="too short"):
        machine.WDT(timeout=0)
    with pytest.raises(ValueError):
        machine.WDT(id=1, timeout=100)
    assert world.wdt_deadline_us() is None


def test_reset_is_an_exception_firmware_cannot_swallow(world):
    with pytest.raises(W.ResetRequested) as e:
        try:
            machine.reset()
        except Exception:  # noqa: BLE001 - what careless firmware code does
            pytest.fail("machine.reset() was swallowed by `except Exception`")
    assert e.value.cause == machine.HARD_RESET
    with pytest.raises(machine.ResetRequested) as e:
        machine.soft_reset()
    assert e.value.cause == machine.SOFT_RESET


def test_reboot_resets_the_mcu_but_not_the_chips(world, vclock):
    dev = world.i2c(0).attach(0x40, Reg8())
    machine.I2C(0, scl=9, sda=8).writeto_mem(0x40, 6, b"\x42")
    p = machine.Pin(5, machine.Pin.OUT, value=1)
    machine.PWM(machine.Pin(15), freq=1000, duty_u16=30_000)
    machine.WDT(timeout=500)
    world.reboot(machine.WDT_RESET)
    assert machine.reset_cause() == machine.WDT_RESET
    assert world.pins.mode(5) is None and world.pins.level(5) == 0
    assert machine.Pin(5) is not p
    assert world.pwm_out(15).active is False
    vclock.advance_ms(1000)
    assert not world.watchdog_expired()
    assert dev.regs[6] == 0x42  # the chip kept its registers


def test_unique_id_and_freq(world):
    assert machine.unique_id() == world.unique_id and len(machine.unique_id()) == 6
    machine.freq(240_000_000)
    assert machine.freq() == 240_000_000
    with pytest.raises(ValueError):
        machine.freq(123)
