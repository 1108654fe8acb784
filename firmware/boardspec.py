# Board data validation: reads a board table (boards/<id>/board.py, plain data) once at start-up,
# checks every field against explicit bounds and refuses unknown keys, so a typo or an impossible
# wiring stops the boot with a message naming the field instead of becoming a fault at run time.
# The field reference is docs/boards.md. Runs on the device and on the host; imports nothing but
# built-ins (this module is data checking, not hardware).

FORCE_CAP_MAX_CN = 20_000  # 200 N: no board may allow more, whatever its data says
STRENGTH_LEVELS = 10
REGION_NAMES = ("upper", "middle", "lower")
MCUS = ("esp32s3", "host")
CPU_FREQS_HZ = (80_000_000, 160_000_000, 240_000_000)  # what machine.freq() takes on the S3

# GPIOs that exist and are free to use. ESP32-S3: 22..25 do not exist, 26..32 are the SPI
# flash/PSRAM bus on every module. ADC pins must be ADC1 (GPIO 1..10): ADC2 is unusable while
# the radio runs (Wi-Fi at the factory).
_PINS = {
    "esp32s3": tuple(range(0, 22)) + tuple(range(33, 49)),
    "host": tuple(range(0, 64)),
}
_ADC_PINS = {
    "esp32s3": tuple(range(1, 11)),
    "host": tuple(range(0, 64)),
}

_PCA9685_ALLCALL = 0x70  # every PCA9685 answers here after reset
_PULSE_MIN_US = 500
_PULSE_MAX_US = 2500
_PULSE_SPAN_MIN_US = 200  # below this one PWM count is a large share of the stroke
_RAW_MAX = 4095  # 12-bit force readings
# (raw - offset) * gain_q12 must stay a small int on the device (below 2**30)
_GAIN_Q12_MAX = 200_000

_REQUIRED = object()


class BoardError(ValueError):
    # The message starts with the dotted field name: "fingers.channels[3]: duplicate ..."
    def __init__(self, field, detail):
        super().__init__("%s: %s" % (field, detail))
        self.field = field
        self.detail = detail


def _is_int(v):
    return type(v) is int  # bool is refused: True is not a GPIO number


def _is_seq(v):
    return isinstance(v, (tuple, list))


class _Section:
    # One dict of the board table. Every key read is recorded; done() refuses the rest
    # (Klipper-style: unknown options are errors, not ignored).

    def __init__(self, data, path):
        if not isinstance(data, dict):
            raise BoardError(path or "board", "must be a dict, got %s" % type(data).__name__)
        self._data = data
        self._path = path
        self._used = set()

    def field(self, key):
        return self._path + "." + key if self._path else key

    def raw(self, key, default=_REQUIRED):
        self._used.add(key)
        if key in self._data:
            return self._data[key]
        if default is _REQUIRED:
            raise BoardError(self.field(key), "missing")
        return default

    def int(self, key, minval, maxval, default=_REQUIRED):
        return _int(self.raw(key, default), self.field(key), minval, maxval)

    def bool(self, key, default=_REQUIRED):
        v = self.raw(key, default)
        if type(v) is not bool:
            raise BoardError(self.field(key), "must be True or False, got %r" % (v,))
        return v

    def str(self, key, maxlen, chars=None):
        v = self.raw(key)
        f = self.field(key)
        if not isinstance(v, str) or not v:
            raise BoardError(f, "must be a non-empty string, got %r" % (v,))
        if len(v) > maxlen:
            raise BoardError(f, "longer than %d characters" % maxlen)
        if chars is not None:
            for c in v:
                if c not in chars:
                    raise BoardError(f, "character %r not allowed" % c)
        return v

    def section(self, key):
        return _Section(self.raw(key), self.field(key))

    def done(self):
        extra = sorted(str(k) for k in self._data if k not in self._used)
        if extra:
            raise BoardError(self.field(extra[0]), "unknown key")


def _int(v, field, minval, maxval):
    if not _is_int(v):
        raise BoardError(field, "must be an integer, got %r" % (v,))
    if v < minval:
        raise BoardError(field, "%d below the minimum %d" % (v, minval))
    if v > maxval:
        raise BoardError(field, "%d above the maximum %d" % (v, maxval))
    return v


def _seq(v, field, minlen, maxlen):
    if not _is_seq(v):
        raise BoardError(field, "must be a tuple, got %r" % (v,))
    if len(v) < minlen or len(v) > maxlen:
        if minlen == maxlen:
            raise BoardError(field, "needs %d entries, got %d" % (minlen, len(v)))
        raise BoardError(field, "needs %d..%d entries, got %d" % (minlen, maxlen, len(v)))
    return tuple(v)


def _pair(v, field, minval, maxval):
    v = _seq(v, field, 2, 2)
    return (_int(v[0], field + "[0]", minval, maxval), _int(v[1], field + "[1]", minval, maxval))


class _Pins:
    # Pin checks for one MCU: the GPIO exists, is not reserved, and no two functions share it.
    def __init__(self, mcu):
        self._valid = _PINS[mcu]
        self._adc = _ADC_PINS[mcu]
        self._mcu = mcu
        self._owner = {}

    def take(self, v, field, adc=False):
        if not _is_int(v):
            raise BoardError(field, "must be a GPIO number, got %r" % (v,))
        if v not in self._valid:
            raise BoardError(field, "GPIO %d is not usable on %s" % (v, self._mcu))
        if adc and v not in self._adc:
            raise BoardError(field, "GPIO %d is not an ADC1 pin on %s" % (v, self._mcu))
        if v in self._owner:
            raise BoardError(field, "GPIO %d already used by %s" % (v, self._owner[v]))
        self._owner[v] = field
        return v

    def pin(self, sec, key, adc=False):
        return self.take(sec.raw(key), sec.field(key), adc)

    def pins(self, sec, key, minlen, maxlen, adc=False):
        f = sec.field(key)
        v = _seq(sec.raw(key), f, minlen, maxlen)
        return tuple(self.take(p, "%s[%d]" % (f, i), adc) for i, p in enumerate(v))


class Board:
    # The validated board: plain ints, strings, tuples and dicts. Attributes are listed in
    # docs/interfaces.md ("Board object"); sections keep their board-file keys.

    def __repr__(self):
        return "<Board %s: %d fingers>" % (self.id, self.finger_count)


def load(board_id):
    # Import boards.<board_id>.board and validate its BOARD table.
    if not isinstance(board_id, str) or not board_id or not _ident(board_id):
        raise BoardError("id", "bad board id %r" % (board_id,))
    pkg = __import__("boards." + board_id + ".board")
    data = getattr(pkg, board_id).board.BOARD
    b = validate(data)
    if b.id != board_id:
        raise BoardError("id", "%r does not match its module boards.%s" % (b.id, board_id))
    return b


_IDENT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _ident(s):
    for c in s:
        if c not in _IDENT_CHARS:
            return False
    return True


def validate(data):
    top = _Section(data, "")
    b = Board()
    b.id = top.str("id", 32, _IDENT_CHARS)
    b.name = top.str("name", 64)
    b.mcu = top.str("mcu", 16)
    if b.mcu not in MCUS:
        raise BoardError("mcu", "unknown MCU %r (known: %s)" % (b.mcu, ", ".join(MCUS)))
    pins = _Pins(b.mcu)
    # CPU clock the firmware sets at boot (hal.build): the control tick's time budget assumes
    # the ESP32-S3's 240 MHz; a stock build may boot at 160 MHz.
    b.cpu_freq_hz = top.int("cpu_freq_hz", 80_000_000, 240_000_000, 240_000_000)
    if b.cpu_freq_hz not in CPU_FREQS_HZ:
        raise BoardError("cpu_freq_hz", "%d is not one of 80, 160 or 240 MHz" % b.cpu_freq_hz)

    s = top.section("i2c")
    b.i2c = {
        "id": s.int("id", 0, 1),
        "sda": pins.pin(s, "sda"),
        "scl": pins.pin(s, "scl"),
        "freq_hz": s.int("freq_hz", 10_000, 1_000_000),
    }
    s.done()

    s = top.section("pwm")
    chips = _seq(s.raw("chips"), s.field("chips"), 1, 4)
    for i, a in enumerate(chips):
        f = "pwm.chips[%d]" % i
        _int(a, f, 0x40, 0x7F)
        if a == _PCA9685_ALLCALL:
            raise BoardError(f, "0x70 is the PCA9685 all-call address")
        if a in chips[:i]:
            raise BoardError(f, "duplicate chip address 0x%02x" % a)
    b.pwm = {
        "chips": chips,
        # the PCA9685 prescaler (3..255 from its 25 MHz oscillator) spans 24..1526 Hz
        "freq_hz": s.int("freq_hz", 24, 1526),
        "oe_pin": pins.pin(s, "oe_pin"),
    }
    s.done()
    period_us = 1_000_000 // b.pwm["freq_hz"]

    s = top.section("fingers")
    count = s.int("count", 1, 16 * len(chips))
    rows = s.int("rows", 1, 32)
    cols = s.int("cols", 1, 4)
    if rows * cols != count:
        raise BoardError(
            "fingers.count", "%d does not match rows * cols = %d" % (count, rows * cols)
        )
    regions = _regions(s.section("regions"), rows)
    channels = _finger_channels(s, count, chips)
    stroke_um = s.int("stroke_um", 1_000, 100_000)
    max_speed = s.int("max_speed_um_s", 100, 200_000)
    pulse_cal = _per_finger_pairs(s, "pulse_us", count, _pulse_pair, period_us)
    b.fingers = {
        "count": count,
        "rows": rows,
        "cols": cols,
        "regions": regions,
        "channels": channels,
        "stroke_um": stroke_um,
        "max_speed_um_s": max_speed,
        "pulse_us": s.raw("pulse_us"),
    }
    s.done()

    b.watchdog_ms = top.int("watchdog_ms", 100, 30_000)

    s = top.section("limits")
    cap = s.int("force_cap_cn", 100, FORCE_CAP_MAX_CN)
    b.limits = {
        "force_cap_cn": cap,
        "contact_threshold_cn": s.int("contact_threshold_cn", 1, cap - 1),
        "min_contacts": s.int("min_contacts", 1, count),
    }
    s.done()

    s = top.section("force")
    select = pins.pins(s, "mux_select", 4, 4)
    adcs = pins.pins(s, "adc", 1, 4, adc=True)
    settle = s.int("settle_us", 0, 1000)
    fchan = _force_channels(s, count, len(adcs))
    offsets = _per_finger_ints(s, "offset", count, 0, _RAW_MAX - 1)
    gains = _per_finger_ints(s, "gain_q12", count, 1, _GAIN_Q12_MAX)
    for i in range(count):
        full_cn = (_RAW_MAX - offsets[i]) * gains[i] >> 12
        if full_cn <= cap:
            # the sensor would saturate before the cap and over-force would go unseen
            raise BoardError(
                "force.gain_q12",
                "finger %d full scale %d cN is not above limits.force_cap_cn %d"
                % (i, full_cn, cap),
            )
    b.force = {
        "mux_select": select,
        "adc": adcs,
        "settle_us": settle,
        "channels": fchan,
        "offset": s.raw("offset"),
        "gain_q12": s.raw("gain_q12"),
    }
    s.done()

    s = top.section("legrest")
    full_ma = s.int("current_full_scale_ma", 100, 50_000)
    b.legrest = {
        "in1": pins.pin(s, "in1"),
        "in2": pins.pin(s, "in2"),
        "pwm_freq_hz": s.int("pwm_freq_hz", 100, 40_000),
        "duty_pct": s.int("duty_pct", 10, 100),
        "limit_top": pins.pin(s, "limit_top"),
        "limit_bottom": pins.pin(s, "limit_bottom"),
        "limit_active_low": s.bool("limit_active_low"),
        "current_adc": pins.pin(s, "current_adc", adc=True),
        "current_full_scale_ma": full_ma,
        "current_limit_ma": s.int("current_limit_ma", 100, full_ma),
        "travel_ms": s.int("travel_ms", 500, 60_000),
        # motor start-up current is not an obstruction: over-current is ignored this long
        "inrush_ms": s.int("inrush_ms", 0, 2_000, 200),
    }
    s.done()

    s = top.section("button")
    debounce = s.int("debounce_ms", 1, 100)
    long_ms = s.int("long_ms", max(500, debounce + 1), 30_000)
    b.button = {
        "pin": pins.pin(s, "pin"),
        "active_low": s.bool("active_low"),
        "debounce_ms": debounce,
        "long_ms": long_ms,
        "very_long_ms": s.int("very_long_ms", long_ms + 1, 60_000),
    }
    s.done()

    s = top.section("led")
    b.led = {"r": pins.pin(s, "r"), "g": pins.pin(s, "g"), "b": pins.pin(s, "b")}
    s.done()

    s = top.section("buzzer")
    b.buzzer = {"pin": pins.pin(s, "pin")}
    s.done()

    strength = _seq(top.raw("strength_cn"), "strength_cn", STRENGTH_LEVELS, STRENGTH_LEVELS)
    prev = b.limits["contact_threshold_cn"]
    for i, v in enumerate(strength):
        f = "strength_cn[%d]" % i
        _int(v, f, 1, cap - 1)
        if v <= prev:
            if i == 0:
                raise BoardError(f, "%d not above limits.contact_threshold_cn %d" % (v, prev))
            raise BoardError(f, "%d not above level %d's %d" % (v, i, prev))
        prev = v

    top.done()

    b.finger_count = count
    b.rows = rows
    b.cols = cols
    b.region_rows = regions
    b.stroke_um = stroke_um
    b.max_speed_um_s = max_speed
    b.force_cap_cn = cap
    b.contact_threshold_cn = b.limits["contact_threshold_cn"]
    b.min_contacts = b.limits["min_contacts"]
    b.strength_cn = strength
    b.pulse_cal = pulse_cal
    b.force_cal = tuple((offsets[i], gains[i]) for i in range(count))
    return b


def _regions(s, rows):
    # Half-open row ranges that cover rows 0..rows-1 in order upper, middle, lower (a region may
    # be empty on a small board).
    out = {}
    expect = 0
    for name in REGION_NAMES:
        f = s.field(name)
        start, end = _pair(s.raw(name), f, 0, rows)
        if start != expect:
            raise BoardError(
                f,
                "starts at row %d, expected %d: regions must partition the rows in order"
                % (start, expect),
            )
        if end < start:
            raise BoardError(f, "ends at row %d before it starts at %d" % (end, start))
        out[name] = (start, end)
        expect = end
    if expect != rows:
        raise BoardError(
            s.field("lower"), "ends at row %d, the board has %d rows" % (expect, rows)
        )
    s.done()
    return out


def _finger_channels(s, count, chips):
    f = s.field("channels")
    v = _seq(s.raw("channels"), f, count, count)
    seen = {}
    out = []
    for i, e in enumerate(v):
        fe = "%s[%d]" % (f, i)
        e = _seq(e, fe, 2, 2)
        addr, ch = e
        if not _is_int(addr) or addr not in chips:
            raise BoardError(fe, "chip %r is not in pwm.chips" % (addr,))
        _int(ch, fe + "[1]", 0, 15)
        if (addr, ch) in seen:
            raise BoardError(
                fe, "duplicate channel 0x%02x/%d (also finger %d)" % (addr, ch, seen[(addr, ch)])
            )
        seen[(addr, ch)] = i
        out.append((addr, ch))
    return tuple(out)


def _force_channels(s, count, n_adc):
    f = s.field("channels")
    v = _seq(s.raw("channels"), f, count, count)
    seen = {}
    out = []
    for i, e in enumerate(v):
        fe = "%s[%d]" % (f, i)
        e = _seq(e, fe, 2, 2)
        adc, ch = e
        if not _is_int(adc) or not 0 <= adc < n_adc:
            raise BoardError(fe, "ADC %r does not exist (force.adc has %d)" % (adc, n_adc))
        _int(ch, fe + "[1]", 0, 15)
        if (adc, ch) in seen:
            raise BoardError(
                fe, "duplicate mux input %d/%d (also finger %d)" % (adc, ch, seen[(adc, ch)])
            )
        seen[(adc, ch)] = i
        out.append((adc, ch))
    return tuple(out)


def _pulse_pair(v, field, period_us):
    lo, hi = _pair(v, field, _PULSE_MIN_US, _PULSE_MAX_US)
    if abs(hi - lo) < _PULSE_SPAN_MIN_US:
        raise BoardError(field, "span %d us is below %d us" % (abs(hi - lo), _PULSE_SPAN_MIN_US))
    if max(lo, hi) >= period_us:
        raise BoardError(
            field, "pulse %d us does not fit the %d us PWM period" % (max(lo, hi), period_us)
        )
    return (lo, hi)


def _per_finger_pairs(s, key, count, check, arg):
    # One (a, b) pair for every finger, or a tuple of `count` pairs (factory calibration).
    f = s.field(key)
    v = s.raw(key)
    if _is_seq(v) and len(v) == 2 and _is_int(v[0]) and _is_int(v[1]):
        p = check(v, f, arg)
        return tuple(p for _ in range(count))
    v = _seq(v, f, count, count)
    return tuple(check(e, "%s[%d]" % (f, i), arg) for i, e in enumerate(v))


def _per_finger_ints(s, key, count, minval, maxval):
    # One value for every finger, or a tuple of `count` values.
    f = s.field(key)
    v = s.raw(key)
    if _is_int(v):
        _int(v, f, minval, maxval)
        return tuple(v for _ in range(count))
    v = _seq(v, f, count, count)
    return tuple(_int(e, "%s[%d]" % (f, i), minval, maxval) for i, e in enumerate(v))
