# Flows: pattern generators. A flow is a small function
#
#     fn(t, row, col, rows, cols) -> intensity 0..100
#
# where t is the flow's own time in ms (already scaled by the tempo, starting at 0 when the
# flow is configured), row is the finger's row counted from the first row of the area, rows
# the number of rows the area spans, col the column (0 = left of the spine) of cols.
# Adding a flow = one function here + one FLOWS entry (+ a line in docs/treatments.md).
#
# Every flow ramps 0 -> 100 over at least 800 ms of flow time, so at the fastest tempo (400 %)
# a finger still takes >= 200 ms to go from rest to full: a person feels steps. Pattern.fill
# also limits every finger's change to 100 per 200 ms, which smooths the jumps a flow, area or
# tempo change would otherwise make.

from firmware.runtime import const, micropython

TEMPO_MIN_PCT = const(25)
TEMPO_MAX_PCT = const(400)

_WAVE_PASS_MS = const(6_000)  # one pass along the area; a cycle is there and back
# band half-width in rows * 100: a quarter of the area, between one and two rows (about three
# rows press at once on a long area; a short area still has resting rows beside the band)
_WAVE_HALF_WIDTH_MIN = const(100)
_WAVE_HALF_WIDTH_MAX = const(200)
_PULSE_MS = const(5_000)
_ALT_MS = const(6_000)
_HOLD_MS = const(14_000)
_WALK_STEP_MS = const(1_200)  # the next row starts as the previous one starts to release
_SLEW_MS = const(200)  # Pattern.fill: 0 -> 100 takes at least this long
_DT_MAX_MS = const(1_000)  # a late tick advances the pattern by at most this much
_T_WRAP = const(1 << 29)  # flow time wraps here (days of flow time: never in a session)


@micropython.native
def _trap(x, rise, hold, fall):
    # 0 -> 100 over rise ms, 100 for hold ms, 100 -> 0 over fall ms, then 0
    if x < rise:
        return x * 100 // rise if x > 0 else 0
    x -= rise
    if x < hold:
        return 100
    x -= hold
    if x < fall:
        return 100 - x * 100 // fall
    return 0


@micropython.native
def wave(t, row, col, rows, cols):
    # A band of rows travels from just above the area to just below it and back.
    p = t % (2 * _WAVE_PASS_MS)
    if p >= _WAVE_PASS_MS:
        p = 2 * _WAVE_PASS_MS - p
    centre = p * (rows + 1) * 100 // _WAVE_PASS_MS - 100  # in rows * 100, -100 .. rows * 100
    w = rows * 25
    if w < _WAVE_HALF_WIDTH_MIN:
        w = _WAVE_HALF_WIDTH_MIN
    elif w > _WAVE_HALF_WIDTH_MAX:
        w = _WAVE_HALF_WIDTH_MAX
    d = row * 100 - centre
    if d < 0:
        d = -d
    if d >= w:
        return 0
    return 100 - d * 100 // w


@micropython.native
def pulse(t, row, col, rows, cols):
    # the whole area presses and releases together: 1 s up, 1.5 s held, 1 s down, 1.5 s rest
    return _trap(t % _PULSE_MS, 1_000, 1_500, 1_000)


@micropython.native
def alternate(t, row, col, rows, cols):
    # left columns press in the first half of the cycle, right columns in the second; the two
    # sides never press at the same time
    if col * 2 >= cols:
        t += _ALT_MS // 2
    return _trap(t % _ALT_MS, 1_000, 1_000, 1_000)


@micropython.native
def hold(t, row, col, rows, cols):
    # sustained press with a slow release: 2 s up, 8 s held, 3 s down, 1 s rest
    return _trap(t % _HOLD_MS, 2_000, 8_000, 3_000)


@micropython.native
def _walk_row(step, rows):
    # steps go down the area row by row and back up (ends visited once per cycle)
    m = 2 * (rows - 1)
    if m <= 0:
        return 0
    p = step % m
    return p if p < rows else m - p


@micropython.native
def walk(t, row, col, rows, cols):
    # one row (its left and right finger) at a time: 0.8 s up, 0.4 s held, 0.8 s down; the next
    # row rises while this one releases, so the sum stays near one row's worth
    step = t // _WALK_STEP_MS
    x = t - step * _WALK_STEP_MS
    v = 0
    if _walk_row(step, rows) == row:
        v = _trap(x, 800, 400, 800)
    if step > 0 and _walk_row(step - 1, rows) == row:
        w = _trap(x + _WALK_STEP_MS, 800, 400, 800)
        if w > v:
            v = w
    return v


FLOWS = {
    "wave": wave,
    "pulse": pulse,
    "alternate": alternate,
    "hold": hold,
    "walk": walk,
}
FLOW_NAMES = ("wave", "pulse", "alternate", "hold", "walk")  # the order the docs and errors list
# What each flow's value depends on besides time: Pattern.fill computes it once per distinct
# (row, side) that matters instead of once per finger (wave: 13 calls a tick on 26 fingers,
# pulse: one). A new flow that is not listed is called for every finger.
_ROW = const(1)
_COL = const(2)
_USES = {"wave": _ROW, "pulse": 0, "alternate": _COL, "hold": 0, "walk": _ROW}


def check_tempo(tempo_pct):
    if type(tempo_pct) is not int or not TEMPO_MIN_PCT <= tempo_pct <= TEMPO_MAX_PCT:
        raise ValueError(
            "tempo must be an integer %d..%d %%, got %r"
            % (TEMPO_MIN_PCT, TEMPO_MAX_PCT, tempo_pct)
        )


def check_flow(flow):
    if not isinstance(flow, str) or flow not in FLOWS:
        raise ValueError("unknown flow %r (known: %s)" % (flow, ", ".join(FLOW_NAMES)))


class Pattern:
    # Runs one flow over one mask. fill() is called every tick with a millisecond count that
    # only needs to be non-decreasing (only differences are used; the flow restarts at its
    # beginning on configure()). Nothing is allocated after construction.

    def __init__(self, board):
        n = board.finger_count
        self._n = n
        self._cols = board.cols
        self._mask = bytearray(n)
        self._row = bytearray(n)  # row within the area's span
        self._col = bytearray(n)
        self._last = bytearray(n)  # previous output, for the slew limit
        self._key = bytearray(n)  # the finger's entry in _vals
        self._key_row = bytearray(n)  # per entry: the row and column it is computed for
        self._key_col = bytearray(n)
        self._vals = bytearray(n)  # this tick's value per entry
        self._keys = 0
        self._fn = None
        self._rows = 1
        self._tempo = 100
        self._t = 0
        self._acc = 0
        self._t_prev = -1
        self.flow = None
        self.tempo_pct = 100

    def configure(self, flow, mask, tempo_pct=100):
        check_flow(flow)
        check_tempo(tempo_pct)
        n = self._n
        if len(mask) != n:
            raise ValueError("mask needs %d entries, got %d" % (n, len(mask)))
        cols = self._cols
        first = -1
        last = 0
        for i in range(n):
            if mask[i]:
                r = i // cols
                if first < 0:
                    first = r
                last = r
        if first < 0:
            first = 0  # empty mask (no finger of the area is in contact): fill gives zeros
        for i in range(n):
            m = 1 if mask[i] else 0
            self._mask[i] = m
            self._row[i] = i // cols - first if m else 0
            self._col[i] = i % cols
        self._rows = last - first + 1
        # one entry per distinct (row, column) the flow's value can depend on, in finger order
        uses = _USES.get(flow, _ROW | _COL)
        keys = 0
        for i in range(n):
            r = self._row[i] if uses & _ROW else 0
            c = self._col[i] if uses & _COL else 0
            k = 0
            while k < keys and (self._key_row[k] != r or self._key_col[k] != c):
                k += 1
            if k == keys:
                self._key_row[k] = r
                self._key_col[k] = c
                keys += 1
            self._key[i] = k
        self._keys = keys
        self._fn = FLOWS[flow]
        self.flow = flow
        self._tempo = tempo_pct
        self.tempo_pct = tempo_pct
        self._t = 0
        self._acc = 0
        self._t_prev = -1

    def reset(self):
        # a new session: every finger starts from rest
        for i in range(self._n):
            self._last[i] = 0
        self._t_prev = -1

    @micropython.native
    def fill(self, t_ms, out):
        fn = self._fn
        last = self._last
        n = self._n
        if fn is None:
            for i in range(n):
                out[i] = 0
                last[i] = 0
            return
        tp = self._t_prev
        dt = t_ms - tp
        if tp < 0 or dt < 0:
            dt = 0  # first call after configure(), or the caller's clock restarted
        elif dt > _DT_MAX_MS:
            dt = _DT_MAX_MS
        self._t_prev = t_ms
        acc = self._acc + dt * self._tempo
        t = self._t + acc // 100
        self._acc = acc % 100
        if t >= _T_WRAP:
            t -= _T_WRAP
        self._t = t
        lim = (dt * 100 + _SLEW_MS - 1) // _SLEW_MS
        mask = self._mask
        rows = self._rows
        cols = self._cols
        vals = self._vals
        key_row = self._key_row
        key_col = self._key_col
        for k in range(self._keys):
            vals[k] = fn(t, key_row[k], key_col[k], rows, cols)
        key = self._key
        for i in range(n):
            if mask[i]:
                v = vals[key[i]]
                p = last[i]
                if v > p + lim:
                    v = p + lim
                elif v < p - lim:
                    v = p - lim
            else:
                v = 0
            last[i] = v
            out[i] = v
