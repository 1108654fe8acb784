"""A fake MicroPython `machine` module for the host (CPython), ESP32 port flavour.

The simulator puts tools/backhug_host/shims/ first on sys.path, so `import machine` in
firmware/hal.py gets this module. Signatures, constants, defaults and errors follow the ESP32 port
of MicroPython 1.29 (ports/esp32/machine_*.c, extmod/machine_*.c); behaviour is delegated to the
emulated World (backhug_host.emul.world) current when each object is made.
"""

import errno

from backhug_host.emul import world as _w
from backhug_host.emul.world import ResetRequested

__all__ = [
    "ADC",
    "I2C",
    "PWM",
    "WDT",
    "Pin",
    "ResetRequested",
    "deepsleep",
    "disable_irq",
    "enable_irq",
    "freq",
    "idle",
    "lightsleep",
    "reset",
    "reset_cause",
    "soft_reset",
    "unique_id",
]

PWRON_RESET = _w.PWRON_RESET
HARD_RESET = _w.HARD_RESET
WDT_RESET = _w.WDT_RESET
DEEPSLEEP_RESET = _w.DEEPSLEEP_RESET
SOFT_RESET = _w.SOFT_RESET

_UNSET = object()
_PIN_OUT = _w.PIN_OUT
# memaddr bytes for the usual 8-bit register address, made once (writeto_mem on every tick)
_REG8 = tuple(bytes((r,)) for r in range(256))


def _pin_id(p):
    # mp_hal_get_pin_obj: a Pin object or a GPIO number
    if isinstance(p, Pin):
        return p._st.number
    if isinstance(p, int) and not isinstance(p, bool):
        return p
    raise TypeError("expecting a pin")


class Pin:
    IN = _w.PIN_IN
    OUT = _w.PIN_OUT
    OPEN_DRAIN = _w.PIN_OPEN_DRAIN
    PULL_UP = _w.PULL_UP
    PULL_DOWN = _w.PULL_DOWN
    IRQ_RISING = _w.IRQ_RISING
    IRQ_FALLING = _w.IRQ_FALLING
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    _MODES = (IN, OUT, OPEN_DRAIN)
    _PULLS = (None, PULL_UP, PULL_DOWN)

    def __new__(cls, id, *args, **kwargs):  # noqa: A002 - MicroPython's parameter name
        # One object per GPIO, as on the ESP32 port: Pin(5) is Pin(5).
        world = _w.current()
        st = world.pins.get(_pin_id(id))
        if st.obj is None:
            obj = super().__new__(cls)
            obj._world = world
            obj._pins = world.pins
            obj._st = st
            st.obj = obj
        return st.obj

    def __init__(self, id, mode=None, pull=-1, *, value=None, drive=None, hold=None):  # noqa: A002
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=None, pull=-1, *, value=None, drive=None, hold=None):
        st = self._st
        if mode is not None and mode not in self._MODES:
            raise ValueError("invalid pin mode")
        if pull != -1 and pull not in self._PULLS:
            raise ValueError("invalid pull")
        if drive is not None and drive not in (0, 1, 2, 3):
            raise ValueError("invalid drive")
        # The ESP32 port sets the level before switching the mode, so value= never glitches.
        if value is not None:
            st.out = 1 if value else 0
        if mode is not None:
            st.mode = mode
        if pull != -1:
            st.pull = pull
        self._world.pins.update(st)

    def value(self, x=_UNSET):
        st = self._st
        if x is _UNSET:
            return st.level
        v = 1 if x else 0
        st.out = v
        if st.mode != _PIN_OUT or st.ext is not None:
            self._pins.update(st)
        elif st.level != v:
            # Pins.update() for an output nobody drives against, the usual case (the mux select
            # lines are written four times per channel): a new level, watchers, then the IRQ.
            st.level = v
            for fn in st.watchers:
                fn(st.number, v)
            if st.handler is not None:
                self._pins.update_irq(st, v)
        return None

    def __call__(self, x=_UNSET):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=_w.IRQ_RISING | _w.IRQ_FALLING, *, wake=None, hard=False):
        if trigger & ~(self.IRQ_RISING | self.IRQ_FALLING):
            raise ValueError("bad trigger")
        st = self._st
        st.handler = handler
        st.trigger = trigger if handler is not None else 0
        return _PinIrq(st)

    def __repr__(self):
        return "Pin(%d)" % self._st.number


class _PinIrq:
    def __init__(self, st):
        self._st = st

    def trigger(self):
        return self._st.trigger

    def handler(self):
        return self._st.handler


class I2C:
    """Hardware I2C (ports/esp32/machine_i2c.c): a NACK is OSError(ENODEV), a bus timeout
    OSError(ETIMEDOUT)."""

    def __init__(self, id, *, scl=None, sda=None, freq=400_000, timeout=50_000):  # noqa: A002
        if id not in (0, 1):
            raise ValueError("I2C(%s) doesn't exist" % (id,))
        world = _w.current()
        self._bus = world.i2c(id)
        self._scl = None if scl is None else _pin_id(scl)
        self._sda = None if sda is None else _pin_id(sda)
        if freq <= 0:
            raise ValueError("freq must be > 0")
        self._bus.freq_hz = freq
        self._bus.pins = (self._scl, self._sda)
        self.timeout_us = timeout

    @staticmethod
    def _addr(addr):
        if not isinstance(addr, int) or not 0 <= addr <= 0x7F:
            raise ValueError("invalid I2C address %r" % (addr,))
        return addr

    @staticmethod
    def _mem(memaddr, addrsize):
        if addrsize == 8 and type(memaddr) is int and 0 <= memaddr <= 0xFF:
            return _REG8[memaddr]
        if addrsize not in (8, 16):
            raise ValueError("addrsize must be 8 or 16")
        n = addrsize // 8
        return (memaddr & ((1 << addrsize) - 1)).to_bytes(n, "big")

    def scan(self):
        return [a for a in range(0x08, 0x78) if self._bus.acks(a)]

    def writeto(self, addr, buf, stop=True):
        data = bytes(buf)
        self._bus.write(self._addr(addr), data)
        return len(data)  # number of ACKs received

    def writevto(self, addr, vector, stop=True):
        data = b"".join(bytes(b) for b in vector)
        self._bus.write(self._addr(addr), data)
        return len(data)

    def readfrom(self, addr, nbytes, stop=True):
        return self._bus.read(self._addr(addr), nbytes)

    def readfrom_into(self, addr, buf, stop=True):
        mv = memoryview(buf).cast("B")
        mv[:] = self._bus.read(self._addr(addr), len(mv))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._bus.write(self._addr(addr), self._mem(memaddr, addrsize) + bytes(buf))

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        return self._bus.write_read(self._addr(addr), self._mem(memaddr, addrsize), nbytes)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        mv = memoryview(buf).cast("B")
        mv[:] = self._bus.write_read(self._addr(addr), self._mem(memaddr, addrsize), len(mv))


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12
    # Full-scale input per attenuation, for read_uv() (approximate ESP32-S3 figures).
    _FULL_SCALE_UV = (950_000, 1_250_000, 1_750_000, 3_100_000)

    def __init__(self, pin, *, atten=-1):
        world = _w.current()
        gpio = _pin_id(pin)
        if world.adc_pins is not None and gpio not in world.adc_pins:
            raise ValueError("invalid pin")
        world.pins.get(gpio)
        self._world = world
        self._gpio = gpio
        self._atten = self.ATTN_0DB
        if atten != -1:
            self.atten(atten)

    def init(self, *, atten=-1):
        if atten != -1:
            self.atten(atten)

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("invalid attenuation")
        self._atten = atten

    def width(self, bits):
        if bits != 12:
            raise ValueError("invalid bit-width")

    def read_u16(self):
        return self._world.adc_read(self._gpio)

    def read(self):
        return self.read_u16() >> 4

    def read_uv(self):
        return self.read_u16() * self._FULL_SCALE_UV[self._atten] // 65535

    def __repr__(self):
        return "ADC(Pin(%d), atten=%d)" % (self._gpio, self._atten)


class PWM:
    """LEDC PWM (ports/esp32/machine_pwm.c): PWM(dest, freq, *, duty, duty_u16, duty_ns)."""

    _DEFAULT_FREQ = 5000
    _FREQ_MAX = 40_000_000

    def __init__(self, dest, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=False):
        world = _w.current()
        gpio = _pin_id(dest)
        world.pins.get(gpio)
        self._world = world
        self._out = world.pwm_out(gpio)
        self.init(freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns, invert=invert)

    def init(self, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=False):
        out = self._out
        if freq == -1:
            freq = out.freq if out.active and out.freq else self._DEFAULT_FREQ
        self._set_freq(freq)
        out.active = True
        if duty_u16 != -1:
            self.duty_u16(duty_u16)
        elif duty != -1:
            self.duty(duty)
        elif duty_ns != -1:
            self.duty_ns(duty_ns)
        out.changes += 1

    def _set_freq(self, f):
        if not isinstance(f, int) or not 0 < f <= self._FREQ_MAX:
            raise ValueError("frequency must be from 1Hz to 40MHz")
        self._out.freq = f

    def _live(self):
        if not self._out.active:
            raise OSError(errno.EINVAL, "PWM is deinitialised")

    def freq(self, value=None):
        if value is None:
            return self._out.freq
        self._live()
        self._set_freq(value)
        self._out.changes += 1
        return None

    def duty_u16(self, value=None):
        if value is None:
            return self._out.duty_u16
        self._live()
        if not isinstance(value, int) or not 0 <= value <= 65535:
            raise ValueError("duty_u16 must be from 0 to 65535")
        self._out.duty_u16 = value
        self._out.changes += 1
        return None

    def duty(self, value=None):
        # 10-bit duty, the ESP32 port's legacy interface
        if value is None:
            return self._out.duty_u16 >> 6
        if not 0 <= value <= 1023:
            raise ValueError("duty must be from 0 to 1023")
        return self.duty_u16(value * 65535 // 1023)

    def duty_ns(self, value=None):
        period_ns = 1_000_000_000 // self._out.freq
        if value is None:
            return self._out.duty_u16 * period_ns // 65535
        return self.duty_u16(min(65535, value * 65535 // period_ns))

    def deinit(self):
        self._out.active = False
        self._out.duty_u16 = 0

    def __repr__(self):
        return "PWM(Pin(%d), freq=%d, duty_u16=%d)" % (
            self._out.pin,
            self._out.freq,
            self._out.duty_u16,
        )


class WDT:
    """extmod/machine_wdt.c: WDT(id=0, timeout=5000). The World checks the timeout against the
    virtual clock; the simulator turns an expiry into a reset."""

    def __init__(self, id=0, timeout=5000):  # noqa: A002
        if id != 0:
            raise ValueError("WDT(%s) doesn't exist" % (id,))
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        self._world = _w.current()
        self._world.wdt_arm(timeout)

    def feed(self):
        self._world.wdt_feed()


def reset_cause():
    return _w.current().reset_cause


def unique_id():
    return _w.current().unique_id


def reset():
    raise ResetRequested(HARD_RESET)


def soft_reset():
    raise ResetRequested(SOFT_RESET)


def deepsleep(time_ms=None):
    raise ResetRequested(DEEPSLEEP_RESET)


def lightsleep(time_ms=None):
    return None


def idle():
    return None


def freq(hz=None):
    world = _w.current()
    if hz is None:
        return world.cpu_freq_hz
    if hz not in (20_000_000, 40_000_000, 80_000_000, 160_000_000, 240_000_000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    world.cpu_freq_hz = hz
    return None


def disable_irq():
    return 0


def enable_irq(state=0):
    return None
