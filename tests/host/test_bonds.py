"""The bond store and pairing window (firmware/ble/bonds.py): new phones bond only while the
window is open, at most five, the oldest replaced only inside the window, cleared by a very long
press, and the table survives a restart or sets aside a corrupt file."""

import pytest

from backhug_host import hostrt
from firmware import storage
from firmware.ble import bonds

_SET, _GET = 30, 29


def _peer(n):
    return bytes((0,)) + bytes((n,) * 6)


def _bond(b, n, value=b"ltk"):
    # what the stack does when pairing completes with bonding: store our and the peer's keys
    ok1 = b.irq(_SET, (1, _peer(n), value + b"-ours"))
    ok2 = b.irq(_SET, (2, _peer(n) + b"\x00", value + b"-peer"))
    return ok1 and ok2


@pytest.fixture
def clock():
    return hostrt.install_virtual()


@pytest.fixture
def store(tmp_path):
    return storage.Store(str(tmp_path))


def test_outside_the_window_a_new_phone_is_not_kept(clock, store):
    b = bonds.Bonds(store)
    assert not b.window_open()
    assert _bond(b, 1) is False
    assert b.count() == 0 and b.irq(_GET, (1, None, _peer(1))) is None


def test_the_window_closes_after_a_minute(clock, store):
    b = bonds.Bonds(store)
    b.open_window()
    clock.advance_ms(bonds.WINDOW_MS - 1)
    assert b.window_open()
    assert _bond(b, 1)
    clock.advance_ms(1)
    assert not b.window_open()
    assert not _bond(b, 2)
    # nor can anyone (say a phone using a bonded one's address) replace or delete its keys
    assert b.irq(_SET, (1, _peer(1), b"new")) is False
    assert b.irq(_SET, (1, _peer(1), None)) is False
    assert b.irq(_GET, (1, None, _peer(1))) == b"ltk-ours"


def test_five_bonds_then_the_oldest_goes_only_inside_the_window(clock, store):
    b = bonds.Bonds(store)
    b.open_window()
    for n in range(1, 6):
        assert _bond(b, n)
    assert b.count() == 5
    b.close_window()
    assert not _bond(b, 6)
    assert b.peers() == [_peer(n) for n in range(1, 6)]
    b.open_window()
    assert _bond(b, 6)
    assert b.peers() == [_peer(n) for n in range(2, 7)]  # phone 1, bonded first, was replaced
    assert b.irq(_GET, (1, None, _peer(1))) is None


def test_lookup_by_index_enumerates_each_type(clock, store):
    b = bonds.Bonds(store)
    b.open_window()
    _bond(b, 1, b"a")
    _bond(b, 2, b"b")
    assert b.irq(_GET, (1, 0, None)) == b"a-ours"
    assert b.irq(_GET, (1, 1, None)) == b"b-ours"
    assert b.irq(_GET, (1, 2, None)) is None
    assert b.irq(_GET, (2, 1, None)) == b"b-peer"


def test_deleting_every_secret_in_the_window_forgets_the_phone(clock, store):
    b = bonds.Bonds(store)
    b.open_window()
    _bond(b, 1)
    assert b.irq(_SET, (1, _peer(1), None))
    assert b.is_bonded(_peer(1))
    assert b.irq(_SET, (2, _peer(1) + b"\x00", None))
    assert not b.is_bonded(_peer(1))
    assert b.irq(_SET, (2, _peer(1) + b"\x00", None)) is False


def test_other_events_pass_through(clock, store):
    assert bonds.Bonds(store).irq(28, (1, True, False, True, 16)) is None


def test_table_survives_a_restart_and_clear_empties_it(clock, store, tmp_path):
    b = bonds.Bonds(store)
    b.open_window()
    _bond(b, 1)
    _bond(b, 2)
    assert b.save() and not b.save()  # written once, then nothing left to write
    again = bonds.Bonds(storage.Store(str(tmp_path)))
    assert again.peers() == [_peer(1), _peer(2)]
    assert again.irq(_GET, (2, None, _peer(2) + b"\x00")) == b"ltk-peer"
    again.clear()
    again.save()
    assert bonds.Bonds(storage.Store(str(tmp_path))).count() == 0


def test_a_corrupt_table_is_set_aside_and_bluetooth_starts_unbonded(clock, store, tmp_path):
    store.save(bonds.BONDS_FILE, {"next": 1, "peers": [{"peer": "zz", "order": 1}]}, 1)
    s = storage.Store(str(tmp_path))
    b = bonds.Bonds(s)
    assert b.count() == 0
    assert [name for name, _why in s.problems] == [bonds.BONDS_FILE]


def test_the_stacks_own_irk_is_kept_outside_the_window_and_is_no_bond(clock, store, tmp_path):
    # MicroPython's NimBLE asks for its IRK at every activation (GET_SECRET(10, 0, b"irk")) and
    # saves a new one when there is none; refused, NimBLE would fall back to its fixed default
    # and skip loading the phones' IRKs
    b = bonds.Bonds(store)
    assert b.irq(_GET, (10, 0, b"irk")) is None
    irk = bytes(range(16))
    assert b.irq(_SET, (10, b"irk", irk)) is True  # the window is closed
    assert b.irq(_GET, (10, 0, b"irk")) == irk
    assert b.count() == 0 and b.peers() == []
    b.open_window()
    _bond(b, 1)
    assert b.count() == 1
    # NimBLE's boot walk over the phones' secrets does not see the IRK
    assert b.irq(_GET, (2, 0, None)) == b"ltk-peer" and b.irq(_GET, (2, 1, None)) is None
    b.clear()  # "forget every phone" does not forget the device's own key
    assert b.save()
    again = bonds.Bonds(storage.Store(str(tmp_path)))
    assert again.count() == 0 and again.irq(_GET, (10, 0, b"irk")) == irk


def test_a_table_with_an_unknown_key_is_set_aside(clock, store, tmp_path):
    store.save(bonds.BONDS_FILE, {"next": 1, "peers": [], "colour": "red"}, 1)
    s = storage.Store(str(tmp_path))
    assert bonds.Bonds(s).count() == 0
    assert [name for name, _why in s.problems] == [bonds.BONDS_FILE]
