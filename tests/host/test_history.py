# Per-user tension history: what a household sees after sessions, restarts, corruption and cuts.

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import history as hist
from firmware.history import TensionHistory
from firmware.storage import OsFs, Store

_fresh = itertools.count()
_HYP = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def record(i=0, **changes):
    rec = {
        "duration_s": 1200 + i,
        "area": "lower",
        "flow": "wave",
        "strength": 1 + i % 10,
        "before": [400 + i, 410, 420, 430, 440, 450 + i],
        "after": [300 + i, 310, 320, 330, 340, 350],
    }
    rec.update(changes)
    return rec


def stored(rec, seq):
    out = dict(rec, seq=seq)
    out["before"] = list(out["before"])
    out["after"] = list(out["after"])
    return out


def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def write(root, name, data):
    with open(os.path.join(root, name), "wb") as f:
        f.write(data)


# --- normal use ---------------------------------------------------------------------------------


def test_round_trip_survives_restart(tmp_path):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    assert h.get(0) == []
    seqs = [h.add(0, record(i)) for i in range(3)]
    assert seqs == [1, 2, 3]
    again = TensionHistory(Store(root))
    assert again.get(0) == [stored(record(i), i + 1) for i in range(3)]
    assert again.problems == []


def test_tuples_are_accepted_and_the_callers_record_is_not_changed(tmp_path):
    h = TensionHistory(Store(str(tmp_path)))
    rec = record(before=(1, 2, 3, 4, 5, 6))
    copy = dict(rec)
    h.add(1, rec)
    assert rec == copy
    assert h.get(1)[0]["before"] == [1, 2, 3, 4, 5, 6]


def test_31st_session_drops_the_oldest(tmp_path):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    for i in range(31):
        h.add(2, record(i))
    got = TensionHistory(Store(root)).get(2)
    assert len(got) == 30
    assert [r["seq"] for r in got] == list(range(2, 32))
    assert got[0] == stored(record(1), 2)
    assert got[-1] == stored(record(30), 31)


def test_a_smaller_keep_shows_the_newest(tmp_path):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    for i in range(12):
        h.add(0, record(i))
    small = TensionHistory(Store(root), keep=5)
    assert [r["seq"] for r in small.get(0)] == [8, 9, 10, 11, 12]
    small.add(0, record())
    assert [r["seq"] for r in TensionHistory(Store(root)).get(0)] == [9, 10, 11, 12, 13]


def test_five_users_are_independent(tmp_path):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    expected = {u: [] for u in range(5)}
    for i in range(20):
        user = (i * 3) % 5
        seq = h.add(user, record(i, strength=user + 1))
        expected[user].append(stored(record(i, strength=user + 1), seq))
    h.clear(2)
    expected[2] = []
    again = TensionHistory(Store(root))
    for u in range(5):
        assert again.get(u) == expected[u]


def test_sequence_numbers_never_repeat_across_restarts_and_clears(tmp_path):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    h.add(0, record())
    h.add(1, record())
    h.clear(1)  # the newest session is gone from the files
    h2 = TensionHistory(Store(root))
    assert h2.add(3, record()) == 3


def test_lost_counter_file_is_recovered_from_the_users_files(tmp_path):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    for u in (0, 4, 4, 1):
        h.add(u, record())
    os.remove(os.path.join(root, "session_seq"))
    assert TensionHistory(Store(root)).add(2, record()) == 5
    write(root, "session_seq", b"garbage")
    h3 = TensionHistory(Store(root))
    assert h3.add(2, record()) == 6
    assert [p[0] for p in h3.problems] == ["session_seq"]


def test_a_full_file_of_the_longest_records_fits_the_store(tmp_path):
    root = str(tmp_path)
    Store(root).save("session_seq", {"last": 10**9}, schema=hist.SCHEMA)
    h = TensionHistory(Store(root), keep=hist.KEEP_MAX)
    top = hist.STIFFNESS_MAX_CN_MM
    longest = record(
        duration_s=hist.DURATION_MAX_S,
        area="a" * hist.NAME_MAX,
        flow="f" * hist.NAME_MAX,
        strength=10,
        before=[top] * 6,
        after=[top] * 6,
    )
    for _ in range(hist.KEEP_MAX + 1):
        h.add(4, longest)
    got = TensionHistory(Store(root), keep=hist.KEEP_MAX).get(4)
    assert len(got) == hist.KEEP_MAX
    assert got[-1]["seq"] == 10**9 + hist.KEEP_MAX + 1


@pytest.mark.parametrize("kwargs", [{"users": 0}, {"users": 6}, {"keep": 0}, {"keep": 61}])
def test_history_size_limits_are_enforced(tmp_path, kwargs):
    with pytest.raises(ValueError, match="^" + next(iter(kwargs))):
        TensionHistory(Store(str(tmp_path)), **kwargs)


# --- refusing bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("user", [-1, 5, True, "0", None, 1.0])
def test_bad_user_is_refused(tmp_path, user):
    h = TensionHistory(Store(str(tmp_path)))
    for call in (lambda: h.add(user, record()), lambda: h.get(user), lambda: h.clear(user)):
        with pytest.raises(ValueError, match="^user"):
            call()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"before": [1, 2, 3, 4, 5]}, "before"),
        ({"after": [1, 2, 3, 4, 5, 6, 7]}, "after"),
        ({"after": "123456"}, "after"),
        ({"before": [1, 2, 3, 4.5, 5, 6]}, r"before\[3\]"),
        ({"before": [1, 2, 3, 4, 5, -1]}, r"before\[5\]"),
        ({"after": [1, True, 3, 4, 5, 6]}, r"after\[1\]"),
        ({"after": [1, 2, 3, 4, 5, hist.STIFFNESS_MAX_CN_MM + 1]}, r"after\[5\]"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 3601}, "duration_s"),
        ({"duration_s": 1200.0}, "duration_s"),
        ({"strength": 11}, "strength"),
        ({"strength": 0}, "strength"),
        ({"area": ""}, "area"),
        ({"area": 3}, "area"),
        ({"flow": "wave/../x"}, "flow"),
        ({"flow": "w" * 17}, "flow"),
        ({"colour": "red"}, "record: unknown key"),
        ({"seq": 99}, "seq"),
    ],
)
def test_bad_record_is_refused_naming_the_field_and_nothing_written(tmp_path, changes, field):
    root = str(tmp_path)
    h = TensionHistory(Store(root))
    h.add(0, record())
    before = {n: read(root, n) for n in os.listdir(root)}
    with pytest.raises(ValueError, match="^" + field):
        h.add(0, record(**changes))
    assert {n: read(root, n) for n in os.listdir(root)} == before
    assert h.add(0, record()) == 2  # the refused one took no number


@pytest.mark.parametrize("missing", hist._FIELDS)
def test_missing_field_is_refused(tmp_path, missing):
    rec = record()
    del rec[missing]
    with pytest.raises(ValueError, match="^" + missing + ": missing"):
        TensionHistory(Store(str(tmp_path))).add(0, rec)


def test_record_must_be_a_dict(tmp_path):
    with pytest.raises(ValueError, match="^record"):
        TensionHistory(Store(str(tmp_path))).add(0, [1, 2, 3])


# --- corrupt files ------------------------------------------------------------------------------


def fill(root):
    h = TensionHistory(Store(root))
    for i in range(10):
        h.add(i % 5, record(i))
    return {u: h.get(u) for u in range(5)}


def assert_only_user3_lost(root, before, bad_bytes, reason_part=""):
    h = TensionHistory(Store(root))  # boot: never raises
    assert h.get(3) == []
    assert [p[0] for p in h.problems] == ["tension3"]
    assert reason_part in h.problems[0][1]
    assert read(root, "tension3.bad") == bad_bytes
    for u in (0, 1, 2, 4):
        assert h.get(u) == before[u]
    seq = h.add(3, record(42))
    assert seq == 11  # the sequence carries on past everything ever stored
    assert TensionHistory(Store(root)).get(3) == [stored(record(42), seq)]


def test_truncated_user_file(tmp_path):
    root = str(tmp_path)
    before = fill(root)
    good = read(root, "tension3")
    write(root, "tension3", good[: len(good) // 2])
    assert_only_user3_lost(root, before, good[: len(good) // 2], "truncated")


@given(pos=st.integers(0, 10_000), flip=st.integers(1, 255))
@_HYP
def test_a_flipped_byte_in_a_user_file(tmp_path, pos, flip):
    root = str(tmp_path / ("h%d" % next(_fresh)))
    before = fill(root)
    data = bytearray(read(root, "tension3"))
    data[pos % len(data)] ^= flip
    write(root, "tension3", bytes(data))
    assert_only_user3_lost(root, before, bytes(data))


def test_garbage_user_file(tmp_path):
    root = str(tmp_path)
    before = fill(root)
    write(root, "tension3", b"\x00\xff" * 40)
    assert_only_user3_lost(root, before, b"\x00\xff" * 40, "not a store file")


def test_wrong_schema_version_user_file(tmp_path):
    root = str(tmp_path)
    before = fill(root)
    Store(root).save("tension3", {"user": 3, "sessions": []}, schema=hist.SCHEMA + 1)
    data = read(root, "tension3")
    assert_only_user3_lost(root, before, data, "schema version")


def _good_file(user=3):
    return {"user": user, "sessions": [stored(record(3), 4), stored(record(8), 9)]}


def _bad(mutate):
    obj = _good_file()
    mutate(obj)
    return obj


@pytest.mark.parametrize(
    "obj, reason",
    [
        (_good_file(user=2), "user"),
        (_bad(lambda o: o.update(extra=1)), "file"),
        (_bad(lambda o: o.pop("sessions")), "file"),
        (_bad(lambda o: o.update(sessions={})), "sessions"),
        (_bad(lambda o: o["sessions"].reverse()), "sessions[1].seq: not increasing"),
        (_bad(lambda o: o["sessions"][0].pop("seq")), "sessions[0].seq: missing"),
        (_bad(lambda o: o["sessions"][1]["before"].pop()), "sessions[1].before"),
        (_bad(lambda o: o["sessions"][1].update(strength="max")), "sessions[1].strength"),
        (_bad(lambda o: o["sessions"][0].update(note="x")), "sessions[0].record: unknown key"),
        ([1, 2, 3], "file"),
        ("tension", "file"),
    ],
)
def test_valid_checksum_bad_schema_user_file(tmp_path, obj, reason):
    root = str(tmp_path)
    before = fill(root)
    Store(root).save("tension3", obj, schema=hist.SCHEMA)
    data = read(root, "tension3")
    assert_only_user3_lost(root, before, data, reason)


def test_a_good_file_loads_before_the_bad_variants_are_believed(tmp_path):
    # the schema cases above are only meaningful if the unmutated file is accepted
    root = str(tmp_path)
    Store(root).save("tension3", _good_file(), schema=hist.SCHEMA)
    h = TensionHistory(Store(root))
    assert h.get(3) == _good_file()["sessions"]
    assert h.problems == []
    assert h.add(3, record()) == 10


# --- power cuts ---------------------------------------------------------------------------------


class PowerCut(Exception):
    pass


class CutFs(OsFs):
    # Cuts the power at file-system operation number cut_at; a write in progress leaves half of
    # its bytes, nothing after the cut reaches the disk. (The storage tests cover the FAT variant.)

    def __init__(self, cut_at):
        self.cut_at = cut_at
        self.ops = 0
        self.dead = False

    def _op(self):
        if self.dead or self.ops == self.cut_at:
            self.dead = True
            raise PowerCut()
        self.ops += 1

    def open(self, path, mode):
        self._op()
        return _CutFile(self, super().open(path, mode))

    def rename(self, old, new):
        self._op()
        super().rename(old, new)

    def remove(self, path):
        self._op()
        super().remove(path)

    def size(self, path):
        self._op()
        return super().size(path)

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
            self.f.close()
            raise PowerCut()
        self.fs._op()
        self.f.close()


def test_power_cut_at_every_step_of_add(tmp_path):
    outcomes = set()
    for cut_at in itertools.count():
        root = str(tmp_path / ("cut%d" % cut_at))
        h = TensionHistory(Store(root))
        for i in range(4):
            h.add(1, record(i))
        old = h.get(1)
        h._store.fs = CutFs(cut_at)
        try:
            h.add(1, record(99))
            completed = True
        except PowerCut:
            completed = False
        after = TensionHistory(Store(root))  # reboot
        got = after.get(1)
        new = old + [stored(record(99), 5)]
        assert got in (old, new), cut_at
        assert after.problems == []
        # whatever survived, the next session gets a number never used before
        assert after.add(1, record(7)) > max(r["seq"] for r in got)
        outcomes.add("new" if got == new else "old")
        if completed:
            assert got == new
            break
    assert outcomes == {"old", "new"}
    assert cut_at > 10  # the cuts went through both files' writes
