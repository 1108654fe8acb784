"""A scripted stand-in for a BackHug's MicroPython raw REPL: the emulated device the factory
tools' tests and `backhug-eol --sim` talk to.

StandIn has the mpremote Transport methods DevLink uses (enter_raw_repl, exec, exec_raw_no_follow,
exit_raw_repl, close). It really runs every script it is sent, with CPython, in one persistent
namespace (as the raw REPL keeps its globals) where:
  - `os` and `open` work on an in-memory file system (MemFs) that outlives a connection, so a
    second StandIn on the same MemFs is the same device after a reset;
  - `sys.implementation` says which MicroPython (and .mpy ABI) the device runs;
  - `machine` is the simulator's fake machine on a SimDevice (board `hardware`, the factory test
    rig lying on it, faults injectable), so hal.build() and firmware.selftest run unchanged;
  - `asyncio.run` runs in virtual time with the SimDevice's physics alongside;
  - `import firmware...` works only when the boot selector (firmware.update.boot.select, run on
    the MemFs at every reset) finds an installed slot with firmware, or the image is frozen.
Every script text is recorded (`commands`), and every file written or renamed (`writes`,
`renames`, `removes`). Scenarios: absent (no device on the port), another board's hardware, an
older or unknown MicroPython, sensor faults, and a connection cut after N scripts (a half-finished
provisioning).
"""

import asyncio
import builtins
import errno
import hashlib
import io
import json
import sys
import traceback
import types

from mpremote.transport import TransportError, TransportExecError

from backhug_host import hostrt
from backhug_host.sim.device import SimDevice, WatchdogExpired
from firmware.update import boot

ABI_1_29 = 11014  # sys.implementation._mpy of MicroPython 1.29 on the ESP32-S3
ABI_1_22 = 10502  # .mpy 6.2: an older MicroPython the 1.29 bundles cannot load


class MemFs:
    """A flat in-memory file system: {path: bytes} and a set of directories."""

    def __init__(self, files=None):
        self.files = {}
        self.dirs = {"/"}
        for p, d in (files or {}).items():
            self.put(p, d)

    @staticmethod
    def norm(path):
        if not path.startswith("/"):
            path = "/" + path
        while "//" in path:
            path = path.replace("//", "/")
        return path.rstrip("/") or "/"

    def parent(self, path):
        return path.rsplit("/", 1)[0] or "/"

    def put(self, path, data):
        # set up a file (and its directories) without going through the device
        path = self.norm(path)
        cur = ""
        for part in path.split("/")[1:-1]:
            cur += "/" + part
            self.dirs.add(cur)
        self.files[path] = bytes(data)

    def get(self, path):
        return self.files.get(self.norm(path))

    def snapshot(self):
        return dict(self.files)

    def tree(self, under="/"):
        under = self.norm(under)
        pre = under.rstrip("/") + "/"
        return {p: d for p, d in self.files.items() if p.startswith(pre)}


def _oserror(code, path=""):
    e = OSError(code, errno.errorcode.get(code, str(code)))
    e.filename = path
    return e


class _File:
    def __init__(self, standin, path, mode):
        self.s = standin
        self.fs = standin.fs
        self.path = path
        self.mode = mode
        self.writing = "w" in mode or "a" in mode
        self.binary = "b" in mode
        if self.writing:
            if self.fs.parent(path) not in self.fs.dirs:
                raise _oserror(errno.ENOENT, path)
            if path in self.fs.dirs:
                raise _oserror(errno.EISDIR, path)
            start = self.fs.files.get(path, b"") if "a" in mode else b""
            self.buf = io.BytesIO(start)
            self.buf.seek(0, 2)
            self.fs.files[path] = bytes(start)  # created at open, as on LittleFS
            standin.open_files.add(self)
        else:
            data = self.fs.files.get(path)
            if data is None:
                raise _oserror(errno.ENOENT, path)
            self.buf = io.BytesIO(data)
        self.closed = False

    def write(self, b):
        if isinstance(b, str):
            b = b.encode()
        return self.buf.write(bytes(b))

    def read(self, n=-1):
        d = self.buf.read(n)
        return d if self.binary else d.decode()

    def readinto(self, b):
        return self.buf.readinto(b)

    def seek(self, off, whence=0):
        return self.buf.seek(off, whence)

    def flush(self):
        pass

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.writing:
            data = self.buf.getvalue()
            self.fs.files[self.path] = data
            self.s.open_files.discard(self)
            self.s.writes.append((self.path, data))

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class _Os:
    # MicroPython's os on the MemFs (only what scripts use)
    def __init__(self, standin):
        self.s = standin
        self.fs = standin.fs

    def stat(self, path):
        p = self.fs.norm(path)
        if p in self.fs.dirs:
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if p in self.fs.files:
            return (0x8000, 0, 0, 0, 0, 0, len(self.fs.files[p]), 0, 0, 0)
        raise _oserror(errno.ENOENT, path)

    def listdir(self, path="/"):
        p = self.fs.norm(path)
        if p not in self.fs.dirs:
            raise _oserror(errno.ENOENT, path)
        pre = p.rstrip("/") + "/"
        names = set()
        for q in list(self.fs.files) + list(self.fs.dirs):
            if q.startswith(pre) and q != p:
                names.add(q[len(pre) :].split("/")[0])
        return sorted(names)

    def ilistdir(self, path="/"):
        base = self.fs.norm(path).rstrip("/")
        for n in self.listdir(path):
            full = base + "/" + n
            isdir = full in self.fs.dirs
            yield (n, 0x4000 if isdir else 0x8000, 0, 0 if isdir else len(self.fs.files[full]))

    def mkdir(self, path):
        p = self.fs.norm(path)
        if p in self.fs.dirs or p in self.fs.files:
            raise _oserror(errno.EEXIST, path)
        if self.fs.parent(p) not in self.fs.dirs:
            raise _oserror(errno.ENOENT, path)
        self.fs.dirs.add(p)

    def rmdir(self, path):
        p = self.fs.norm(path)
        if p not in self.fs.dirs:
            raise _oserror(errno.ENOENT, path)
        if self.listdir(p):
            raise _oserror(errno.ENOTEMPTY, path)
        self.fs.dirs.discard(p)
        self.s.removes.append(p)

    def remove(self, path):
        p = self.fs.norm(path)
        if p not in self.fs.files:
            raise _oserror(errno.ENOENT, path)
        del self.fs.files[p]
        self.s.removes.append(p)

    def rename(self, old, new):
        o, n = self.fs.norm(old), self.fs.norm(new)
        if o not in self.fs.files:
            raise _oserror(errno.ENOENT, old)
        if self.fs.parent(n) not in self.fs.dirs:
            raise _oserror(errno.ENOENT, new)
        self.fs.files[n] = self.fs.files.pop(o)
        self.s.renames.append((o, n))

    def sync(self):
        pass

    def statvfs(self, path):
        used = sum(len(d) for d in self.fs.files.values())
        bsize = 4096
        total = self.s.flash_bytes // bsize
        free = max(0, total - used // bsize)
        return (bsize, bsize, total, free, free, 0, 0, 0, 0, 255)

    def uname(self):
        return ("esp32", "esp32", "1.29.0", "v1.29.0", "ESP32S3 module with ESP32S3")


class _BootFs:
    # firmware.update.boot's fs interface on the MemFs (the boot selector at reset)
    def __init__(self, fs):
        self.fs = fs

    def open(self, path, mode):
        p = self.fs.norm(path)
        if "r" in mode:
            if p not in self.fs.files:
                raise _oserror(errno.ENOENT, path)
            return io.BytesIO(self.fs.files[p])
        fs = self.fs

        class W(io.BytesIO):
            def close(self):
                fs.files[p] = self.getvalue()
                super().close()

        return W()

    def rename(self, old, new):
        self.fs.files[self.fs.norm(new)] = self.fs.files.pop(self.fs.norm(old))

    def remove(self, path):
        self.fs.files.pop(self.fs.norm(path), None)

    def size(self, path):
        p = self.fs.norm(path)
        if p not in self.fs.files:
            raise _oserror(errno.ENOENT, path)
        return len(self.fs.files[p])

    def sync(self):
        pass


class StandIn:
    """One connection to an emulated device. fs: the device's MemFs (shared across connections).

    hardware: the board the hardware really is. micropython: (version tuple, ABI) or None for a
    device that does not run MicroPython. frozen: the firmware is frozen into the image.
    faults: simulator fault specs (backhug_host.sim.faults). cut_after: the connection is lost
    after that many scripts. sensor_cal: the sensors' true (offset, gain_q12) per finger (default:
    a spread around the board's nominal values, as real parts have)."""

    def __init__(
        self,
        fs=None,
        hardware="backhug_v3",
        micropython=((1, 29, 0), ABI_1_29),
        frozen=False,
        faults=(),
        cut_after=None,
        absent=False,
        sensor_cal="spread",
        seed=3,
        flash_bytes=6 * 1024 * 1024,
    ):
        if absent:
            raise TransportError("failed to access /dev/ttyUSB0")
        self.fs = fs if fs is not None else MemFs()
        self.hardware = hardware
        self.micropython = micropython
        self.frozen = frozen
        self.cut_after = cut_after
        self.flash_bytes = flash_bytes
        self.commands = []
        self.writes = []
        self.renames = []
        self.removes = []
        self.events = []  # "soft-reset", "reset", "lost"
        self.open_files = set()
        self.gone = False
        self.in_raw_repl = False
        self.clock = hostrt.install_virtual()
        self.dev = SimDevice(hardware, person="rig", seed=seed, clock=self.clock)
        if sensor_cal == "spread":
            n = self.dev.board.finger_count
            base = self.dev.board.force_cal
            sensor_cal = [
                (off + (i * 37 % 41) - 20, gain * (88 + (i * 53 % 25)) // 100)
                for i, (off, gain) in enumerate(base)
            ][:n]
        if sensor_cal is not None:
            self.dev.sensors.force_cal = tuple(sensor_cal)
        for spec in faults:
            self.dev.inject(spec)
        self._boot()

    # -- what a reset does ---------------------------------------------------------------------

    def _boot(self):
        self.slot_dir = boot.select(boot.ROOT, _BootFs(self.fs))
        # one builtins dict per interpreter: functions a script defines keep it (CPython takes a
        # function's builtins when it is made), and print goes to the current script's output
        self.globals = {"__name__": "__main__", "__builtins__": self._builtins()}

    def firmware_installed(self):
        if self.frozen:
            return True
        if self.slot_dir is None:
            return False
        return any(
            self.fs.norm(self.slot_dir + "/firmware/__init__" + ext) in self.fs.files
            for ext in (".mpy", ".py")
        )

    # -- mpremote Transport surface --------------------------------------------------------------

    def enter_raw_repl(self, soft_reset=True, timeout_overall=10):
        self._alive()
        if self.micropython is None:
            raise TransportError("could not enter raw repl")
        if soft_reset:
            self.events.append("soft-reset")
            self._boot()
        self.in_raw_repl = True

    def exit_raw_repl(self):
        self.in_raw_repl = False

    def close(self):
        pass

    def exec_raw_no_follow(self, command):
        self.commands.append(command)
        if "machine.reset()" in command:
            self.events.append("reset")
            self.dev.world.reboot(0)
            self._boot()

    def _alive(self):
        if self.gone:
            raise TransportError("could not enter raw repl: the device went away")

    def exec(self, command, data_consumer=None):
        self._alive()
        if self.cut_after is not None and len(self.commands) >= self.cut_after:
            self._lose()
        self.commands.append(command)
        out = self._out = io.StringIO()
        g = self.globals
        try:
            exec(compile(command, "<stdin>", "exec"), g)
        except _Lost:
            self._lose()
        except BaseException as e:  # the device prints a traceback on its error stream
            tb = 'Traceback (most recent call last):\n  File "<stdin>"\n%s' % "".join(
                traceback.format_exception_only(type(e), e)
            )
            raise TransportExecError(out.getvalue().encode(), tb) from None
        return out.getvalue().encode()

    def _lose(self):
        # The cable is pulled: files open for writing never get committed (LittleFS keeps what
        # the last close/sync wrote: nothing, for a file created by this open).
        for f in list(self.open_files):
            self.fs.files[f.path] = b""
        self.open_files.clear()
        self.gone = True
        self.events.append("lost")
        raise TransportError("timeout waiting for first EOF reception")

    # -- the namespace scripts run in -------------------------------------------------------------

    def _builtins(self):
        b = dict(vars(builtins))

        def _print(*args, sep=" ", end="\n", file=None):
            self._out.write(sep.join(str(a) for a in args) + end)

        b["print"] = _print
        b["open"] = lambda path, mode="r": _File(self, self.fs.norm(path), mode)
        b["__import__"] = self._import
        return b

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        root = name.split(".")[0]
        if root == "os":
            return _Os(self)
        if root == "sys":
            return self._sys()
        if root == "machine":
            self.dev.install()
            import machine

            return machine
        if root == "asyncio":
            return self._asyncio()
        if root in ("firmware", "boards"):
            if not self.firmware_installed():
                raise ImportError("no module named '%s'" % name)
            self.dev.install()
            return builtins.__import__(name, globals, locals, fromlist, level)
        if root in ("json", "hashlib", "binascii", "struct", "gc", "time", "micropython", "errno"):
            if root == "micropython":
                return types.SimpleNamespace(const=lambda x: x)
            return builtins.__import__(name, globals, locals, fromlist, level)
        raise ImportError("no module named '%s'" % name)

    def _sys(self):
        if self.micropython is None:
            impl = types.SimpleNamespace(name="unknown", version=(0, 0, 0))
        else:
            version, abi = self.micropython
            impl = types.SimpleNamespace(name="micropython", version=version, _mpy=abi)
        return types.SimpleNamespace(
            implementation=impl, platform="esp32", path=["", "/lib"], modules=sys.modules
        )

    def _asyncio(self):
        # asyncio with run() in virtual time, the device's physics running alongside
        dev = self.dev
        clock = self.clock

        def run(coro):
            async def main():
                host = asyncio.create_task(dev.run())
                try:
                    return await coro
                finally:
                    host.cancel()
                    try:
                        await host
                    except asyncio.CancelledError:
                        pass
                    except WatchdogExpired:
                        raise _Lost() from None

            return hostrt.run(main(), clock=clock)

        ns = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if k[0] != "_"})
        ns.run = run
        return ns


class _Lost(Exception):
    pass


def device_files(fs, under):
    """{path: bytes} under a directory of the MemFs."""
    return fs.tree(under)


def json_file(fs, path):
    d = fs.get(path)
    return None if d is None else json.loads(d)


def sha256(data):
    return hashlib.sha256(data).hexdigest()
