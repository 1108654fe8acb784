# The virtual device's `machine`: each object stands for one on the host, where the simulator's
# ESP32-flavoured `machine` (backhug_host/shims/machine.py) drives the emulated chips. Arguments
# are checked there, so errors have the types and messages the ESP32 port gives; the calls a
# control tick makes many times (pin writes and reads, ADC conversions, register access) have
# compact frames of their own.
import struct

import vlink

_cfg = vlink.config["machine"]
PWRON_RESET = _cfg["PWRON_RESET"]
HARD_RESET = _cfg["HARD_RESET"]
WDT_RESET = _cfg["WDT_RESET"]
DEEPSLEEP_RESET = _cfg["DEEPSLEEP_RESET"]
SOFT_RESET = _cfg["SOFT_RESET"]

_MODULE = 0  # object id of the host's machine module itself


def _new(kind, *args, **kwargs):
    return vlink.call(_MODULE, "new", kind, *args, **kwargs)


def _pin_arg(p):
    return p._gpio if isinstance(p, Pin) else p  # the host makes its own Pin of that GPIO


class _Obj:
    def _call(self, method, *args, **kwargs):
        return vlink.call(self._id, method, *args, **kwargs)


class Pin(_Obj):
    IN = _cfg["Pin.IN"]
    OUT = _cfg["Pin.OUT"]
    OPEN_DRAIN = _cfg["Pin.OPEN_DRAIN"]
    PULL_UP = _cfg["Pin.PULL_UP"]
    PULL_DOWN = _cfg["Pin.PULL_DOWN"]
    IRQ_RISING = _cfg["Pin.IRQ_RISING"]
    IRQ_FALLING = _cfg["Pin.IRQ_FALLING"]

    def __init__(self, id, *args, **kwargs):  # noqa: A002 - MicroPython's parameter name
        self._gpio = id
        self._id = _new("Pin", id, *args, **kwargs)
        self._set0 = struct.pack("<HB", self._id, 0)
        self._set1 = struct.pack("<HB", self._id, 1)
        self._get = struct.pack("<H", self._id)
        self._irq = None

    def init(self, *args, **kwargs):
        self._call("init", *args, **kwargs)

    def value(self, *x):
        if not x:
            return vlink.request(vlink.PIN_GET, self._get)[0]
        vlink.post(vlink.PIN_SET, self._set1 if x[0] else self._set0)

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, wake=None, hard=False):
        hid = None
        if handler is not None:
            pin = self

            def call(_level):
                handler(pin)

            hid = id(call)
            vlink.handlers[hid] = call
        if self._irq is not None:
            vlink.handlers.pop(self._irq, None)
        self._irq = hid
        return self._call("irq", None if hid is None else ("__handler__", hid), trigger,
                          wake=wake, hard=hard)  # fmt: skip

    def __repr__(self):
        return "Pin(%d)" % self._gpio


class I2C(_Obj):
    def __init__(self, id, *, scl=None, sda=None, freq=400_000, timeout=50_000):  # noqa: A002
        self._id = _new("I2C", id, scl=_pin_arg(scl), sda=_pin_arg(sda), freq=freq,
                        timeout=timeout)  # fmt: skip

    def scan(self):
        return self._call("scan")

    def writeto(self, addr, buf, stop=True):
        return self._call("writeto", addr, bytes(buf), stop)

    def writevto(self, addr, vector, stop=True):
        return self._call("writevto", addr, [bytes(b) for b in vector], stop)

    def readfrom(self, addr, nbytes, stop=True):
        return self._call("readfrom", addr, nbytes, stop)

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self._call("readfrom", addr, len(buf), stop)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        if addrsize != 8 or not 0 <= addr <= 0x7F or not 0 <= memaddr <= 0xFF:
            return self._call("writeto_mem", addr, memaddr, bytes(buf), addrsize=addrsize)
        vlink.request(vlink.I2C_WMEM, struct.pack("<HBB", self._id, addr, memaddr) + buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        if addrsize != 8 or not 0 <= addr <= 0x7F or not 0 <= memaddr <= 0xFF:
            return self._call("readfrom_mem", addr, memaddr, nbytes, addrsize=addrsize)
        frame = struct.pack("<HBBH", self._id, addr, memaddr, nbytes)
        return bytes(vlink.request(vlink.I2C_RMEM, frame))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf), addrsize=addrsize)


class ADC(_Obj):
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12

    def __init__(self, pin, *, atten=-1):
        self._id = _new("ADC", _pin_arg(pin), atten=atten)
        self._read = struct.pack("<H", self._id)

    def init(self, *, atten=-1):
        self._call("init", atten=atten)

    def atten(self, atten):
        self._call("atten", atten)

    def width(self, bits):
        self._call("width", bits)

    def read_u16(self):
        return struct.unpack("<H", vlink.request(vlink.ADC_U16, self._read))[0]

    def read(self):
        return self.read_u16() >> 4

    def read_uv(self):
        return self._call("read_uv")


class PWM(_Obj):
    def __init__(self, dest, freq=-1, **kwargs):
        self._id = _new("PWM", _pin_arg(dest), freq, **kwargs)

    def init(self, freq=-1, **kwargs):
        self._call("init", freq, **kwargs)

    def freq(self, *value):
        return self._call("freq", *value)

    def duty_u16(self, *value):
        return self._call("duty_u16", *value)

    def duty(self, *value):
        return self._call("duty", *value)

    def duty_ns(self, *value):
        return self._call("duty_ns", *value)

    def deinit(self):
        self._call("deinit")


class WDT(_Obj):
    def __init__(self, id=0, timeout=5000):  # noqa: A002
        self._id = _new("WDT", id, timeout)

    def feed(self):
        self._call("feed")


def reset_cause():
    return vlink.call(_MODULE, "reset_cause")


def unique_id():
    return vlink.call(_MODULE, "unique_id")


def reset():
    vlink.call(_MODULE, "reset")  # the host ends this interpreter: the call never returns
    while True:
        pass


def soft_reset():
    reset()


def freq(*hz):
    return vlink.call(_MODULE, "freq", *hz)


def idle():
    vlink.idle(0)


def lightsleep(time_ms=0):
    vlink.idle(time_ms * 1000, early=False)


def deepsleep(time_ms=0):
    vlink.call(_MODULE, "deepsleep", time_ms)
    while True:
        pass


def disable_irq():
    return 0


def enable_irq(state=0):
    return None
