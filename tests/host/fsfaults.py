# A file system for host tests that loses its power at a chosen operation.
#
# CutFs has the OsFs interface (firmware/storage.py) plus rmdir and stat, and works on the real
# directories of a test's tmp_path. Every operation that changes the flash counts as one step:
# opening a file for writing (it creates or truncates), write, flush, closing a written file,
# rename, remove, mkdir, rmdir. At step number cut_at (0-based) the power goes: that operation
# does not happen (or, for a torn flush, only partly), PowerCut is raised, and every later call
# raises PowerCut too, as if the code stopped there. Reads are not steps: they change nothing,
# and a cut at a read is the same as a cut at the next step.
#
# Written data is held in RAM until the file is flushed or closed, as a flash file system's
# cache is: a cut drops whatever was not flushed. With torn=True a cut at a flush or close also
# writes the first half of the pending bytes (a sync that was cut midway, worse than LittleFS
# promises, so code must not rely on a flush being all-or-nothing). A cut at a rename leaves
# the old names (LittleFS commits a rename in one metadata block).
#
# cut_at=None never cuts: the same wrapper then just counts steps, which is how a sweep finds
# how many cut points an operation sequence has.

import os


class PowerCut(Exception):
    pass


class CutFs:
    def __init__(self, cut_at=None, torn=False):
        self.cut_at = cut_at
        self.torn = torn
        self.steps = 0
        self.dead = False
        self.log = []  # (step, what, path) of every step taken, for failure messages

    # -- the step counter --

    def _live(self):
        if self.dead:
            raise PowerCut()

    def _step(self, what, path):
        # True when the power goes at this step (the caller undoes or tears its effect).
        self._live()
        if self.steps == self.cut_at:
            self.dead = True
            self.log.append((self.steps, "CUT " + what, path))
            return True
        self.log.append((self.steps, what, path))
        self.steps += 1
        return False

    def _cut(self, what, path):
        if self._step(what, path):
            raise PowerCut()

    # -- OsFs interface --

    def open(self, path, mode):
        self._live()
        if "r" in mode and "+" not in mode:
            return _ReadFile(self, open(path, mode))
        if "b" not in mode or "+" in mode:
            raise ValueError("CutFs: binary write or append modes only, not %r" % mode)
        self._cut("open " + mode, path)
        return _CutFile(self, path, open(path, mode))

    def rename(self, old, new):
        self._cut("rename", old + " -> " + new)
        os.rename(old, new)

    def remove(self, path):
        self._cut("remove", path)
        os.remove(path)

    def mkdir(self, path):
        self._cut("mkdir", path)
        os.mkdir(path)

    def rmdir(self, path):
        self._cut("rmdir", path)
        os.rmdir(path)

    def size(self, path):
        self._live()
        return os.stat(path)[6]

    def stat(self, path):
        self._live()
        return os.stat(path)

    def listdir(self, path):
        self._live()
        return os.listdir(path)

    def is_dir(self, path):
        self._live()
        try:
            return os.stat(path)[0] & 0o170000 == 0o040000
        except OSError:
            return False

    def sync(self):
        self._live()


class _ReadFile:
    def __init__(self, fs, f):
        self.fs = fs
        self.f = f

    def read(self, n=-1):
        self.fs._live()
        return self.f.read(n)

    def readinto(self, buf):
        self.fs._live()
        return self.f.readinto(buf)

    def seek(self, offset, whence=0):
        self.fs._live()
        return self.f.seek(offset, whence)

    def tell(self):
        return self.f.tell()

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _CutFile:
    def __init__(self, fs, path, f):
        self.fs = fs
        self.path = path
        self.f = f
        self.pending = bytearray()  # written, not yet on "flash"
        self.closed = False

    def write(self, data):
        if self.fs._step("write %d" % len(data), self.path):
            self._lose()
            raise PowerCut()
        self.pending += data
        return len(data)

    def _commit(self, what):
        if self.fs._step(what, self.path):
            if self.fs.torn:
                self.f.write(self.pending[: len(self.pending) // 2])
            self._lose()
            raise PowerCut()
        self.f.write(self.pending)
        self.f.flush()
        self.pending = bytearray()

    def _lose(self):
        self.pending = bytearray()
        self.closed = True
        self.f.close()

    def flush(self):
        self._commit("flush")

    def close(self):
        if self.closed:
            return
        if self.fs.dead:  # closing after the cut (a finally clause): nothing reaches the disk
            self._lose()
            return
        self._commit("close")
        self.closed = True
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
