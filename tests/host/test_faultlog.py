# The persistent fault log: what a service engineer reads after faults, reboots, watchdog resets,
# power cuts and corrupt flash; and that logging a fault from the control tick never touches flash.

import errno
import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import faultlog as fl
from firmware import faults
from firmware.faultlog import FaultLog
from firmware.storage import OsFs, Store

_fresh = itertools.count()
_HYP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def write(root, name, data):
    with open(os.path.join(root, name), "wb") as f:
        f.write(data)


def boot(root, cause="power-on", fs=None, keep=fl.KEEP_DEFAULT):
    # what main.py does at start-up: open the store, load the log, count the boot
    log = FaultLog(Store(root, fs=fs), keep=keep)
    log.start(cause)
    return log


def entry(code, detail, session_ms, boot_no, seq):
    return {"code": code, "detail": detail, "session_ms": session_ms, "boot": boot_no, "seq": seq}


class CountingFs(OsFs):
    # Counts every file-system call the store makes (opens, reads and writes of files included).
    def __init__(self):
        self.ops = []

    def open(self, path, mode):
        self.ops.append(("open", os.path.basename(path), mode))
        return super().open(path, mode)

    def rename(self, old, new):
        self.ops.append(("rename", os.path.basename(old), os.path.basename(new)))
        super().rename(old, new)

    def remove(self, path):
        self.ops.append(("remove", os.path.basename(path)))
        super().remove(path)

    def size(self, path):
        self.ops.append(("size", os.path.basename(path)))
        return super().size(path)

    def listdir(self, path):
        self.ops.append(("listdir",))
        return super().listdir(path)

    def mkdir(self, path):
        self.ops.append(("mkdir",))
        super().mkdir(path)

    def is_dir(self, path):
        self.ops.append(("is_dir",))
        return super().is_dir(path)

    def sync(self):
        self.ops.append(("sync",))

    def writes(self):
        return [op for op in self.ops if op[0] == "open" and "w" in op[2]]


class FullFs(OsFs):
    # A flash that refuses every new file while `full` is set (ENOSPC), like a full LittleFS.
    def __init__(self):
        self.full = False

    def open(self, path, mode):
        if self.full and "w" in mode:
            raise OSError(errno.ENOSPC, "no space")
        return super().open(path, mode)


# --- normal use ---------------------------------------------------------------------------------


def test_faults_survive_a_restart_with_boot_and_session_time(tmp_path):
    root = str(tmp_path)
    log = boot(root)
    assert log.boot == 1
    assert log.entries() == []
    assert log.note(faults.OVER_FORCE, "finger 3", 125_000) == 1
    assert log.note(faults.I2C_FAULT, "pca9685@0x41") == 2
    assert log.flush() is True
    again = boot(root)
    assert again.boot == 2
    assert again.entries() == [
        entry(faults.OVER_FORCE, "finger 3", 125_000, 1, 1),
        entry(faults.I2C_FAULT, "pca9685@0x41", 0, 1, 2),
    ]
    assert again.problems == []
    assert again.note(faults.LEGREST_TIMEOUT, "legrest", 5) == 3
    again.flush()
    assert [(e["boot"], e["seq"]) for e in boot(root).entries()] == [(1, 1), (1, 2), (2, 3)]


def test_the_65th_fault_drops_the_oldest(tmp_path):
    root = str(tmp_path)
    log = boot(root)
    for i in range(64):
        log.note(faults.SENSOR_OPEN, "force[%d]" % (i % 26), i)
        log.flush()
    assert len(boot(root).entries()) == 64
    log = boot(root)
    log.note(faults.SENSOR_SHORT, "force[7]", 999)
    log.flush()
    got = boot(root).entries()
    assert len(got) == 64
    assert [e["seq"] for e in got] == list(range(2, 66))
    assert got[0] == entry(faults.SENSOR_OPEN, "force[1]", 1, 1, 2)
    assert got[-1] == entry(faults.SENSOR_SHORT, "force[7]", 999, 3, 65)


def test_a_smaller_keep_shows_the_newest(tmp_path):
    root = str(tmp_path)
    log = boot(root)
    for i in range(10):
        log.note(faults.TASK_DIED, "task%d" % i)
    log.flush()
    small = boot(root, keep=4)
    assert [e["seq"] for e in small.entries()] == [7, 8, 9, 10]
    small.note(faults.TASK_DIED, "new")
    small.flush()
    assert [e["seq"] for e in boot(root).entries()] == [8, 9, 10, 11]


def test_the_boot_counter_counts_every_start_once(tmp_path):
    root = str(tmp_path)
    numbers = []
    for _ in range(5):
        log = FaultLog(Store(root))
        numbers.append(log.start("power-on"))
        assert log.start("power-on") == numbers[-1]  # a second call is not a second boot
    assert numbers == [1, 2, 3, 4, 5]
    assert boot(root).entries() == []  # counting boots logs nothing by itself


def test_a_watchdog_reset_is_logged_in_the_boot_after_it(tmp_path):
    root = str(tmp_path)
    boot(root, "power-on")
    log = boot(root, "watchdog")
    assert log.entries() == [entry(faults.WATCHDOG_RESET, "previous boot", 0, 2, 1)]
    log.flush()
    for cause in ("power-on", "hard", "soft", "deep-sleep", None):
        boot(root, cause).flush()
    got = boot(root).entries()
    assert got == [entry(faults.WATCHDOG_RESET, "previous boot", 0, 2, 1)]
    assert faults.name(got[0]["code"]) == "watchdog reset"


def test_faults_noted_before_start_carry_this_boots_number(tmp_path):
    # hal.build() can fail before the log is started: those faults belong to this boot too
    root = str(tmp_path)
    boot(root).flush()
    log = FaultLog(Store(root))
    log.note(faults.I2C_FAULT, "pca9685@0x40")
    assert log.start("watchdog") == 2
    log.flush()
    assert [(e["code"], e["boot"]) for e in boot(root).entries()] == [
        (faults.I2C_FAULT, 2),
        (faults.WATCHDOG_RESET, 2),
    ]


def test_flush_without_start_counts_the_boot_first(tmp_path):
    root = str(tmp_path)
    boot(root)
    log = FaultLog(Store(root))  # start() never called: the boot still gets its own number
    log.note(faults.SELFTEST_FAILED, "finger[0]")
    assert log.flush() is True
    assert Store(root).load("boots") == {"boots": 2}
    again = boot(root)
    assert again.boot == 3
    assert again.entries()[0]["boot"] == 2


def test_note_never_touches_the_flash(tmp_path):
    root = str(tmp_path)
    fs = CountingFs()
    log = boot(root, fs=fs)
    fs.ops.clear()
    for i in range(200):  # more than the log holds: the overflow path is RAM only too
        log.note(faults.OVER_FORCE, "finger %d" % (i % 26), i * 10)
    log.entries()
    assert fs.ops == []
    assert log.pending == 64
    assert log.dropped == 136


def test_flush_persists_in_one_write_and_only_when_needed(tmp_path):
    root = str(tmp_path)
    fs = CountingFs()
    log = boot(root, fs=fs)
    fs.ops.clear()
    assert log.flush() is True  # nothing to write
    assert fs.ops == []
    log.note(faults.LEGREST_OBSTRUCTED, "legrest", 61_000)
    log.note(faults.LEGREST_TIMEOUT, "legrest", 62_000)
    assert log.flush() is True
    assert fs.writes() == [("open", "faultlog.tmp", "wb")]
    assert log.pending == 0
    assert [e["code"] for e in boot(root).entries()] == [
        faults.LEGREST_OBSTRUCTED,
        faults.LEGREST_TIMEOUT,
    ]


def test_faults_beyond_what_ram_holds_are_counted_and_the_newest_kept(tmp_path):
    root = str(tmp_path)
    log = boot(root)
    for i in range(100):
        log.note(faults.SENSOR_NOISY, "force[%d]" % (i % 26), i)
    assert log.dropped == 36
    assert [e["seq"] for e in log.entries()] == list(range(37, 101))
    log.flush()
    assert [e["session_ms"] for e in boot(root).entries()] == list(range(36, 100))


def test_entries_are_copies(tmp_path):
    log = boot(str(tmp_path))
    log.note(faults.OVER_FORCE, "finger 1")
    log.flush()
    log.note(faults.OVER_FORCE, "finger 2")
    for e in log.entries():
        e["code"] = 99
    assert [e["code"] for e in log.entries()] == [faults.OVER_FORCE] * 2


def test_a_full_flash_loses_nothing_and_never_raises(tmp_path):
    root = str(tmp_path)
    boot(root).flush()
    fs = FullFs()
    fs.full = True
    log = FaultLog(Store(root, fs=fs))
    assert log.start("watchdog") == 2  # the counter could not be written: boot goes on
    log.note(faults.ACTUATOR_STALL, "finger 9", 300)
    assert log.flush() is False
    assert log.write_errors == 2
    assert str(errno.ENOSPC) in log.last_error
    assert log.pending == 2
    fs.full = False
    assert log.flush() is True  # the counter goes first, then the faults
    assert Store(root).load("boots") == {"boots": 2}
    again = boot(root)
    assert again.boot == 3
    assert [(e["code"], e["boot"]) for e in again.entries()] == [
        (faults.WATCHDOG_RESET, 2),
        (faults.ACTUATOR_STALL, 2),
    ]


def test_a_full_file_of_the_longest_entries_fits_the_store(tmp_path):
    root = str(tmp_path)
    Store(root).save("boots", {"boots": 10**9}, schema=fl.SCHEMA)
    log = boot(root)
    for _ in range(fl.KEEP_MAX + 1):
        # non-ASCII and control characters are the longest in JSON (\uXXXX each)
        log.note(fl.CODE_MAX, "\u2603\x01" * fl.DETAIL_MAX, fl.SESSION_MS_MAX)
    assert log.flush() is True
    got = boot(root).entries()
    assert len(got) == fl.KEEP_MAX
    assert got[-1]["detail"] == ("\u2603\x01" * 12)
    assert got[-1]["boot"] == 10**9 + 1


def test_a_log_from_a_build_that_kept_more_loads_its_newest(tmp_path):
    root = str(tmp_path)
    many = [entry(faults.OVER_FORCE, "f", 0, 1, s) for s in range(1, 81)]
    Store(root).save("faultlog", {"last_seq": 80, "entries": many}, schema=fl.SCHEMA)
    log = boot(root)
    assert log.entries() == many[-64:]
    assert log.problems == []
    assert log.note(faults.OVER_FORCE, "f") == 81


@pytest.mark.parametrize("keep", [0, 65, True, "64", None])
def test_log_size_limits_are_enforced(tmp_path, keep):
    with pytest.raises(ValueError, match="^keep"):
        FaultLog(Store(str(tmp_path)), keep=keep)


# --- refusing bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, field",
    [
        ((0, "x", 0), "code"),
        ((-1, "x", 0), "code"),
        ((256, "x", 0), "code"),
        ((True, "x", 0), "code"),
        (("6", "x", 0), "code"),
        ((6.0, "x", 0), "code"),
        ((None, "x", 0), "code"),
        ((faults.OVER_FORCE, None, 0), "detail"),
        ((faults.OVER_FORCE, 3, 0), "detail"),
        ((faults.OVER_FORCE, b"finger 3", 0), "detail"),
        ((faults.OVER_FORCE, "x", -1), "session_ms"),
        ((faults.OVER_FORCE, "x", 1.5), "session_ms"),
        ((faults.OVER_FORCE, "x", True), "session_ms"),
        ((faults.OVER_FORCE, "x", fl.SESSION_MS_MAX + 1), "session_ms"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field_and_nothing_logged(tmp_path, args, field):
    log = boot(str(tmp_path))
    log.note(faults.OVER_FORCE, "finger 0")
    with pytest.raises(ValueError, match="^" + field):
        log.note(*args)
    assert log.pending == 1
    assert log.note(faults.OVER_FORCE, "finger 1") == 2  # the refused one took no number


def test_unknown_codes_below_256_and_long_details_are_kept(tmp_path):
    root = str(tmp_path)
    log = boot(root)
    log.note(200, "from a newer build")
    log.note(faults.I2C_FAULT, "pca9685@0x41: no ack after retry")
    log.flush()
    got = boot(root).entries()
    assert got[0]["code"] == 200
    assert got[1]["detail"] == "pca9685@0x41: no ack aft"
    assert len(got[1]["detail"]) == fl.DETAIL_MAX


# --- corrupt files ------------------------------------------------------------------------------


def fill(root):
    # three boots with faults; returns (entries, the last boot number)
    log = boot(root)
    log.note(faults.OVER_FORCE, "finger 3", 1000)
    log.flush()
    log = boot(root, "watchdog")
    log.note(faults.LOOP_OVERRUN, "tick", 2000)
    log.flush()
    log = boot(root)
    log.note(faults.SENSOR_STUCK, "force[12]", 3000)
    log.flush()
    return log.entries(), log.boot


def assert_log_lost_and_usable(root, bad_bytes, reason_part=""):
    log = boot(root)  # never raises
    assert log.entries() == []
    assert [p[0] for p in log.problems] == ["faultlog"]
    assert reason_part in log.problems[0][1]
    assert read(root, "faultlog.bad") == bad_bytes
    assert log.boot == 4  # the boot counter has its own file
    log.note(faults.TEMPERATURE, "board", 7)
    assert log.flush() is True
    again = boot(root)
    assert again.problems == []
    assert [(e["code"], e["boot"]) for e in again.entries()] == [(faults.TEMPERATURE, 4)]


def test_truncated_log(tmp_path):
    root = str(tmp_path)
    fill(root)
    good = read(root, "faultlog")
    write(root, "faultlog", good[: len(good) // 2])
    assert_log_lost_and_usable(root, good[: len(good) // 2], "truncated")


def test_garbage_log(tmp_path):
    root = str(tmp_path)
    fill(root)
    write(root, "faultlog", b"\xde\xad" * 50)
    assert_log_lost_and_usable(root, b"\xde\xad" * 50, "not a store file")


def test_empty_log_file(tmp_path):
    root = str(tmp_path)
    fill(root)
    write(root, "faultlog", b"")
    assert_log_lost_and_usable(root, b"", "truncated")


@given(pos=st.integers(0, 10_000), flip=st.integers(1, 255))
@_HYP
def test_a_flipped_byte_in_the_log(tmp_path, pos, flip):
    root = str(tmp_path / ("f%d" % next(_fresh)))
    fill(root)
    data = bytearray(read(root, "faultlog"))
    data[pos % len(data)] ^= flip
    write(root, "faultlog", bytes(data))
    assert_log_lost_and_usable(root, bytes(data))


def test_wrong_schema_version_log(tmp_path):
    root = str(tmp_path)
    fill(root)
    Store(root).save("faultlog", {"last_seq": 0, "entries": []}, schema=fl.SCHEMA + 1)
    assert_log_lost_and_usable(root, read(root, "faultlog"), "schema version")


def _good_log():
    return {
        "last_seq": 9,
        "entries": [
            entry(faults.OVER_FORCE, "finger 3", 10, 2, 4),
            entry(faults.WATCHDOG_RESET, "previous boot", 0, 3, 8),
        ],
    }


def _bad(mutate):
    obj = _good_log()
    mutate(obj)
    return obj


@pytest.mark.parametrize(
    "obj, reason",
    [
        (_bad(lambda o: o.update(extra=1)), "file"),
        (_bad(lambda o: o.pop("last_seq")), "file"),
        (_bad(lambda o: o.update(last_seq=-1)), "last_seq"),
        (_bad(lambda o: o.update(last_seq=7)), "last_seq: below"),
        (_bad(lambda o: o.update(entries={})), "entries"),
        (_bad(lambda o: o["entries"].reverse()), "entries[1].seq: not increasing"),
        (_bad(lambda o: o["entries"][1].update(boot=1)), "entries[1].boot: goes back"),
        (_bad(lambda o: o["entries"][0].pop("boot")), "entries[0].entry"),
        (_bad(lambda o: o["entries"][0].update(note="x")), "entries[0].entry"),
        (_bad(lambda o: o["entries"][0].update(code=0)), "entries[0].code"),
        (_bad(lambda o: o["entries"][0].update(code=300)), "entries[0].code"),
        (_bad(lambda o: o["entries"][1].update(detail="d" * 25)), "entries[1].detail"),
        (_bad(lambda o: o["entries"][1].update(detail=5)), "entries[1].detail"),
        (_bad(lambda o: o["entries"][0].update(session_ms=-5)), "entries[0].session_ms"),
        (_bad(lambda o: o["entries"][0].update(session_ms=1.5)), "entries[0].session_ms"),
        (_bad(lambda o: o["entries"][0].update(boot=0)), "entries[0].boot"),
        (_bad(lambda o: o["entries"][0].update(seq=True)), "entries[0].seq"),
        (_bad(lambda o: o["entries"].append([1, 2])), "entries[2].entry"),
        ([1, 2, 3], "file"),
        ("faultlog", "file"),
    ],
)
def test_valid_checksum_bad_shape_log(tmp_path, obj, reason):
    root = str(tmp_path)
    fill(root)
    Store(root).save("faultlog", obj, schema=fl.SCHEMA)
    assert_log_lost_and_usable(root, read(root, "faultlog"), reason)


def test_the_unmutated_good_log_loads(tmp_path):
    # the shape cases above only mean something if the good file is accepted
    root = str(tmp_path)
    Store(root).save("faultlog", _good_log(), schema=fl.SCHEMA)
    log = boot(root)
    assert log.entries() == _good_log()["entries"]
    assert log.problems == []
    assert log.boot == 4  # no counter file: raised past the newest boot in the log
    assert log.note(faults.OVER_FORCE, "x") == 10


@pytest.mark.parametrize(
    "damage",
    [
        lambda root: write(root, "boots", b"garbage"),
        lambda root: os.remove(os.path.join(root, "boots")),
        lambda root: Store(root).save("boots", {"boots": -1}, schema=fl.SCHEMA),
        lambda root: Store(root).save("boots", {"boots": 2.5}, schema=fl.SCHEMA),
        lambda root: Store(root).save("boots", {"count": 3}, schema=fl.SCHEMA),
    ],
)
def test_a_lost_boot_counter_continues_past_the_newest_logged_boot(tmp_path, damage):
    root = str(tmp_path)
    before, last_boot = fill(root)
    damage(root)
    log = boot(root)
    assert log.boot == last_boot + 1
    assert log.entries() == before
    assert [p[0] for p in log.problems] in ([], ["boots"])
    assert boot(root).boot == last_boot + 2


# --- power cuts ---------------------------------------------------------------------------------


class PowerCut(Exception):
    pass


class CutFs(OsFs):
    # Cuts the power at file-system operation number cut_at; a write in progress leaves half of
    # its bytes, nothing after the cut reaches the disk.

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
            self.f.close()
            raise PowerCut()
        self.fs._op()
        self.f.close()


def test_power_cut_at_every_step_of_a_boot_and_its_first_flush(tmp_path):
    # Boot 4 starts after a watchdog reset, logs a fault and flushes; the power may go at any
    # file-system operation from opening the store on. Whatever survives, the next boot's
    # number is new: above every boot on flash and above boot 3, which completed.
    outcomes = set()
    for cut_at in itertools.count():
        root = str(tmp_path / ("cut%d" % cut_at))
        old, last_boot = fill(root)
        assert last_boot == 3
        try:
            log = FaultLog(Store(root, fs=CutFs(cut_at)))
            log.start("watchdog")
            log.note(faults.OVER_FORCE, "finger 5", 42)
            log.flush()
            completed = True
        except PowerCut:
            completed = False
        after = FaultLog(Store(root))  # reboot
        got = after.entries()
        new = old + [
            entry(faults.WATCHDOG_RESET, "previous boot", 0, 4, 5),
            entry(faults.OVER_FORCE, "finger 5", 42, 4, 6),
        ]
        assert got in (old, new), cut_at
        assert after.problems == []
        number = after.start("power-on")
        assert number in (4, 5), cut_at
        assert number > max(e["boot"] for e in got)
        outcomes.add((got == new, number))
        if completed:
            assert got == new and number == 5
            break
    # cuts before the counter, between the counter and the log, and after both were seen
    assert outcomes == {(False, 4), (False, 5), (True, 5)}


def test_power_cut_at_every_step_of_a_later_flush(tmp_path):
    outcomes = set()
    for cut_at in itertools.count():
        root = str(tmp_path / ("cut%d" % cut_at))
        fill(root)
        log = boot(root)
        log.note(faults.SUPPLY, "vin", 1)
        log.flush()
        old = log.entries()
        log._store.fs = CutFs(cut_at)
        log.note(faults.SUPPLY, "vin", 2)
        try:
            done = log.flush()
        except PowerCut:
            done = False
        after = boot(root)
        got = after.entries()
        new = old + [entry(faults.SUPPLY, "vin", 2, 4, 6)]
        assert got in (old, new), cut_at
        assert after.problems == []
        assert after.boot == 5
        outcomes.add(got == new)
        if done:
            assert got == new
            break
    assert outcomes == {False, True}


# --- any sequence of faults, flushes and reboots ------------------------------------------------

_op = st.one_of(
    st.tuples(
        st.just("note"),
        st.sampled_from(sorted(faults.NAMES) + [100, 255]),
        st.text(max_size=30),
        st.integers(0, 3_600_000),
    ),
    st.just(("flush",)),
    st.just(("reboot",)),
    st.just(("watchdog",)),
    st.tuples(st.just("burst"), st.integers(1, 80)),  # a fault storm between two flushes
)


@given(ops=st.lists(_op, max_size=40))
@_HYP
def test_any_sequence_keeps_the_newest_64_in_order(tmp_path, ops):
    root = str(tmp_path / ("h%d" % next(_fresh)))
    log = boot(root)
    flashed = []  # model: what flash holds
    pending = []  # model: noted since the last flush
    last_seq = 0  # model: the newest seq that reached flash (a reboot restarts from it)
    seq = 0
    boot_no = 1

    def note(code, detail, session_ms, logged=False):
        nonlocal seq
        seq += 1
        if not logged:  # (start() logs a watchdog reset itself)
            assert log.note(code, detail, session_ms) == seq
        pending.append(entry(code, detail[:24], session_ms, boot_no, seq))
        del pending[:-64]

    for op in ops:
        if op[0] == "note":
            note(*op[1:])
        elif op[0] == "burst":
            for i in range(op[1]):
                note(faults.SENSOR_NOISY, "force[%d]" % (i % 26), i)
        elif op[0] == "flush":
            assert log.flush() is True
            flashed = (flashed + pending)[-64:]
            pending = []
            last_seq = seq
        else:  # the power goes: what was not flushed is lost
            cause = "watchdog" if op[0] == "watchdog" else "power-on"
            log = boot(root, cause)
            boot_no += 1
            assert log.boot == boot_no
            pending = []
            seq = last_seq
            if cause == "watchdog":
                note(faults.WATCHDOG_RESET, "previous boot", 0, logged=True)
        want = (flashed + pending)[-64:]
        assert log.entries() == want
        seqs = [e["seq"] for e in want]
        assert seqs == sorted(set(seqs))
    assert log.flush() is True
    assert boot(root).entries() == (flashed + pending)[-64:]
    assert log.problems == []
