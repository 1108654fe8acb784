# Per-tick plausibility of the finger force sensors and actuators (DESIGN section 5; IEC 60730-1
# Annex H class B practice: every input is checked for plausibility, every tick). See
# docs/plausibility.md for the table of checks, thresholds, detection times and reasons.
#
# check() runs once per control tick, after the forces are read and before the session computes
# new targets, so targets_um still holds what every finger was commanded in the previous tick.
# It returns 0 when everything is plausible, else a firmware.faults code, and names the finger in
# self.finger. The lowest code wins (rails first), then the lowest finger. It keeps returning the
# code every tick the condition holds; latching the fault is the caller's job.
#
# Checks, per finger:
#   SENSOR_OPEN      raw at the high rail
#   SENSOR_SHORT     raw at the low rail
#   SENSOR_STUCK     raw identical for _STUCK_MS while the command moved >= _STUCK_MOVE_UM
#                    inside the back (past the finger's contact height), or anywhere when the
#                    frozen reading is a load
#   SENSOR_NOISY     _NOISY_EVENTS jumps within _NOISY_WINDOW_MS, each larger than tissue can
#                    produce in one tick for a command that barely moved
#   FORCE_RETRACTED  force on a finger commanded home long enough to have got there
#   ACTUATOR_STALL   a finger commanded well into the back that feels far less than the softest
#                    back would give there, while the others feel the person
# "The person is there" (STUCK, STALL) is presence_ok from the session AND at least half of the
# other fingers that found the back loaded now: the session keeps believing in a person for two
# seconds after they get up, and fingers rising into thin air then are not a fault.
#
# Integer arithmetic and preallocated per-finger state only: check() allocates nothing.

from array import array

from firmware.faults import (
    ACTUATOR_STALL,
    FORCE_RETRACTED,
    SENSOR_NOISY,
    SENSOR_OPEN,
    SENSOR_SHORT,
    SENSOR_STUCK,
)
from firmware.runtime import const, micropython

# 5 counts from either end of the 12-bit range is a rail. The board validation makes full scale
# exceed the force cap, so a high-rail reading is never a force to trust; the offsets sit ~40
# counts above zero with ~1 count of noise, so a healthy unloaded sensor never reads <= 5.
_OPEN_RAW = const(4090)
_SHORT_RAW = const(5)
# Real sensors and ADCs (and the simulator) show at least a count of noise: an identical value
# for half a second (50 ticks) is a frozen input, if the finger moved into the back meanwhile.
_STUCK_MS = const(500)
# 2 mm deeper into tissue of at least 1 N/mm (the softest back the control law expects) changes
# the force by >= 2 N, about 33 counts on the v3 sensor: far beyond noise.
_STUCK_MOVE_UM = const(2_000)
# A finger moves at most max_speed * 10 ms = 0.2 mm per tick: on tissue of 30 N/mm (the
# stiffest the control law expects) that is 6 N, ~14 N even 20 mm deep where it has stiffened.
# 30 N per tick is twice that, and ~490 counts: no noise of a working sensor.
_JUMP_CN = const(3_000)  # per _TICK_MS; scaled up for a late tick
_TICK_MS = const(10)
# Jumps only count while the finger is still: the command moved less than this in the tick
# before, and any bigger move commanded earlier has had time to complete at the board's max
# speed (a supervisor retract moves the command 5 mm at once; the finger then travels for
# 250 ms, and on a stiff back the force falls steeply all that time).
_JUMP_STILL_UM = const(500)
# One jump can be real (a person lying down or getting up all at once); three within a second on
# one finger cannot.
_NOISY_EVENTS = const(3)
_NOISY_WINDOW_MS = const(1_000)
# A finger at home sits below the surface the person lies on: 10 N there (3x the contact
# threshold of 3 N) is a load the finger should not feel.
_RETRACTED_CN = const(1_000)
# Time to get home: the full stroke at the board's max speed, plus this for the actuator's own
# response.
_HOME_MARGIN_MS = const(200)
# ... and the force must persist this long (20 ticks), so one bad sample is not a fault.
_RETRACTED_MS = const(200)
# Stall: the force a finger commanded d past the contact height must at least show. Up to
# 8 mm (the contact scan's error, a tick of lag and soft tissue, with room to spare) nothing is
# required; from there on, the contact threshold plus what the softest back the control law
# expects (1 N/mm) gives for the depth beyond 8 mm. Less than that for _STALL_MS: the finger is
# not where it was told to be (it stalled on the back, or does not move at all).
_STALL_DEPTH_UM = const(8_000)
_STALL_K_CN_MM = const(100)
# The control law drives a finger that feels nothing at full speed (0.2 mm per tick): a finger
# that follows reaches 8 mm in 0.4 s and feels the back long before. 1 s is comfortably past.
_STALL_MS = const(1_000)
_DT_MAX_MS = const(50)  # a late tick counts as at most this much time (as the controller does)
_SAT_MS = const(60_000)  # timers stop here (well above every window; keeps them small ints)
_NONE = const(-1)


class SensorCheck:
    def __init__(self, board):
        n = board.finger_count
        self._n = n
        self._contact_cn = board.contact_threshold_cn
        self._loaded_cn = board.contact_threshold_cn >> 1  # as the session's presence test
        home = board.stroke_um * 1000 // board.max_speed_um_s + _HOME_MARGIN_MS
        self.home_ms = home if home < _SAT_MS else _SAT_MS
        self.code = 0
        self.finger = _NONE
        self._last_raw = array("H", bytes(2 * n))
        self._frozen_ms = array("i", bytes(4 * n))  # time the raw value has not changed
        self._lo_um = array("i", bytes(4 * n))  # range of the command over that time
        self._hi_um = array("i", bytes(4 * n))
        self._last_cn = array("i", bytes(4 * n))
        self._last_t = array("i", bytes(4 * n))
        self._travel_ms = array("i", bytes(4 * n))  # time the finger still needs to get there
        self._speed_um_ms = max(1, board.max_speed_um_s // 1000)
        self._jsign = bytearray(n)  # jumps in the window: 1 all up, 2 all down, 3 both ways
        self._jumps = bytearray(n)  # implausible jumps in the current window
        self._jump_ms = array("i", bytes(4 * n))  # age of the window
        self._home_ms = array("i", bytes(4 * n))  # time commanded home
        self._force_ms = array("i", bytes(4 * n))  # time with force while settled at home
        self._stall_ms = array("i", bytes(4 * n))
        self.reset()

    def reset(self):
        # Forget the history (after a fault is cleared, or when the inputs restart). The next
        # check() only primes the tick-to-tick comparisons; rails are checked at once.
        for i in range(self._n):
            self._frozen_ms[i] = 0
            self._jumps[i] = 0
            self._jump_ms[i] = 0
            self._home_ms[i] = 0
            self._force_ms[i] = 0
            self._stall_ms[i] = 0
            self._jsign[i] = 0
            self._travel_ms[i] = 0
        self._primed = False
        self.code = 0
        self.finger = _NONE

    @micropython.native
    def check(self, dt_ms, raw, forces_cn, targets_um, contact_um, presence_ok):
        if dt_ms < 0:
            dt_ms = 0
        elif dt_ms > _DT_MAX_MS:
            dt_ms = _DT_MAX_MS
        n = self._n
        loaded_cn = self._loaded_cn
        # who is loading the fingers now: fingers that found the back and read a light touch
        contacts = 0
        loaded = 0
        for i in range(n):
            if contact_um[i] >= 0:
                contacts += 1
                r = raw[i]
                if forces_cn[i] >= loaded_cn and _SHORT_RAW < r < _OPEN_RAW:
                    loaded += 1
        primed = self._primed
        jump_lim = _JUMP_CN * (dt_ms if dt_ms > _TICK_MS else _TICK_MS) // _TICK_MS
        home_ms = self.home_ms
        contact_cn = self._contact_cn
        last_raw = self._last_raw
        frozen_ms = self._frozen_ms
        lo_um = self._lo_um
        hi_um = self._hi_um
        last_cn = self._last_cn
        last_t = self._last_t
        jsign = self._jsign
        travel = self._travel_ms
        speed = self._speed_um_ms
        jumps = self._jumps
        jump_ms = self._jump_ms
        home = self._home_ms
        force_ms = self._force_ms
        stall_ms = self._stall_ms
        code = 0
        finger = _NONE
        for i in range(n):
            r = raw[i]
            f = forces_cn[i]
            t = targets_um[i]
            c = contact_um[i]
            hit = 0
            # rails
            if r >= _OPEN_RAW:
                hit = SENSOR_OPEN
            elif r <= _SHORT_RAW:
                hit = SENSOR_SHORT
            # is a person loading the other fingers (this one's reading left out)?
            present = False
            if presence_ok and c >= 0:
                others = loaded
                if f >= loaded_cn and _SHORT_RAW < r < _OPEN_RAW:
                    others -= 1
                present = others > 0 and 2 * others >= contacts - 1
            # stuck: the range of the command over the time the raw value held. Inside the back
            # any motion must change the force; below it only a loaded reading must change
            # (an unloaded one reads zero however the finger moves).
            depth = t - c if c >= 0 and t > c else 0
            where = t if f >= loaded_cn else depth
            if primed and r == last_raw[i] and present:
                ms = frozen_ms[i] + dt_ms
                frozen_ms[i] = ms if ms < _SAT_MS else _SAT_MS
                if where < lo_um[i]:
                    lo_um[i] = where
                elif where > hi_um[i]:
                    hi_um[i] = where
                if (
                    hit == 0
                    and frozen_ms[i] >= _STUCK_MS
                    and hi_um[i] - lo_um[i] >= _STUCK_MOVE_UM
                ):
                    hit = SENSOR_STUCK
            else:
                frozen_ms[i] = 0
                lo_um[i] = where
                hi_um[i] = where
            last_raw[i] = r
            # noisy: jumps too large for the commanded motion, several within a window
            if jumps[i]:
                ms = jump_ms[i] + dt_ms
                if ms >= _NOISY_WINDOW_MS:
                    jumps[i] = 0
                    ms = 0
                jump_ms[i] = ms
            if primed:
                d = f - last_cn[i]
                m = t - last_t[i]
                still = -_JUMP_STILL_UM < m < _JUMP_STILL_UM
                if not still:
                    travel[i] = (m if m > 0 else -m) // speed + _TICK_MS
                elif travel[i] > 0:
                    travel[i] -= dt_ms
                    still = False
                if (d > jump_lim or d < -jump_lim) and still:
                    sign = 1 if d > 0 else 2
                    if jumps[i] == 0:
                        jump_ms[i] = 0
                        jsign[i] = sign
                    elif sign != jsign[i]:
                        jsign[i] = 3  # both ways within the window
                    if jumps[i] < 255:
                        jumps[i] += 1
                # Noise goes both ways. Jumps all one way are a real load rising faster than
                # the limit (a cramp on a stiff back): the supervisor's force cap deals with it.
                if hit == 0 and jumps[i] >= _NOISY_EVENTS and jsign[i] == 3:
                    hit = SENSOR_NOISY
            last_cn[i] = f
            last_t[i] = t
            # force on a finger commanded home long enough to be there
            if t <= 0:
                ms = home[i] + dt_ms
                home[i] = ms if ms < _SAT_MS else _SAT_MS
            else:
                home[i] = 0
            if home[i] >= home_ms and f > _RETRACTED_CN:
                ms = force_ms[i] + dt_ms
                force_ms[i] = ms if ms < _SAT_MS else _SAT_MS
                if hit == 0 and force_ms[i] >= _RETRACTED_MS:
                    hit = FORCE_RETRACTED
            else:
                force_ms[i] = 0
            # stall: commanded well into the back, and it is not felt
            if (
                present
                and depth >= _STALL_DEPTH_UM
                and f < contact_cn + (depth - _STALL_DEPTH_UM) * _STALL_K_CN_MM // 1000
            ):
                ms = stall_ms[i] + dt_ms
                stall_ms[i] = ms if ms < _SAT_MS else _SAT_MS
                if hit == 0 and stall_ms[i] >= _STALL_MS:
                    hit = ACTUATOR_STALL
            else:
                stall_ms[i] = 0
            if hit and (code == 0 or hit < code):
                code = hit
                finger = i
        self._primed = True
        self.code = code
        self.finger = finger
        return code
