# Per-user tension history on flash (system layer; DESIGN sections 1 and 6).
#
# Up to 5 people share a device. Each has one file ("tension0".."tension4") holding their most
# recent sessions, so a corrupt file loses at most that person's history. A device-wide session
# sequence number ("session_seq") is assigned here and persisted before the session is stored:
# a power cut between the two writes skips a number, it never repeats one. On start-up the counter
# is also raised to the highest number found in any user's file, in case its own file was lost.
#
# A record (what add() takes; get() returns it with "seq" added):
#   duration_s   int 1..3600          treatment time actually run
#   area, flow   str                  summary of the session's settings (short identifiers;
#                                     "mixed" or a programme name for programmes)
#   strength     int 1..10            the level the session ran at (the highest it reached)
#   before/after six ints, cN/mm      region stiffness at the start and at the end, in REGIONS
#                                     order; 0 means no estimate (no finger in contact there)
# Anything else, and unknown keys, are refused with a ValueError naming the field.

from firmware.runtime import const

REGIONS = (
    "upper_left",
    "upper_right",
    "middle_left",
    "middle_right",
    "lower_left",
    "lower_right",
)
USERS_MAX = const(5)
KEEP_DEFAULT = const(30)
KEEP_MAX = const(60)  # 60 records of the longest form stay inside the store's file limit
DURATION_MAX_S = const(3600)  # the hard session cap (DESIGN section 5)
STIFFNESS_MAX_CN_MM = const(100_000)  # 1000 N/mm: far above any back, below small-int range
NAME_MAX = const(16)
SCHEMA = const(1)
SEQ_FILE = "session_seq"
_FIELDS = ("duration_s", "area", "flow", "strength", "before", "after")


def _int_in(rec, key, lo, hi):
    v = rec[key]
    # type() is int: True/False are not counts, floats are not allowed in records
    if type(v) is not int or not lo <= v <= hi:
        raise ValueError("%s: must be an int %d..%d, got %r" % (key, lo, hi, v))
    return v


def _ident(rec, key):
    v = rec[key]
    if type(v) is not str or not 0 < len(v) <= NAME_MAX:
        raise ValueError("%s: must be a name of 1..%d characters" % (key, NAME_MAX))
    for c in v:
        if ord(c) > 127 or not (c.isalpha() or c.isdigit() or c in "_-"):
            raise ValueError("%s: only ASCII letters, digits, '_' and '-'" % key)
    return v


def _regions(rec, key):
    v = rec[key]
    if type(v) not in (list, tuple) or len(v) != len(REGIONS):
        raise ValueError("%s: must be %d region values" % (key, len(REGIONS)))
    out = []
    for i, x in enumerate(v):
        if type(x) is not int or not 0 <= x <= STIFFNESS_MAX_CN_MM:
            raise ValueError(
                "%s[%d]: must be an int 0..%d cN/mm, got %r" % (key, i, STIFFNESS_MAX_CN_MM, x)
            )
        out.append(x)
    return out


def check_record(rec, with_seq=False):
    # A validated copy of rec (lists, not tuples, as stored); ValueError names the bad field.
    if type(rec) is not dict:
        raise ValueError("record: must be a dict")
    for key in rec:
        if key == "seq" and not with_seq:
            raise ValueError("seq: assigned by the history, not the caller")
        if key not in _FIELDS and key != "seq":
            raise ValueError("record: unknown key %r" % (key,))
    for key in _FIELDS:
        if key not in rec:
            raise ValueError("%s: missing" % key)
    out = {
        "duration_s": _int_in(rec, "duration_s", 1, DURATION_MAX_S),
        "area": _ident(rec, "area"),
        "flow": _ident(rec, "flow"),
        "strength": _int_in(rec, "strength", 1, 10),
        "before": _regions(rec, "before"),
        "after": _regions(rec, "after"),
    }
    if with_seq:
        if "seq" not in rec:
            raise ValueError("seq: missing")
        v = rec["seq"]
        if type(v) is not int or v < 1:
            raise ValueError("seq: must be a positive int")
        out["seq"] = v
    return out


class TensionHistory:
    def __init__(self, store, users=USERS_MAX, keep=KEEP_DEFAULT):
        if type(users) is not int or not 1 <= users <= USERS_MAX:
            raise ValueError("users: must be 1..%d" % USERS_MAX)
        if type(keep) is not int or not 1 <= keep <= KEEP_MAX:
            raise ValueError("keep: must be 1..%d" % KEEP_MAX)
        self._store = store
        self.users = users
        self.keep = keep
        # Reading every file now also sets aside corrupt ones at boot, not mid-session.
        last = 0
        seq = store.load(SEQ_FILE, SCHEMA, self._check_seq)
        if seq is not None:
            last = seq["last"]
        for user in range(users):
            sessions = self._load(user)
            if sessions:
                last = max(last, sessions[-1]["seq"])
        self.last_seq = last

    @property
    def problems(self):
        # (file name, reason) for every file set aside since start-up
        return self._store.problems

    def _user(self, user):
        if type(user) is not int or not 0 <= user < self.users:
            raise ValueError("user: must be 0..%d" % (self.users - 1))
        return "tension%d" % user

    @staticmethod
    def _check_seq(obj):
        if type(obj) is not dict or list(obj) != ["last"]:
            raise ValueError("session_seq: must be {'last': n}")
        v = obj["last"]
        if type(v) is not int or v < 0:
            raise ValueError("last: must be an int >= 0")

    def _checker(self, user):
        def check(obj):
            if type(obj) is not dict or sorted(obj) != ["sessions", "user"]:
                raise ValueError("file: must hold exactly 'user' and 'sessions'")
            if type(obj["user"]) is not int or obj["user"] != user:
                raise ValueError("user: file holds user %r" % (obj["user"],))
            sessions = obj["sessions"]
            if type(sessions) is not list:
                raise ValueError("sessions: must be a list")
            prev = 0
            for i, rec in enumerate(sessions):
                try:
                    rec = check_record(rec, with_seq=True)
                except ValueError as e:
                    raise ValueError("sessions[%d].%s" % (i, e)) from None
                if rec["seq"] <= prev:
                    raise ValueError("sessions[%d].seq: not increasing" % i)
                prev = rec["seq"]

        return check

    def _load(self, user):
        obj = self._store.load(self._user(user), SCHEMA, self._checker(user))
        if obj is None:
            return []
        sessions = obj["sessions"]
        # a file from a build that kept more: drop the oldest, not the file
        if len(sessions) > self.keep:
            del sessions[: len(sessions) - self.keep]
        return sessions

    def add(self, user, record):
        # Store a finished session for user; returns its sequence number. ValueError (nothing
        # written) for a bad user or record; OSError from the flash propagates.
        name = self._user(user)
        rec = check_record(record)
        seq = self.last_seq + 1
        # counter first: a cut before the user's file is written skips seq, never reuses it
        self._store.save(SEQ_FILE, {"last": seq}, SCHEMA)
        self.last_seq = seq
        sessions = self._load(user)
        rec["seq"] = seq
        sessions.append(rec)
        if len(sessions) > self.keep:
            del sessions[: len(sessions) - self.keep]
        self._store.save(name, {"user": user, "sessions": sessions}, SCHEMA)
        return seq

    def get(self, user):
        # user's sessions, oldest first, at most keep of them (each a fresh dict)
        self._user(user)
        return self._load(user)

    def clear(self, user):
        # Forget user's sessions (the sequence counter is device-wide and keeps counting).
        self._store.remove(self._user(user))
