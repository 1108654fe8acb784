# The stop/pair button. The pin interrupt (both edges) only sets a ThreadSafeFlag; the run() task
# does the work: it waits debounce_ms after an edge and believes the level only if it is still
# there, then reports
#   PRESSED    on the debounced press edge (the stop button acts on this, at once)
#   LONG       when held past long_ms       (at idle: pairing window)
#   VERY_LONG  when held past very_long_ms  (at idle: clear bonds)
#   SHORT      on a release before long_ms
# Events collect in a bit mask; `flag` is set on each, take() returns and clears the mask.

from firmware.drivers.fault import not_ready
from firmware.runtime import ThreadSafeFlag, const, sleep_ms, ticks_diff, ticks_ms

PRESSED = const(1)
SHORT = const(2)
LONG = const(4)
VERY_LONG = const(8)

_HELD_POLL_MS = const(10)  # while held, how often the level and the hold time are checked


class Button:
    def __init__(self, pin, cfg):
        self.part = "button"
        self._pin = pin
        self._active = 0 if cfg["active_low"] else 1
        self._debounce_ms = cfg["debounce_ms"]
        self._long_ms = cfg["long_ms"]
        self._very_long_ms = cfg["very_long_ms"]
        self.flag = ThreadSafeFlag()  # set on every event
        self._edge = ThreadSafeFlag()  # set by the interrupt
        self._events = 0
        self._down = False
        self._t_down = 0
        self._ready = False

    def init(self):
        pin = self._pin
        pin.irq(self._isr, pin.IRQ_RISING | pin.IRQ_FALLING)
        self._ready = True
        if self._level():
            self._edge.set()  # held at start-up: run() treats it as a press

    def _isr(self, pin):
        self._edge.set()

    def _level(self):
        return self._pin.value() == self._active

    def is_pressed(self):
        # The debounced state.
        return self._down

    def take(self):
        e = self._events
        self._events = 0
        return e

    def _emit(self, event):
        self._events |= event
        self.flag.set()

    async def run(self):
        if not self._ready:
            raise not_ready(self.part)
        debounce = self._debounce_ms
        sent = 0
        while True:
            if not self._down:
                # Waiting for a person to press: the only unbounded wait, and nothing hangs on it.
                await self._edge.wait()
                await sleep_ms(debounce)
                if self._level():
                    self._down = True
                    self._t_down = ticks_ms()
                    sent = 0
                    self._emit(PRESSED)
                continue
            await sleep_ms(_HELD_POLL_MS)
            held = ticks_diff(ticks_ms(), self._t_down)
            if self._level():
                if held >= self._long_ms and not sent & LONG:
                    sent |= LONG
                    self._emit(LONG)
                if held >= self._very_long_ms and not sent & VERY_LONG:
                    sent |= VERY_LONG
                    self._emit(VERY_LONG)
                continue
            await sleep_ms(debounce)
            if self._level():
                continue  # a bounce while held
            self._down = False
            self._edge.clear()  # edges of this release are handled
            if held < self._long_ms:
                self._emit(SHORT)
