# The BackHug BLE wire format, version 1 (docs/ble-protocol.md is the reference; keep the two in
# step). Every value is little-endian with a fixed layout; this module packs and unpacks them and
# knows nothing of aioble, so the device, the reference client and the tests share one codec.
# Decoders raise ValueError with a reason a phone can show; they never trust a length.

import struct

from firmware.runtime import const

PROTOCOL_MAJOR = const(1)
PROTOCOL_MINOR = const(0)


def _uuid(n):
    return "b4c4%04x-5e5a-4b48-8e9a-6261636b6875" % n


SERVICE_UUID = _uuid(0x0001)
PROTOCOL_UUID = _uuid(0x0002)
STRENGTH_UUID = _uuid(0x0003)
AREA_UUID = _uuid(0x0004)
FLOW_UUID = _uuid(0x0005)
CONTROL_UUID = _uuid(0x0006)
STATE_UUID = _uuid(0x0007)
TELEMETRY_UUID = _uuid(0x0008)
TENSION_UUID = _uuid(0x0009)
HISTORY_UUID = _uuid(0x000A)
FAULTLOG_UUID = _uuid(0x000B)
PROGRAMME_UUID = _uuid(0x000C)

# Device Information Service (Bluetooth SIG assigned numbers)
DIS_UUID = const(0x180A)
DIS_MANUFACTURER = const(0x2A29)
DIS_MODEL = const(0x2A24)
DIS_SERIAL = const(0x2A25)
DIS_HARDWARE = const(0x2A27)
DIS_FIRMWARE = const(0x2A26)

ATT_DEFAULT_MTU = const(23)
ATT_MAX_MTU = const(247)  # what the device offers; the phone picks the smaller of the two
ATT_HEADER = const(3)  # opcode + handle in front of every notification's value

# Result codes: 0..5 are firmware.commands' codes, the rest are the protocol's own.
OK = const(0)
E_STATE = const(1)
E_VALUE = const(2)
E_BUSY = const(3)
E_FAULT = const(4)
E_NO_PERSON = const(5)
E_LENGTH = const(16)  # the write's length does not fit its opcode
E_OPCODE = const(17)  # unknown opcode
E_AUTH = const(18)  # the link is not encrypted and bonded
E_NO_PROGRAMME = const(19)  # start-programme without a validated upload
RESULT_NAMES = {
    OK: "ok",
    E_STATE: "wrong state",
    E_VALUE: "bad value",
    E_BUSY: "busy",
    E_FAULT: "fault latched",
    E_NO_PERSON: "no person",
    E_LENGTH: "bad length",
    E_OPCODE: "unknown opcode",
    E_AUTH: "not bonded",
    E_NO_PROGRAMME: "no programme uploaded",
}

# Session control point opcodes (written by the phone)
OP_START = const(0x01)  # minutes u8, user u8
OP_START_PROGRAMME = const(0x02)  # user u8
OP_PAUSE = const(0x03)
OP_RESUME = const(0x04)
OP_STOP = const(0x05)
OP_ACKNOWLEDGE = const(0x06)
OP_SELECT_HISTORY = const(0x07)  # user u8, index u8 (0 = newest)
OP_SELECT_FAULT = const(0x08)  # index u8 (0 = newest)
# Answers to writes on the setting characteristics come through the control point too.
OP_SET_STRENGTH = const(0x10)
OP_SET_AREA = const(0x11)
OP_SET_FLOW = const(0x12)
RESPONSE = const(0x80)
OP_NAMES = {
    OP_START: "start",
    OP_START_PROGRAMME: "start programme",
    OP_PAUSE: "pause",
    OP_RESUME: "resume",
    OP_STOP: "stop",
    OP_ACKNOWLEDGE: "acknowledge",
    OP_SELECT_HISTORY: "select history",
    OP_SELECT_FAULT: "select fault",
    OP_SET_STRENGTH: "set strength",
    OP_SET_AREA: "set area",
    OP_SET_FLOW: "set flow",
}
# parameter bytes after (opcode, token), per opcode
_PARAMS = {
    OP_START: 2,
    OP_START_PROGRAMME: 1,
    OP_PAUSE: 0,
    OP_RESUME: 0,
    OP_STOP: 0,
    OP_ACKNOWLEDGE: 0,
    OP_SELECT_HISTORY: 2,
    OP_SELECT_FAULT: 1,
}

# Programme upload opcodes (written to and answered on the programme characteristic)
UP_BEGIN = const(0x01)  # total length u16, CRC-32 u32
UP_DATA = const(0x02)  # offset u16, bytes
UP_COMMIT = const(0x03)
UP_ABORT = const(0x04)
PROGRAMME_MAX = const(4096)  # bytes of programme JSON

# Wire ids for names (index = id). 0xFF: not one of them (a programme's mixed settings).
AREA_IDS = ("upper", "middle", "lower", "full")
FLOW_IDS = ("wave", "pulse", "alternate", "hold", "walk")
STATE_IDS = (
    "idle",
    "scanning",
    "legrest_rising",
    "warmup",
    "treating",
    "cooldown",
    "paused",
    "finishing",
)
END_IDS = (
    "",
    "completed",
    "stopped",
    "no person detected",
    "person got up",
    "paused too long",
    "60-minute limit",
)
END_OTHER = const(7)  # ended by a fault (the state's fault field says which)
LEGREST_IDS = ("down", "rising", "up", "lowering", "stopped", "fault")
NONE_ID = const(0xFF)

# State flags
F_PERSON = const(0x01)  # someone lies on the device
F_PROGRAMME = const(0x02)  # the session runs an uploaded programme
F_UPDATING = const(0x04)  # a firmware update is in progress
F_PAIRING = const(0x08)  # the pairing window is open
F_SAFE_STOP = const(0x10)  # outputs held safe (stop pressed or a fault latched)

_PROTOCOL = "<BBBBBBH"
PROTOCOL_SIZE = struct.calcsize(_PROTOCOL)  # 8
_STATE = "<BBBBBBHHHBB"
STATE_SIZE = struct.calcsize(_STATE)  # 14
TELEMETRY_HEADER = const(6)  # seq, first finger, count, leg rest, level, target force N
TELEMETRY_FINGER = const(4)  # force cN u16, position in 10 um u16
_REPORT = "<BBBBHBB6I6I"
REPORT_SIZE = struct.calcsize(_REPORT)  # 56
_HISTORY = "<BBBBIHBBB6I6I"
HISTORY_SIZE = struct.calcsize(_HISTORY)  # 61
_FAULT = "<BBBBIII24s"
FAULT_SIZE = struct.calcsize(_FAULT)  # 40
DETAIL_MAX = const(24)
UP_ANSWER_HEAD = const(4)  # op, result, next offset u16
CONTROL_ANSWER_HEAD = const(4)  # 0x80, op, token, result
CONTROL_MAX = const(8)  # longest control-point write
# Value buffers the device must size (aioble's default is 20 bytes; longer writes are cut).
PROGRAMME_WRITE_MAX = const(ATT_MAX_MTU - ATT_HEADER)


def name_id(names, name):
    for i in range(len(names)):
        if names[i] == name:
            return i
    return NONE_ID


def id_name(names, i):
    if 0 <= i < len(names):
        return names[i]
    raise ValueError("unknown id %d" % i)


def end_id(reason):
    if reason is None:
        return 0
    i = name_id(END_IDS, reason)
    return END_OTHER if i == NONE_ID else i


def text(s, room):
    # a reason string cut to `room` bytes without splitting a UTF-8 character
    b = s.encode()
    if len(b) <= room:
        return b
    cut = room
    while cut > 0 and (b[cut] & 0xC0) == 0x80:
        cut -= 1  # b[cut] continues the character that straddles the cut: leave it all out
    return b[:cut]


def payload_room(mtu):
    # bytes of value one notification carries on a link with this ATT MTU
    if mtu is None or mtu < ATT_DEFAULT_MTU:
        mtu = ATT_DEFAULT_MTU
    return min(mtu, ATT_MAX_MTU) - ATT_HEADER


# -- protocol (read) --------------------------------------------------------------------------


def pack_protocol(fingers, rows, cols, area_bits):
    return struct.pack(
        _PROTOCOL, PROTOCOL_MAJOR, PROTOCOL_MINOR, fingers, rows, cols, area_bits, PROGRAMME_MAX
    )


def unpack_protocol(b):
    if len(b) < PROTOCOL_SIZE:
        raise ValueError("protocol: %d bytes, expected %d" % (len(b), PROTOCOL_SIZE))
    major, minor, fingers, rows, cols, bits, pmax = struct.unpack_from(_PROTOCOL, b)
    return {
        "major": major,
        "minor": minor,
        "fingers": fingers,
        "rows": rows,
        "cols": cols,
        "areas": [AREA_IDS[i] for i in range(len(AREA_IDS)) if bits & (1 << i)],
        "programme_max": pmax,
    }


# -- settings ----------------------------------------------------------------------------------


def pack_strength(level):
    return struct.pack("<B", level)


def pack_area(name):
    i = name_id(AREA_IDS, name)
    if i == NONE_ID:
        raise ValueError("unknown area %r" % (name,))
    return struct.pack("<B", i)


def pack_flow(name, tempo_pct):
    i = name_id(FLOW_IDS, name)
    if i == NONE_ID:
        raise ValueError("unknown flow %r" % (name,))
    return struct.pack("<BB", i, tempo_pct)


def unpack_setting(kind, b):
    # kind: "strength", "area" or "flow". Returns level, area name, or (flow name, tempo).
    # NONE_ID (a programme's mixed area or flow) reads as None.
    if kind == "flow":
        if len(b) != 2:
            raise ValueError("flow: 2 bytes (flow id, tempo %%), got %d" % len(b))
        return (None if b[0] == NONE_ID else id_name(FLOW_IDS, b[0]), b[1])
    if len(b) != 1:
        raise ValueError("%s: 1 byte, got %d" % (kind, len(b)))
    if kind == "area":
        return None if b[0] == NONE_ID else id_name(AREA_IDS, b[0])
    return b[0]


# -- control point -----------------------------------------------------------------------------


def pack_command(op, token=0, *params):
    if op not in _PARAMS:
        raise ValueError("unknown opcode %d" % op)
    if len(params) != _PARAMS[op]:
        raise ValueError("%s takes %d parameter bytes" % (OP_NAMES[op], _PARAMS[op]))
    return bytes((op, token & 0xFF) + tuple(params))


def unpack_command(b):
    # -> (op, token, params bytes); raises ValueError (code, reason) packed as args
    if len(b) < 2:
        raise ValueError(E_LENGTH, "a command is opcode, token, parameters")
    op = b[0]
    if op not in _PARAMS:
        raise ValueError(E_OPCODE, "unknown opcode 0x%02x" % op)
    if len(b) != 2 + _PARAMS[op]:
        raise ValueError(E_LENGTH, "%s: %d parameter bytes" % (OP_NAMES[op], _PARAMS[op]))
    return op, b[1], bytes(b[2:])


def pack_answer(op, token, result, reason, mtu):
    room = payload_room(mtu) - CONTROL_ANSWER_HEAD
    return bytes((RESPONSE, op, token, result)) + text(reason or "", room)


def unpack_answer(b):
    if len(b) < CONTROL_ANSWER_HEAD or b[0] != RESPONSE:
        raise ValueError("not a control-point answer: %r" % bytes(b))
    return {
        "op": b[1],
        "token": b[2],
        "result": b[3],
        "reason": bytes(b[4:]).decode("utf-8", "replace"),
    }


# -- session state -----------------------------------------------------------------------------


def pack_state(buf, *fields):
    # fields: state, fault, step, level, area, flow, elapsed_s, remaining_s, total_s, flags, end
    struct.pack_into(_STATE, buf, 0, *fields)


def unpack_state(b):
    if len(b) < STATE_SIZE:
        raise ValueError("state: %d bytes, expected %d" % (len(b), STATE_SIZE))
    st, fault, step, level, area, flow, el, rem, tot, flags, end = struct.unpack_from(_STATE, b)
    return {
        "state": STATE_IDS[st] if st < len(STATE_IDS) else "state %d" % st,
        "fault": fault,
        "step": None if step == NONE_ID else step,
        "strength": level,
        "area": AREA_IDS[area] if area < len(AREA_IDS) else None,
        "flow": FLOW_IDS[flow] if flow < len(FLOW_IDS) else None,
        "elapsed_s": el,
        "remaining_s": rem,
        "total_s": tot,
        "person": bool(flags & F_PERSON),
        "programme": bool(flags & F_PROGRAMME),
        "updating": bool(flags & F_UPDATING),
        "pairing": bool(flags & F_PAIRING),
        "safe_stop": bool(flags & F_SAFE_STOP),
        "end": END_IDS[end] if end < len(END_IDS) else "fault",
    }


# -- telemetry ---------------------------------------------------------------------------------


def telemetry_fingers_per_packet(mtu):
    return (payload_room(mtu) - TELEMETRY_HEADER) // TELEMETRY_FINGER


def pack_telemetry(buf, seq, first, count, legrest, level, target_cn, forces_cn, positions_um):
    # into buf (a preallocated bytearray); returns the number of bytes used
    target_n = (target_cn + 50) // 100
    struct.pack_into(
        "<BBBBBB", buf, 0, seq & 0xFF, first, count, legrest, level, min(max(target_n, 0), 255)
    )
    o = TELEMETRY_HEADER
    for i in range(first, first + count):
        f = forces_cn[i]
        p = positions_um[i] // 10
        struct.pack_into(
            "<HH", buf, o, 0 if f < 0 else (f if f < 0xFFFF else 0xFFFF), p if p > 0 else 0
        )
        o += TELEMETRY_FINGER
    return o


def unpack_telemetry(b):
    if len(b) < TELEMETRY_HEADER:
        raise ValueError("telemetry: %d bytes" % len(b))
    seq, first, count, legrest, level, target_n = struct.unpack_from("<BBBBBB", b)
    if len(b) != TELEMETRY_HEADER + TELEMETRY_FINGER * count:
        raise ValueError("telemetry: %d bytes for %d fingers" % (len(b), count))
    forces = []
    positions = []
    for k in range(count):
        f, p = struct.unpack_from("<HH", b, TELEMETRY_HEADER + TELEMETRY_FINGER * k)
        forces.append(f)
        positions.append(p * 10)
    return {
        "seq": seq,
        "first": first,
        "forces_cn": forces,
        "positions_um": positions,
        "legrest": LEGREST_IDS[legrest] if legrest < len(LEGREST_IDS) else "unknown",
        "level": level,
        "target_n": target_n,
    }


# -- tension report, history, fault log --------------------------------------------------------


def _six(values):
    v = list(values)[:6]
    return [min(max(int(x), 0), 0xFFFFFFFF) for x in v] + [0] * (6 - len(v))


def pack_report(result):
    # the last finished session (firmware.session's report dict), or None
    if result is None:
        return struct.pack(_REPORT, 0, 0, 0, 0, 0, 0, 0, *([0] * 12))
    return struct.pack(
        _REPORT,
        1,
        result["user"],
        end_id(result["reason"]),
        result["strength"],
        min(result["elapsed_ms"] // 1000, 0xFFFF),
        min(result["contacts"], 0xFF),
        1 if result["tracked"] else 0,
        *(_six(result["before"]) + _six(result["after"])),
    )


def unpack_report(b):
    if len(b) < REPORT_SIZE:
        raise ValueError("tension report: %d bytes, expected %d" % (len(b), REPORT_SIZE))
    v = struct.unpack_from(_REPORT, b)
    if not v[0]:
        return None
    return {
        "user": v[1],
        "end": END_IDS[v[2]] if v[2] < len(END_IDS) else "fault",
        "strength": v[3],
        "elapsed_s": v[4],
        "contacts": v[5],
        "tracked": bool(v[6]),
        "before": list(v[7:13]),
        "after": list(v[13:19]),
    }


def pack_history(status, user, index, count, rec=None):
    # status 0: rec is a firmware.history record with "seq"; 1: no record at that index
    if rec is None:
        none = (0, 0, NONE_ID, NONE_ID, 0) + (0,) * 12
        return struct.pack(_HISTORY, status, user, index, count, *none)
    return struct.pack(
        _HISTORY,
        status,
        user,
        index,
        count,
        rec["seq"],
        rec["duration_s"],
        name_id(AREA_IDS, rec["area"]),
        name_id(FLOW_IDS, rec["flow"]),
        rec["strength"],
        *(_six(rec["before"]) + _six(rec["after"])),
    )


def unpack_history(b):
    if len(b) < HISTORY_SIZE:
        raise ValueError("history: %d bytes, expected %d" % (len(b), HISTORY_SIZE))
    v = struct.unpack_from(_HISTORY, b)
    out = {"found": v[0] == 0, "user": v[1], "index": v[2], "count": v[3]}
    if v[0] == 0:
        out.update(
            {
                "seq": v[4],
                "duration_s": v[5],
                "area": AREA_IDS[v[6]] if v[6] < len(AREA_IDS) else "programme",
                "flow": FLOW_IDS[v[7]] if v[7] < len(FLOW_IDS) else "mixed",
                "strength": v[8],
                "before": list(v[9:15]),
                "after": list(v[15:21]),
            }
        )
    return out


def pack_fault(status, index, count, entry=None):
    if entry is None:
        return struct.pack(_FAULT, status, index, count, 0, 0, 0, 0, b"")
    detail = text(entry["detail"], DETAIL_MAX)
    return struct.pack(
        _FAULT,
        status,
        index,
        count,
        entry["code"] & 0xFF,
        entry["seq"],
        entry["boot"],
        entry["session_ms"],
        detail,
    )


def unpack_fault(b):
    if len(b) < FAULT_SIZE:
        raise ValueError("fault entry: %d bytes, expected %d" % (len(b), FAULT_SIZE))
    status, index, count, code, seq, boot, session_ms, detail = struct.unpack_from(_FAULT, b)
    out = {"found": status == 0, "index": index, "count": count}
    if status == 0:
        out.update(
            {
                "code": code,
                "seq": seq,
                "boot": boot,
                "session_ms": session_ms,
                "detail": detail.rstrip(b"\0").decode("utf-8", "replace"),
            }
        )
    return out


# -- programme upload --------------------------------------------------------------------------


def pack_up_begin(total, crc):
    return struct.pack("<BHI", UP_BEGIN, total, crc)


def pack_up_data(offset, chunk):
    return struct.pack("<BH", UP_DATA, offset) + bytes(chunk)


def pack_up_answer(op, result, next_offset, reason, mtu):
    room = payload_room(mtu) - UP_ANSWER_HEAD
    return struct.pack("<BBH", op, result, next_offset) + text(reason or "", room)


def unpack_up_answer(b):
    if len(b) < UP_ANSWER_HEAD:
        raise ValueError("upload answer: %d bytes" % len(b))
    op, result, nxt = struct.unpack_from("<BBH", b)
    return {
        "op": op,
        "result": result,
        "next": nxt,
        "reason": bytes(b[4:]).decode("utf-8", "replace"),
    }


def up_chunk_room(mtu):
    # programme bytes per DATA write (a write carries MTU - 3 bytes of value, like a notification)
    return payload_room(mtu) - 3
