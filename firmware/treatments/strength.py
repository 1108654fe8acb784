# Strength: levels 1..10 map to target contact forces (board data, board.strength_cn), and the
# ramp that moves the force target between them. DESIGN section 5: every session starts at
# level 3 or below and ramps to the requested level; a change ramps, never jumps.
#
# Rates (with the defaults, on a board whose table spans 20 N .. 110 N):
#   rising:  one full table span (level 1 -> 10) per ramp_ms = 60 s, i.e. 90 N/min = 1.5 cN/ms;
#            a session asking for level 10 starts at level 3 (40 N) and is there after 47 s.
#   falling: one full span per fall_ms = 1 s: a person asking for less gets it quickly, but the
#            fingers still ease off rather than drop.

from firmware.runtime import const, micropython

LEVEL_MIN = const(1)
LEVEL_MAX = const(10)
LEVELS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
START_MAX_LEVEL = const(3)

_DT_MAX_MS = const(1_000)  # a late tick moves the target by at most one second's worth


def check_level(level):
    if type(level) is not int or not LEVEL_MIN <= level <= LEVEL_MAX:
        raise ValueError("strength must be an integer 1..10, got %r" % (level,))


def target_cn(board, level):
    check_level(level)
    return board.strength_cn[level - 1]


class Ramp:
    def __init__(self, board, ramp_ms=60_000, start_max_level=START_MAX_LEVEL, fall_ms=1_000):
        check_level(start_max_level)
        if type(ramp_ms) is not int or ramp_ms <= 0 or type(fall_ms) is not int or fall_ms <= 0:
            raise ValueError("ramp_ms and fall_ms must be positive integers")
        self._board = board
        table = board.strength_cn
        span = table[LEVEL_MAX - 1] - table[0]
        self._span = span if span > 0 else 1
        self._ramp_ms = ramp_ms
        self._fall_ms = fall_ms
        self._start_max = start_max_level
        self._acc = 0  # remainder of span * dt / ramp_ms, so the rate is exact in integers
        self._up = True
        self.level = 0  # the requested level (0 before start)
        self.goal_cn = 0
        self.current_cn = 0

    def start(self, level):
        # a new session: begin at min(level, start_max_level), never higher
        check_level(level)
        low = level if level < self._start_max else self._start_max
        self.current_cn = target_cn(self._board, low)
        self.goal_cn = target_cn(self._board, level)
        self.level = level
        self._acc = 0

    def set(self, level):
        # change the goal; step() ramps towards it
        self.goal_cn = target_cn(self._board, level)
        self.level = level

    def stop(self):
        self.level = 0
        self.goal_cn = 0
        self.current_cn = 0
        self._acc = 0

    @property
    def settled(self):
        return self.current_cn == self.goal_cn

    @micropython.native
    def step(self, dt_ms):
        # advance by dt_ms and return the force target in cN
        cur = self.current_cn
        goal = self.goal_cn
        if cur == goal:
            self._acc = 0
            return cur
        if dt_ms <= 0:
            return cur
        if dt_ms > _DT_MAX_MS:
            dt_ms = _DT_MAX_MS
        up = goal > cur
        if up != self._up:
            self._up = up
            self._acc = 0  # the remainder belongs to the other rate
        per = self._ramp_ms if up else self._fall_ms
        acc = self._acc + dt_ms * self._span
        delta = acc // per
        self._acc = acc - delta * per
        if up:
            cur += delta
            if cur > goal:
                cur = goal
        else:
            cur -= delta
            if cur < goal:
                cur = goal
        self.current_cn = cur
        return cur
