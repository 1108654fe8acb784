# The treatment session: a state machine stepped once per control tick (DESIGN sections 5, 6).
#
#   idle -> scanning -> legrest_rising -> warmup -> treating -> cooldown -> finishing -> idle
#                                            \______ paused ______/
#
# Warm-up and cool-down are the first and last minute of the session's time, a full-area pulse.
# The tension (stiffness) of the back is measured at the same gentle level at both ends (the
# session's starting level, 3 or below): in the first MEASURE_MS of the warm-up, before the
# strength ramps to the requested level, and in the last MEASURE_MS of the cool-down. Measuring
# under the same conditions is what makes sessions comparable with each other.
# Requests (strength, area, flow, start, pause, ...) arrive from the commands module and take
# effect in the next tick; tick() itself allocates nothing in steady state.

from array import array

from firmware import legrestctl
from firmware.runtime import const, micropython
from firmware.treatments import areas, contour, control, flows, strength, tension

IDLE = const(0)
SCANNING = const(1)
LEGREST_RISING = const(2)
WARMUP = const(3)
TREATING = const(4)
COOLDOWN = const(5)
PAUSED = const(6)
FINISHING = const(7)

STATE_NAMES = (
    "idle",
    "scanning",
    "legrest_rising",
    "warmup",
    "treating",
    "cooldown",
    "paused",
    "finishing",
)

DURATIONS_MIN = (10, 20, 30, 40)
DEFAULT_DURATION_MIN = 20
MAX_SESSION_MS = const(3_600_000)  # the maker's 60-minute limit
WARMUP_MS = const(60_000)
COOLDOWN_MS = const(60_000)
MEASURE_MS = const(15_000)  # tension measuring pass at each end, at the starting level
PAUSE_MAX_MS = const(600_000)  # a forgotten pause ends the session
PRESENCE_LOST_MS = const(2_000)  # contact lost this long: the person got up
RELEASE_MAX_MS = const(3_000)  # fingers are home well before this
MEASURE_FLOW = "pulse"
MIN_TRACKED_MS = const(1_200_000)  # tension history needs 20 minutes of treatment

# Leg-rest goals the session requests of firmware.legrestctl.
LEG_HOLD = legrestctl.HOLD
LEG_UP = legrestctl.UP
LEG_DOWN = legrestctl.DOWN

# End reasons
END_COMPLETED = "completed"
END_STOPPED = "stopped"
END_NO_PERSON = "no person detected"
END_PERSON_LEFT = "person got up"
END_PAUSE_TIMEOUT = "paused too long"
END_TIME_CAP = "60-minute limit"


class Plan:
    # What the session runs: the programme's steps (or one step made from the settings).
    def __init__(self, steps, total_ms):
        self.steps = steps  # tuples (mask, flow, strength, duration_ms, tempo_pct)
        self.total_ms = total_ms


class Session:
    def __init__(self, board, legrest):
        self.board = board
        self.legrest = legrest  # firmware.legrestctl.LegRestControl (status only is read here)
        n = board.finger_count
        self._n = n
        self.state = IDLE
        self.scan = contour.ContourScan(board)
        self.control = control.ForceControl(board)
        self.pattern = flows.Pattern(board)
        self.ramp = strength.Ramp(board)
        self.before = tension.Tension(board)
        self.after = tension.Tension(board)
        self._masks = {}
        for name in areas.AREAS:
            try:
                self._masks[name] = areas.area_mask(board, name)
            except ValueError:
                pass  # a region this board does not have (the devkit has no lower rows)
        self._contact_only = bytearray(n)  # the area mask ANDed with the fingers in contact
        self.intensity = bytearray(n)
        self.demand_cn = array("i", [0] * n)
        self.touch_cn = 2 * board.contact_threshold_cn
        # settings the app or the button asks for; applied at the next tick
        self.strength = 3
        self.area = "full"
        self.flow = "wave"
        self.tempo_pct = 100
        self.user = 0
        self._settings_dirty = False
        self._programme = None
        self.plan = None
        self.step_index = -1
        self.elapsed_ms = 0
        self.total_ms = 0
        self._phase_ms = 0
        self._lost_ms = 0
        self._pause_ms = 0
        self._resume_state = TREATING
        self.end_reason = None
        self.result = None  # the report of the last finished session
        self.on_finished = None  # callback(result) for history and the services

    # -- requests (from firmware.commands; validated there) ------------------------------------

    def begin(self, duration_ms, programme=None, user=0):
        self._programme = programme
        self.user = user
        if programme is not None:
            self.plan = Plan(
                [(s.mask, s.flow, s.strength, s.duration_ms, s.tempo) for s in programme.steps],
                programme.total_ms,
            )
        else:
            self.plan = None
        self.total_ms = self.plan.total_ms if self.plan else duration_ms
        self._programme_level = None
        self.elapsed_ms = 0
        self.step_index = -1
        self.end_reason = None
        self.result = None
        self._phase_ms = 0
        self._lost_ms = 0
        self.before.reset()
        self.after.reset()
        self.scan.reset()
        self.pattern.reset()
        self.state = SCANNING

    def pause(self):
        self._resume_state = self.state
        self._pause_ms = 0
        self.state = PAUSED

    def resume(self):
        self.state = self._resume_state
        self._settings_dirty = True

    def stop(self, reason=END_STOPPED, lower=True):
        # lower=False: a leg-rest fault; the fingers release but the leg rest stays where it is
        if self.state == IDLE or self.state == FINISHING:
            if not lower:
                self._keep_legrest = True
            return
        self._finish(reason)
        self._keep_legrest = not lower

    def has_area(self, name):
        return isinstance(name, str) and name in self._masks

    def settings_changed(self):
        self._settings_dirty = True

    @property
    def pressing(self):
        # the states in which fingers may press into the back (the supervisor counts their time)
        s = self.state
        return s == WARMUP or s == TREATING or s == COOLDOWN

    @property
    def occupied(self):
        return self.state != IDLE and self.state != SCANNING and self.scan.occupied

    @property
    def remaining_ms(self):
        return max(0, self.total_ms - self.elapsed_ms)

    # -- the tick --------------------------------------------------------------------------------

    def tick(self, dt_ms, forces_cn, targets_um):
        s = self.state
        if s == IDLE:
            self._home(targets_um)
        elif s == SCANNING:
            if self.scan.step(dt_ms, forces_cn, targets_um):
                if not self.scan.occupied:
                    self._finish(END_NO_PERSON)
                else:
                    self.control.set_contact(self.scan.contact_um)
                    self.legrest.request(LEG_UP)
                    self.state = LEGREST_RISING
        elif s == LEGREST_RISING:
            self._hold(dt_ms, forces_cn, targets_um)
            if not self._present(dt_ms, forces_cn):
                self._finish(END_PERSON_LEFT)
                self._finishing(dt_ms, forces_cn, targets_um)  # release in this same tick
            elif self.legrest.settled():
                self._enter_warmup()
        elif s == PAUSED:
            self._hold(dt_ms, forces_cn, targets_um)
            self._pause_ms += dt_ms
            if not self._present(dt_ms, forces_cn):
                self._finish(END_PERSON_LEFT)
                self._finishing(dt_ms, forces_cn, targets_um)
            elif self._pause_ms >= PAUSE_MAX_MS:
                self._finish(END_PAUSE_TIMEOUT)
                self._finishing(dt_ms, forces_cn, targets_um)
        elif s == FINISHING:
            self._finishing(dt_ms, forces_cn, targets_um)
        else:
            self._treat(dt_ms, forces_cn, targets_um)

    @micropython.native
    def _home(self, targets_um):
        for i in range(self._n):
            targets_um[i] = 0

    @micropython.native
    def _hold(self, dt_ms, forces_cn, targets_um):
        # keep light contact on every finger that found the back
        touch = self.touch_cn
        demand = self.demand_cn
        mask = self.scan.mask
        for i in range(self._n):
            demand[i] = touch if mask[i] else 0
        self.control.step(dt_ms, forces_cn, demand, targets_um)

    @micropython.native
    def _present(self, dt_ms, forces_cn):
        # Fingers in contact keep at least a light touch, so a person lying there keeps a
        # share of them loaded; when almost none are for PRESENCE_LOST_MS, they got up.
        half = self.board.contact_threshold_cn >> 1
        mask = self.scan.mask
        loaded = 0
        for i in range(self._n):
            if mask[i] and forces_cn[i] >= half:
                loaded += 1
        if loaded * 2 >= self.scan.contacts or loaded >= self.board.min_contacts:
            self._lost_ms = 0
            return True
        self._lost_ms += dt_ms
        return self._lost_ms < PRESENCE_LOST_MS

    def _enter_warmup(self):
        self.state = WARMUP
        self.elapsed_ms = 0
        self._configure(self._full_mask(), MEASURE_FLOW, 100)
        first = self._first_strength()
        self._measure_level = first if first < 3 else 3
        self.ramp.start(self._measure_level)
        self._ramping = False

    def _first_strength(self):
        if self.plan:
            return self.plan.steps[0][2]
        return self.strength

    def _full_mask(self):
        return self._masks["full"]

    def _configure(self, mask, flow, tempo_pct):
        contact = self.scan.mask
        only = self._contact_only
        for i in range(self._n):
            only[i] = 1 if (mask[i] and contact[i]) else 0
        self.pattern.configure(flow, only, tempo_pct)

    @micropython.native
    def _treat(self, dt_ms, forces_cn, targets_um):
        if not self._present(dt_ms, forces_cn):
            self._finish(END_PERSON_LEFT)
            self._finishing(dt_ms, forces_cn, targets_um)
            return
        self.elapsed_ms += dt_ms
        t = self.elapsed_ms
        if t >= self.total_ms:
            self._finish(END_COMPLETED)
            self._finishing(dt_ms, forces_cn, targets_um)
            return
        s = self.state
        cool_at = self.total_ms - COOLDOWN_MS
        if s == WARMUP:
            if not self._ramping and t >= MEASURE_MS:
                self._ramping = True  # measured: now ramp towards the requested level
                self.ramp.set(self._programme_level or self._first_strength())
            if t >= WARMUP_MS:
                s = self.state = TREATING
                self._settings_dirty = True
        if s == TREATING and t >= cool_at and t >= WARMUP_MS:
            s = self.state = COOLDOWN
            self._configure(self._full_mask(), MEASURE_FLOW, 100)
            self.ramp.set(self._measure_level)
        if s == TREATING:
            self._follow_plan(t)
        level_cn = self.ramp.step(dt_ms)
        self.pattern.fill(t, self.intensity)
        touch = self.touch_cn
        span = level_cn - touch
        if span < 0:
            span = 0
        demand = self.demand_cn
        intensity = self.intensity
        mask = self.scan.mask
        for i in range(self._n):
            if mask[i]:
                demand[i] = touch + span * intensity[i] // 100
            else:
                demand[i] = 0
        self.control.step(dt_ms, forces_cn, demand, targets_um)
        if s == WARMUP and t < MEASURE_MS:
            self.before.observe(forces_cn, targets_um, self.scan.contact_um)
        elif s == COOLDOWN and t >= self.total_ms - MEASURE_MS:
            self.after.observe(forces_cn, targets_um, self.scan.contact_um)

    def _level(self):
        # the level in force now: the app's override, else the programme step's, else the setting
        if self._programme_level is not None:
            return self._programme_level
        if self.plan and self.step_index >= 0:
            return self.plan.steps[self.step_index][2]
        return self.strength

    def _follow_plan(self, t):
        if self.plan:
            # which step is due: the steps' durations laid end to end from the session start
            acc = 0
            index = len(self.plan.steps) - 1
            for k in range(len(self.plan.steps)):
                acc += self.plan.steps[k][3]
                if t < acc:
                    index = k
                    break
            if index != self.step_index or self._settings_dirty:
                self.step_index = index
                mask, flow, level, _, tempo = self.plan.steps[index]
                if self._programme_level is not None:
                    level = self._programme_level
                self._configure(mask, flow, tempo)
                self.ramp.set(level)
                self._settings_dirty = False
        elif self._settings_dirty:
            self.step_index = 0
            self._configure(self._masks[self.area], self.flow, self.tempo_pct)
            self.ramp.set(self.strength)
            self._settings_dirty = False

    # the app's strength change during a programme overrides the steps' levels from then on
    _programme_level = None
    _measure_level = 3
    _ramping = False
    _lowering = False
    _keep_legrest = False

    def set_strength(self, level):
        self.strength = level
        if self.plan is not None and self.state != IDLE:
            self._programme_level = level
        if self.state == WARMUP:
            if self._ramping:
                self.ramp.set(level)
            # while measuring, the new level waits for the ramp that follows
        elif self.state != COOLDOWN:  # cool-down stays at the measuring level
            self._settings_dirty = True

    def _finish(self, reason):
        self.end_reason = reason
        self.state = FINISHING
        self._phase_ms = 0
        self._lowering = False
        self._keep_legrest = False
        self.legrest.request(LEG_HOLD)

    def _finishing(self, dt_ms, forces_cn, targets_um):
        # fingers release first; the leg rest lowers only once they are off the back
        self._home(targets_um)
        self._phase_ms += dt_ms
        if not self._lowering:
            loaded = False
            threshold = self.board.contact_threshold_cn
            for i in range(self._n):
                if forces_cn[i] >= threshold:
                    loaded = True
                    break
            if not loaded or self._phase_ms >= RELEASE_MAX_MS:
                self._lowering = True
                if self._keep_legrest:
                    self.legrest.request(LEG_HOLD)
                else:
                    self.legrest.request(LEG_DOWN)
        elif self.legrest.settled():
            self.legrest.request(LEG_HOLD)
            self._end()

    def _end(self):
        self.state = IDLE
        self._programme_level = None
        self.result = self._report()
        if self.on_finished is not None:
            self.on_finished(self.result)

    def _report(self):
        before = self.before.regions()
        after = self.after.regions()
        return {
            "reason": self.end_reason,
            "user": self.user,
            "elapsed_ms": self.elapsed_ms,
            "total_ms": self.total_ms,
            "contacts": self.scan.contacts,
            "area": "programme" if self.plan else self.area,
            "flow": "mixed" if self.plan else self.flow,
            "strength": self._level(),
            "before": [int(v) for v in before],
            "after": [int(v) for v in after],
            "tracked": self.elapsed_ms >= MIN_TRACKED_MS,
        }
