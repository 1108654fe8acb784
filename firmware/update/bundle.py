# Signed update bundles, format 1 (docs/updates.md is the contract): constants, verification
# and unpacking on the device.
#
#   offset   size  content
#   0        4     magic b"BHB1"
#   4        4     u32 little-endian: manifest length M (1..16384)
#   8        M     manifest, UTF-8 JSON
#   8 + M    64    Ed25519 signature of bytes 0 .. 8 + M
#   72 + M   ...   the files' bytes, concatenated in manifest order, nothing after
#
# verify() checks in the contract's order and raises BundleError(code, message) at the first
# problem: magic and manifest length, signature, the manifest's keys and types, board, ABI,
# counter, paths, sizes, capacity, each file's SHA-256. Capacity is not in the contract's list:
# it goes after the sizes (it needs them, and they are trusted once signed) and before hashing
# (no point reading a bundle that cannot be stored).
#
# Steps: verify_steps() and unpack_steps() are the same work as generators that yield between
# pieces of it (the signature check's steps, every file chunk, every few manifest entries), for
# the SMP server to run inside an asyncio task without stopping the others (ed25519.py "Steps");
# verify() and unpack() run them to the end at once.
#
# A bundle is never read whole into RAM (the device has ~300 KB of heap): the header and the
# manifest (at most 16 KB) are, the files stream through one 1 KB buffer. File access goes
# through an fs object with the firmware.storage.OsFs methods, so tests can cut the power.
#
# Codes (stable, short, for logs and the SMP client): truncated, magic, manifest, signature,
# format, board, abi, counter, path, size, capacity, hash.

import hashlib
import json
import struct
import sys
from binascii import hexlify

from firmware.runtime import const
from firmware.update import ed25519
from firmware.update.ed25519 import run_steps

MAGIC = b"BHB1"
FORMAT = const(1)
HEADER_SIZE = const(8)  # magic + manifest length
SIGNATURE_SIZE = const(64)
MANIFEST_MAX = const(16384)
PATH_MAX = const(96)
COUNTER_MAX = 0x7FFFFFFF  # not const(): above MicroPython's small-int range
CHUNK = const(1024)
_ENTRIES_PER_STEP = const(4)  # manifest entries checked between two yields
# The slot directory keeps the verified bundle file beside the unpacked files (docs/updates.md
# "Slots"): no file in a bundle may take its name.
RESERVED_PATHS = ("bundle.bin",)

_KEYS = ("format", "version", "board", "abi", "counter", "files")
_FILE_KEYS = ("path", "size", "sha256")
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_HEX = "0123456789abcdef"
_NO_SIGNATURE = bytes(SIGNATURE_SIZE)


class BundleError(Exception):
    # code: one of the short strings above; message: what exactly, for a person.
    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


def device_abi():
    # The running interpreter's .mpy ABI (sys.implementation._mpy), None on CPython.
    return getattr(sys.implementation, "_mpy", None)


def _fs(fs):
    if fs is not None:
        return fs
    from firmware.storage import OsFs

    return OsFs()


def _read_exact(f, n, what):
    data = f.read(n)
    if data is None or len(data) < n:
        raise BundleError("truncated", "the bundle ends inside its %s" % what)
    return data


def read_header(f):
    # Reads the 8-byte header from f (at offset 0); returns the manifest length M.
    head = _read_exact(f, HEADER_SIZE, "header")
    if head[:4] != MAGIC:
        raise BundleError("magic", "not a format-1 bundle (magic %r)" % bytes(head[:4]))
    m = struct.unpack("<I", head[4:])[0]
    if not 1 <= m <= MANIFEST_MAX:
        raise BundleError("manifest", "manifest length %d, must be 1..%d" % (m, MANIFEST_MAX))
    return m


def _parse(raw):
    return run_steps(_parse_steps(raw))


def _parse_steps(raw):
    try:
        man = json.loads(raw)
    except MemoryError:
        raise  # not the bundle's fault
    except Exception:  # ValueError, UnicodeError: whatever the parser says about bad JSON
        raise BundleError("manifest", "manifest is not JSON")
    yield from _check_types(man)
    return man


def _is_int(v):
    return type(v) is int  # bool is not


def _check_types(man):
    # A step generator: ~60 us per file entry on the WebAssembly build, 50 entries or more.
    if type(man) is not dict:
        raise BundleError("manifest", "manifest is not a JSON object")
    # The format first: another format may have other keys.
    fmt = man.get("format")
    if _is_int(fmt) and fmt != FORMAT:
        raise BundleError("format", "bundle format %d, this device reads %d" % (fmt, FORMAT))
    for key in man:
        if key not in _KEYS:
            raise BundleError("manifest", "unknown manifest key %r" % key)
    for key in _KEYS:
        if key not in man:
            raise BundleError("manifest", "manifest has no %r" % key)
    if not _is_int(fmt):
        raise BundleError("manifest", "format must be an int")
    version = man["version"]
    parts = version.split(".") if type(version) is str else ()
    if len(parts) != 3 or not all(p and all(c in "0123456789" for c in p) for p in parts):
        raise BundleError("manifest", "version must be MAJOR.MINOR.PATCH")
    if type(man["board"]) is not str or not man["board"]:
        raise BundleError("manifest", "board must be a non-empty string")
    if not _is_int(man["abi"]) or man["abi"] < 0:
        raise BundleError("manifest", "abi must be a non-negative int")
    if not _is_int(man["counter"]) or not 0 <= man["counter"] <= COUNTER_MAX:
        raise BundleError("manifest", "counter must be an int in 0..2**31-1")
    files = man["files"]
    if type(files) is not list:
        raise BundleError("manifest", "files must be a list")
    for i, entry in enumerate(files):
        if i % _ENTRIES_PER_STEP == _ENTRIES_PER_STEP - 1:
            yield
        if type(entry) is not dict or len(entry) != 3 or any(k not in entry for k in _FILE_KEYS):
            raise BundleError("manifest", "files[%d] must have exactly path, size, sha256" % i)
        if type(entry["path"]) is not str:
            raise BundleError("manifest", "files[%d].path must be a string" % i)
        if not _is_int(entry["size"]) or entry["size"] < 0:
            raise BundleError("manifest", "files[%d].size must be an int >= 0" % i)
        digest = entry["sha256"]
        if type(digest) is not str or len(digest) != 64 or any(c not in _HEX for c in digest):
            raise BundleError("manifest", "files[%d].sha256 must be 64 lowercase hex digits" % i)


def check_path(path):
    # None if path is a valid file path inside a slot, else why not.
    if not 0 < len(path) <= PATH_MAX:
        return "must be 1..%d characters" % PATH_MAX
    for seg in path.split("/"):
        if seg == "" or seg == "." or seg == "..":
            return "empty, '.' or '..' segment"
        for c in seg:
            if c not in _PATH_CHARS:
                return "character %r not allowed" % c
    if path in RESERVED_PATHS:
        return "reserved name"
    return None


def _check_paths(files):
    # A step generator.
    seen = set()
    dirs = set()
    for i, entry in enumerate(files):
        if i % _ENTRIES_PER_STEP == _ENTRIES_PER_STEP - 1:
            yield
        path = entry["path"]
        why = check_path(path)
        if why is not None:
            raise BundleError("path", "file path %r: %s" % (path, why))
        if path in seen:
            raise BundleError("path", "file path %r appears twice" % path)
        seen.add(path)
        cut = path.rfind("/")
        while cut > 0:
            dirs.add(path[:cut])
            cut = path.rfind("/", 0, cut)
    for path in seen:
        if path in dirs:
            raise BundleError("path", "%r is both a file and a directory" % path)


def _hash_stream(f, size, buf, out=None):
    # SHA-256 (hex) of the next `size` bytes of f, copied to `out` if given; a step generator,
    # one chunk per step.
    h = hashlib.sha256()
    mv = memoryview(buf)
    left = size
    while left:
        n = f.readinto(mv[: min(left, CHUNK)])
        if not n:
            raise BundleError("truncated", "the bundle ends inside a file")
        h.update(mv[:n])
        if out is not None:
            out.write(mv[:n])
        left -= n
        yield
    return hexlify(h.digest()).decode()


def verify(path, public_key, board_id, abi, min_counter, capacity, fs=None):
    # Verifies the bundle file at `path`; returns its manifest (dict) or raises BundleError.
    return run_steps(verify_steps(path, public_key, board_id, abi, min_counter, capacity, fs))


def verify_steps(path, public_key, board_id, abi, min_counter, capacity, fs=None):
    # verify() as a step generator (returns the manifest).
    #   public_key   the device's update key, 32 raw bytes
    #   board_id     the board this device is; abi: device_abi() on the device (None skips the
    #                check: only for host tools that cannot load .mpy files at all)
    #   min_counter  the counter of the last confirmed bundle (anti-rollback)
    #   capacity     most bytes the slot may hold: the bundle file (kept as bundle.bin) plus every
    #                unpacked file; None for no limit
    if len(public_key) != 32:
        raise ValueError("public_key: 32 bytes")
    fs = _fs(fs)
    total = fs.size(path)
    f = fs.open(path, "rb")
    try:
        m = read_header(f)
        # One buffer for the signed bytes (header and manifest), as the signature needs them.
        signed = bytearray(HEADER_SIZE + m)
        signed[:HEADER_SIZE] = MAGIC + struct.pack("<I", m)
        got = f.readinto(memoryview(signed)[HEADER_SIZE:])
        if got is None or got < m:
            raise BundleError("truncated", "the bundle ends inside its manifest")
        signature = _read_exact(f, SIGNATURE_SIZE, "signature")
        if signature == _NO_SIGNATURE:
            raise BundleError("signature", "the bundle is not signed")
        if not (yield from ed25519.verify_steps(public_key, signed, signature)):
            raise BundleError("signature", "the signature does not match this device's key")
        man = yield from _parse_steps(bytes(memoryview(signed)[HEADER_SIZE:]))
        signed = None  # free it before the files stream through
        if man["board"] != board_id:
            raise BundleError(
                "board", "bundle for board %r, this is %r" % (man["board"], board_id)
            )
        if abi is not None and man["abi"] != abi:
            raise BundleError("abi", "bundle .mpy ABI %d, this device runs %d" % (man["abi"], abi))
        if man["counter"] < min_counter:
            raise BundleError(
                "counter",
                "security counter %d is below this device's %d" % (man["counter"], min_counter),
            )
        files = man["files"]
        yield from _check_paths(files)
        rest = total - HEADER_SIZE - m - SIGNATURE_SIZE
        need = 0
        for entry in files:
            need += entry["size"]
        # The manifest is authentic by now, so a file shorter than it says was cut short.
        if need > rest:
            raise BundleError(
                "truncated",
                "cut short: the files need %d bytes after the signature, there are %d"
                % (need, rest),
            )
        if need < rest:
            raise BundleError("size", "%d bytes after the last file" % (rest - need))
        if capacity is not None and total + need > capacity:
            raise BundleError(
                "capacity",
                "bundle and files take %d bytes, the slot holds %d" % (total + need, capacity),
            )
        buf = bytearray(CHUNK)
        for entry in files:
            if (yield from _hash_stream(f, entry["size"], buf)) != entry["sha256"]:
                raise BundleError("hash", "%s: SHA-256 does not match" % entry["path"])
        return man
    finally:
        f.close()


def read_manifest(path, fs=None):
    # The manifest of the bundle at `path` WITHOUT checking the signature or the files: for
    # showing what a slot holds (its version), never for deciding to run it.
    fs = _fs(fs)
    f = fs.open(path, "rb")
    try:
        m = read_header(f)
        return _parse(_read_exact(f, m, "manifest"))
    finally:
        f.close()


def _makedirs(fs, path):
    # os.makedirs is not in MicroPython: create each missing component in turn.
    cur = ""
    for part in path.split("/"):
        if part:
            cur = cur + "/" + part if cur or path[0] == "/" else part
            if not fs.is_dir(cur):
                fs.mkdir(cur)


def unpack(path, manifest, dest_dir, fs=None):
    run_steps(unpack_steps(path, manifest, dest_dir, fs))


def unpack_steps(path, manifest, dest_dir, fs=None):
    # unpack() as a step generator. Writes every file of the bundle at `path` (verified,
    # `manifest` as verify() returned it) under dest_dir, creating directories, and checks each
    # file's SHA-256 again as it is written (the bundle file could have changed since it was
    # verified). On a mismatch the file just written is removed and BundleError("hash")
    # raised; files written before it stay: the caller throws the whole slot directory away.
    fs = _fs(fs)
    files = manifest["files"]
    yield from _check_paths(files)  # never write outside dest_dir, even if handed an unchecked one
    dest_dir = dest_dir.rstrip("/")
    f = fs.open(path, "rb")
    try:
        m = read_header(f)
        f.seek(HEADER_SIZE + m + SIGNATURE_SIZE)
        buf = bytearray(CHUNK)
        for entry in files:
            rel = entry["path"]
            dest = dest_dir + "/" + rel if dest_dir else rel
            cut = dest.rfind("/")
            if cut > 0:
                _makedirs(fs, dest[:cut])
            out = fs.open(dest, "wb")
            try:
                digest = yield from _hash_stream(f, entry["size"], buf, out)
            finally:
                out.close()
            if digest != entry["sha256"]:
                fs.remove(dest)
                raise BundleError("hash", "%s: SHA-256 does not match" % rel)
            yield  # opening and closing a file costs flash work of its own
    finally:
        f.close()
    sync = getattr(fs, "sync", None)
    if sync is not None:
        sync()
