# The flash store: atomic replace, self-checking records, corrupt files set aside, power cuts.

import itertools
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import storage
from firmware.storage import OsFs, Store

# hypothesis reuses the function's tmp_path across examples: each example takes a fresh subdir
_fresh = itertools.count()
_HYP = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

OLD = {"gen": 1, "values": [1, 2, 3], "name": "old"}
NEW = {"gen": 2, "values": [4, 5, 6, 7], "name": "new content, longer than the old"}


def fresh_root(tmp_path):
    return str(tmp_path / ("s%d" % next(_fresh)))


def file_bytes(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def put_bytes(root, name, data):
    with open(os.path.join(root, name), "wb") as f:
        f.write(data)


def valid_header_file(obj, fmt=storage.FORMAT, schema=0):
    # A file whose checksum is right but whose header says something else than we expect
    body = storage.json.dumps(obj).encode()
    head = struct.pack("<4sBBHI", storage.MAGIC, fmt, schema, 0, len(body))
    return head + struct.pack("<I", zlib.crc32(head + body)) + body


def assert_set_aside(store, root, name, bad_bytes, reason_part=""):
    # The bad file is kept byte for byte as .bad, reported once, and the name reads as missing.
    assert not os.path.exists(os.path.join(root, name))
    assert file_bytes(root, name + ".bad") == bad_bytes
    assert len(store.problems) == 1
    assert store.problems[0][0] == name
    assert reason_part in store.problems[0][1]
    # and the store is usable again
    store.save(name, NEW)
    assert store.load(name) == NEW
    assert Store(root).load(name) == NEW


# --- normal use ---------------------------------------------------------------------------------


def test_round_trip_and_survives_restart(tmp_path):
    root = str(tmp_path / "data")
    store = Store(root)
    store.save("prefs", OLD)
    store.save("prefs", NEW)
    store.save("other", [1, "two", None, True, {"k": -5}], schema=3)
    again = Store(root)
    assert again.load("prefs") == NEW
    assert again.load("other", schema=3) == [1, "two", None, True, {"k": -5}]
    assert again.names() == ["other", "prefs"]
    assert again.problems == []
    assert sorted(os.listdir(root)) == ["other", "prefs"]  # no .tmp left behind


@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=20),
        lambda kids: (
            st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5)
        ),
        max_leaves=30,
    )
)
@_HYP
def test_any_json_value_round_trips(tmp_path, obj):
    root = fresh_root(tmp_path)
    Store(root).save("x", obj)
    assert Store(root).load("x") == obj


def test_missing_is_none_and_not_a_problem(tmp_path):
    store = Store(str(tmp_path))
    assert store.load("nothing") is None
    assert store.problems == []


def test_remove_forgets_everything_about_a_name(tmp_path):
    root = str(tmp_path)
    store = Store(root)
    store.save("a", OLD)
    put_bytes(root, "a.bad", b"old corrupt copy")
    put_bytes(root, "a.tmp", b"half")
    store.save("b", NEW)
    store.remove("a")
    store.remove("never-there")
    assert sorted(os.listdir(root)) == ["b"]
    assert store.load("b") == NEW


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "x.tmp", "x.bad", "é", "n" * 25, 5, None])
def test_names_that_would_escape_or_clash_are_refused(tmp_path, name):
    store = Store(str(tmp_path))
    with pytest.raises(ValueError, match="name"):
        store.save(name, OLD)
    with pytest.raises(ValueError, match="name"):
        store.load(name)


def test_root_directories_are_created(tmp_path):
    root = str(tmp_path / "a" / "b" / "data")
    Store(root).save("x", OLD)
    assert Store(root).load("x") == OLD


def test_schema_version_is_checked_when_asked(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", OLD, schema=2)
    assert Store(root).load("x", schema=2) == OLD
    assert Store(root).load("x") == OLD  # schema=None: any
    store = Store(root)
    assert store.load("x", schema=3) is None
    assert "schema version 2" in store.problems[0][1]


def test_too_large_object_is_refused_and_old_content_kept(tmp_path):
    root = str(tmp_path)
    store = Store(root, max_bytes=256)
    store.save("x", OLD)
    with pytest.raises(ValueError, match="x: "):
        store.save("x", {"blob": "z" * 300})
    assert store.load("x") == OLD
    assert sorted(os.listdir(root)) == ["x"]


def test_pure_crc32_matches_zlib():
    # the fallback for ports without binascii.crc32 must produce the same files
    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3):
        assert storage.crc32_py(data) == zlib.crc32(data)
        assert storage.crc32_py(data[5:], storage.crc32_py(data[:5])) == zlib.crc32(data)
    assert storage.crc32_py(b"123456789") == 0xCBF43926  # the standard check value


@given(st.binary(max_size=200), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_pure_crc32_matches_zlib_on_any_bytes(data, start):
    assert storage.crc32_py(data, start) == zlib.crc32(data, start)


# --- corrupt files ------------------------------------------------------------------------------


def test_truncated_file_is_set_aside(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", OLD)
    good = file_bytes(root, "x")
    for cut in range(len(good)):
        put_bytes(root, "x", good[:cut])
        store = Store(root)
        assert store.load("x") is None, cut
        assert_set_aside(store, root, "x", good[:cut], "truncated")
        os.remove(os.path.join(root, "x.bad"))
        store.remove("x")


@given(pos=st.integers(0, 10_000), flip=st.integers(1, 255))
@_HYP
def test_a_flipped_byte_anywhere_is_detected(tmp_path, pos, flip):
    root = fresh_root(tmp_path)
    Store(root).save("x", OLD)
    data = bytearray(file_bytes(root, "x"))
    data[pos % len(data)] ^= flip
    put_bytes(root, "x", bytes(data))
    store = Store(root)
    assert store.load("x") is None
    assert_set_aside(store, root, "x", bytes(data))


@given(garbage=st.binary(max_size=300))
@_HYP
def test_garbage_is_set_aside(tmp_path, garbage):
    root = fresh_root(tmp_path)
    Store(root).save("x", OLD)
    put_bytes(root, "x", garbage)
    store = Store(root)
    assert store.load("x") is None
    assert_set_aside(store, root, "x", garbage)


def test_wrong_format_version_is_set_aside(tmp_path):
    root = str(tmp_path)
    Store(root)
    data = valid_header_file(OLD, fmt=storage.FORMAT + 1)
    put_bytes(root, "x", data)
    store = Store(root)
    assert store.load("x") is None
    assert_set_aside(store, root, "x", data, "format version")


def test_valid_checksum_but_not_json_is_set_aside(tmp_path):
    root = str(tmp_path)
    body = b"\xff{not json"
    head = struct.pack("<4sBBHI", storage.MAGIC, storage.FORMAT, 0, 0, len(body))
    data = head + struct.pack("<I", zlib.crc32(head + body)) + body
    put_bytes(root, "x", data)
    store = Store(root)
    assert store.load("x") is None
    assert_set_aside(store, root, "x", data, "not JSON")


def test_valid_checksum_bad_schema_is_set_aside(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", {"count": "three"})
    data = file_bytes(root, "x")

    def check(obj):
        if type(obj.get("count")) is not int:
            raise ValueError("count: must be an int")

    store = Store(root)
    assert store.load("x", check=check) is None
    assert_set_aside(store, root, "x", data, "count: must be an int")


def test_a_checker_that_trips_over_the_content_still_means_bad(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", [1, 2])
    data = file_bytes(root, "x")
    store = Store(root)
    assert store.load("x", check=lambda obj: obj["key"]) is None  # TypeError on a list
    assert_set_aside(store, root, "x", data)


def test_oversized_file_is_set_aside_without_reading_it_all(tmp_path):
    root = str(tmp_path)
    data = b"\0" * 5000
    put_bytes(root, "x", data)
    store = Store(root, max_bytes=1024)
    assert store.load("x") is None
    assert "too large" in store.problems[0][1]
    assert file_bytes(root, "x.bad") == data


def test_only_the_latest_bad_copy_is_kept_and_good_files_are_untouched(tmp_path):
    root = str(tmp_path)
    store = Store(root)
    store.save("good", OLD)
    good = file_bytes(root, "good")
    put_bytes(root, "x", b"first bad")
    assert store.load("x") is None
    put_bytes(root, "x", b"second bad")
    assert store.load("x") is None
    assert file_bytes(root, "x.bad") == b"second bad"
    assert [p[0] for p in store.problems] == ["x", "x"]
    assert store.load("good") == OLD
    assert file_bytes(root, "good") == good
    assert not os.path.exists(os.path.join(root, "good.bad"))


def test_problem_list_is_bounded(tmp_path):
    root = str(tmp_path)
    store = Store(root)
    for i in range(storage.PROBLEMS_KEPT + 5):
        put_bytes(root, "x", b"bad %d" % i)
        store.load("x")
    assert len(store.problems) == storage.PROBLEMS_KEPT


def test_unreadable_file_is_reported_but_left_in_place(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", OLD)

    class ReadFails(OsFs):
        def open(self, path, mode):
            if mode == "rb":
                raise OSError(5, "EIO")
            return super().open(path, mode)

    store = Store(root, fs=ReadFails())
    assert store.load("x") is None
    assert store.problems == [("x", "read error 5")]
    assert Store(root).load("x") == OLD  # nothing was moved


# --- leftovers of a power cut -------------------------------------------------------------------


def test_leftover_tmp_is_removed_and_old_content_kept(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", OLD)
    for leftover in (b"", b"BHst\x01", storage.encode(NEW)[:-3], storage.encode(NEW)):
        put_bytes(root, "x.tmp", leftover)
        store = Store(root)
        assert sorted(os.listdir(root)) == ["x"]
        assert store.load("x") == OLD
        assert store.problems == []


def test_complete_tmp_without_main_file_is_the_new_content(tmp_path):
    # A first save, or FAT's remove-then-rename, cut before the rename finished.
    root = str(tmp_path)
    put_bytes(root, "x.tmp", storage.encode(NEW))
    assert Store(root).load("x") == NEW
    assert os.listdir(root) == ["x"]


def test_incomplete_tmp_without_main_file_reads_as_missing(tmp_path):
    root = str(tmp_path)
    Store(root)
    put_bytes(root, "x.tmp", storage.encode(NEW)[:10])
    store = Store(root)  # a load without a restart settles it too
    assert store.load("x") is None
    assert os.listdir(root) == []
    assert store.problems == []


def test_a_tmp_that_cannot_be_restored_does_not_stop_the_boot(tmp_path):
    root = str(tmp_path)
    put_bytes(root, "x.tmp", storage.encode(NEW))

    class RenameFails(OsFs):
        def rename(self, old, new):
            raise OSError(30, "EROFS")

    store = Store(root, fs=RenameFails())
    assert store.problems == [("x", "cannot restore .tmp: error 30")]
    assert store.load("x") is None


class PowerCut(Exception):
    pass


class CutFs(OsFs):
    # Counts file-system operations and cuts the power at operation number cut_at: a write in
    # progress leaves half its bytes on disk, and nothing after the cut reaches the disk.
    # fat=True models MicroPython's FAT rename (remove the destination, then rename).

    def __init__(self, cut_at, fat=False):
        self.cut_at = cut_at
        self.ops = 0
        self.dead = False
        self.fat = fat

    def _op(self):
        if self.dead:
            raise PowerCut("after the cut")
        if self.ops == self.cut_at:
            self.dead = True
            raise PowerCut("op %d" % self.ops)
        self.ops += 1

    def open(self, path, mode):
        self._op()
        return _CutFile(self, super().open(path, mode))

    def rename(self, old, new):
        self._op()
        if self.fat and os.path.exists(new):
            super().remove(new)
            self._op()
        super().rename(old, new)

    def remove(self, path):
        self._op()
        super().remove(path)

    def size(self, path):
        self._op()
        return super().size(path)

    def listdir(self, path):
        self._op()
        return super().listdir(path)

    def mkdir(self, path):
        self._op()
        super().mkdir(path)

    def is_dir(self, path):
        self._op()
        return super().is_dir(path)

    def sync(self):
        self._op()


class _CutFile:
    def __init__(self, fs, f):
        self.fs = fs
        self.f = f

    def write(self, data):
        try:
            self.fs._op()
        except PowerCut:
            self.f.write(data[: len(data) // 2])
            self.f.close()
            raise
        return self.f.write(data)

    def read(self, n=-1):
        self.fs._op()
        return self.f.read(n)

    def flush(self):
        self.fs._op()
        self.f.flush()

    def close(self):
        if self.fs.dead:
            self.f.close()  # what reached the file stays; the cut is already raised
            raise PowerCut("after the cut")
        self.fs._op()
        self.f.close()


@pytest.mark.parametrize("fat", [False, True], ids=["littlefs", "fat"])
@pytest.mark.parametrize("first_save", [False, True], ids=["replace", "first"])
def test_power_cut_at_every_step_leaves_old_or_new(tmp_path, fat, first_save):
    seen = set()
    for cut_at in itertools.count():
        root = str(tmp_path / ("cut%d" % cut_at))
        if not first_save:
            Store(root).save("x", OLD)
        store = Store(root)
        store.fs = CutFs(cut_at, fat=fat)
        try:
            store.save("x", NEW)
            completed = True
        except PowerCut:
            completed = False
        after = Store(root)  # reboot
        got = after.load("x")
        expected = (None if first_save else OLD, NEW)
        assert got in expected, (cut_at, got)
        assert after.problems == []  # a power cut is not corruption
        assert sorted(os.listdir(root)) in ([], ["x"])  # nothing left over
        seen.add("new" if got == NEW else "old")
        if completed:
            assert got == NEW
            break
    assert cut_at >= 5  # the cut really hit open, write, flush, close, sync and rename
    assert seen == {"old", "new"}


def test_disk_full_during_save_keeps_old_content(tmp_path):
    root = str(tmp_path)
    Store(root).save("x", OLD)

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:7])
            raise OSError(28, "ENOSPC")

        def close(self):
            self.f.close()

    class Full(OsFs):
        def open(self, path, mode):
            return FullFile(super().open(path, mode))

    store = Store(root, fs=Full())
    with pytest.raises(OSError):
        store.save("x", NEW)
    assert sorted(os.listdir(root)) == ["x"]
    assert Store(root).load("x") == OLD
