# The BLE wire format and the bond store on the real MicroPython interpreter: its struct,
# binascii and json, not CPython's.

import mpytest

from firmware import storage
from firmware.ble import bonds, proto

_count = [0]


def _store():
    _count[0] += 1
    return storage.Store("/tmp/bh_bonds/%d" % _count[0])


def test_state_and_telemetry_round_trip():
    buf = bytearray(proto.STATE_SIZE)
    proto.pack_state(buf, 4, 0, 0xFF, 6, 3, 0, 61, 1139, 1200, 0x01, 0)
    s = proto.unpack_state(bytes(buf))
    assert s["state"] == "treating" and s["strength"] == 6 and s["remaining_s"] == 1139
    tb = bytearray(proto.ATT_MAX_MTU)
    forces = [100 * i for i in range(26)]
    n = proto.pack_telemetry(tb, 1, 0, 26, 0, 6, 4400, forces, [1000] * 26)
    t = proto.unpack_telemetry(bytes(tb[:n]))
    assert t["forces_cn"] == forces and t["positions_um"] == [1000] * 26


def test_commands_refused_with_codes():
    with mpytest.raises(ValueError):
        proto.unpack_command(b"\x01\x00\x14")  # start without its user byte
    try:
        proto.unpack_command(b"\x77\x00")
    except ValueError as e:
        assert e.args[0] == proto.E_OPCODE
    assert proto.unpack_command(b"\x05\x09") == (proto.OP_STOP, 9, b"")


def test_answer_is_cut_to_the_mtu_on_a_character_boundary():
    a = proto.pack_answer(proto.OP_START, 1, proto.E_VALUE, "é" * 40, 23)
    assert len(a) <= 20
    assert proto.unpack_answer(a)["reason"] == "é" * 8


def test_bonds_window_limit_and_reload():
    st = _store()
    b = bonds.Bonds(st)
    peer = b"\x00" + b"\x01" * 6
    assert b.irq(30, (1, peer, b"k")) is False  # window closed
    b.open_window()
    for n in range(6):
        assert b.irq(30, (1, bytes((0,)) + bytes((n + 1,)) * 6, b"k%d" % n))
    assert b.count() == bonds.MAX_BONDS
    assert b.save()
    again = bonds.Bonds(storage.Store(st.root))
    assert again.count() == bonds.MAX_BONDS
    assert again.irq(29, (1, None, peer)) is None  # the first one was replaced
    assert again.irq(29, (1, 0, None)) == b"k1"
