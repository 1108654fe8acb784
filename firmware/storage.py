# Small self-checking file store on flash (system layer).
#
# One JSON object per file under a root directory ("/data" on the device; a temporary directory
# the simulator or a test gives on the host). Each file is a 16-byte header followed by the JSON
# body:
#
#   offset  size  field
#   0       4     magic b"BHst"
#   4       1     FORMAT (container layout version, this module's)
#   5       1     schema (the caller's body version, 0..255)
#   6       2     reserved, 0
#   8       4     body length in bytes
#   12      4     CRC-32 (IEEE, as zlib/binascii) of bytes 0..11 and the body
#   (all little-endian)
#
# Writes are atomic: the new content goes to "<name>.tmp", is flushed, closed and synced, then one
# rename puts it over "<name>". The ESP32 port mounts LittleFS, whose rename replaces an existing
# file in one metadata commit, so a power cut leaves either the old or the new file. FAT would not:
# MicroPython's FAT rename removes the destination first and then renames, and a cut between the
# two leaves only the .tmp. load() covers that window too (a complete, valid .tmp with no main
# file is promoted), but FAT's own tables are not power-safe, so keep the store on LittleFS.
#
# Reading never raises for bad content: a truncated, corrupt, wrong-version or (per the caller's
# check) malformed file is renamed to "<name>.bad" (only the latest bad copy is kept), recorded in
# Store.problems as (name, reason), and load() returns None as if the file were missing. A valid
# file is never moved or rewritten by a load. Only os functions MicroPython has are used.

import json
import os
import struct

from firmware.runtime import ON_DEVICE, const

try:
    from binascii import crc32 as _crc32_native
except ImportError:  # a port built without deflate has no binascii.crc32
    _crc32_native = None

MAGIC = b"BHst"
FORMAT = const(1)
HEADER_SIZE = const(16)
MAX_BYTES = const(16384)  # whole file; a load reads it into RAM at once
PROBLEMS_KEPT = const(16)
_HEAD_FMT = "<4sBBHI"  # the 12 bytes the CRC covers before the body
_NAME_MAX = const(24)
_TMP = ".tmp"
_BAD = ".bad"


def crc32_py(data, crc=0):
    # Bitwise CRC-32 (reflected polynomial 0xEDB88320), the same value as zlib.crc32 and
    # binascii.crc32. Used only where binascii has no crc32; slow but table-free.
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xEDB88320
            else:
                crc >>= 1
    return crc ^ 0xFFFFFFFF


if _crc32_native is None:
    crc32 = crc32_py
else:

    def crc32(data, crc=0):
        # binascii.crc32 returns an unsigned value on MicroPython and CPython 3; mask anyway
        return _crc32_native(data, crc) & 0xFFFFFFFF


def encode(obj, schema=0):
    # Header + compact JSON body for obj; ValueError for a schema outside 0..255.
    if type(schema) is not int or not 0 <= schema <= 255:
        raise ValueError("schema: must be 0..255")
    body = json.dumps(obj, separators=(",", ":")).encode()
    head = struct.pack(_HEAD_FMT, MAGIC, FORMAT, schema, 0, len(body))
    return head + struct.pack("<I", crc32(body, crc32(head))) + body


def decode(data, schema=None):
    # Returns (obj, None) for a valid file, (None, reason) otherwise. schema=None accepts any.
    n = len(data)
    if n < 4 or data[:4] != MAGIC:
        return None, "not a store file" if n >= 4 else "truncated"
    if n < HEADER_SIZE:
        return None, "truncated"
    _, fmt, body_schema, _, length = struct.unpack(_HEAD_FMT, data[:12])
    if fmt != FORMAT:
        return None, "format version %d, expected %d" % (fmt, FORMAT)
    if n - HEADER_SIZE < length:
        return None, "truncated"
    if n - HEADER_SIZE > length:
        return None, "trailing bytes"
    body = memoryview(data)[HEADER_SIZE:]
    if crc32(body, crc32(memoryview(data)[:12])) != struct.unpack("<I", data[12:16])[0]:
        return None, "checksum mismatch"
    if schema is not None and body_schema != schema:
        return None, "schema version %d, expected %d" % (body_schema, schema)
    try:
        return json.loads(bytes(body).decode()), None
    except MemoryError:
        raise  # not the file's fault
    except Exception:  # ValueError/UnicodeError, or a parser limit on a hostile body
        return None, "not JSON"


def _errno(e):
    return e.args[0] if e.args else "?"


def _check_name(name):
    # Plain file names only: no directories, no suffix of our own.
    if type(name) is not str or not 0 < len(name) <= _NAME_MAX:
        raise ValueError("name: 1..%d characters" % _NAME_MAX)
    for c in name:
        if ord(c) > 127 or not (c.isalpha() or c.isdigit() or c in "_-"):
            raise ValueError("name: only ASCII letters, digits, '_' and '-'")


class OsFs:
    # The file-system operations the store uses, as MicroPython's os and open() provide them.
    # Tests substitute a wrapper that can cut the power after any operation.

    def open(self, path, mode):
        return open(path, mode)

    def rename(self, old, new):
        os.rename(old, new)

    def remove(self, path):
        os.remove(path)

    def size(self, path):
        # Size of a regular file; OSError if it does not exist.
        return os.stat(path)[6]

    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        os.mkdir(path)

    def is_dir(self, path):
        try:
            return os.stat(path)[0] & 0o170000 == 0o040000
        except OSError:
            return False

    def sync(self):
        # On the device os.sync() flushes every mounted block device (the esp32 port has it). On
        # the host it would flush the whole PC's disks: power cuts there are simulated at this
        # seam instead, so skip it.
        if ON_DEVICE:
            s = getattr(os, "sync", None)
            if s is not None:
                s()


class Store:
    # Raises OSError only if root cannot be listed or created (no usable file system at all);
    # everything after that reports problems instead of raising at boot.
    def __init__(self, root, fs=None, max_bytes=MAX_BYTES):
        self.root = root.rstrip("/") or "/"
        self.fs = fs if fs is not None else OsFs()
        self.max_bytes = max_bytes
        self.problems = []  # (name, reason), oldest first, at most PROBLEMS_KEPT
        self._makedirs(self.root)
        # Settle what a power cut may have left behind before anyone reads.
        for entry in self.fs.listdir(self.root):
            if entry.endswith(_TMP):
                name = entry[: -len(_TMP)]
                try:
                    _check_name(name)
                except ValueError:
                    continue
                self._settle(name)

    def _path(self, name):
        return self.root + "/" + name if self.root != "/" else "/" + name

    def _makedirs(self, path):
        # os.makedirs is not in MicroPython: create each missing component in turn.
        cur = ""
        for part in path.split("/"):
            if part:
                cur = cur + "/" + part if cur or path[0] == "/" else part
                if not self.fs.is_dir(cur):
                    self.fs.mkdir(cur)

    def _note(self, name, reason):
        self.problems.append((name, reason))
        if len(self.problems) > PROBLEMS_KEPT:
            del self.problems[0]

    def _exists(self, path):
        try:
            self.fs.size(path)
            return True
        except OSError:
            return False

    def _read(self, path):
        f = self.fs.open(path, "rb")
        try:
            return f.read(self.max_bytes + 1)
        finally:
            f.close()

    def _settle(self, name):
        # A .tmp exists only if a save was cut short. If the main file is there, the .tmp is
        # either incomplete or a newer copy that was never committed: drop it. If the main file
        # is missing (first save, or FAT's remove-then-rename) a complete .tmp is the new content.
        path = self._path(name)
        tmp = path + _TMP
        if not self._exists(tmp):
            return
        if not self._exists(path):
            try:
                data = self._read(tmp)
            except OSError:
                data = b""
            if decode(data)[1] is None:
                try:
                    self.fs.rename(tmp, path)
                    return
                except OSError as e:
                    self._note(name, "cannot restore .tmp: error %s" % _errno(e))
        self._discard(tmp)

    def _discard(self, path):
        try:
            self.fs.remove(path)
        except OSError:
            pass

    def _set_aside(self, name, reason):
        path = self._path(name)
        self._note(name, reason)
        try:
            # replaces the previous .bad on LittleFS, POSIX and MicroPython's FAT
            self.fs.rename(path, path + _BAD)
        except OSError:
            self._discard(path)  # a bad file that cannot be kept must not be read again

    def load(self, name, schema=None, check=None):
        # The stored object, or None when missing or unusable (then set aside and recorded).
        # check(obj) raises (ValueError, with a message naming the field) to call the content
        # malformed; schema is the body version the caller expects (None: any).
        _check_name(name)
        self._settle(name)
        path = self._path(name)
        try:
            size = self.fs.size(path)
        except OSError:
            return None
        if size > self.max_bytes:
            self._set_aside(name, "too large (%d bytes)" % size)
            return None
        try:
            data = self._read(path)
        except OSError as e:
            # unreadable rather than bad: leave it in place for a later attempt
            self._note(name, "read error %s" % _errno(e))
            return None
        obj, reason = decode(data, schema)
        if reason is None and check is not None:
            try:
                check(obj)
            except MemoryError:
                raise
            except Exception as e:  # boot must go on: whatever the checker hit, the file is bad
                reason = "invalid: %s" % e
        if reason is not None:
            self._set_aside(name, reason)
            return None
        return obj

    def save(self, name, obj, schema=0):
        # Atomically replace name's content with obj. OSError (e.g. flash full) propagates and
        # leaves the previous content in place; ValueError if obj encodes to more than max_bytes.
        _check_name(name)
        data = encode(obj, schema)
        if len(data) > self.max_bytes:
            raise ValueError("%s: %d bytes, more than %d" % (name, len(data), self.max_bytes))
        path = self._path(name)
        tmp = path + _TMP
        fs = self.fs
        f = fs.open(tmp, "wb")
        try:
            n = f.write(data)
            if n is not None and n != len(data):
                raise OSError(28)  # ENOSPC: short write
            f.flush()
        except BaseException:
            f.close()
            self._discard(tmp)
            raise
        f.close()
        fs.sync()
        fs.rename(tmp, path)  # the commit point
        fs.sync()

    def remove(self, name):
        # Forget name entirely, its set-aside copy included (a user clearing data expects that).
        _check_name(name)
        path = self._path(name)
        for p in (path + _TMP, path, path + _BAD):
            self._discard(p)

    def names(self):
        # Stored names (not .tmp or .bad), sorted.
        out = []
        for entry in self.fs.listdir(self.root):
            if entry.endswith(_TMP) or entry.endswith(_BAD):
                continue
            try:
                _check_name(entry)
            except ValueError:
                continue
            out.append(entry)
        out.sort()
        return out
