"""The device as the factory tools see it: a few operations over MicroPython's raw REPL.

DevLink wraps an mpremote Transport (SerialTransport for a real port). Everything goes through
`transport.exec(code)`, the one method the stand-in (factory/standin.py) has to answer:
each operation is a short script that prints one Python literal, so the stand-in can run the
very same text against its in-memory file system and emulated hardware.

Connecting (open()): mpremote's usual break-in (Ctrl-C, raw REPL, soft reset) is not enough for
a BackHug: the running firmware has armed the ESP32 watchdog, which survives a soft reset and
cannot be stopped (ports/esp32/machine_wdt.c); a second machine.WDT() only reconfigures its
timeout. So open() breaks in without a soft reset, at once puts the watchdog on a long leash
(LEASH_MS), then soft-resets for a clean heap and leashes it again. Every operation after that
feeds it. A device that was never armed gets a leashed watchdog too: it resets LEASH_MS after the
last operation, which is also how a provisioned device comes up running its new firmware.
"""

import ast

LEASH_MS = 60_000
CHUNK = 512  # bytes per write() round trip (repr of bytes roughly doubles it on the wire)
_LEASH = (
    "import machine\n"
    "_bh_wdt = machine.WDT(timeout=%d)\n"
    "def _bh_feed():\n"
    "    _bh_wdt.feed()\n" % LEASH_MS
)
S_IFDIR = 0x4000


class DevLinkError(Exception):
    """The device cannot be reached, or an operation on it failed (message for the operator)."""


class NoDevice(DevLinkError):
    pass


class DeviceExecError(DevLinkError):
    """A script raised on the device; .error is its traceback text."""

    def __init__(self, message, error):
        super().__init__(message)
        self.error = error


def _q(path):
    return repr(path)


class DevLink:
    def __init__(self, transport, name="device"):
        self.transport = transport
        self.name = name
        self._leashed = False

    # -- connection --------------------------------------------------------------------------

    @classmethod
    def open(cls, port, baudrate=115200, factory=None):
        """Connect to the MicroPython device on `port` (NoDevice if nothing answers there).
        factory(port) makes the transport (default mpremote's SerialTransport; tests and --sim
        pass the stand-in)."""
        try:
            from mpremote.transport import TransportError
            from mpremote.transport_serial import SerialTransport
        except ImportError as exc:  # pragma: no cover - mpremote is a dev dependency
            raise DevLinkError("mpremote is not installed: run `make venv`") from exc
        if factory is None:

            def factory(p):
                return SerialTransport(p, baudrate=baudrate)

        try:
            t = factory(port)
        except TransportError as exc:
            raise NoDevice("no device on %s (%s)" % (port, exc)) from exc
        link = cls(t, port)
        try:
            t.enter_raw_repl(soft_reset=False)
            link.leash()
            t.enter_raw_repl(soft_reset=True)
            link._leashed = False
            link.leash()
        except TransportError as exc:
            link.close()
            raise NoDevice(
                "%s does not answer as a MicroPython raw REPL (%s): is MicroPython flashed, and "
                "is no other program (a serial console) holding the port?" % (port, exc)
            ) from exc
        return link

    def leash(self):
        self.exec(_LEASH)
        self._leashed = True

    def close(self):
        close = getattr(self.transport, "close", None)
        if close is not None:
            try:
                exit_raw = getattr(self.transport, "exit_raw_repl", None)
                if exit_raw is not None:
                    exit_raw()
            except Exception:  # closing anyway
                pass
            close()

    # -- running code ------------------------------------------------------------------------

    def exec(self, code):
        """Run `code` on the device; its printed output as text. DeviceExecError if it raised."""
        if self._leashed:
            code = "_bh_feed()\n" + code
        try:
            out = self.transport.exec(code)
        except Exception as exc:
            err = getattr(exc, "error_output", None)
            if err is not None:
                last = err.strip().splitlines()[-1] if err.strip() else "error"
                raise DeviceExecError("%s: %s" % (self.name, last), err) from exc
            raise DevLinkError("%s: lost the device (%s)" % (self.name, exc)) from exc
        if isinstance(out, (bytes, bytearray)):
            out = bytes(out).decode("utf-8", "replace")
        return out

    def eval(self, code):
        """Run `code`, whose last output line is a Python literal; returns that value."""
        out = self.exec(code).strip().splitlines()
        if not out:
            raise DevLinkError("%s: no answer" % self.name)
        try:
            return ast.literal_eval(out[-1])
        except (ValueError, SyntaxError) as exc:
            raise DevLinkError("%s: unexpected answer %r" % (self.name, out[-1][:200])) from exc

    # -- files -------------------------------------------------------------------------------

    def stat(self, path):
        """(is_dir, size) or None if the path does not exist."""
        r = self.eval(
            "import os\ntry:\n s=os.stat(%s)\n print(repr((s[0],s[6])))\n"
            "except OSError:\n print('None')" % _q(path)
        )
        if r is None:
            return None
        return (bool(r[0] & S_IFDIR), r[1])

    def exists(self, path):
        return self.stat(path) is not None

    def listdir(self, path):
        r = self.eval(
            "import os\ntry:\n print(repr(sorted(os.listdir(%s))))\n"
            "except OSError:\n print('None')" % _q(path)
        )
        return r

    def read(self, path, limit=1 << 20):
        """The file's bytes, or None if it does not exist."""
        st = self.stat(path)
        if st is None or st[0]:
            return None
        if st[1] > limit:
            raise DevLinkError(
                "%s: %s is %d bytes, more than %d" % (self.name, path, st[1], limit)
            )
        out = bytearray()
        self.exec("_bh_f=open(%s,'rb')" % _q(path))
        try:
            while True:
                chunk = self.eval("print(repr(_bh_f.read(%d)))" % CHUNK)
                if not chunk:
                    break
                out.extend(chunk)
        finally:
            self.exec("_bh_f.close()")
        return bytes(out)

    def write(self, path, data):
        """Write data to path (not atomic: callers write a .tmp and rename)."""
        data = bytes(data)
        self.exec("_bh_f=open(%s,'wb')" % _q(path))
        try:
            for i in range(0, len(data), CHUNK):
                self.exec("_bh_f.write(%r)" % data[i : i + CHUNK])
        finally:
            self.exec("_bh_f.close()")

    def write_atomic(self, path, data):
        """path.tmp, then one rename: a cut leaves the old file or the new one."""
        tmp = path + ".tmp"
        self.write(tmp, data)
        self.exec(
            "import os\nos.sync() if hasattr(os,'sync') else None\nos.rename(%s,%s)"
            % (_q(tmp), _q(path))
        )

    def mkdir(self, path):
        """Create path and its missing parents (os.makedirs is not in MicroPython)."""
        self.exec(
            "import os\n_p=''\nfor _c in %s.split('/'):\n if _c:\n  _p+='/'+_c\n  try:\n"
            "   os.mkdir(_p)\n  except OSError:\n   pass" % _q(path)
        )
        st = self.stat(path)
        if st is None or not st[0]:
            raise DevLinkError("%s: cannot create directory %s" % (self.name, path))

    def rename(self, old, new):
        self.exec("import os\nos.rename(%s,%s)" % (_q(old), _q(new)))

    def remove(self, path):
        self.exec("import os\nos.remove(%s)" % _q(path))

    def sha256(self, path):
        """Hex SHA-256 of a file computed on the device, or None if it does not exist."""
        return self.eval(
            "import hashlib,binascii\ntry:\n _f=open(%s,'rb')\nexcept OSError:\n _f=None\n"
            "if _f is None:\n print('None')\nelse:\n _h=hashlib.sha256()\n _b=bytearray(1024)\n"
            " while True:\n  _n=_f.readinto(_b)\n  if not _n:\n   break\n"
            "  _h.update(_b if _n==1024 else _b[:_n])\n _f.close()\n"
            " print(repr(binascii.hexlify(_h.digest()).decode()))" % _q(path)
        )

    def reset(self):
        """Hard reset: the device boots its firmware (the connection is gone afterwards)."""
        try:
            self.transport.exec_raw_no_follow("import machine\nmachine.reset()")
        except Exception:  # the port may drop as the device resets
            pass
