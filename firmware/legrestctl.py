# Leg-rest control: turns the session's goal (hold, up, down) into motor commands through the
# driver, which itself never drives into a closed limit, stops at the travel-time limit and on
# over-current. Policy lives here: the leg rest rises only while a person is detected, an
# obstruction (over-current) stops it and backs it off briefly, a timeout gives up and reports.

from firmware.drivers import legrest as lr
from firmware.runtime import const, ticks_add, ticks_diff, ticks_ms

HOLD = const(0)
UP = const(1)
DOWN = const(2)

BACKOFF_MS = const(500)  # after an obstruction, reverse this long to free what was caught

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
        self._backoff_until = None

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
        self.goal = HOLD
        self.outcome = REACHED
        self._backoff_until = None
        self.driver.brake()

    def poll(self, person_present):
        d = self.driver
        goal = self.goal
        status = d.poll()
        if self._backoff_until is not None:
            if ticks_diff(ticks_ms(), self._backoff_until) >= 0:
                self._backoff_until = None
                d.brake()
            return status
        if goal == UP:
            if not person_present:
                d.brake()
                self._give_up("no person detected")
            elif d.at_top():
                self.outcome = REACHED
            elif status == lr.OVERCURRENT:
                self._obstructed(d.down)
            elif status == lr.TIMEOUT or status == lr.BOTH_LIMITS:
                self._give_up(lr.STATUS_NAMES[status])
            elif status != lr.MOVING_UP and self.outcome == PENDING:
                d.up()
        elif goal == DOWN:
            if d.at_bottom():
                self.outcome = REACHED
            elif status == lr.OVERCURRENT:
                self._obstructed(d.up)
            elif status == lr.TIMEOUT or status == lr.BOTH_LIMITS:
                self._give_up(lr.STATUS_NAMES[status])
            elif status != lr.MOVING_DOWN and self.outcome == PENDING:
                d.down()
        return status

    def _obstructed(self, reverse):
        reverse()
        self._backoff_until = ticks_add(ticks_ms(), BACKOFF_MS)
        self._give_up("obstruction")

    def _give_up(self, why):
        self.outcome = GAVE_UP
        self.problem = why
