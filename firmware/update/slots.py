# The two bundle slots, their state, and the upload into the inactive one (docs/updates.md,
# "Slots"). The SMP image group (firmware/update/smp.py) calls this; boot.py reads the same
# state file and makes the trial and revert transitions.
#
#   /slots/state             JSON (boot.valid_state), one atomic rename per change
#   /slots/a/, /slots/b/     bundle.bin (the verified file) + the unpacked files
#   /slots/upload.part       the bundle being received
#   /slots/upload.json       {"total", "sha256"} of that upload: lets an upload resume after a
#                            reboot (not in the table of docs/updates.md; written like the state)
#
# Order of writes, so that a power cut anywhere leaves a state that points only at complete,
# verified slots: a slot's hash is removed from the state (one rename) before its files are
# touched, and recorded (one rename) only after the whole bundle verified, every file was
# unpacked and checked, and bundle.bin was renamed into the slot. The upload itself never
# changes the state. What a cut leaves behind (a half-unpacked slot without a hash, a partial
# upload.part, a state.tmp) is harmless and is cleared or resumed by the next operation.
#
# Errors are UpdateError(rc, message) with MCUmgr's error codes, for the SMP server to return.
#
# The long operations (upload_complete: hash, verify, unpack; mark_test: re-hash every file;
# erase: remove every file) also come as step generators, upload_complete_steps() and so on,
# that yield between pieces of work (ed25519.py "Steps"): the SMP server runs them inside an
# asyncio task and lets the control loop and the watchdog task run at every yield. The plain
# methods run them to the end at once (provisioning, host tools, tests). The writes and their
# order are the same either way.

import binascii
import hashlib
import os

from firmware import storage
from firmware.runtime import const
from firmware.update import boot, bundle
from firmware.update.ed25519 import run_steps

EUNKNOWN = const(1)
ENOMEM = const(2)
EINVAL = const(3)
ENOENT = const(5)
EBADSTATE = const(6)
EMSGSIZE = const(7)
ENOTSUP = const(8)
ECORRUPT = const(9)
EBUSY = const(10)
EACCESSDENIED = const(11)

# Most bytes one slot may hold: its bundle.bin plus the unpacked files (bundle.verify's
# capacity), so a bundle file is at most about half of it. At the peak of an update the data
# partition holds two full slots and an upload.part: about 2.5 x this.
SLOT_CAPACITY = const(786432)

UPLOAD_PART = "upload.part"
UPLOAD_META = "upload.json"
_UNREAD = object()
_READ_CHUNK = const(2048)


class UpdateError(Exception):
    # args (rc, message). For an upload at the wrong offset, .expected is the offset the
    # device wants next (also in the message).
    def __init__(self, rc, message, expected=None):
        super().__init__(rc, message)
        self.expected = expected


class SlotFs(storage.OsFs):
    # OsFs plus the directory removal that clearing a slot needs.
    def rmdir(self, path):
        os.rmdir(path)


def _hex(b):
    return binascii.hexlify(b).decode()


def _hash_arg(h):
    # A hash from the client (32 bytes) as lowercase hex, or UpdateError.
    if type(h) is str:  # tolerate hex from local callers
        h = binascii.unhexlify(h)
    if type(h) not in (bytes, bytearray, memoryview) or len(h) != 32:
        raise UpdateError(EINVAL, "hash: 32 bytes expected")
    return _hex(bytes(h))


def _default_state():
    # Nothing installed.
    return {
        "active": "a",
        "confirmed": True,
        "pending": None,
        "previous": None,
        "counter": 0,
        "hashes": {},
    }


class Slots:
    def __init__(self, root, board_id, abi, public_key, fs=None, capacity=SLOT_CAPACITY):
        self.root = root.rstrip("/") or "/"
        self.board_id = board_id
        self.abi = abi
        self.public_key = public_key
        self.fs = fs if fs is not None else SlotFs()
        self._meta = _UNREAD  # upload.json as last read or written (each chunk needs it)
        self.capacity = capacity
        self._manifests = {}  # bundle hash (hex) -> manifest, read from bundle.bin once
        if not self.fs.is_dir(self.root):
            self.fs.mkdir(self.root)
        self._settle()

    # -- paths and small helpers --

    def _path(self, *names):
        return boot.join(self.root, *names)

    def _exists(self, path):
        try:
            self.fs.size(path)
            return True
        except OSError:
            return False

    def _discard(self, path):
        try:
            self.fs.remove(path)
        except OSError:
            pass

    def _clear_dir(self, path):
        # Remove everything under path; path itself stays (created if missing). A step
        # generator: one removal per step.
        if not self.fs.is_dir(path):
            self._discard(path)
            self.fs.mkdir(path)
            return
        for entry in self.fs.listdir(path):
            p = boot.join(path, entry)
            if self.fs.is_dir(p):
                yield from self._clear_dir(p)
                self.fs.rmdir(p)
            else:
                self.fs.remove(p)
            yield

    def _sha256(self, path):
        return run_steps(self._sha256_steps(path))

    def _sha256_steps(self, path):
        # SHA-256 of a file, one chunk per step.
        h = hashlib.sha256()
        f = self.fs.open(path, "rb")
        try:
            while True:
                b = f.read(_READ_CHUNK)
                if not b:
                    break
                h.update(b)
                yield
        finally:
            f.close()
        return h.digest()

    def _load(self):
        st = boot.load_state(self.root, self.fs)
        return st if st is not None else _default_state()

    def _save(self, st):
        boot.save_state(self.root, self.fs, st)

    def _settle(self):
        # After a reboot: drop what an interrupted save left (boot.load_state has already
        # promoted a complete state.tmp if the state itself was missing) and rebuild a state
        # that is missing or corrupt although bundles are installed.
        st = boot.load_state(self.root, self.fs)
        if st is None and (
            self._exists(self._path(boot.STATE))
            or self._exists(self._path("a", boot.BUNDLE_FILE))
            or self._exists(self._path("b", boot.BUNDLE_FILE))
        ):
            self._recover()
        for name in (boot.STATE, UPLOAD_META):
            tmp = self._path(name + boot.TMP_SUFFIX)
            if self._exists(tmp):
                self._discard(tmp)

    def _recover(self):
        # No usable state but slots on flash: verify in full the slot boot runs in this case
        # (boot.fallback), then the other, and record the first that passes as the active,
        # confirmed slot. The anti-rollback counter is lost with the state: it restarts at
        # that bundle's counter.
        first = boot.fallback(self.root, self.fs)
        order = (first, boot.other(first)) if first is not None else boot.NAMES
        st = _default_state()
        for name in order:
            try:
                m = run_steps(self._check_slot(name, None))
            except (UpdateError, OSError):
                continue
            st["active"] = name
            st["counter"] = m["counter"]
            st["hashes"][name] = _hex(self._sha256(self._path(name, boot.BUNDLE_FILE)))
            break
        self._save(st)

    def _manifest(self, st, name):
        # The manifest of a recorded slot (from its bundle.bin header), or None.
        h = st["hashes"].get(name)
        if h is None:
            return None
        m = self._manifests.get(h)
        if m is None:
            m = boot.read_manifest(self.fs, self._path(name))
            if m is not None:
                self._manifests[h] = m
        return m

    def _check_files(self, name, manifest):
        # Every unpacked file has its manifest size and SHA-256 (a step generator).
        for entry in manifest["files"]:
            p = self._path(name, entry["path"])
            try:
                ok = self.fs.size(p) == entry["size"]
                if ok:
                    ok = _hex((yield from self._sha256_steps(p))) == entry["sha256"]
            except OSError:
                ok = False
            yield
            if not ok:
                raise UpdateError(ECORRUPT, "slot %s: %s damaged" % (name, entry["path"]))

    def _check_slot(self, name, expected_hash):
        # Full check of an installed slot: bundle.bin hashes to expected_hash (or, with None,
        # passes bundle.verify: signature and all), and the unpacked files match. Returns the
        # manifest; a step generator.
        path = self._path(name, boot.BUNDLE_FILE)
        if expected_hash is None:
            try:
                m = yield from bundle.verify_steps(
                    path, self.public_key, self.board_id, self.abi, 0, self.capacity, self.fs
                )
            except bundle.BundleError as e:
                raise UpdateError(ECORRUPT, "slot %s: %s" % (name, _bundle_message(e)))
        else:
            try:
                ok = _hex((yield from self._sha256_steps(path))) == expected_hash
            except OSError:
                ok = False
            m = boot.read_manifest(self.fs, self._path(name)) if ok else None
            if m is None:
                raise UpdateError(ECORRUPT, "slot %s: bundle.bin damaged" % name)
        yield from self._check_files(name, m)
        return m

    # -- state --

    def state(self):
        return boot.copy_state(self._load())

    def running(self):
        st = self._load()
        return self._manifest(st, st["active"])

    def images(self):
        # Both slots as MCUmgr's image state read reports them (Zephyr's img_mgmt): the
        # running slot first as slot 0, confirmed unless it is in its trial; the other slot
        # pending when marked for test, and "confirmed" during a trial, because it is what
        # the next boot goes back to.
        st = self._load()
        active = st["active"]
        out = []
        for slot, name in ((0, active), (1, boot.other(active))):
            m = self._manifest(st, name)
            if m is None:
                continue
            is_active = slot == 0
            out.append(
                {
                    "slot": slot,
                    "name": name,
                    "version": m.get("version", ""),
                    "hash": binascii.unhexlify(st["hashes"][name]),
                    "bootable": True,
                    "pending": (not is_active) and st["pending"] == name,
                    "confirmed": st["confirmed"]
                    if is_active
                    else (not st["confirmed"] and st["previous"] == name),
                    "active": is_active,
                    "permanent": False,
                }
            )
        return out

    def _check_inactive_free(self, st, what):
        # The inactive slot may be replaced only when it is neither pending nor the slot a
        # running trial would go back to.
        if not st["confirmed"]:
            raise UpdateError(EBADSTATE, "%s: a trial is running, confirm it first" % what)
        if st["pending"] is not None:
            raise UpdateError(EBADSTATE, "%s: the other slot is pending, reset to test it" % what)

    # -- upload --

    def _upload_meta(self):
        # read once per Slots object (a boot), then kept: only this object writes the file
        if self._meta is _UNREAD:
            m = boot.read_json(self.fs, self._path(UPLOAD_META), 256)
            if type(m) is not dict or type(m.get("total")) is not int:
                m = None
            self._meta = m
        return self._meta

    def _forget_meta(self):
        self._discard(self._path(UPLOAD_META))
        self._meta = None

    def upload_begin(self, total, sha256):
        # A new upload, or (same total and SHA-256 as the one on flash) a resumed one: then
        # upload_offset() says where to go on.
        if type(total) is not int or total <= 0:
            raise UpdateError(EINVAL, "len: a positive size is needed")
        if total > self.capacity:
            raise UpdateError(EMSGSIZE, "len: %d bytes, at most %d" % (total, self.capacity))
        sha = None if sha256 is None else _hash_arg(sha256)
        self._check_inactive_free(self._load(), "upload")
        cur = self._upload_meta()
        if sha is not None and cur is not None:
            if cur["total"] == total and cur.get("sha256") == sha:
                return
        # The old bytes go before the new description, so they are never taken for the
        # beginning of the new upload.
        self._discard(self._path(UPLOAD_PART))
        self._meta = _UNREAD  # until the new description is on flash, ask the flash
        meta = {"total": total, "sha256": sha}
        boot.write_json(self.fs, self._path(UPLOAD_META), meta)
        self._meta = meta

    def upload_offset(self):
        meta = self._upload_meta()
        if meta is None:
            return 0
        try:
            n = self.fs.size(self._path(UPLOAD_PART))
        except OSError:
            return 0
        if n > meta["total"]:  # cannot happen through upload_write; start over
            self._discard(self._path(UPLOAD_PART))
            return 0
        return n

    def upload_write(self, offset, data):
        meta = self._upload_meta()
        if meta is None:
            raise UpdateError(EBADSTATE, "no upload in progress")
        expected = self.upload_offset()
        if offset != expected:
            if offset == 0:
                return expected  # a resumed upload restarting at 0: go on from expected
            raise UpdateError(
                EINVAL, "offset %d, expected %d" % (offset, expected), expected=expected
            )
        n = len(data)
        if expected + n > meta["total"]:
            raise UpdateError(EINVAL, "data past the announced %d bytes" % meta["total"])
        f = self.fs.open(self._path(UPLOAD_PART), "ab")
        try:
            f.write(data)
        finally:
            f.close()  # close commits the chunk (LittleFS)
        return expected + n

    def _discard_upload(self):
        self._discard(self._path(UPLOAD_PART))
        self._forget_meta()

    def upload_complete(self):
        # Check, verify, unpack into the inactive slot and record it. Returns the manifest.
        return run_steps(self.upload_complete_steps())

    def upload_complete_steps(self):
        # upload_complete() as a step generator.
        meta = self._upload_meta()
        if meta is None:
            raise UpdateError(EBADSTATE, "no upload in progress")
        got = self.upload_offset()
        if got != meta["total"]:
            raise UpdateError(
                EBADSTATE, "upload incomplete: %d of %d bytes" % (got, meta["total"])
            )
        st = self._load()
        self._check_inactive_free(st, "upload")
        part = self._path(UPLOAD_PART)
        digest = _hex((yield from self._sha256_steps(part)))
        if meta.get("sha256") is not None and digest != meta["sha256"]:
            self._discard_upload()
            raise UpdateError(ECORRUPT, "sha256 of the upload differs from the announced one")
        try:
            manifest = yield from bundle.verify_steps(
                part, self.public_key, self.board_id, self.abi, st["counter"], self.capacity,
                self.fs,
            )  # fmt: skip
        except bundle.BundleError as e:
            self._discard_upload()
            raise UpdateError(ECORRUPT, _bundle_message(e))
        # Other requests waited (the SMP server takes one at a time), but the state is read
        # again rather than trusted across the steps.
        st = self._load()
        self._check_inactive_free(st, "upload")
        name = boot.other(st["active"])
        if name in st["hashes"] or st["previous"] == name:
            st = boot.copy_state(st)
            st["hashes"].pop(name, None)
            if st["previous"] == name:
                st["previous"] = None
            self._save(st)  # the slot is no longer trusted from here on
        slot_dir = self._path(name)
        try:
            yield from self._clear_dir(slot_dir)
            yield from bundle.unpack_steps(part, manifest, slot_dir, self.fs)
        except bundle.BundleError as e:  # the upload changed under us
            self._discard_upload()
            raise UpdateError(ECORRUPT, _bundle_message(e))
        except OSError as e:
            raise UpdateError(ENOMEM, "unpack: error %s" % (e.args[0] if e.args else "?"))
        self.fs.rename(part, self._path(name, boot.BUNDLE_FILE))
        self._forget_meta()
        st = boot.copy_state(st)
        st["hashes"][name] = digest
        self._save(st)  # the commit point: now it can be marked for test
        self._manifests[digest] = manifest
        return manifest

    def erase(self):
        run_steps(self.erase_steps())

    def erase_steps(self):
        st = self._load()
        self._check_inactive_free(st, "erase")
        name = boot.other(st["active"])
        if name in st["hashes"] or st["previous"] == name:
            st = boot.copy_state(st)
            st["hashes"].pop(name, None)
            if st["previous"] == name:
                st["previous"] = None
            self._save(st)
        yield from self._clear_dir(self._path(name))
        self._discard_upload()

    # -- test and confirm --

    def _find(self, st, h):
        # The slot recorded with hash h, the inactive one first (both may hold the same
        # bundle after it was uploaded again).
        for name in (boot.other(st["active"]), st["active"]):
            if st["hashes"].get(name) == h:
                return name
        return None

    def mark_test(self, hash):
        run_steps(self.mark_test_steps(hash))

    def mark_test_steps(self, hash):
        # mark_test() as a step generator: the slot's files are hashed again first.
        h = _hash_arg(hash)
        st = self._load()
        name = self._find(st, h)
        if name is None:
            raise UpdateError(ENOENT, "no verified bundle with that hash")
        if name == st["active"]:
            raise UpdateError(EBADSTATE, "that bundle is the one running")
        if st["pending"] == name:
            return
        self._check_inactive_free(st, "test")
        try:
            m = yield from self._check_slot(name, h)
        except UpdateError:
            st = boot.copy_state(st)
            del st["hashes"][name]
            self._save(st)
            raise
        if m.get("counter", -1) < st["counter"]:
            raise UpdateError(
                EACCESSDENIED,
                "counter %s is below the device's %d" % (m.get("counter"), st["counter"]),
            )
        st = boot.copy_state(st)
        st["pending"] = name
        self._save(st)

    def confirm(self, hash=None):
        st = self._load()
        name = st["active"]
        if name not in st["hashes"]:
            raise UpdateError(EBADSTATE, "nothing installed")
        if hash is not None:
            h = _hash_arg(hash)
            if h != st["hashes"][name]:
                if self._find(st, h) is not None:
                    raise UpdateError(ENOTSUP, "only the running bundle can be confirmed")
                raise UpdateError(ENOENT, "no verified bundle with that hash")
        m = self._manifest(st, name)
        counter = st["counter"]
        if m is not None and type(m.get("counter")) is int and m["counter"] > counter:
            counter = m["counter"]
        if st["confirmed"] and counter == st["counter"]:
            return
        st = boot.copy_state(st)
        st["confirmed"] = True
        st["counter"] = counter
        self._save(st)

    # -- provisioning --

    def install_factory(self, bundle_path):
        # Verify bundle_path and make it slot a, active and confirmed; everything else goes.
        try:
            manifest = bundle.verify(
                bundle_path, self.public_key, self.board_id, self.abi, 0, self.capacity, self.fs
            )
        except bundle.BundleError as e:
            raise UpdateError(ECORRUPT, _bundle_message(e))
        self._save(_default_state())
        self._discard_upload()
        for name in boot.NAMES:
            run_steps(self._clear_dir(self._path(name)))
        slot_dir = self._path("a")
        bundle.unpack(bundle_path, manifest, slot_dir, self.fs)
        h = hashlib.sha256()
        src = self.fs.open(bundle_path, "rb")
        try:
            dst = self.fs.open(self._path("a", boot.BUNDLE_FILE), "wb")
            try:
                while True:
                    b = src.read(_READ_CHUNK)
                    if not b:
                        break
                    h.update(b)
                    dst.write(b)
            finally:
                dst.close()
        finally:
            src.close()
        st = _default_state()
        st["counter"] = manifest["counter"]
        st["hashes"]["a"] = _hex(h.digest())
        self._save(st)
        self._manifests[st["hashes"]["a"]] = manifest


def _bundle_message(e):
    # "code: message" from BundleError(code, message).
    if len(e.args) >= 2:
        return "%s: %s" % (e.args[0], e.args[1])
    return str(e)
