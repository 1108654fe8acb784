"""The emulated board outside the MCU: everything the fake `machine` module talks to.

A `World` holds what the firmware's `machine` objects reach: I2C buses with devices attached by
address, GPIO pins (the simulation drives inputs, the firmware drives outputs, edges fire the
firmware's `Pin.irq` handlers), ADC inputs (each a callable returning a 16-bit reading at the
current time), PWM outputs, the watchdog, the reset cause and the chip's unique id.

The simulator makes one World per simulated device and installs it (`install(world)`); every
`machine` object binds to the World current when it is constructed. Time comes from the clock the
World is given, or from the clock installed in firmware.runtime (hostrt) when none is.

Nothing here trusts the firmware: a call the real part would refuse raises the error MicroPython
raises (ValueError, OSError with the errno the ESP32 port uses); questionable but legal use, such
as an output driven against an external level, is recorded in `errors`, not raised.
"""

import errno

# machine.reset_cause() values, as the ESP32 port numbers them (ports/esp32/modmachine.c)
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

# Pin modes, pulls and IRQ triggers, as the ESP32 port numbers them (ports/esp32/machine_pin.c)
PIN_IN = 1
PIN_OUT = 3
PIN_OPEN_DRAIN = 7
PULL_DOWN = 1
PULL_UP = 2
IRQ_RISING = 1
IRQ_FALLING = 2

I2C_FAULTS = ("nack", "timeout")

_current = None


class ResetRequested(BaseException):  # noqa: N818 - it is a request, not an error
    """machine.reset() and friends: the MCU restarts; the simulator catches this and reboots.

    A BaseException so the firmware's `except Exception` handlers cannot swallow a reset, just as
    nothing runs after machine.reset() on the device.
    """

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


def install(world):
    """Make `world` the one new `machine` objects bind to; returns the previous one."""
    global _current
    previous = _current
    _current = world
    return previous


def current():
    if _current is None:
        raise RuntimeError("no emulated World installed: backhug_host.emul.world.install(World())")
    return _current


def _oserror(code):
    # As MicroPython raises it: e.errno and e.args[0] are the code, str(e) "[Errno 19] ENODEV".
    return OSError(code, errno.errorcode[code])


def _runtime_now_us():
    from firmware import runtime

    return runtime._clock().now_us()


class I2CBus:
    """One I2C bus. Devices are objects with `i2c_write(data) -> bool` (False: a data byte was
    NACKed) and `i2c_read(n) -> bytes`; a read of registers is a write of the register address
    followed, after a repeated start, by the read (one transaction).

    Counters cover every transaction the firmware attempted: `transactions` (attempts),
    `failed` (attempts that ended in an error), `bytes` (data bytes moved by the transactions that
    succeeded, register address included, the address byte not).
    """

    def __init__(self, bus_id):
        self.id = bus_id
        self.devices = {}
        self.transactions = 0
        self.failed = 0
        self.bytes = 0
        self.freq_hz = None
        self.pins = None
        self.log = None  # set to a list to record (address, "w"/"r", bytes) per transaction
        self._faults = {}  # address -> [kind, remaining count or None for persistent]

    def attach(self, address, device):
        if not 0 <= address <= 0x7F:
            raise ValueError("I2C address 0x%x outside 0..0x7f" % address)
        if address in self.devices:
            raise ValueError("address 0x%02x already taken on bus %d" % (address, self.id))
        self.devices[address] = device
        return device

    def detach(self, address):
        return self.devices.pop(address)

    def inject(self, address, kind, count=1):
        """The next `count` transactions to `address` fail with `kind` ("nack": the device does
        not acknowledge, OSError ENODEV; "timeout": the bus hangs, OSError ETIMEDOUT).
        count=None makes the fault persistent until clear()."""
        if kind not in I2C_FAULTS:
            raise ValueError("fault kind %r not in %s" % (kind, I2C_FAULTS))
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        self._faults[address] = [kind, count]

    def clear(self, address=None):
        if address is None:
            self._faults.clear()
        else:
            self._faults.pop(address, None)

    def reset_counters(self):
        self.transactions = self.failed = self.bytes = 0

    def _begin(self, address):
        self.transactions += 1
        fault = self._faults.get(address)
        if fault is not None:
            kind, left = fault
            if left is not None:
                if left <= 1:
                    del self._faults[address]
                else:
                    fault[1] = left - 1
            self.failed += 1
            raise _oserror(errno.ETIMEDOUT if kind == "timeout" else errno.ENODEV)
        dev = self.devices.get(address)
        if dev is None:
            self.failed += 1
            raise _oserror(errno.ENODEV)
        return dev

    def _nack(self):
        self.failed += 1
        raise _oserror(errno.ENODEV)

    def _record(self, address, kind, data):
        self.bytes += len(data)
        if self.log is not None:
            self.log.append((address, kind, bytes(data)))

    def write(self, address, data):
        dev = self._begin(address)
        data = bytes(data)
        if dev.i2c_write(data) is False:
            self._nack()
        self._record(address, "w", data)

    def read(self, address, n):
        dev = self._begin(address)
        out = bytes(dev.i2c_read(n))
        self._record(address, "r", out)
        return out

    def write_read(self, address, data, n):
        dev = self._begin(address)
        data = bytes(data)
        if dev.i2c_write(data) is False:
            self._nack()
        out = bytes(dev.i2c_read(n))
        self._record(address, "wr", data + out)
        return out

    def acks(self, address):
        # What scan() sees: a device that answers its address (no fault pending on it).
        return address in self.devices and address not in self._faults


class PinState:
    """One GPIO: the firmware's configuration and output latch, and the outside world's drive.
    A GPIO keeps the same PinState for the World's life (a reset reconfigures it in place), so an
    emulated part may hold on to it and read `level` directly."""

    __slots__ = (
        "number",
        "mode",
        "pull",
        "out",
        "ext",
        "handler",
        "trigger",
        "level",
        "obj",
        "irq_count",
        "watchers",
    )

    def __init__(self, number):
        self.number = number
        self.mode = None  # None until configured (a reset pin is an input with no pull)
        self.pull = None
        self.out = 0  # output latch
        self.ext = None  # level driven from outside, None if nobody drives it
        self.handler = None
        self.trigger = 0
        self.level = 0
        self.obj = None  # the machine.Pin object for this GPIO (MicroPython keeps one per pin)
        self.irq_count = 0
        self.watchers = []  # simulation callbacks fn(gpio, level) on every level change


class Pins:
    """All GPIOs of the world. The simulation drives inputs with drive(n, level) (None releases
    the line); outputs are read with level(n)."""

    def __init__(self, world, valid):
        self._world = world
        self.valid = frozenset(valid)
        self._pins = {}

    def __contains__(self, n):
        return n in self._pins

    def get(self, n):
        if not isinstance(n, int) or n not in self.valid:
            raise ValueError("invalid pin")
        st = self._pins.get(n)
        if st is None:
            st = self._pins[n] = PinState(n)
            st.level = self._compute(st)
        return st

    @staticmethod
    def _compute(st):
        if st.mode == PIN_OUT:
            return st.out
        if st.mode == PIN_OPEN_DRAIN and st.out == 0:
            return 0
        if st.ext is not None:
            return st.ext
        return 1 if st.pull == PULL_UP else 0  # a floating input reads low in this model

    def update(self, st):
        """Recompute a pin's level after any change; fire its IRQ handler on a matching edge."""
        # the firmware's output writes land here (the mux select lines several times a tick)
        if st.mode == PIN_OUT:
            new = st.out
            if st.ext is not None and st.ext != new:
                self._world.errors.append(
                    "pin %d: output drives %d against an external %d" % (st.number, new, st.ext)
                )
        else:
            new = self._compute(st)
        if new == st.level:
            return
        st.level = new
        for fn in st.watchers:
            fn(st.number, new)
        if st.handler is not None:
            self.update_irq(st, new)

    @staticmethod
    def update_irq(st, new):
        """The IRQ part of update() once the level changed to `new`: the handler on a matching
        edge."""
        edge = IRQ_RISING if new else IRQ_FALLING
        if st.trigger & edge:
            st.irq_count += 1
            st.handler(st.obj)

    def watch(self, n, fn):
        """Call fn(gpio, level) whenever pin n changes level (for emulated parts, not firmware)."""
        self.get(n).watchers.append(fn)

    def drive(self, n, level):
        st = self.get(n)
        st.ext = None if level is None else (1 if level else 0)
        self.update(st)

    def release(self, n):
        self.drive(n, None)

    def level(self, n):
        return self.get(n).level

    def mode(self, n):
        return self.get(n).mode

    def reset(self):
        # MCU reset: every GPIO returns to an unconfigured input; outside drives stay.
        for st in self._pins.values():
            st.mode = None
            st.pull = None
            st.out = 0
            st.handler = None
            st.trigger = 0
            st.obj = None
            st.level = self._compute(st)


class PwmOut:
    """What a PWM pin puts out: frequency, 16-bit duty, and whether the PWM runs at all."""

    def __init__(self, pin):
        self.pin = pin
        self.freq = 0
        self.duty_u16 = 0
        self.active = False
        self.changes = 0  # how many times freq or duty was set

    def level_pct(self):
        return self.duty_u16 * 100 / 65535 if self.active else 0.0

    def __repr__(self):
        return "PwmOut(pin=%d, freq=%d, duty_u16=%d, active=%s)" % (
            self.pin,
            self.freq,
            self.duty_u16,
            self.active,
        )


class World:
    def __init__(
        self, clock=None, pins=range(64), adc_pins=None, unique_id=b"\x24\x6f\x28\xb4\x4a\x01"
    ):
        """clock: an object with now_us() (hostrt.VirtualClock); default the one installed in
        firmware.runtime. pins: the GPIO numbers that exist. adc_pins: the pins machine.ADC
        accepts (default every pin)."""
        # now_us() -> int: the time, a plain attribute (read on every conversion and pin edge)
        self.now_us = clock.now_us if clock is not None else _runtime_now_us
        self.errors = []
        self.pins = Pins(self, pins)
        self.adc_pins = None if adc_pins is None else frozenset(adc_pins)
        self._buses = {}
        self._adc = {}
        self.adc_conversions = 0
        self.before_conversion = None  # fn() called before every ADC conversion, if set
        self.shared = {}  # state emulated parts share, by a key of their choosing
        self._pwm = {}
        self.reset_cause = PWRON_RESET
        self.unique_id = bytes(unique_id)
        self.cpu_freq_hz = 160_000_000
        self.boots = 1
        self.wdt_timeout_ms = None  # None: not armed
        self.wdt_last_feed_us = None
        self.wdt_feeds = 0
        self.wdt_expired_at_us = None

    # -- I2C --------------------------------------------------------------------------------

    def i2c(self, bus_id):
        bus = self._buses.get(bus_id)
        if bus is None:
            bus = self._buses[bus_id] = I2CBus(bus_id)
        return bus

    # -- ADC --------------------------------------------------------------------------------

    def adc_source(self, pin, fn):
        """The voltage on `pin` as a callable returning 0..65535 (what read_u16 gives)."""
        self._adc[pin] = fn

    def adc_read(self, pin):
        hook = self.before_conversion
        if hook is not None:
            hook()
        self.adc_conversions += 1
        fn = self._adc.get(pin)
        if fn is None:
            return 0  # nothing connected: the input sits at ground in this model
        v = fn()
        if type(v) is not int:
            v = int(v)
        return 0 if v < 0 else 65535 if v > 65535 else v  # the ADC saturates at its rails

    # -- PWM --------------------------------------------------------------------------------

    def pwm_out(self, pin):
        out = self._pwm.get(pin)
        if out is None:
            out = self._pwm[pin] = PwmOut(pin)
        return out

    # -- watchdog ---------------------------------------------------------------------------

    def wdt_arm(self, timeout_ms):
        # Re-arming (a second machine.WDT) changes the timeout and counts as a feed, as on ESP32.
        self._wdt_check_at(self.now_us())
        self.wdt_timeout_ms = timeout_ms
        self.wdt_last_feed_us = self.now_us()

    def wdt_feed(self):
        now = self.now_us()
        self._wdt_check_at(now)
        if self.wdt_expired_at_us is None:
            self.wdt_last_feed_us = now
            self.wdt_feeds += 1

    def wdt_deadline_us(self):
        """When the watchdog fires unless fed (None when not armed)."""
        if self.wdt_timeout_ms is None:
            return None
        return self.wdt_last_feed_us + self.wdt_timeout_ms * 1000

    def _wdt_check_at(self, now):
        deadline = self.wdt_deadline_us()
        if deadline is not None and self.wdt_expired_at_us is None and now > deadline:
            self.wdt_expired_at_us = deadline

    def watchdog_expired(self):
        """True once the watchdog has not been fed in time (sticky until reboot()). The simulator
        checks this and reboots the device with reboot(WDT_RESET)."""
        self._wdt_check_at(self.now_us())
        return self.wdt_expired_at_us is not None

    # -- reset ------------------------------------------------------------------------------

    def reboot(self, cause):
        """The MCU restarts: pins unconfigured, PWMs stopped, watchdog off, reset cause set.
        Chips on the buses keep their state (a PCA9685 keeps pulsing through an MCU reset) and
        the outside world (drives, ADC sources) stays."""
        self.pins.reset()
        for out in self._pwm.values():
            out.active = False
            out.duty_u16 = 0
        self.wdt_timeout_ms = None
        self.wdt_last_feed_us = None
        self.wdt_expired_at_us = None
        self.reset_cause = cause
        self.boots += 1
