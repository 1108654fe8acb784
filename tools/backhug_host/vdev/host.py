"""The host's side of the virtual device: a MicroPython interpreter runs the firmware, the
simulator supplies its hardware, its radio and its time.

A VirtualDevice starts `micropython` (built by vdev.build from the pinned source) on
tools/backhug_host/vdev/mp/vboot.py, with two pipes as its link (frames in mp/vlink.py). Inside,
`machine`, `bluetooth`, `time` and `select` are stand-ins that turn every hardware access into a
frame; here each frame is served by the simulator's own objects: the ESP32-flavoured fake
`machine` (shims/machine.py) on the SimDevice's World (emulated PCA9685s, muxes and ADCs, the
person, the leg rest, faults), and blestack's Radio (MicroPython's BLE API on Bumble), where the
phones are Bumble centrals driven by the reference client.

Lockstep. The interpreter and the host never run at the same time: while the device computes,
this side only answers its frames (blocking reads inside the event loop, so no host task runs
and virtual time stands still); when the device idles (asyncio's poll with nothing ready, a
sleep) it says for how long, and this side runs its own virtual-time loop (hostrt) until then or
until an event for the device (a BLE IRQ, a pin interrupt) happens, which is delivered at once
and ends the wait. A 20-minute session takes as long as its computation does.

Resets. machine.reset() and an expired watchdog end the interpreter; the World reboots (chips
keep their state, the MCU's pins do not), the radio starts over, and a new interpreter boots from
the same flash image, like the ESP32 after a reset.
"""

from __future__ import annotations

import ast
import asyncio
import os
import struct
import subprocess
from pathlib import Path

from backhug_host import blestack, emul
from backhug_host.sim.device import SimDevice, WatchdogExpired
from backhug_host.vdev import build

MP_DIR = Path(__file__).resolve().with_name("mp")

# frame ops (mp/vlink.py)
CALL, PIN_SET, PIN_GET, ADC_U16, I2C_WMEM, I2C_RMEM, IDLE, IRQ_RET, HELLO, ADVANCE, REPL = range(
    1, 12
)
OK, RAW, ERR, IRQ, WAKE = 0x81, 0x82, 0x83, 0x84, 0x85
_HDR = struct.Struct("<BI")
_HB = struct.Struct("<HB")
_H = struct.Struct("<H")
_HBB = struct.Struct("<HBB")
_HBBH = struct.Struct("<HBBH")
_Q = struct.Struct("<Q")
_QB = struct.Struct("<qB")
_UUID_TAG = "__uuid__"
_HANDLER_TAG = "__handler__"
# the exception classes mp/vlink.py raises on the device (anything else arrives as RuntimeError)
_DEVICE_ERRORS = (
    "OSError", "ValueError", "TypeError", "KeyError", "IndexError", "RuntimeError",
    "NotImplementedError", "AttributeError", "OverflowError", "MemoryError", "Exception",
)  # fmt: skip
FLASH_BLOCKS = 512  # 2 MiB of littlefs, the size of the ESP32-S3 board's vfs partition
DEFAULT_HEAP = 2 * 1024 * 1024


class DeviceExit(Exception):  # noqa: N818 - the interpreter ended
    """The interpreter exited (or crashed) when no reset was asked for."""


class _Reboot(BaseException):  # noqa: N818 - control flow inside the serve loop
    def __init__(self, cause, why):
        super().__init__(why)
        self.cause = cause
        self.why = why


def _uuid(le):
    emul.use_fake_machine()  # the shims' folder on sys.path: `bluetooth` is the host's
    import bluetooth

    return bluetooth.UUID(le)


def _to_device(v):
    # a value as a literal MicroPython can read: buffers as bytes, UUIDs tagged, objects of the
    # host (the Pin an interrupt handler gets) as None
    if v is None or isinstance(v, (bool, int, str, bytes)):
        return v
    if isinstance(v, (tuple, list)):
        return type(v)(_to_device(x) for x in v)
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if type(v).__name__ == "UUID":
        return (_UUID_TAG, bytes(v))
    if isinstance(v, dict):
        return {_to_device(k): _to_device(x) for k, x in v.items()}
    return None


class _MachineModule:
    # object 0: the device's `machine` module functions and constructors
    def __init__(self, dev):
        self._dev = dev
        self._m = emul.use_fake_machine()

    def new(self, kind, *args, **kwargs):
        cls = getattr(self._m, kind)
        return self._dev._keep(cls(*args, **kwargs))

    def reset_cause(self):
        return self._m.reset_cause()

    def unique_id(self):
        return self._m.unique_id()

    def reset(self):
        raise _Reboot(self._m.HARD_RESET, "machine.reset()")

    def deepsleep(self, time_ms=0):
        raise _Reboot(self._m.DEEPSLEEP_RESET, "machine.deepsleep()")

    def freq(self, *hz):
        return self._m.freq(*hz)


class VirtualDevice:
    """One simulated BackHug whose firmware runs on MicroPython.

    sim: the SimDevice (physics, emulated chips, person). flash: the littlefs image file (made
    on first boot). heap: the interpreter's GC heap in bytes (-X heapsize). binary: the
    micropython executable (default: built from ../shared by vdev.build).
    """

    def __init__(self, sim: SimDevice, flash, heap=DEFAULT_HEAP, binary=None, console=None):
        self.sim = sim
        from firmware import runtime

        self.clock = runtime._host  # the virtual clock the host loop and the SimDevice run on
        self.flash = str(flash)
        self.heap = heap
        self.binary = str(binary or build.interpreter())
        self.console = console  # a file for the interpreter's stdout/stderr (default: a list)
        self.output = []  # console lines when no file is given
        self.boots = 0
        self.resets = []  # (elapsed_ms, why) of each reset
        self.requests = 0  # frames served (all boots)
        self._proc = None
        self._objs = {}
        self._serve_task = None
        self._physics_task = None
        self._wake = None
        self._early = True
        self._reboot = None
        self._running = False
        self._rebooted = asyncio.Event()

    # -- objects the device holds -------------------------------------------------------------

    def _keep(self, obj):
        oid = self._next_id
        self._next_id += 1
        self._objs[oid] = obj
        return oid

    def _fresh_objects(self):
        self._objs = {0: _MachineModule(self), 1: _RadioPort(self)}
        self._next_id = 2

    # -- process ------------------------------------------------------------------------------

    def _spawn(self, mode):
        self._fresh_objects()
        if not os.path.exists(self.flash):
            with open(self.flash, "wb") as f:  # new flash reads erased
                f.write(b"\xff" * (FLASH_BLOCKS * 4096))
        d_in, h_out = os.pipe()  # host -> device
        h_in, d_out = os.pipe()  # device -> host
        args = [
            self.binary,
            "-X",
            "heapsize=%d" % self.heap,
            str(MP_DIR / "vboot.py"),
            str(d_in),
            str(d_out),
            str(build.asyncio_dir()),
            self.flash,
            str(FLASH_BLOCKS),
            mode,
        ]
        out = self.console if self.console is not None else subprocess.PIPE
        self._proc = subprocess.Popen(
            args,
            pass_fds=(d_in, d_out),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(MP_DIR),
        )
        os.close(d_in)
        os.close(d_out)
        self._rx = os.fdopen(h_in, "rb", buffering=65536)
        self._tx = os.fdopen(h_out, "wb", buffering=0)
        self.boots += 1
        op, payload = self._frame()
        if op != HELLO:
            raise DeviceExit("the interpreter did not say hello (frame %d)" % op)
        self._answer(OK, repr(self._hello()).encode())

    def _hello(self):
        m = emul.use_fake_machine()
        names = ("PWRON_RESET", "HARD_RESET", "WDT_RESET", "DEEPSLEEP_RESET", "SOFT_RESET")
        cfg = {n: getattr(m, n) for n in names}
        for n in ("IN", "OUT", "OPEN_DRAIN", "PULL_UP", "PULL_DOWN", "IRQ_RISING", "IRQ_FALLING"):
            cfg["Pin." + n] = getattr(m.Pin, n)
        return {"machine": cfg, "now_us": self.sim._now_us()}

    def _kill(self):
        p = self._proc
        if p is None:
            return
        self._proc = None
        for f in (self._rx, self._tx):
            try:
                f.close()
            except OSError:
                pass
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout is not None:
            text = p.stdout.read().decode("utf-8", "replace")
            self.output.extend(text.splitlines())
            p.stdout.close()

    # -- frames -------------------------------------------------------------------------------

    def _read(self, n):
        data = self._rx.read(n)
        if data is None or len(data) < n:
            raise DeviceExit("the interpreter ended (exit status %s)" % self._proc.wait())
        return data

    def _frame(self):
        op, n = _HDR.unpack(self._read(5))
        return op, (self._read(n) if n else b"")

    def _answer(self, op, payload=b""):
        self._tx.write(_HDR.pack(op, len(payload)) + payload)

    def _error(self, exc):
        # MicroPython has no OSError subclasses (CPython makes OSError(ETIMEDOUT) a
        # TimeoutError): the device gets the first class of the MRO that it knows
        name = next(c.__name__ for c in type(exc).__mro__ if c.__name__ in _DEVICE_ERRORS)
        args = tuple(a if isinstance(a, (int, str)) else str(a) for a in exc.args)
        self._answer(ERR, repr((name, args)).encode())

    def _from_device(self, v):
        if isinstance(v, tuple):
            if len(v) == 2 and v[0] == _UUID_TAG:
                return _uuid(v[1])
            if len(v) == 2 and v[0] == _HANDLER_TAG:
                hid = v[1]
                return lambda *args: self.call_irq(hid, args)
            return tuple(self._from_device(x) for x in v)
        if isinstance(v, list):
            return [self._from_device(x) for x in v]
        return v

    def _serve_one(self, op, payload):
        # Answer one request that needs no host task (everything but IDLE and REPL).
        self.requests += 1
        if op == PIN_SET:
            oid, level = _HB.unpack(payload)
            self._objs[oid].value(level)
            return
        if op == ADVANCE:
            self.clock.advance_us(struct.unpack("<I", payload)[0])
            return
        if op == IDLE:
            # a sleep where the device cannot give the CPU away (inside an interrupt handler,
            # a script): the time passes, nothing else runs
            us, _early = _QB.unpack(payload)
            self.clock.advance_us(max(0, us))
            self._answer(WAKE, _Q.pack(self.sim._now_us()))
            return
        try:
            if op == ADC_U16:
                self._answer(RAW, _H.pack(self._objs[_H.unpack(payload)[0]].read_u16()))
            elif op == PIN_GET:
                self._answer(RAW, bytes((self._objs[_H.unpack(payload)[0]].value(),)))
            elif op == I2C_WMEM:
                oid, addr, reg = _HBB.unpack_from(payload)
                self._objs[oid].writeto_mem(addr, reg, payload[4:])
                self._answer(RAW)
            elif op == I2C_RMEM:
                oid, addr, reg, n = _HBBH.unpack(payload)
                self._answer(RAW, bytes(self._objs[oid].readfrom_mem(addr, reg, n)))
            elif op == CALL:
                oid, method, args, kwargs = ast.literal_eval(payload.decode())
                conv = self._from_device
                result = getattr(self._objs[oid], method)(
                    *conv(args), **{k: conv(v) for k, v in kwargs.items()}
                )
                self._answer(OK, repr(_to_device(result)).encode())
            else:
                raise DeviceExit("unexpected frame %d" % op)
        except (_Reboot, DeviceExit):
            raise
        except Exception as e:  # the device's call failed: it gets the same exception
            self._error(e)

    def call_irq(self, hid, args, wake=True):
        """Run the device's handler `hid` with args now (the device is waiting: idle or in a
        request); returns what it returned. Frames it sends meanwhile are served."""
        if self._proc is None:
            return None
        payload = _Q.pack(self.sim._now_us()) + repr(_to_device((hid, tuple(args)))).encode()
        self._answer(IRQ, payload)
        while True:
            op, data = self._frame()
            if op == IRQ_RET:
                if wake and self._early and self._wake is not None and not self._wake.done():
                    self._wake.set_result(None)
                return self._from_device(ast.literal_eval(data.decode()))
            self._serve_one(op, data)

    # -- running ------------------------------------------------------------------------------

    async def start(self):
        """Boot the device (its /boot.py and /main.py) and serve it until stop()."""
        self._running = True
        self._physics_task = asyncio.create_task(self._physics())
        self._spawn("run")
        self._serve_task = asyncio.create_task(self._serve())
        return self

    async def _physics(self):
        while True:
            try:
                await self.sim.run()
            except WatchdogExpired as e:
                self._rebooted.clear()
                self._ask_reboot(emul.use_fake_machine().WDT_RESET, str(e))
                await self._rebooted.wait()  # the World stays expired until it reboots

    def _ask_reboot(self, cause, why):
        self._reboot = (cause, why)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _serve(self):
        try:
            while self._running:
                try:
                    await self._serve_until_reboot()
                except _Reboot as r:
                    self._do_reboot(r.cause, r.why)
        except DeviceExit as e:
            self.exit_reason = str(e)
            self._kill()
            raise

    async def _serve_until_reboot(self):
        loop = asyncio.get_running_loop()
        while True:
            if self._reboot is not None:
                cause, why = self._reboot
                self._reboot = None
                raise _Reboot(cause, why)
            op, payload = self._frame()
            if op == IDLE:
                us, early = _QB.unpack(payload)
                self._early = bool(early)
                fut = self._wake = loop.create_future()
                timer = None
                if us >= 0:
                    timer = loop.call_at(loop.time() + us / 1e6, _done, fut)
                try:
                    await fut
                finally:
                    self._wake = None
                    if timer is not None:
                        timer.cancel()
                if self._reboot is not None:
                    continue
                self._answer(WAKE, _Q.pack(self.sim._now_us()))
            else:
                self._serve_one(op, payload)

    def _do_reboot(self, cause, why):
        self.resets.append((self.sim.elapsed_ms(), why))
        self._kill()
        self.sim.world.reboot(cause)
        blestack.reset()
        self.on_reboot()
        self._spawn("run")
        self._rebooted.set()

    def on_reboot(self):
        """Hook for owners (the phone's radio carried over to the new link, ...)."""

    async def stop(self):
        self._running = False
        for t in (self._serve_task, self._physics_task):
            if t is not None:
                t.cancel()
        for t in (self._serve_task, self._physics_task):
            if t is not None:
                try:
                    await t
                except (asyncio.CancelledError, DeviceExit):
                    pass
        self._kill()

    def debug_exec(self, code, expr=None):
        """Run `code` inside the running firmware now (the device must be idle: call it from a
        host task) and return the value of `expr` there (a literal). For tests that break the
        firmware on purpose (a hung or crashing task) or look inside it."""
        return self.call_irq("exec", (code, expr), wake=True)

    # -- scripts (provisioning, inspection) ---------------------------------------------------
    # The interpreter in "repl" mode runs what run_script() sends, synchronously: nothing of
    # the host runs meanwhile (an idle only moves the clock).

    def open_scripts(self):
        self._spawn("repl")
        self._script_frame()

    def _script_frame(self):
        while True:
            op, payload = self._frame()
            if op == REPL:
                return payload
            else:
                try:
                    self._serve_one(op, payload)
                except _Reboot:
                    self._kill()
                    raise DeviceExit("the script reset the device") from None

    def run_script(self, code):
        """Run a script; returns (ok, its printed output and, if it failed, the error)."""
        self._answer(RAW, code.encode())
        answer = self._script_frame()
        return answer[:1] == b"0", answer[1:].decode("utf-8", "replace")

    def close_scripts(self, reset=True):
        """End the script channel; reset: the hard reset the factory ends with (the watchdog a
        script armed is off again, as after a real reset)."""
        if self._proc is not None:
            self._answer(RAW, b"")
            self._proc.wait()
            self._kill()
        if reset:
            self.sim.world.reboot(emul.use_fake_machine().HARD_RESET)

    def probe(self, name, *args):
        """Call the device's measuring point `name` (mp/vprobe.py) and return its result. Only
        while the device idles: from a host task (the device is then waiting in asyncio)."""
        return self.call_irq(0, (name,) + args, wake=False)  # 0: vprobe.HID


def _done(fut):
    if not fut.done():
        fut.set_result(None)


class _RadioPort:
    # object 1: the device's bluetooth.BLE(), served by blestack's current Radio
    def __init__(self, dev):
        self._dev = dev

    def __getattr__(self, name):
        return getattr(blestack.radio(), name)


