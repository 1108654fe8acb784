"""The BLE wire format (firmware/ble/proto.py, docs/ble-protocol.md): every layout round-trips,
has the size the document promises, fits the MTUs the device supports, and every decoder refuses
bytes that do not fit instead of misreading them."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.ble import proto

MTUS = st.integers(min_value=proto.ATT_DEFAULT_MTU, max_value=proto.ATT_MAX_MTU)


def test_documented_sizes():
    assert proto.PROTOCOL_SIZE == 8
    assert proto.STATE_SIZE == 14
    assert proto.REPORT_SIZE == 56
    assert proto.HISTORY_SIZE == 61
    assert proto.FAULT_SIZE == 40
    # the state and every answer head fit a default-MTU notification
    assert proto.STATE_SIZE <= proto.payload_room(proto.ATT_DEFAULT_MTU)


def test_uuids_are_distinct_and_share_the_base():
    uuids = [getattr(proto, n) for n in dir(proto) if n.endswith("_UUID") and n != "DIS_UUID"]
    assert len(set(uuids)) == len(uuids) == 12
    assert all(u.endswith("-5e5a-4b48-8e9a-6261636b6875") for u in uuids)


def test_telemetry_packing_per_mtu():
    assert proto.telemetry_fingers_per_packet(23) == 3
    assert proto.telemetry_fingers_per_packet(247) == 59
    buf = bytearray(proto.ATT_MAX_MTU)
    n = proto.pack_telemetry(
        buf, 7, 0, 26, 2, 6, 4_449, list(range(26)), [10 * i for i in range(26)]
    )
    assert n == 110 <= proto.payload_room(247)
    t = proto.unpack_telemetry(bytes(buf[:n]))
    assert t["seq"] == 7 and t["legrest"] == "up" and t["level"] == 6 and t["target_n"] == 44
    assert t["forces_cn"] == list(range(26))
    assert t["positions_um"] == [10 * i for i in range(26)]


@given(
    forces=st.lists(st.integers(-1000, 200_000), min_size=3, max_size=3),
    positions=st.lists(st.integers(-5000, 600_000), min_size=3, max_size=3),
)
def test_telemetry_saturates_instead_of_wrapping(forces, positions):
    buf = bytearray(32)
    n = proto.pack_telemetry(buf, 300, 0, 3, 0, 3, 3000, forces, positions)
    t = proto.unpack_telemetry(bytes(buf[:n]))
    assert t["seq"] == 300 & 0xFF
    for f, got in zip(forces, t["forces_cn"], strict=True):
        assert got == min(max(f, 0), 0xFFFF)
    for p, got in zip(positions, t["positions_um"], strict=True):
        assert got == min(max(p, 0) // 10, 0xFFFF) * 10


def test_telemetry_refuses_a_length_that_does_not_match_its_count():
    buf = bytearray(32)
    n = proto.pack_telemetry(buf, 0, 0, 3, 0, 3, 0, [1, 2, 3], [4, 5, 6])
    with pytest.raises(ValueError):
        proto.unpack_telemetry(bytes(buf[: n - 1]))
    with pytest.raises(ValueError):
        proto.unpack_telemetry(b"\x00\x00")


@given(mtu=MTUS, reason=st.text(max_size=300))
def test_answers_fit_the_link_and_cut_on_character_boundaries(mtu, reason):
    a = proto.pack_answer(proto.OP_START, 9, proto.E_VALUE, reason, mtu)
    assert len(a) <= proto.payload_room(mtu)
    got = proto.unpack_answer(a)
    assert (got["op"], got["token"], got["result"]) == (proto.OP_START, 9, proto.E_VALUE)
    assert reason.startswith(got["reason"])  # a prefix, never a broken character
    # and the longest one that fits: the next character would not have
    room = proto.payload_room(mtu) - 4
    rest = reason[len(got["reason"]) :]
    assert not rest or len((got["reason"] + rest[0]).encode()) > room
    u = proto.pack_up_answer(proto.UP_DATA, proto.OK, 1234, reason, mtu)
    assert len(u) <= proto.payload_room(mtu)
    assert proto.unpack_up_answer(u)["next"] == 1234


@given(data=st.binary(max_size=40))
def test_any_control_write_decodes_or_is_refused_with_a_code(data):
    try:
        op, token, params = proto.unpack_command(data)
    except ValueError as e:
        code, reason = e.args
        assert code in (proto.E_LENGTH, proto.E_OPCODE) and reason
        return
    assert data == bytes((op, token)) + params


def test_commands_round_trip():
    b = proto.pack_command(proto.OP_START, 7, 20, 1)
    assert b == b"\x01\x07\x14\x01"
    assert proto.unpack_command(b) == (proto.OP_START, 7, b"\x14\x01")
    with pytest.raises(ValueError):
        proto.pack_command(proto.OP_START, 7, 20)  # a missing parameter


@settings(max_examples=50)
@given(
    st.integers(0, 7),
    st.integers(0, 255),
    st.integers(0, 10),
    st.integers(0, 3),
    st.integers(0, 4),
    st.integers(0, 0xFFFF),
    st.integers(0, 0x1F),
    st.integers(0, 7),
)
def test_state_round_trip(state, fault, level, area, flow, secs, flags, end):
    buf = bytearray(proto.STATE_SIZE)
    proto.pack_state(buf, state, fault, 0xFF, level, area, flow, secs, secs, secs, flags, end)
    s = proto.unpack_state(bytes(buf))
    assert s["state"] == proto.STATE_IDS[state] and s["fault"] == fault and s["step"] is None
    assert s["area"] == proto.AREA_IDS[area] and s["flow"] == proto.FLOW_IDS[flow]
    assert s["elapsed_s"] == s["remaining_s"] == s["total_s"] == secs
    assert s["person"] == bool(flags & 1) and s["safe_stop"] == bool(flags & 0x10)


def test_report_history_and_fault_round_trip():
    result = {
        "reason": "completed",
        "user": 2,
        "elapsed_ms": 1_200_500,
        "contacts": 26,
        "strength": 6,
        "before": [1598, 1200, 1300, 1503, 1100, 1000],
        "after": [1296, 1100, 1250, 1217, 1050, 990],
        "tracked": True,
    }
    r = proto.unpack_report(proto.pack_report(result))
    assert r["end"] == "completed" and r["elapsed_s"] == 1200 and r["tracked"]
    assert r["before"] == result["before"] and r["after"] == result["after"]
    assert proto.unpack_report(proto.pack_report(None)) is None
    rec = {
        "seq": 41,
        "duration_s": 1200,
        "area": "mixed",
        "flow": "wave",
        "strength": 6,
        "before": [1] * 6,
        "after": [2] * 6,
    }
    h = proto.unpack_history(proto.pack_history(0, 1, 0, 3, rec))
    assert h["found"] and h["seq"] == 41 and h["area"] == "programme" and h["flow"] == "wave"
    assert not proto.unpack_history(proto.pack_history(1, 1, 3, 3))["found"]
    e = {"code": 8, "seq": 5, "boot": 3, "session_ms": 61_000, "detail": "pca9685@0x41 and more!!"}
    f = proto.unpack_fault(proto.pack_fault(0, 0, 1, e))
    assert f["code"] == 8 and f["detail"] == e["detail"][:24] and f["boot"] == 3


def test_upload_messages():
    b = proto.pack_up_begin(300, 0xDEADBEEF)
    assert struct.unpack("<BHI", b) == (proto.UP_BEGIN, 300, 0xDEADBEEF)
    d = proto.pack_up_data(17, b"abc")
    assert d == b"\x02\x11\x00abc"
    # a DATA write of up_chunk_room bytes is exactly one ATT write's value
    for mtu in (23, 185, 247):
        assert len(proto.pack_up_data(0, bytes(proto.up_chunk_room(mtu)))) == mtu - 3
