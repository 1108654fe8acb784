"""Finger actuators and fingertip force sensors, as plain classes driven by time.

Actuators. Each finger is a servo-type linear actuator: the pulse width it receives (from the
PCA9685) selects a position through the finger's calibration (pulse_us_at_0, pulse_us_at_full),
clamped to the stroke, and the finger travels there at the board's max_speed_um_s. Extending, it
stops where the load on its tip would exceed its stall force (250 N by default); retracting is
never hindered. Without a pulse (chip asleep, outputs disabled, channel off) the lead screw holds
the finger where it is. Positions are integer nanometres and time advances in whole milliseconds,
so a run is exactly repeatable: advancing n ms at once lands where n single steps would.

Sensors. A sensor's raw 12-bit reading is offset + force_cn * 4096 / gain_q12 (the inverse of
the firmware's (raw - offset) * gain_q12 >> 12), plus optional noise that is a pure function of
(seed, finger, millisecond): reading twice in the same millisecond gives the same value, and the
same run gives the same noise. The ADC presents it as 16 bits the way the ESP32 port scales it.
Faults replace the reading: open (rail high), short (rail low), stuck (frozen at the value it had
when the fault was injected), noisy (implausible jumps on about a third of the milliseconds).
"""

RAW_MAX = 4095
STALL_N = 250.0
RELAX_GRID_MS = 100  # the load's stiffness is updated from the work done this often
SENSOR_FAULTS = ("open", "short", "stuck", "noisy")


def raw_to_u16(raw):
    # ESP32 port: read_u16() scales the 12-bit conversion to 0..65535; >> 4 gives it back exactly.
    return raw * 65535 // RAW_MAX


_MASK64 = 0xFFFFFFFFFFFFFFFF


def _mix(x):
    # splitmix64 finaliser: a cheap, well-spread hash for per-millisecond noise
    x &= 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _noise_key(seed, channel):
    # the part of noise_unit's hash input that does not change with time
    return (seed * 0x9E3779B97F4A7C15) ^ (channel * 0xD1B54A32D192ED03)


def _noise_at(key, t_ms):
    # noise_unit(seed, channel, t_ms) for key = _noise_key(seed, channel), _mix inlined: the
    # sensors draw one per conversion
    x = (key ^ (t_ms + 1)) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    h = x ^ (x >> 31)
    total = (h & 0xFFFF) + (h >> 16 & 0xFFFF) + (h >> 32 & 0xFFFF) + (h >> 48)
    return (total / 65536.0 - 2.0) * 1.73  # 4 uniforms: variance 1/3 -> scale to ~1


def _first_round(key):
    # For 0 <= t < 2**30 - 1, t + 1 changes only the low 30 bits of (key ^ (t + 1)) & mask, so
    # the first step of _mix on it, x ^ (x >> 30), is _first_round(key) ^ (t + 1).
    k = key & _MASK64
    return k ^ (k >> 30)


def noise_unit(seed, channel, t_ms):
    """Deterministic noise in about -2..2 with unit-ish spread (sum of four uniforms)."""
    return _noise_at(_noise_key(seed, channel), t_ms)


class FingerActuators:
    """All fingers of a board. ``load`` is a Person, a Rig or Nobody (see person.py)."""

    def __init__(self, board, load, pulse_cal=None, stall_n=STALL_N):
        self.board = board
        self.load = load
        self.n = board.finger_count
        self.stroke_nm = board.stroke_um * 1000
        self.speed_nm_ms = board.max_speed_um_s  # um/s is nm/ms
        self.pulse_cal = tuple(pulse_cal if pulse_cal is not None else board.pulse_cal)
        self.pos_nm = [0] * self.n
        self.target_nm = [None] * self.n  # None: no pulse, the finger holds
        self.stall_n = [float(stall_n)] * self.n
        self.stuck = [False] * self.n
        self.max_force_n = [0.0] * self.n
        self.travel_um = [0.0] * self.n  # total distance moved, both ways
        self.peak_nm = [0] * self.n  # highest position reached
        self.t_ms = 0  # time advanced so far (the relaxation grid is counted from here)
        # command_pulses: the last pulse each finger was given and the position it selects, for
        # the calibration and stroke they were computed with (most fingers keep their pulse
        # from one control tick to the next)
        self._last_pulse = [None] * self.n
        self._last_nm = [None] * self.n
        self._last_for = None

    # -- commands ------------------------------------------------------------------------------

    def pulse_to_nm(self, index, pulse_us):
        p0, p1 = self.pulse_cal[index]
        frac = (pulse_us - p0) / (p1 - p0)
        frac = 0.0 if frac < 0.0 else 1.0 if frac > 1.0 else frac  # the mechanism's end stops
        return int(round(frac * self.stroke_nm))

    def command_pulse(self, index, pulse_us):
        """The finger now receives pulse_us (None: no pulse at all)."""
        self.target_nm[index] = None if pulse_us is None else self.pulse_to_nm(index, pulse_us)

    def command_pulses(self, indices, pulses_us):
        """command_pulse(indices[k], p) for each pulse p of pulses_us, a pulse <= 0 being none
        (what a chip gives its fingers after every write)."""
        stroke = self.stroke_nm
        cal = self.pulse_cal
        target = self.target_nm
        last_pulse = self._last_pulse
        last_nm = self._last_nm
        if self._last_for is None or self._last_for[0] is not cal or self._last_for[1] != stroke:
            last_pulse[:] = [None] * self.n
            self._last_for = (cal, stroke)
        for index, us in zip(indices, pulses_us, strict=True):
            if us > 0:
                if us == last_pulse[index]:
                    target[index] = last_nm[index]
                    continue
                # pulse_to_nm(index, us), inlined
                p0, p1 = cal[index]
                frac = (us - p0) / (p1 - p0)
                frac = 0.0 if frac < 0.0 else 1.0 if frac > 1.0 else frac
                nm = int(round(frac * stroke))
                target[index] = nm
                last_pulse[index] = us
                last_nm[index] = nm
            else:
                target[index] = None

    def command_um(self, index, um):
        """Command a position directly (tests of the mechanics without a PWM chip)."""
        self.target_nm[index] = max(0, min(self.stroke_nm, int(round(um * 1000))))

    # -- faults --------------------------------------------------------------------------------

    def set_stall(self, index, force_n):
        self.stall_n[index] = float(force_n)

    def set_stuck(self, index, stuck=True):
        self.stuck[index] = stuck

    # -- physics -------------------------------------------------------------------------------

    def advance(self, ms):
        """Move every finger for ms whole milliseconds."""
        while ms > 0:
            chunk = min(ms, RELAX_GRID_MS - self.t_ms % RELAX_GRID_MS)
            self._move(chunk)
            self.t_ms += chunk
            ms -= chunk
            if self.t_ms % RELAX_GRID_MS == 0:
                self.load.relax()

    def _move(self, ms):
        # stiffness is constant within a chunk, so one step of ms equals ms steps of 1
        speed = self.speed_nm_ms
        step_max = speed * ms
        load = self.load
        force_n = load.force_n
        targets = self.target_nm
        positions = self.pos_nm
        stuck = self.stuck
        stall_n = self.stall_n
        travel_um = self.travel_um
        peak_nm = self.peak_nm
        max_force_n = self.max_force_n
        for i in range(self.n):
            target = targets[i]
            pos = positions[i]
            if target is None or target == pos or stuck[i]:
                continue
            if target < pos:
                new = pos - step_max
                if new < target:
                    new = target
                if new == pos:
                    continue
                new_um = new / 1000.0
                load.press(i, pos / 1000.0, new_um)
                travel_um[i] += (pos - new) / 1000.0
                f = None
            else:
                new = pos + step_max
                if new > target:
                    new = target
                new_um = new / 1000.0
                f = force_n(i, new_um)
                if f > stall_n[i]:
                    f = None
                    # stalls on the last millisecond boundary before the load reaches stall force
                    lim = load.limit_um(i, stall_n[i])
                    steps = int((lim * 1000.0 - pos) // speed) if lim is not None else 0
                    new = pos + max(0, steps) * speed
                    new = min(new, target)
                    new_um = new / 1000.0
                if new == pos:
                    continue
                load.press(i, pos / 1000.0, new_um)
                travel_um[i] += (new - pos) / 1000.0
                # (f, when kept: press() only accounts work, the stiffness changes in relax(),
                # so the force at the new position is still the one checked against the stall)
            positions[i] = new
            if new > peak_nm[i]:
                peak_nm[i] = new
            if f is None:
                f = force_n(i, new_um)
            if f > max_force_n[i]:
                max_force_n[i] = f

    def moving(self):
        for i in range(self.n):
            t = self.target_nm[i]
            if t is not None and t != self.pos_nm[i] and not self.stuck[i]:
                return True
        return False

    # -- ground truth --------------------------------------------------------------------------

    def pos_um(self, index):
        return self.pos_nm[index] / 1000.0

    def place_um(self, index, um):
        """Put a finger somewhere without moving it there (a state left by a reset mid-session)."""
        self.pos_nm[index] = max(0, min(self.stroke_nm, int(round(um * 1000))))
        self.peak_nm[index] = max(self.peak_nm[index], self.pos_nm[index])

    def force_n(self, index):
        f = self.load.force_n(index, self.pos_nm[index] / 1000.0)
        if f > self.max_force_n[index]:
            self.max_force_n[index] = f  # the load can change under a still finger
        return f


class ForceSensors:
    """The fingertip force sensors as the ADC sees them (12-bit raw, then 16-bit)."""

    def __init__(self, board, seed=0, noise_counts=0.7, force_cal=None):
        self.n = board.finger_count
        self.seed = seed
        self.noise_counts = float(noise_counts)
        self.force_cal = tuple(force_cal if force_cal is not None else board.force_cal)
        self.fault = [None] * self.n
        self.frozen = [0] * self.n
        self.last_raw = [0] * self.n
        self._keys_seed = None  # the seed self._keys were made for
        self._keys = ()

    def ideal_raw(self, index, force_n):
        offset, gain_q12 = self.force_cal[index]
        return offset + force_n * 100.0 * 4096.0 / gain_q12

    def raw12(self, index, force_n, t_ms):
        kind = self.fault[index]
        if kind is None:
            # a working sensor (one conversion per finger per control tick): the branch below
            # with the calibration and the noise inlined
            offset, gain_q12 = self.force_cal[index]
            x = offset + force_n * 100.0 * 4096.0 / gain_q12
            noise = self.noise_counts
            if noise:
                if self._keys_seed != self.seed:
                    keys = (_noise_key(self.seed, i) for i in range(self.n))
                    self._keys = tuple(_first_round(k) for k in keys)
                    self._keys_seed = self.seed
                if 0 <= t_ms < 0x3FFFFFFF:
                    # noise_unit(self.seed, index, t_ms), inlined: the key's first round done
                    # (see _first_round), and the sum of the four 16-bit fields of h taken as
                    # h - 65535 * (h>>16 + h>>32 + h>>48)
                    h = ((self._keys[index] ^ (t_ms + 1)) * 0xBF58476D1CE4E5B9) & _MASK64
                    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
                    h ^= h >> 31
                    total = h - 65535 * ((h >> 16) + (h >> 32) + (h >> 48))
                    x += noise * ((total / 65536.0 - 2.0) * 1.73)
                else:
                    x += noise * noise_unit(self.seed, index, t_ms)
            raw = round(x)  # x is a float: round() gives the int
            raw = 0 if raw < 0 else RAW_MAX if raw > RAW_MAX else raw
            self.last_raw[index] = raw
            return raw
        if kind == "open":
            raw = RAW_MAX
        elif kind == "short":
            raw = 0
        elif kind == "stuck":
            raw = self.frozen[index]
        else:
            x = self.ideal_raw(index, force_n)
            if self.noise_counts:
                x += self.noise_counts * noise_unit(self.seed, index, t_ms)
            if kind == "noisy":
                h = _mix(self.seed * 31 + index * 1_000_003 + t_ms * 7 + 0x5EED)
                if h % 3 == 0:
                    x = (h >> 8) % (RAW_MAX + 1)  # a loose wire: anything, any time
            raw = int(round(x))
            raw = 0 if raw < 0 else RAW_MAX if raw > RAW_MAX else raw
        self.last_raw[index] = raw
        return raw

    def u16(self, index, force_n, t_ms):
        return self.raw12(index, force_n, t_ms) * 65535 // RAW_MAX  # raw_to_u16

    def inject(self, index, kind):
        if kind is not None and kind not in SENSOR_FAULTS:
            raise ValueError("sensor fault %r: one of %s" % (kind, SENSOR_FAULTS))
        if kind == "stuck":
            self.frozen[index] = self.last_raw[index]
        self.fault[index] = kind
