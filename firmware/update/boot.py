# The fixed boot selector: which bundle slot runs (docs/updates.md, "Slots" and "Boot").
#
# On the device this file is copied verbatim to /boot.py at provisioning and never changes with
# an update (bundles carry their own copy, which firmware.update.slots uses for the shared
# state helpers; the state file format is the contract between the two and must stay
# readable by every boot.py in the field). MicroPython runs /boot.py as __main__, then
# /main.py, which does `from firmware import main; main.start()`: main() below puts the chosen
# slot's directory first on sys.path so that import finds the slot's firmware. /boot.py must be
# this file itself, not an import of it from a `firmware` package on the root file system:
# that package would stay in sys.modules and shadow the slot's.
#
# It imports only os, sys and json, never anything from a slot, so a slot full of garbage
# cannot stop it from choosing the other one.
#
# State transitions (each one atomic: the new state goes to state.tmp, is flushed, closed and
# synced, then one rename puts it over state):
#   pending set (and the active slot confirmed): the trial. active = pending, confirmed false,
#     previous = the old active, pending null.
#   confirmed false at boot: the trial did not confirm (crash, watchdog, power cut, reset):
#     active = previous, confirmed true, previous and pending null.
#   the active slot unusable (see trust model) while the other one is: switch to the other,
#     confirmed true. Not in the table of docs/updates.md; it only happens if flash content
#     was damaged after it was verified, and running a verified older bundle beats running a
#     broken one. The security counter in the state stays as it was.
#
# Trust model. Boot cannot afford an Ed25519 check or a hash of every file at each start, so
# it trusts the state file: slots.py records a slot's hash there only after the whole bundle
# verified (signature, board, ABI, counter, every file's SHA-256) and was unpacked and its
# bundle.bin is in place, and removes the record before it touches the slot's files again. A
# slot is "usable" here when its hash is recorded and a cheap check passes: bundle.bin's
# manifest (read, not re-verified) lists files that all exist with the listed sizes. That
# catches a slot cut short or partly deleted, not bit rot inside a file.
#
# Missing or corrupt state: a complete state.tmp left by a save whose rename was cut short
# (FAT's rename removes the destination first) is promoted. Otherwise boot writes nothing and
# runs the first slot, a then b, that passes the cheap check; firmware.update.slots then
# re-verifies that slot in full and writes a fresh state (the anti-rollback counter restarts
# at that bundle's). No slot passes: select() returns None and main.py imports whatever
# firmware is on the root file system (a factory flat install), or fails there.

import json
import os
import sys

ROOT = "/slots"
STATE = "state"
TMP_SUFFIX = ".tmp"
BUNDLE_FILE = "bundle.bin"
NAMES = ("a", "b")
_MAGIC = b"BHB1"
_MANIFEST_MAX = 16384
_STATE_MAX = 4096


class _Fs:
    # The OsFs subset boot needs (firmware/storage.py has the full one; boot may not import
    # it). Tests pass a wrapper that cuts the power.

    def open(self, path, mode):
        return open(path, mode)

    def rename(self, old, new):
        os.rename(old, new)

    def remove(self, path):
        os.remove(path)

    def size(self, path):
        return os.stat(path)[6]

    def sync(self):
        s = getattr(os, "sync", None)
        if s is not None and sys.implementation.name == "micropython":
            s()


def join(*parts):
    return "/".join(p.rstrip("/") for p in parts)


def other(name):
    return "b" if name == "a" else "a"


def _is_hex64(v):
    if type(v) is not str or len(v) != 64:
        return False
    for c in v:
        if c not in "0123456789abcdef":
            return False
    return True


def valid_state(st):
    # The keys boot relies on, with their types. Extra keys are ignored: this file is fixed
    # in the field, so newer firmware may add keys without making older boots fall back.
    if type(st) is not dict:
        return False
    if st.get("active") not in NAMES or type(st.get("confirmed")) is not bool:
        return False
    if st.get("pending") not in (None, "a", "b") or st.get("previous") not in (None, "a", "b"):
        return False
    c = st.get("counter")
    if type(c) is not int or not 0 <= c < 2**31:
        return False
    h = st.get("hashes")
    if type(h) is not dict:
        return False
    for k in h:
        if k not in NAMES or not _is_hex64(h[k]):
            return False
    return True


def copy_state(st):
    # A copy whose hashes dict is not shared with st.
    new = {}
    for k in st:
        new[k] = st[k]
    new["hashes"] = dict(st["hashes"])
    return new


def read_json(fs, path, limit):
    # The parsed content, or None if the file is missing, too large or not JSON.
    try:
        f = fs.open(path, "rb")
    except OSError:
        return None
    try:
        data = f.read(limit + 1)
    except OSError:
        return None
    finally:
        f.close()
    if len(data) > limit:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeError):
        return None


def write_json(fs, path, obj):
    # Atomic replace: tmp, flush, close, sync, then the one rename that commits.
    data = json.dumps(obj, separators=(",", ":")).encode()
    tmp = path + TMP_SUFFIX
    f = fs.open(tmp, "wb")
    try:
        f.write(data)
        f.flush()
    finally:
        f.close()
    fs.sync()
    fs.rename(tmp, path)
    fs.sync()


def load_state(root=ROOT, fs=None):
    # The state, or None when there is none (or it is unusable and no complete .tmp can
    # replace it).
    fs = fs or _Fs()
    path = join(root, STATE)
    st = read_json(fs, path, _STATE_MAX)
    if valid_state(st):
        return st
    tmp_st = read_json(fs, path + TMP_SUFFIX, _STATE_MAX)
    if valid_state(tmp_st):
        try:
            fs.rename(path + TMP_SUFFIX, path)
        except OSError:
            pass  # run from it anyway; the next save retries the rename
        return tmp_st
    return None


def save_state(root, fs, st):
    write_json(fs, join(root, STATE), st)


def read_manifest(fs, slot_dir):
    # The manifest in slot_dir/bundle.bin's header, parsed but NOT verified, or None.
    try:
        f = fs.open(join(slot_dir, BUNDLE_FILE), "rb")
    except OSError:
        return None
    try:
        head = f.read(8)
        if len(head) != 8 or head[:4] != _MAGIC:
            return None
        n = head[4] | head[5] << 8 | head[6] << 16 | head[7] << 24
        if not 0 < n <= _MANIFEST_MAX:
            return None
        body = f.read(n)
    except OSError:
        return None
    finally:
        f.close()
    try:
        m = json.loads(body)
    except (ValueError, UnicodeError):
        return None
    if type(m) is not dict or type(m.get("files")) is not list:
        return None
    return m


def looks_complete(root, fs, name):
    # The cheap check: a readable manifest whose files all exist with their sizes.
    d = join(root, name)
    m = read_manifest(fs, d)
    if m is None:
        return False
    try:
        for entry in m["files"]:
            if fs.size(join(d, entry["path"])) != entry["size"]:
                return False
    except (OSError, KeyError, TypeError):
        return False
    return True


def fallback(root=ROOT, fs=None):
    # Without a usable state: the first slot that passes the cheap check, or None.
    fs = fs or _Fs()
    for name in NAMES:
        if looks_complete(root, fs, name):
            return name
    return None


def select(root=ROOT, fs=None):
    # Make this boot's transition and return the directory of the slot to run, or None.
    fs = fs or _Fs()
    st = load_state(root, fs)
    if st is None:
        name = fallback(root, fs)
        return join(root, name) if name is not None else None
    active = st["active"]

    def usable(name):
        # A recorded slot other than the active one (st is the latest state) that passes the
        # cheap check.
        return (
            name in NAMES
            and name != st["active"]
            and name in st["hashes"]
            and looks_complete(root, fs, name)
        )

    new = None
    if not st["confirmed"]:
        # A trial that did not confirm. With nothing usable to go back to, keep running it
        # unconfirmed (and retry the revert at every boot) rather than run nothing.
        if usable(st["previous"]):
            new = copy_state(st)
            new["active"] = st["previous"]
            new["confirmed"] = True
            new["previous"] = None
            new["pending"] = None
        elif st["pending"] is not None:
            new = copy_state(st)
            new["pending"] = None
    elif st["pending"] is not None:
        new = copy_state(st)
        new["pending"] = None
        if usable(st["pending"]):
            new["active"] = st["pending"]
            new["confirmed"] = False
            new["previous"] = active
    if new is not None:
        save_state(root, fs, new)
        st = new
        active = st["active"]
    if active in st["hashes"] and looks_complete(root, fs, active):
        return join(root, active)
    if usable(other(active)):
        new = copy_state(st)
        new["active"] = other(active)
        new["confirmed"] = True
        new["previous"] = None
        new["pending"] = None
        save_state(root, fs, new)
        return join(root, new["active"])
    # The only recorded slot failed the cheap check: run it anyway, nothing else can.
    return join(root, active) if active in st["hashes"] else None


def main(root=ROOT):
    # Called as the device's /boot.py. Never raises: MicroPython goes on to main.py anyway.
    try:
        d = select(root)
    except Exception as e:  # a file-system error must not stop the boot
        print("boot: slot selection failed:", repr(e))
        return None
    if d is not None:
        if d in sys.path:
            sys.path.remove(d)
        sys.path.insert(0, d)
    return d


if __name__ == "__main__":
    main()
