# Programmes: an ordered list of treatment steps uploaded by the app (DESIGN section 6).
# parse() validates the decoded JSON once, on arrival, against this board: every unknown key
# or value is rejected with a reason naming the step and the field; nothing is clamped.
#
#   {"name": "Desk back",                                  optional, <= 32 characters
#    "steps": [{"area": "upper", "flow": "wave", "strength": 4, "duration_s": 300},
#              {"mask": 1023, "flow": "hold", "strength": 5, "duration_s": 120, "tempo": 75}]}
#
# A step has exactly one of "area" (a name from areas.AREAS) or "mask" (finger bit mask, bit i =
# finger i), a "flow" (flows.FLOWS), a "strength" 1..10, a "duration_s" > 0 and optionally a
# "tempo" in percent (25..400, default 100). At most MAX_STEPS steps and MAX_TOTAL_MS in all.

from firmware.runtime import const
from firmware.treatments import areas, flows, strength

MAX_STEPS = const(32)
MAX_TOTAL_MS = const(3_600_000)  # 60 minutes, the maker's limit for one session
MAX_NAME_LEN = const(32)

_TOP_KEYS = ("steps", "name")
_STEP_KEYS = ("area", "mask", "flow", "strength", "duration_s", "tempo")


class ProgrammeError(ValueError):
    # step: 1-based step number, or 0 for the programme as a whole; field: the key at fault
    def __init__(self, step, field, reason):
        where = "step %d" % step if step else "programme"
        super().__init__("%s: %s: %s" % (where, field, reason))
        self.step = step
        self.field = field
        self.reason = reason


class Step:
    def __init__(self, area, mask, flow, strength_level, duration_ms, tempo):
        self.area = area  # area name, or None when the step gave a mask
        self.mask = mask  # bytearray, one 0/1 per finger
        self.flow = flow
        self.strength = strength_level
        self.duration_ms = duration_ms
        self.tempo = tempo


class Programme:
    def __init__(self, name, steps, total_ms):
        self.name = name
        self.steps = steps  # tuple of Step
        self.total_ms = total_ms


def _is_int(v):
    return type(v) is int  # True and False are not numbers here


def _short(v):
    # the offending value in a message, kept short (a reason must fit a BLE reply)
    s = repr(v)
    return s if len(s) <= 24 else s[:21] + "..."


def _key(key):
    # an unknown key as the field of a message
    return key if isinstance(key, str) and len(key) <= 24 else _short(key)


def _step(k, obj, board):
    if not isinstance(obj, dict):
        raise ProgrammeError(k, "step", "must be an object, got %s" % _short(obj))
    for key in obj:
        if key not in _STEP_KEYS:
            raise ProgrammeError(k, _key(key), "unknown key")
    has_area = "area" in obj
    has_mask = "mask" in obj
    if has_area and has_mask:
        raise ProgrammeError(k, "area", "give either area or mask, not both")
    if not has_area and not has_mask:
        raise ProgrammeError(k, "area", "missing (give area or mask)")
    area = None
    if has_area:
        area = obj["area"]
        if not isinstance(area, str) or area not in areas.AREAS:
            raise ProgrammeError(
                k, "area", "unknown area %s (known: %s)" % (_short(area), ", ".join(areas.AREAS))
            )
        try:
            mask = areas.area_mask(board, area)
        except ValueError as e:
            raise ProgrammeError(k, "area", str(e)) from None
    else:
        bits = obj["mask"]
        if not _is_int(bits):
            raise ProgrammeError(k, "mask", "must be an integer bit mask, got %s" % _short(bits))
        try:
            mask = areas.mask_from_bits(board, bits)
        except ValueError as e:
            raise ProgrammeError(k, "mask", str(e)) from None

    if "flow" not in obj:
        raise ProgrammeError(k, "flow", "missing")
    flow = obj["flow"]
    if not isinstance(flow, str) or flow not in flows.FLOWS:
        raise ProgrammeError(
            k, "flow", "unknown flow %s (known: %s)" % (_short(flow), ", ".join(flows.FLOW_NAMES))
        )

    if "strength" not in obj:
        raise ProgrammeError(k, "strength", "missing")
    level = obj["strength"]
    if not _is_int(level) or not strength.LEVEL_MIN <= level <= strength.LEVEL_MAX:
        raise ProgrammeError(
            k,
            "strength",
            "must be an integer %d..%d, got %s"
            % (strength.LEVEL_MIN, strength.LEVEL_MAX, _short(level)),
        )

    if "duration_s" not in obj:
        raise ProgrammeError(k, "duration_s", "missing")
    duration_s = obj["duration_s"]
    if not _is_int(duration_s) or duration_s <= 0:
        raise ProgrammeError(
            k, "duration_s", "must be a positive integer (seconds), got %s" % _short(duration_s)
        )
    if duration_s > MAX_TOTAL_MS // 1000:
        raise ProgrammeError(
            k,
            "duration_s",
            "%d s is longer than a session (%d s)" % (duration_s, MAX_TOTAL_MS // 1000),
        )

    tempo = obj.get("tempo", 100)
    if not _is_int(tempo) or not flows.TEMPO_MIN_PCT <= tempo <= flows.TEMPO_MAX_PCT:
        raise ProgrammeError(
            k,
            "tempo",
            "must be an integer %d..%d (percent), got %s"
            % (flows.TEMPO_MIN_PCT, flows.TEMPO_MAX_PCT, _short(tempo)),
        )
    return Step(area, mask, flow, level, duration_s * 1000, tempo)


def parse(obj, board):
    if not isinstance(obj, dict):
        raise ProgrammeError(0, "programme", "must be an object, got %s" % _short(obj))
    for key in obj:
        if key not in _TOP_KEYS:
            raise ProgrammeError(0, _key(key), "unknown key")
    name = obj.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LEN:
        raise ProgrammeError(0, "name", "must be a string of at most %d characters" % MAX_NAME_LEN)
    if "steps" not in obj:
        raise ProgrammeError(0, "steps", "missing")
    raw = obj["steps"]
    if not isinstance(raw, (list, tuple)):
        raise ProgrammeError(0, "steps", "must be a list, got %s" % _short(raw))
    if not raw:
        raise ProgrammeError(0, "steps", "empty programme")
    if len(raw) > MAX_STEPS:
        raise ProgrammeError(0, "steps", "%d steps, at most %d" % (len(raw), MAX_STEPS))
    steps = []
    total = 0
    for k in range(len(raw)):
        step = _step(k + 1, raw[k], board)
        total += step.duration_ms
        if total > MAX_TOTAL_MS:
            raise ProgrammeError(
                k + 1,
                "duration_s",
                "programme total %d s is over the %d-minute limit"
                % (total // 1000, MAX_TOTAL_MS // 60_000),
            )
        steps.append(step)
    return Programme(name, tuple(steps), total)
