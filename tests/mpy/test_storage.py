# The flash store and the tension history on the real MicroPython interpreter (its in-memory
# file system): MicroPython's os, open(), json, struct and binascii, not CPython's.

import os

import mpytest

from firmware import history, storage
from firmware.history import TensionHistory
from firmware.storage import OsFs, Store

_BASE = "/tmp/bh_storage"
_count = [0]


def _rmtree(path):
    for entry in os.listdir(path):
        p = path + "/" + entry
        if os.stat(p)[0] & 0o170000 == 0o040000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def _root():
    # a fresh, empty directory per test (and per example inside a test)
    _count[0] += 1
    root = "%s/%d" % (_BASE, _count[0])
    try:
        _rmtree(root)
    except OSError:
        pass
    return root


def _read(root, name):
    with open(root + "/" + name, "rb") as f:
        return f.read()


def _write(root, name, data):
    with open(root + "/" + name, "wb") as f:
        f.write(data)


def _exists(root, name):
    return name in os.listdir(root)


def _record(i=0):
    return {
        "duration_s": 1200 + i,
        "area": "full",
        "flow": "pulse",
        "strength": 3,
        "before": [500 + i, 510, 520, 530, 540, 550],
        "after": [400, 410, 420, 430, 440, 450 + i],
    }


OLD = {"gen": 1, "values": [1, 2, 3]}
NEW = {"gen": 2, "values": [4, 5, 6, 7], "text": "longer than the old one"}


def test_round_trip_survives_restart():
    root = _root()
    store = Store(root)
    assert store.load("x") is None
    store.save("x", OLD)
    store.save("x", NEW)
    store.save("y", [None, True, -7, "s", {"k": [1]}], schema=4)
    again = Store(root)
    assert again.load("x") == NEW
    assert again.load("y", schema=4) == [None, True, -7, "s", {"k": [1]}]
    assert again.names() == ["x", "y"]
    assert sorted(os.listdir(root)) == ["x", "y"]
    assert again.problems == []


def test_crc_fallback_matches_the_builtin():
    import binascii

    data = bytes(range(256)) + b"BackHug"
    assert storage.crc32_py(data) == binascii.crc32(data)
    assert storage.crc32_py(b"123456789") == 0xCBF43926
    assert storage.crc32(data) == binascii.crc32(data)


def _assert_set_aside(store, root, bad, reason_part=""):
    assert store.load("x") is None
    assert not _exists(root, "x")
    assert _read(root, "x.bad") == bad
    assert store.problems[-1][0] == "x"
    assert reason_part in store.problems[-1][1]
    store.save("x", NEW)
    assert Store(root).load("x") == NEW


def test_every_flipped_byte_is_detected():
    root = _root()
    Store(root).save("x", OLD)
    good = _read(root, "x")
    for pos in range(len(good)):
        data = bytearray(good)
        data[pos] ^= 0x10
        _write(root, "x", bytes(data))
        store = Store(root)
        _assert_set_aside(store, root, bytes(data))
        assert len(store.problems) == 1


def test_truncated_garbage_and_wrong_version_are_set_aside():
    root = _root()
    Store(root).save("x", OLD)
    good = _read(root, "x")
    for cut in (0, 3, 10, 16, len(good) - 1):
        _write(root, "x", good[:cut])
        _assert_set_aside(Store(root), root, good[:cut], "truncated")
    _write(root, "x", b"\xff" * 40)
    _assert_set_aside(Store(root), root, b"\xff" * 40, "not a store file")
    Store(root).save("x", OLD, schema=2)
    old_schema = _read(root, "x")
    store = Store(root)
    assert store.load("x", schema=3) is None
    assert "schema version 2" in store.problems[0][1]
    assert _read(root, "x.bad") == old_schema


def test_checker_rejection_is_set_aside():
    root = _root()
    Store(root).save("x", {"n": "three"})
    bad = _read(root, "x")

    def check(obj):
        if type(obj["n"]) is not int:
            raise ValueError("n: must be an int")

    store = Store(root)
    assert store.load("x", check=check) is None
    assert store.problems == [("x", "invalid: n: must be an int")]
    assert _read(root, "x.bad") == bad


def test_leftover_tmp_is_dropped_or_promoted():
    root = _root()
    Store(root).save("x", OLD)
    _write(root, "x.tmp", storage.encode(NEW)[:-2])
    assert Store(root).load("x") == OLD
    assert sorted(os.listdir(root)) == ["x"]
    _write(root, "y.tmp", storage.encode(NEW))  # complete, and no y: the save's new content
    assert Store(root).load("y") == NEW
    assert sorted(os.listdir(root)) == ["x", "y"]


class _PowerCut(Exception):
    pass


class _CutFs(OsFs):
    # the power goes at operation number cut_at; nothing after it reaches the file system
    def __init__(self, cut_at):
        self.cut_at = cut_at
        self.ops = 0

    def _op(self):
        if self.ops >= self.cut_at:
            self.ops += 1
            raise _PowerCut()
        self.ops += 1

    def open(self, path, mode):
        self._op()
        return _CutFile(self, super().open(path, mode))

    def rename(self, old, new):
        self._op()
        super().rename(old, new)

    def sync(self):
        self._op()


class _CutFile:
    def __init__(self, fs, f):
        self.fs = fs
        self.f = f

    def write(self, data):
        try:
            self.fs._op()
        except _PowerCut:
            self.f.write(data[: len(data) // 2])
            self.f.close()
            raise
        return self.f.write(data)

    def flush(self):
        self.fs._op()
        self.f.flush()

    def close(self):
        try:
            self.fs._op()
        finally:
            self.f.close()


def test_power_cut_at_every_step_of_a_save():
    cut_at = 0
    while True:
        root = _root()
        Store(root).save("x", OLD)
        store = Store(root)
        store.fs = _CutFs(cut_at)
        try:
            store.save("x", NEW)
            done = True
        except _PowerCut:
            done = False
        got = Store(root).load("x")
        assert got == OLD or got == NEW, cut_at
        assert sorted(os.listdir(root)) == ["x"]
        if done:
            assert got == NEW
            break
        cut_at += 1
    assert cut_at >= 5


def test_history_round_trip_keep_and_users():
    root = _root()
    h = TensionHistory(Store(root))
    for i in range(31):
        h.add(i % 2, _record(i))  # user 0 gets 16 sessions, user 1 gets 15
    h.add(4, _record(99))
    again = TensionHistory(Store(root), keep=10)
    zero = again.get(0)
    assert [r["seq"] for r in zero] == [13, 15, 17, 19, 21, 23, 25, 27, 29, 31]
    assert zero[-1]["before"] == [530, 510, 520, 530, 540, 550]
    assert len(again.get(1)) == 10
    assert again.get(4)[0]["after"][5] == 549
    assert again.get(2) == []
    assert again.add(2, _record()) == 33


def test_history_refuses_bad_input_naming_the_field():
    h = TensionHistory(Store(_root()))
    cases = [
        (5, _record(), "user"),
        (True, _record(), "user"),
        (0, dict(_record(), before=[1, 2, 3, 4, 5]), "before"),
        (0, dict(_record(), after=[1, 2, 3, 4, 5, 6.0]), "after[5]"),
        (0, dict(_record(), strength=11), "strength"),
        (0, dict(_record(), seq=4), "seq"),
    ]
    for user, rec, field in cases:
        with mpytest.raises(ValueError) as e:
            h.add(user, rec)
        assert str(e.value).startswith(field), (field, str(e.value))
    assert h.last_seq == 0


def test_history_corrupt_user_file_loses_only_that_user():
    root = _root()
    h = TensionHistory(Store(root))
    for u in range(5):
        h.add(u, _record(u))
    data = bytearray(_read(root, "tension2"))
    data[len(data) // 2] ^= 1
    _write(root, "tension2", bytes(data))
    # and a checksum-valid file with the wrong shape for user 3
    Store(root).save("tension3", {"user": 3, "sessions": [{"seq": 1}]}, schema=history.SCHEMA)
    h = TensionHistory(Store(root))
    assert [p[0] for p in h.problems] == ["tension2", "tension3"]
    assert h.get(2) == [] and h.get(3) == []
    assert [len(h.get(u)) for u in (0, 1, 4)] == [1, 1, 1]
    assert h.add(2, _record()) == 6
    assert TensionHistory(Store(root)).get(2)[0]["seq"] == 6
