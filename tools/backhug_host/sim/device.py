"""SimDevice: the physics (person or rig, fingers, sensors, leg rest) wired to the emulated chips.

One SimDevice makes one World (emul/world.py), attaches a PCA9685 emulator per board chip and a
mux+ADC per force ADC (emul.attach_board), the leg-rest current sense, limit switches and button on
the World's pins, and installs the World so that the fake `machine` module (and so firmware/hal.py)
talks to it. The firmware then runs unchanged against it.

Time. The physics lives on a 1 ms grid of the virtual clock. It is advanced lazily: before every
ADC conversion (a force or the motor current) and after every output change (an I2C write to a
PWM chip, a PWM duty, the output-enable line) the device integrates up to the current millisecond
with the commands as they were, then takes the new commands. Fingers move exactly (integer
nanometres), so how often that happens does not change where they end up; the tissue's work
and the leg-rest position are floats, whose last bits do depend on it, so the simulator keeps
the moments it catches up at the same from version to version.
Pin levels the firmware reads without an ADC conversion (limit switches, the button) and the
scheduled events (button presses, the person getting up) need someone to advance the physics at
the right moment: the host task `run()` sleeps until the next such moment (a predicted switch
crossing, an event, the watchdog deadline) and does. Without it they catch up at the next ADC read
or output change.

Ground truth for tests: finger positions and forces, contact heights, leg-rest position and
current, the largest force each finger has seen; `inject()` and faults.py break things.
"""

import asyncio
import math

from backhug_host import emul
from backhug_host.emul.world import PwmOut, World
from backhug_host.sim.actuators import RAW_MAX, FingerActuators, ForceSensors
from backhug_host.sim.legrest import LegRestMechanics
from backhug_host.sim.person import Nobody, Person
from backhug_host.sim.rig import Rig
from firmware import boardspec


class WatchdogExpired(Exception):  # noqa: N818 - an event the simulator reports
    """The emulated watchdog was not fed in time (the device would reset)."""


class _HookedPwmOut(PwmOut):
    # A PWM output that tells the device when its duty or state changes, so the H-bridge (or any
    # PWM-driven part) takes the new command at the moment it is given.

    def __init__(self, pin, hook):
        self._hook = None
        super().__init__(pin)
        self._hook = hook

    @property
    def duty_u16(self):
        return self._duty

    @duty_u16.setter
    def duty_u16(self, value):
        self._duty = value
        if self._hook is not None:
            self._hook()

    @property
    def active(self):
        return self._active

    @active.setter
    def active(self, value):
        self._active = value
        if self._hook is not None:
            self._hook()


class _SimWorld(World):
    # The World with two hooks for the physics: every ADC conversion first brings the physics up
    # to now, every PWM change is taken at once.

    def __init__(self, device, clock):
        self._device = device
        self._hooked_pwm = {}
        super().__init__(clock)
        self.before_conversion = device.catch_up

    def pwm_out(self, pin):
        out = self._hooked_pwm.get(pin)
        if out is None:
            out = self._hooked_pwm[pin] = _HookedPwmOut(pin, self._device.outputs_changed)
        return out

    def reboot(self, cause):
        super().reboot(cause)
        for out in self._hooked_pwm.values():
            out.active = False
            out.duty_u16 = 0


class _ChipPort:
    # Sits between the bus and a PCA9685 emulator: after each write the fingers take the new
    # pulse widths.

    def __init__(self, chip, hook, address):
        self.chip = chip
        self._hook = hook
        self.address = address

    def i2c_write(self, data):
        try:
            return self.chip.i2c_write(data)
        finally:
            self._hook(self.address)

    def i2c_read(self, n):
        return self.chip.i2c_read(n)


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


class _Event:
    def __init__(self, t_ms, seq, fn, what):
        self.t_ms = t_ms
        self.seq = seq
        self.fn = fn
        self.what = what


class SimDevice:
    """A simulated BackHug.

    board_id: a board under boards/ (default the sim board). person: None (nobody lies there),
    "rig" (the factory test rig), a dict of Person options, or a ready Person/Rig/Nobody built
    for this board. seed: makes sensor and current noise repeatable. clock: the virtual clock
    (default the one installed in firmware.runtime). install: make this device's World the one
    the fake `machine` module uses (needed before hal.build()).
    """

    def __init__(self, board_id="sim", person=None, seed=0, clock=None, install=True, noise=True):
        self.board = boardspec.load(board_id)
        board = self.board
        self.seed = seed
        self.world = _SimWorld(self, clock)
        self._now_us = self.world.now_us
        self.load = self._make_load(person)
        self.fingers = FingerActuators(board, self.load)
        self.sensors = ForceSensors(board, seed=seed, noise_counts=0.7 if noise else 0.0)
        self.legrest = LegRestMechanics(board, self.load, seed=seed, noise_ma=5.0 if noise else 0)
        n = board.finger_count
        # wiring as built; faults can cross wires (swapped channels)
        self.sensor_of = list(range(n))  # sensor slot of finger i measures finger sensor_of[i]
        self.actuator_of = list(range(n))  # PWM channel of finger i drives actuator_of[i]
        # physics time: whole ms since this device was made (the grid is aligned to that moment,
        # so a replay from another start time lands on the same grid)
        self.start_us = self._now_us()
        self.t_ms = 0
        self._events = []
        self._seq = 0
        self._busy = False
        self._waiter = None  # the host task's pending wake-up (a future), if it sleeps
        self._wake_at = None  # when the host task must wake up (loop time), None: never
        self._timer = None  # the asyncio timer for it (see _set_wake) and its time
        self._timer_when = None
        self._rescheduled_us = None  # when a finger chip's write last moved the wake-up
        self.log = []  # (elapsed_ms, what) of applied events and injected faults
        self.watchdog_expiries = 0

        self.chips = emul.attach_board(self.world, board, force_source=self._force_u16)
        # The muxes read the sensors through _mux_source: force_source without its catch-up
        # (a conversion has just run before_conversion) and one call less, 26 times a tick.
        for a, mux in enumerate(self.chips.muxes):
            mux.source = self._mux_source(a)
        self._channels = board.fingers["channels"]
        # per chip: its fingers and their channels, for _refresh after a write to that chip
        self._chip_fingers = {}
        for addr in self.chips.chips:
            fs = [i for i, (a, _) in enumerate(self._channels) if a == addr]
            self._chip_fingers[addr] = (addr, tuple(fs), tuple(self._channels[i][1] for i in fs))
        bus = self.world.i2c(board.i2c["id"])
        for addr, chip in self.chips.chips.items():
            bus.detach(addr)
            bus.attach(addr, _ChipPort(chip, self.outputs_changed, addr))
        self.bus = bus
        lr = board.legrest
        self.world.adc_source(lr["current_adc"], self._current_u16)
        self.world.pins.watch(board.pwm["oe_pin"], lambda gpio, level: self.outputs_changed())
        self._in1 = self.world.pwm_out(lr["in1"])
        self._in2 = self.world.pwm_out(lr["in2"])
        self._switch_pins = {"top": lr["limit_top"], "bottom": lr["limit_bottom"]}
        self._switches = tuple(self._switch_pins.items())
        self._switch_levels = {}
        self._update_switches()
        btn = board.button
        self._button_pin = btn["pin"]
        self._button_active = 0 if btn["active_low"] else 1
        self.world.pins.drive(self._button_pin, None)  # a switch that is open drives nothing
        if install:
            self.install()
        self._refresh()

    def _make_load(self, person):
        if person is None:
            return Nobody(self.board)
        if isinstance(person, str):
            if person == "rig":
                return Rig(self.board)
            if person == "nobody":
                return Nobody(self.board)
            raise ValueError("person %r: None, 'rig', 'nobody', a dict or a Person" % person)
        if isinstance(person, dict):
            return Person(self.board, **person)
        return person

    def set_load(self, person):
        """Someone else lies down now (same choices as the constructor's person)."""
        self.catch_up()
        self.load = self._make_load(person)
        self.fingers.load = self.load
        self.legrest.load = self.load
        self.load.set_legrest(min(1.0, max(0.0, self.legrest.pos)))
        self.log.append((self.t_ms, "now on the device: " + self.load.describe()))

    def install(self):
        """Make this device's World the one the fake `machine` module uses; returns the previous
        World. hal.build() after this builds the firmware's drivers on this device."""
        emul.use_fake_machine()
        return emul.install(self.world)

    def build_hal(self, init=True):
        """The firmware's hardware (firmware.hal.build) on this device."""
        self.install()
        from firmware import hal

        return hal.build(self.board, init=init)

    # -- time ----------------------------------------------------------------------------------

    def _now_ms(self):
        return (self._now_us() - self.start_us) // 1000

    def elapsed_ms(self):
        """Milliseconds since the device was made (the physics' time base)."""
        return self._now_ms()

    def catch_up(self):
        """Bring the physics (and due events) up to the current millisecond."""
        # called before every ADC conversion: the usual answer (nothing to do) comes first
        now = (self._now_us() - self.start_us) // 1000
        if now == self.t_ms and not (self._events and self._events[0].t_ms <= now):
            return
        if self._busy:
            return  # an event or pin edge in progress called back in: it is already handled
        self._busy = True
        try:
            while self._events and self._events[0].t_ms <= now:
                ev = self._events.pop(0)
                self._advance_to(max(ev.t_ms, self.t_ms))
                self.log.append((self.t_ms, ev.what))
                ev.fn()
                self._refresh()
            self._advance_to(now)
        finally:
            self._busy = False

    def outputs_changed(self, chip=None):
        """An output changed now (on PWM chip `chip` only, when given): finish the physics with
        the old commands, take the new ones."""
        if self._busy:
            return
        self.catch_up()
        self._refresh(chip)
        if chip is None:
            self._wake_host()
            return
        # A finger chip's write, twice a control tick. It used to wake the host task like any
        # output change; the task then caught up (done above), checked the watchdog and set its
        # wake-up again from now. This does the same without the round trip through the event
        # loop: it wakes the task only when the watchdog is overdue, else it only moves the
        # wake-up. (Moved, not kept: the moments the task catches up the physics change the
        # float sums of the tissue's work, so they stay the ones they always were.)
        w = self._waiter
        if w is None or w.done():
            return
        now = self._now_us()
        if now == self._rescheduled_us:
            return  # the tick's other chip: the task would have woken once
        self._rescheduled_us = now
        world = self.world
        if world.wdt_timeout_ms is not None and (
            now > world.wdt_last_feed_us + world.wdt_timeout_ms * 1000  # wdt_deadline_us()
        ):
            w.set_result(None)
        else:
            self._set_wake(w.get_loop(), self._next_wake_ms())

    sync = outputs_changed

    def _wake_host(self):
        # new commands or events: the host task recomputes when it must next wake up
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _advance_to(self, t_ms):
        dt = t_ms - self.t_ms
        if dt <= 0:
            return
        self.legrest.advance(dt)
        self.fingers.advance(dt)
        self.t_ms = t_ms
        self._update_switches()

    def _refresh(self, chip=None):
        # the commands the emulated outputs give now (a chip write changes only its fingers)
        chips = self.chips.chips
        fingers = self.fingers
        actuator_of = self.actuator_of
        groups = self._chip_fingers
        for addr, idx, chans in groups.values() if chip is None else (groups[chip],):
            pulses = chips[addr].pulses_us(chans)
            fingers.command_pulses([actuator_of[i] for i in idx], pulses)
        if chip is not None:
            return
        in1 = self._in1.duty_u16 / 65535 if self._in1.active else 0.0
        in2 = self._in2.duty_u16 / 65535 if self._in2.active else 0.0
        self.legrest.set_inputs(in1, in2)

    def _update_switches(self):
        active_low = self.legrest.active_low
        for which, gpio in self._switches:
            closed = self.legrest.switch_closed(which)
            if self._switch_levels.get(which) == closed:
                continue
            self._switch_levels[which] = closed
            if closed:
                self.world.pins.drive(gpio, 0 if active_low else 1)
            else:
                self.world.pins.drive(gpio, None)  # open switch: the pull resistor decides

    # -- ADC sources ---------------------------------------------------------------------------

    def _force_u16(self, i):
        # what the ADC reads for finger i's sensor now (16 bits)
        self.catch_up()
        j = self.sensor_of[i]
        return self.sensors.u16(j, self.fingers.force_n(j), self.t_ms)

    def _mux_source(self, adc_index):
        # The source of force ADC adc_index's mux: channel -> _force_u16(finger on it), 0 for a
        # free input, without the catch-up and with fingers.force_n and sensors.u16 inlined.
        finger_at = [None] * 16
        for i, (a, ch) in enumerate(self.board.force["channels"]):
            if a == adc_index:
                finger_at[ch] = i
        fingers = self.fingers
        sensors = self.sensors

        def read(ch):
            i = finger_at[ch]
            if i is None:
                return 0
            j = self.sensor_of[i]
            f = fingers.load.force_n(j, fingers.pos_nm[j] / 1000.0)
            if f > fingers.max_force_n[j]:
                fingers.max_force_n[j] = f
            return sensors.raw12(j, f, self.t_ms) * 65535 // RAW_MAX

        return read

    def _current_u16(self):
        return self.legrest.current_u16(self.t_ms)

    # -- scheduled events ----------------------------------------------------------------------

    def at(self, elapsed_ms, fn, what="event"):
        """Run fn() when the device has been up elapsed_ms (now if that is past)."""
        t = int(elapsed_ms)
        self._seq += 1
        ev = _Event(max(t, self.t_ms), self._seq, fn, what)
        self._events.append(ev)
        self._events.sort(key=lambda e: (e.t_ms, e.seq))
        self._wake_host()

    def after(self, delay_ms, fn, what="event"):
        self.at(self.elapsed_ms() + delay_ms, fn, what)

    def set_button(self, pressed):
        level = self._button_active if pressed else None
        self.world.pins.drive(self._button_pin, level)

    def press_button(self, at_ms=None, hold_ms=150):
        """Press the button at elapsed time at_ms (default now) and release it hold_ms later."""
        start = self.elapsed_ms() if at_ms is None else at_ms
        self.at(start, lambda: self.set_button(True), "button pressed")
        self.at(start + hold_ms, lambda: self.set_button(False), "button released")

    # -- the host task -------------------------------------------------------------------------

    def _next_wake_ms(self):
        # milliseconds until the next moment a pin must change or an event fire (None: never)
        now = (self._now_us() - self.start_us) // 1000
        wait = None
        if self._events:
            wait = self._events[0].t_ms - now
        lr = self.legrest
        if lr.in1 != lr.in2 and not lr.blocked:  # driven (a zero drive never moves it)
            v = lr.speed_per_s() / 1000.0
            if v > 0:
                gap = -lr.pos if lr.pos <= 0.0 else (1.0 - lr.pos if lr.pos < 1.0 else None)
            else:
                gap = lr.pos - 1.0 if lr.pos >= 1.0 else (lr.pos if lr.pos > 0.0 else None)
            if gap is not None:
                w = math.ceil(gap / abs(v)) if gap > 0 else 1
                wait = w if wait is None or w < wait else wait
        world = self.world
        if world.wdt_timeout_ms is not None and world.wdt_expired_at_us is None:
            deadline = world.wdt_last_feed_us + world.wdt_timeout_ms * 1000  # wdt_deadline_us()
            w = (deadline - self.start_us) // 1000 + 1 - now
            wait = w if wait is None or w < wait else wait
        if wait is None:
            return None
        return max(1, wait)

    async def run(self):
        """Host task: keeps limit switches, the button and scheduled events on time, and raises
        WatchdogExpired when the watchdog was not fed (what the caller does then is its choice:
        the device would reset). Cancel it when done."""
        # A plain future and a timer, not wait_for: Python 3.11's wait_for swallows a
        # cancellation that arrives together with the wake-up, and this task must stop when told.
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.catch_up()
                if self.world.watchdog_expired():
                    self.watchdog_expiries += 1
                    raise WatchdogExpired(
                        "watchdog expired at +%d ms"
                        % ((self.world.wdt_expired_at_us - self.start_us) // 1000)
                    )
                delay = self._next_wake_ms()
                self._waiter = loop.create_future()
                self._set_wake(loop, delay)
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                    self._wake_at = None
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _set_wake(self, loop, delay):
        # The host task wakes at loop.time() + delay ms, the moment call_later(delay / 1000)
        # gives (delay None: no wake-up). The asyncio timer behind it is set a millisecond early
        # and moved only when the wake-up comes sooner than that: it is moved to a later moment
        # every control tick (the watchdog deadline, the tick's microsecond), and a timer per
        # tick fills the event loop's heap with cancelled ones. An early timer sets itself again.
        if delay is None:
            self._wake_at = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        when = loop.time() + delay / 1000
        self._wake_at = when
        timer = self._timer
        if timer is not None:
            if self._timer_when <= when:
                return
            timer.cancel()
        self._timer_when = when - 0.001
        self._timer = loop.call_at(self._timer_when, self._alarm)

    def _alarm(self):
        self._timer = None
        when = self._wake_at
        if when is None or self._waiter is None:
            return
        if self._timer_when == when:
            _wake(self._waiter)  # what the wake-up's own timer did
        else:
            self._timer_when = when
            self._timer = self._waiter.get_loop().call_at(when, self._alarm)

    # -- faults --------------------------------------------------------------------------------

    def inject(self, spec):
        """Inject a fault given as "kind:target" (see faults.py); returns the Fault."""
        from backhug_host.sim import faults

        fault = faults.parse(spec, self.board)
        self.catch_up()
        fault.apply(self)
        self._refresh()
        self.log.append((self.elapsed_ms(), "fault " + fault.spec))
        return fault

    # -- ground truth --------------------------------------------------------------------------

    def finger_um(self, i):
        self.catch_up()
        return self.fingers.pos_um(i)

    def positions_um(self):
        self.catch_up()
        return [self.fingers.pos_um(i) for i in range(self.board.finger_count)]

    def forces_n(self):
        self.catch_up()
        return [self.fingers.force_n(i) for i in range(self.board.finger_count)]

    def peak_positions_um(self):
        """The highest position each finger has reached so far."""
        self.catch_up()
        return [nm / 1000.0 for nm in self.fingers.peak_nm]

    def max_forces_n(self):
        self.catch_up()
        return list(self.fingers.max_force_n)

    def contacts_um(self):
        return [self.load.contact_um(i) for i in range(self.board.finger_count)]

    def legrest_position(self):
        self.catch_up()
        return self.legrest.pos

    def legrest_current_ma(self):
        self.catch_up()
        return self.legrest.current_ma(noise=False)

    def describe(self):
        return "%s on board %s, seed %d" % (self.load.describe(), self.board.id, self.seed)
