# The fault log on the real MicroPython interpreter (its in-memory file system): noting, flushing,
# rebooting and corrupt files with MicroPython's os, open(), json and str, not CPython's.

import os

import mpytest

from firmware import faultlog, faults
from firmware.faultlog import FaultLog
from firmware.storage import OsFs, Store

_BASE = "/tmp/bh_faultlog"
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
    # a fresh, empty directory per test (and per case inside a test)
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


def _boot(root, cause="power-on", fs=None):
    log = FaultLog(Store(root, fs=fs))
    log.start(cause)
    return log


def _fill(root):
    # two boots with faults, the second after a watchdog reset; returns the entries
    log = _boot(root)
    log.note(faults.OVER_FORCE, "finger 3", 1500)
    log.flush()
    log = _boot(root, "watchdog")
    log.note(faults.I2C_FAULT, "pca9685@0x41", 0)
    log.flush()
    return log.entries()


def test_round_trip_with_boots_and_watchdog():
    root = _root()
    got = _fill(root)
    assert [(e["code"], e["detail"], e["session_ms"], e["boot"], e["seq"]) for e in got] == [
        (faults.OVER_FORCE, "finger 3", 1500, 1, 1),
        (faults.WATCHDOG_RESET, "previous boot", 0, 2, 2),
        (faults.I2C_FAULT, "pca9685@0x41", 0, 2, 3),
    ]
    log = _boot(root)
    assert log.boot == 3
    assert log.entries() == got
    assert log.problems == []
    assert sorted(os.listdir(root)) == ["boots", "faultlog"]


def test_the_65th_fault_drops_the_oldest():
    root = _root()
    log = _boot(root)
    for i in range(64):
        log.note(faults.SENSOR_OPEN, "force[%d]" % (i % 26), i)
    log.flush()
    log = _boot(root)
    log.note(faults.SENSOR_SHORT, "force[7]", 999)
    log.flush()
    got = _boot(root).entries()
    assert len(got) == 64
    assert [e["seq"] for e in got] == list(range(2, 66))
    assert got[-1]["code"] == faults.SENSOR_SHORT and got[-1]["boot"] == 2


class _CountingFs(OsFs):
    def __init__(self):
        self.ops = 0

    def open(self, path, mode):
        self.ops += 1
        return super().open(path, mode)

    def rename(self, old, new):
        self.ops += 1
        super().rename(old, new)

    def remove(self, path):
        self.ops += 1
        super().remove(path)

    def size(self, path):
        self.ops += 1
        return super().size(path)

    def listdir(self, path):
        self.ops += 1
        return super().listdir(path)

    def sync(self):
        self.ops += 1


def test_note_stays_in_ram_until_flush():
    root = _root()
    fs = _CountingFs()
    log = _boot(root, fs=fs)
    fs.ops = 0
    for i in range(100):
        log.note(faults.SENSOR_NOISY, "force[%d]" % (i % 26), i)
    assert fs.ops == 0
    assert log.pending == 64 and log.dropped == 36
    assert _boot(root).entries() == []  # nothing on flash yet
    assert log.flush() is True
    assert fs.ops > 0
    got = _boot(root).entries()
    assert [e["session_ms"] for e in got] == list(range(36, 100))


def test_bad_arguments_name_the_field():
    log = _boot(_root())
    cases = [
        ((0, "x", 0), "code"),
        ((256, "x", 0), "code"),
        ((True, "x", 0), "code"),
        ((faults.OVER_FORCE, None, 0), "detail"),
        ((faults.OVER_FORCE, b"x", 0), "detail"),
        ((faults.OVER_FORCE, "x", -1), "session_ms"),
        ((faults.OVER_FORCE, "x", 1.0), "session_ms"),
    ]
    for args, field in cases:
        with mpytest.raises(ValueError) as e:
            log.note(*args)
        assert str(e.value).startswith(field), (field, str(e.value))
    assert log.pending == 0
    assert log.note(200, "x") == 1


def test_long_and_non_ascii_details_are_truncated_by_character():
    root = _root()
    log = _boot(root)
    log.note(faults.TASK_DIED, "\u00e9" * 30)
    log.note(faults.TASK_DIED, "controller task raised OSError")
    log.flush()
    got = _boot(root).entries()
    assert got[0]["detail"] == "\u00e9" * faultlog.DETAIL_MAX
    assert got[1]["detail"] == "controller task raised O"


def _assert_lost_and_usable(root, bad, reason_part=""):
    log = _boot(root)
    assert log.entries() == []
    assert [p[0] for p in log.problems] == ["faultlog"], log.problems
    assert reason_part in log.problems[0][1]
    assert _read(root, "faultlog.bad") == bad
    assert log.boot == 3  # the counter has its own file
    log.note(faults.SUPPLY, "vin", 5)
    assert log.flush() is True
    again = _boot(root)
    assert again.problems == []
    assert [(e["code"], e["boot"]) for e in again.entries()] == [(faults.SUPPLY, 3)]


def test_corrupt_log_files_are_set_aside():
    root = _root()
    _fill(root)
    good = _read(root, "faultlog")
    cases = [
        (good[: len(good) // 2], "truncated"),
        (b"", "truncated"),
        (b"\xff" * 40, "not a store file"),
    ]
    for pos in (0, 5, 13, 20, len(good) // 2, len(good) - 1):
        data = bytearray(good)
        data[pos] ^= 0x20
        cases.append((bytes(data), ""))
    for bad, reason in cases:
        root = _root()
        _fill(root)
        _write(root, "faultlog", bad)
        _assert_lost_and_usable(root, bad, reason)


def test_checksum_valid_bad_shape_is_set_aside():
    entry = {"code": 6, "detail": "finger 3", "session_ms": 10, "boot": 1, "seq": 1}
    shapes = [
        ({"last_seq": 1, "entries": [dict(entry, seq=0)]}, "entries[0].seq"),
        ({"last_seq": 1, "entries": [dict(entry, code=999)]}, "entries[0].code"),
        ({"last_seq": 1, "entries": [dict(entry, extra=1)]}, "entries[0].entry"),
        ({"last_seq": 0, "entries": [entry]}, "last_seq"),
        ({"entries": []}, "file"),
        ([entry], "file"),
    ]
    for obj, reason in shapes:
        root = _root()
        _fill(root)
        Store(root).save("faultlog", obj, faultlog.SCHEMA)
        _assert_lost_and_usable(root, _read(root, "faultlog"), "invalid: " + reason)


def test_a_lost_boot_counter_continues_past_the_log():
    root = _root()
    _fill(root)
    _write(root, "boots", b"garbage")
    log = _boot(root)
    assert log.boot == 3
    assert [p[0] for p in log.problems] == ["boots"]
    assert len(log.entries()) == 3
    assert _boot(root).boot == 4
