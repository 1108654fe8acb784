# Leg-rest control: turns the session's goal (hold, up, down) into motor commands through the
# driver, which itself never drives into a closed limit, stops at the travel-time limit and on
# over-current. Policy lives here: the leg rest rises only while a person is detected; an
# obstruction (over-current) stops it and backs it off briefly; a timeout, both limit switches
# closed or an end switch that does not open when the leg rest leaves it give up. Each of those
# sets fault_code (firmware.faults), which the system turns into a latched fault.

from firmware import faults
from firmware.drivers import legrest as lr
from firmware.runtime import const, ticks_add, ticks_diff, ticks_ms

HOLD = const(0)
UP = const(1)
DOWN = const(2)

BACKOFF_MS = const(500)  # after an obstruction, reverse this long to free what was caught
LIMIT_RELEASE_MS = const(1_500)  # the end switch opens within this of leaving (full travel ~6 s)

# outcome of the last goal
PENDING = const(0)
REACHED = const(1)
GAVE_UP = const(2)


class LegRestControl:
    def __init__(self, driver):
        self.driver = driver
        self.goal = HOLD
        self.outcome = REACHED
        self.problem = None  # why the last goal was given up
        self.fault_code = 0  # a firmware.faults code, kept until clear_fault()
        self._backoff_until = None
        self._started_ms = 0

    def settled(self):
        return self.outcome != PENDING

    def request(self, goal):
        # the session's wish; poll() acts on it. Settled only once the new goal is met.
        if goal == self.goal:
            return
        self.goal = goal
        self.problem = None
        self.outcome = PENDING if goal != HOLD else REACHED
        self._backoff_until = None
        if goal == HOLD:
            self.driver.brake()

    def stop(self):
        # a back-off in progress finishes: reversing away from an obstruction is the safe move
        self.goal = HOLD
        self.outcome = REACHED
        if self._backoff_until is None:
            self.driver.brake()

    def clear_fault(self):
        self.fault_code = 0
        self.problem = None

    def poll(self, person_present):
        d = self.driver
        goal = self.goal
        status = d.poll()
        if d.at_top() and d.at_bottom():
            # wiring or switch fault, whatever the goal: nothing may move until it is fixed
            d.brake()
            self._give_up("both limit switches closed", faults.LEGREST_BOTH_LIMITS)
            return status
        if self._backoff_until is not None:
            if ticks_diff(ticks_ms(), self._backoff_until) >= 0:
                self._backoff_until = None
                d.brake()
            return status
        if goal == UP:
            self._move(status, person_present, d.at_top, d.at_bottom, lr.MOVING_UP, d.up, d.down)
        elif goal == DOWN:
            self._move(status, True, d.at_bottom, d.at_top, lr.MOVING_DOWN, d.down, d.up)
        return status

    def _move(self, status, allowed, arrived, left, moving, forward, reverse):
        if self.outcome != PENDING:
            return
        if not allowed:
            self.driver.brake()
            self._give_up("no person detected", 0)  # not a fault: the session decides
        elif arrived():
            self.outcome = REACHED
        elif status == lr.OVERCURRENT:
            # obstruction: stop, then reverse briefly to free whatever was caught
            reverse()
            self._backoff_until = ticks_add(ticks_ms(), BACKOFF_MS)
            self._give_up("obstruction", faults.LEGREST_OBSTRUCTED)
        elif status == lr.TIMEOUT:
            self._give_up("travel timeout", faults.LEGREST_TIMEOUT)
        elif status == lr.BOTH_LIMITS:
            self._give_up("both limit switches closed", faults.LEGREST_BOTH_LIMITS)
        elif status == moving:
            # the switch we started from must open soon after the motor starts
            if left() and ticks_diff(ticks_ms(), self._started_ms) >= LIMIT_RELEASE_MS:
                self.driver.brake()
                self._give_up("limit switch stuck closed", faults.LEGREST_LIMIT_STUCK)
        elif forward():
            self._started_ms = ticks_ms()
        elif arrived():
            self.outcome = REACHED

    def _give_up(self, why, code):
        self.outcome = GAVE_UP
        self.problem = why
        if code and not self.fault_code:
            self.fault_code = code
