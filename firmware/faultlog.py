# Persistent fault log and boot counter (system layer; DESIGN section 5).
#
# Faults are logged to flash with the boot count and are readable over BLE. The log keeps the
# newest `keep` faults (64) in one store file ("faultlog"); each entry is
#   code        int 1..255          a firmware.faults code (unknown codes below 256 are kept too:
#                                   a newer build may have logged them)
#   detail      str, <= 24 chars    the part, e.g. "finger 3" or "pca9685@0x41" (longer: truncated)
#   session_ms  int >= 0            session time when it happened, 0 outside a session
#   boot        int >= 1            the boot it happened in (the "boots" counter)
#   seq         int >= 1            per device, increasing through the log
#
# note() is called from the 100 Hz control tick when a fault is detected, so it only appends a
# tuple to a bounded list in RAM; flush() (an asyncio task, every ~0.5 s) writes the whole log in
# one atomic store write. If the flash falls behind, the oldest unwritten faults are dropped and
# counted in `dropped`; they would have left the 64-entry window at the next flush anyway.
#
# The boot counter ("boots") is written before anything can be stored with its number (start(),
# or flush() if start() could not write it), so a power cut never lets two boots share a number
# that reached flash. If the counter file is lost, it is raised to the newest boot in the log.
# A seq, too, is never repeated among entries that reached flash; one given to a fault that was
# still in RAM at a power cut can be given again after the reboot, and `boot` tells them apart.
#
# Loading never raises for bad content: a corrupt, truncated or malformed file is set aside by
# the store (Store.problems, also `problems` here) and the log starts empty.

from firmware import faults
from firmware.runtime import const

KEEP_DEFAULT = const(64)
KEEP_MAX = const(64)  # 64 entries of the longest form stay well inside the store's file limit
DETAIL_MAX = const(24)
CODE_MAX = const(255)
SESSION_MS_MAX = const(0x3FFFFFFF)  # a small int on the device; a session lasts at most 1 h
SCHEMA = const(1)
LOG_FILE = "faultlog"
BOOTS_FILE = "boots"
WATCHDOG_DETAIL = "previous boot"
_KEYS = ["boot", "code", "detail", "seq", "session_ms"]  # sorted, as sorted(dict) gives them
_NAMES = faults.NAMES


def _valid_code(code):
    # type() is int: True is not a fault code
    return type(code) is int and (code in _NAMES or 0 < code <= CODE_MAX)


def _int_min(e, key, lo):
    v = e[key]
    if type(v) is not int or v < lo:
        raise ValueError("%s: must be an int >= %d, got %r" % (key, lo, v))
    return v


def check_entry(e):
    # ValueError naming the field unless e is a well-formed stored entry.
    if type(e) is not dict or sorted(e) != _KEYS:
        raise ValueError("entry: must hold exactly %s" % ", ".join(_KEYS))
    if not _valid_code(e["code"]):
        raise ValueError("code: must be a fault code 1..%d, got %r" % (CODE_MAX, e["code"]))
    d = e["detail"]
    if type(d) is not str or len(d) > DETAIL_MAX:
        raise ValueError("detail: must be a str of at most %d characters" % DETAIL_MAX)
    if _int_min(e, "session_ms", 0) > SESSION_MS_MAX:
        raise ValueError("session_ms: more than %d" % SESSION_MS_MAX)
    _int_min(e, "boot", 1)
    _int_min(e, "seq", 1)


def _check_log(obj):
    if type(obj) is not dict or sorted(obj) != ["entries", "last_seq"]:
        raise ValueError("file: must hold exactly 'last_seq' and 'entries'")
    last = obj["last_seq"]
    if type(last) is not int or last < 0:
        raise ValueError("last_seq: must be an int >= 0")
    entries = obj["entries"]
    if type(entries) is not list:
        raise ValueError("entries: must be a list")
    seq = boot = 0
    for i, e in enumerate(entries):
        try:
            check_entry(e)
        except ValueError as ex:
            raise ValueError("entries[%d].%s" % (i, ex)) from None
        if e["seq"] <= seq:
            raise ValueError("entries[%d].seq: not increasing" % i)
        if e["boot"] < boot:
            raise ValueError("entries[%d].boot: goes back" % i)
        seq = e["seq"]
        boot = e["boot"]
    if seq > last:
        raise ValueError("last_seq: below the newest entry's seq")


def _check_boots(obj):
    if type(obj) is not dict or list(obj) != ["boots"]:
        raise ValueError("boots: must be {'boots': n}")
    v = obj["boots"]
    if type(v) is not int or v < 0:
        raise ValueError("boots: must be an int >= 0")


class FaultLog:
    def __init__(self, store, keep=KEEP_DEFAULT):
        if type(keep) is not int or not 1 <= keep <= KEEP_MAX:
            raise ValueError("keep: must be 1..%d" % KEEP_MAX)
        self._store = store
        self.keep = keep
        obj = store.load(LOG_FILE, SCHEMA, _check_log)
        if obj is None:
            entries = []
            self.last_seq = 0
        else:
            entries = obj["entries"]
            self.last_seq = obj["last_seq"]
            # a file from a build that kept more: drop the oldest, not the file
            if len(entries) > keep:
                del entries[: len(entries) - keep]
        self._persisted = entries  # what flash holds, oldest first (dicts)
        self._pending = []  # noted, not yet on flash: (code, detail, session_ms, boot, seq)
        boots = store.load(BOOTS_FILE, SCHEMA, _check_boots)
        n = 0 if boots is None else boots["boots"]
        if entries and entries[-1]["boot"] > n:
            n = entries[-1]["boot"]  # the counter file was lost or set aside
        # This boot's number; notes made before start() carry it too.
        self.boot = n + 1
        self._boot_saved = False
        self._started = False
        self.dropped = 0  # faults noted but lost before reaching flash
        self.write_errors = 0  # failed flash writes (the next flush() tries again)
        self.last_error = None

    @property
    def problems(self):
        # (file name, reason) for every file set aside since start-up
        return self._store.problems

    @property
    def pending(self):
        # faults noted but not yet on flash
        return len(self._pending)

    def _save_boots(self):
        self._store.save(BOOTS_FILE, {"boots": self.boot}, SCHEMA)
        self._boot_saved = True

    def _write_failed(self, e):
        self.write_errors += 1
        self.last_error = "flash write error %s" % (e.args[0] if e.args else "?")

    def start(self, reset_cause=None):
        # Count this boot (once) and return its number. Call it early at boot with
        # hal.reset_cause(); "watchdog" logs that the previous boot ended in a watchdog reset.
        # A flash error is recorded, not raised: the boot goes on, flush() retries the counter.
        if self._started:
            return self.boot
        self._started = True
        try:
            self._save_boots()
        except OSError as e:
            self._write_failed(e)
        if reset_cause == "watchdog":
            self.note(faults.WATCHDOG_RESET, WATCHDOG_DETAIL, 0)
        return self.boot

    def note(self, code, detail="", session_ms=0):
        # Log a fault; returns its seq. Called from the control tick: RAM only, never the flash.
        # ValueError (nothing logged) names the bad argument.
        if not _valid_code(code):
            raise ValueError("code: must be a fault code 1..%d, got %r" % (CODE_MAX, code))
        if type(detail) is not str:
            raise ValueError("detail: must be a str")
        if type(session_ms) is not int or not 0 <= session_ms <= SESSION_MS_MAX:
            raise ValueError("session_ms: must be an int 0..%d" % SESSION_MS_MAX)
        if len(detail) > DETAIL_MAX:
            detail = detail[:DETAIL_MAX]
        seq = self.last_seq + 1
        self.last_seq = seq
        p = self._pending
        if len(p) >= self.keep:
            # the flash is behind: the oldest unwritten fault gives way to the newest
            del p[0]
            self.dropped += 1
        p.append((code, detail, session_ms, self.boot, seq))
        return seq

    @staticmethod
    def _entry(t):
        return {"code": t[0], "detail": t[1], "session_ms": t[2], "boot": t[3], "seq": t[4]}

    def _window(self):
        out = [dict(e) for e in self._persisted]
        for t in self._pending:
            out.append(self._entry(t))
        if len(out) > self.keep:
            del out[: len(out) - self.keep]
        return out

    def flush(self):
        # Write pending faults to flash: one store write (two if the boot counter is still
        # unwritten). True when flash holds everything noted so far; False after a flash error,
        # which is recorded and keeps the pending faults for the next call. Never raises OSError.
        if not self._pending:
            return True
        kept = self._window()
        try:
            if not self._boot_saved:
                self._save_boots()  # before any entry with this boot's number is stored
            self._store.save(LOG_FILE, {"last_seq": self.last_seq, "entries": kept}, SCHEMA)
        except OSError as e:
            self._write_failed(e)
            return False
        self._persisted = kept
        del self._pending[:]
        return True

    def entries(self):
        # The log, oldest first, at most keep entries: what is on flash plus what is pending
        # (each a fresh dict).
        return self._window()
