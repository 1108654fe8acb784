# The unit's identity, written at the factory (docs/factory.md) and read at every boot: one
# JSON object in the data store (firmware/storage.py), file "identity" under /data.
#
#   board        board id under boards/ (the bundle must be built for it)      required
#   serial       the unit's serial number (DIS, advertised name), 1..32 chars   required
#   hardware     hardware revision (DIS), 1..32 chars                          required
#   update_key   public half of the bundle signing key, 64 lowercase hex       optional*
#   calibration  factory calibration per finger, optional; either part optional:
#     force      [[offset, gain_q12], ...]   one pair per finger: raw 12-bit reading at zero
#                force (0..4094) and centinewtons per count x 4096 (1..200000), as
#                firmware/drivers/forcearray.py ForceArray.set_cal takes them; the full scale
#                (4095 - offset) * gain_q12 >> 12 must exceed the board's force cap
#     pulse_us   [[at_0, at_full], ...]      one pair per finger: pulse width at 0 and at full
#                stroke, as FingerBank.set_cal takes them; each 500..2500 us and shorter than
#                the PWM period, the two at least 200 us apart (docs/boards.md "pulse_us")
# (*) provisioning always writes update_key; without it the device cannot verify an update, so
# it refuses every upload, but it still runs.
#
# check() is strict (unknown keys, wrong types, out-of-range values are refused with the dotted
# field in the message, as boardspec does): a malformed file is set aside by the store and the
# device runs unprovisioned with the board's default calibration, never with half a calibration.
# The host tools (tools/backhug_host/factory/) import this module to validate what they write.

from firmware import boardspec

NAME = "identity"
KEYS = ("board", "serial", "hardware", "update_key", "calibration")
REQUIRED = ("board", "serial", "hardware")
CAL_KEYS = ("force", "pulse_us")
TEXT_MAX = 32

_HEX = "0123456789abcdef"
_RAW_MAX = 4095
_GAIN_Q12_MAX = 200_000  # as forcearray: keeps (raw - offset) * gain below 2**30
_PULSE_MIN_US = 500
_PULSE_MAX_US = 2500
_PULSE_SPAN_MIN_US = 200


def _text(v, field):
    if type(v) is not str or not 0 < len(v) <= TEXT_MAX:
        raise ValueError("%s: 1..%d characters" % (field, TEXT_MAX))
    for c in v:
        if not " " <= c <= "~":
            raise ValueError("%s: printable ASCII only" % field)


def _int(v, field, lo, hi):
    if type(v) is not int:
        raise ValueError("%s: an integer" % field)
    if not lo <= v <= hi:
        raise ValueError("%s: %d outside %d..%d" % (field, v, lo, hi))
    return v


def _pairs(v, field, count):
    if type(v) is not list and type(v) is not tuple:
        raise ValueError("%s: a list of %d pairs" % (field, count))
    if len(v) != count:
        raise ValueError("%s: %d entries, the board has %d fingers" % (field, len(v), count))
    for i in range(count):
        p = v[i]
        if (type(p) is not list and type(p) is not tuple) or len(p) != 2:
            raise ValueError("%s[%d]: a pair" % (field, i))
    return v


def check_force(pair, field, board):
    # One sensor's (offset, gain_q12) against the driver's bounds and the board's force cap.
    off = _int(pair[0], field + ".offset", 0, _RAW_MAX - 1)
    gain = _int(pair[1], field + ".gain_q12", 1, _GAIN_Q12_MAX)
    full = (_RAW_MAX - off) * gain >> 12
    if full <= board.force_cap_cn:
        # the sensor would saturate below the cap and an over-force could hide
        raise ValueError(
            "%s: full scale %d cN not above the force cap %d cN"
            % (field, full, board.force_cap_cn)
        )


def check_pulse(pair, field, board):
    period_us = 1_000_000 // board.pwm["freq_hz"]
    p0 = _int(pair[0], field + ".at_0", _PULSE_MIN_US, _PULSE_MAX_US)
    p1 = _int(pair[1], field + ".at_full", _PULSE_MIN_US, _PULSE_MAX_US)
    if max(p0, p1) >= period_us:
        raise ValueError(
            "%s: %d us does not fit the %d us PWM period" % (field, max(p0, p1), period_us)
        )
    if abs(p1 - p0) < _PULSE_SPAN_MIN_US:
        raise ValueError("%s: span %d us below %d us" % (field, abs(p1 - p0), _PULSE_SPAN_MIN_US))


def load_board(board_id):
    # The validated board an identity names, or ValueError.
    try:
        return boardspec.load(board_id)
    except ImportError:
        raise ValueError("identity.board: no board %r in this firmware" % (board_id,))
    except boardspec.BoardError as e:
        raise ValueError("identity.board: board %r is invalid: %s" % (board_id, e))


def check(obj, board=None):
    # Raises ValueError naming the first bad field. board: the validated Board the identity
    # must match (None: load the one it names).
    if type(obj) is not dict:
        raise ValueError("identity: not an object")
    for k in obj:
        if k not in KEYS:
            raise ValueError("identity: unknown key %r" % (k,))
    for k in REQUIRED:
        if k not in obj:
            raise ValueError("identity.%s: missing" % k)
        _text(obj[k], "identity." + k)
    if "update_key" in obj:
        v = obj["update_key"]
        if type(v) is not str or len(v) != 64 or any(c not in _HEX for c in v):
            raise ValueError("identity.update_key: 64 lowercase hex digits")
    if board is None:
        board = load_board(obj["board"])
    elif board.id != obj["board"]:
        raise ValueError("identity.board: %r, this is board %r" % (obj["board"], board.id))
    cal = obj.get("calibration")
    if cal is None:
        return
    if type(cal) is not dict:
        raise ValueError("identity.calibration: an object")
    n = board.finger_count
    for k in cal:
        if k not in CAL_KEYS:
            raise ValueError("identity.calibration: unknown key %r" % (k,))
    if "force" in cal:
        f = "identity.calibration.force"
        v = _pairs(cal["force"], f, n)
        for i in range(n):
            check_force(v[i], "%s[%d]" % (f, i), board)
    if "pulse_us" in cal:
        f = "identity.calibration.pulse_us"
        v = _pairs(cal["pulse_us"], f, n)
        for i in range(n):
            check_pulse(v[i], "%s[%d]" % (f, i), board)


def load(store):
    # The identity in `store`, or {} when missing or malformed (the store sets a bad file aside
    # and records why in store.problems). A device without one runs unprovisioned.
    return store.load(NAME, None, check) or {}


def apply(identity, hw, board):
    # Applies the identity's factory calibration to the drivers hw (firmware.hal.build(board));
    # returns the number of calibration values applied (0 without a calibration). Best called
    # between hal.build(board, init=False) and hw.init(), so the home pulses init() writes are
    # already the calibrated ones; called after init() it re-sends the current targets with the
    # new calibration. ValueError if the identity does not fit this board (nothing applied).
    if not identity:
        return 0
    check(identity, board)
    cal = identity.get("calibration") or {}
    force = cal.get("force")
    pulse = cal.get("pulse_us")
    n = 0
    if force is not None:
        for i in range(board.finger_count):
            hw.forces.set_cal(i, force[i][0], force[i][1])
            n += 1
    if pulse is not None:
        fb = hw.fingers
        for i in range(board.finger_count):
            fb.set_cal(i, pulse[i][0], pulse[i][1])
            n += 1
        try:
            fb.write()  # already running: home (or wherever it is) with the new calibration
        except Exception:  # not initialised yet (init() writes home), or a chip fault it reports
            pass
    return n


def force_cal(identity, board):
    # Per finger (offset, gain_q12): the identity's calibration, else the board's default.
    cal = (identity or {}).get("calibration") or {}
    v = cal.get("force")
    if v is None:
        return tuple(board.force_cal)
    return tuple((p[0], p[1]) for p in v)


def pulse_cal(identity, board):
    # Per finger (at_0, at_full): the identity's calibration, else the board's default.
    cal = (identity or {}).get("calibration") or {}
    v = cal.get("pulse_us")
    if v is None:
        return tuple(board.pulse_cal)
    return tuple((p[0], p[1]) for p in v)
