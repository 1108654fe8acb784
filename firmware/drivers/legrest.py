# Leg rest: a DC motor on an H-bridge driven by two PWM inputs, a limit switch at each end and a
# motor-current sense on an ADC pin.
#   up:    in1 = duty, in2 = 0        brake: both fully on (motor shorted, holds against the legs)
#   down:  in1 = 0,    in2 = duty     coast: both off (motor free)
# The driver never drives into a closed limit switch, and poll() (call it every few tens of ms)
# stops the motor at a limit, when a move lasts longer than the travel-time limit, and on
# over-current (an obstruction) once the start-up inrush has passed. What to do next (back off,
# retry, give up) is the caller's policy (firmware/legrestctl.py).

from firmware.drivers.fault import not_ready
from firmware.runtime import const, ticks_diff, ticks_ms

IDLE = const(0)
MOVING_UP = const(1)
MOVING_DOWN = const(2)
REACHED_TOP = const(3)
REACHED_BOTTOM = const(4)
TIMEOUT = const(5)
OVERCURRENT = const(6)
BOTH_LIMITS = const(7)  # both switches closed at once: wiring or switch fault
STATUS_NAMES = (
    "idle",
    "moving up",
    "moving down",
    "reached top",
    "reached bottom",
    "travel timeout",
    "over-current",
    "both limits closed",
)

_FULL = const(65535)
_RAW_MAX = const(4095)


class LegRest:
    def __init__(self, in1, in2, limit_top, limit_bottom, current_adc, cfg):
        self.part = "legrest"
        self._in1 = in1
        self._in2 = in2
        self._top = limit_top
        self._bottom = limit_bottom
        self._adc = current_adc
        self._closed = 0 if cfg["limit_active_low"] else 1
        self._duty = cfg["duty_pct"] * _FULL // 100
        self._full_ma = cfg["current_full_scale_ma"]
        self._limit_ma = cfg["current_limit_ma"]
        self._travel_ms = cfg["travel_ms"]
        self._inrush_ms = cfg.get("inrush_ms", 200)
        self.status = IDLE
        self.direction = 0  # +1 up, -1 down, 0 stopped
        self.last_ma = 0  # current at the last poll() while moving
        self._t0 = 0
        self._ready = False

    def init(self):
        self._ready = True
        self.brake()

    def _check(self):
        if not self._ready:
            raise not_ready(self.part)

    def _drive(self, a, b):
        self._in1.duty_u16(a)
        self._in2.duty_u16(b)

    def _stop(self, status):
        self._drive(_FULL, _FULL)
        self.direction = 0
        self.status = status

    def at_top(self):
        return self._top.value() == self._closed

    def at_bottom(self):
        return self._bottom.value() == self._closed

    def current_ma(self):
        return (self._adc.read_u16() >> 4) * self._full_ma // _RAW_MAX

    def up(self):
        # Starts (or keeps) moving up; False, with the motor braked, if the top switch (or both)
        # is closed. Repeating up() while moving up does not restart the travel timer.
        return self._move(1)

    def down(self):
        return self._move(-1)

    def _move(self, d):
        self._check()
        top = self.at_top()
        bottom = self.at_bottom()
        if top and bottom:
            self._stop(BOTH_LIMITS)
            return False
        if d > 0 and top:
            self._stop(REACHED_TOP)
            return False
        if d < 0 and bottom:
            self._stop(REACHED_BOTTOM)
            return False
        if self.direction == d:
            return True
        if d > 0:
            self._drive(self._duty, 0)
            self.status = MOVING_UP
        else:
            self._drive(0, self._duty)
            self.status = MOVING_DOWN
        self.direction = d
        self._t0 = ticks_ms()
        return True

    def brake(self):
        self._check()
        self._stop(IDLE)

    def coast(self):
        self._check()
        self._drive(0, 0)
        self.direction = 0
        self.status = IDLE

    def poll(self):
        # The status after checking the switches, the travel time and the current. A stop keeps
        # its reason (REACHED_*, TIMEOUT, OVERCURRENT, BOTH_LIMITS) until the next command.
        self._check()
        top = self.at_top()
        bottom = self.at_bottom()
        if top and bottom:
            if self.direction or self.status != BOTH_LIMITS:
                self._stop(BOTH_LIMITS)
            return BOTH_LIMITS
        d = self.direction
        if d == 0:
            return self.status
        if d > 0 and top:
            self._stop(REACHED_TOP)
        elif d < 0 and bottom:
            self._stop(REACHED_BOTTOM)
        else:
            elapsed = ticks_diff(ticks_ms(), self._t0)
            if elapsed > self._travel_ms:
                self._stop(TIMEOUT)
            else:
                ma = self.current_ma()
                self.last_ma = ma
                if elapsed >= self._inrush_ms and ma > self._limit_ma:
                    self._stop(OVERCURRENT)
        return self.status
