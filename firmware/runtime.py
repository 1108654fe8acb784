# The one module that knows whether we run on MicroPython (the device) or on CPython (the host).
# Everything else imports ticks, sleeps, const, the asyncio extras and `micropython` (for the
# code emitter decorators) from here, so the rest of the firmware runs unchanged on both.
#
# Native code: the control tick's hot loops carry `@micropython.native` (`from firmware.runtime
# import micropython`). The decorator is the compiler's, not a function: mpy-cross and any port
# with a native emitter (the ESP32-S3's xtensawin, the unix port's x64) compile those functions
# to machine code; on CPython `micropython` here is a stand-in whose native/viper return the
# function unchanged. A port without the emitter (the WebAssembly build of tier 2) rejects the
# decorator at compile time, so tests/mpy/run.mjs drops those decorator lines as it copies the
# files in: the same code runs there as bytecode. Only `native` is used: it keeps Python's
# semantics exactly (viper's machine-word ints and pointer loads differ between 32- and 64-bit
# ports, e.g. ptr32 loads zero-extend on x64, so the host could not check what the device does).
#
# On the device these are MicroPython's own functions. On the host nothing here reads a clock by
# itself: the host runtime (tools/backhug_host/hostrt.py) installs one with install(), either a
# virtual clock (simulation and tests, an hour passes in seconds) or the real one (for external
# clients). Calling a tick function on CPython before install() raises, instead of silently
# running on the wrong clock.

import sys

ON_DEVICE = sys.implementation.name == "micropython"

if ON_DEVICE:
    import asyncio
    import micropython
    from micropython import const
    from time import sleep_ms as block_ms
    from time import sleep_us as block_us
    from time import ticks_add, ticks_diff, ticks_ms, ticks_us

    sleep_ms = asyncio.sleep_ms
    wait_for_ms = asyncio.wait_for_ms
    ThreadSafeFlag = asyncio.ThreadSafeFlag

    def install(host):
        raise RuntimeError("runtime.install() is for the host only")

else:
    import asyncio

    def const(value):
        return value

    class micropython:  # noqa: N801 - stands in for the module of that name
        # The emitter decorators: the function itself, run as Python.
        @staticmethod
        def native(fn):
            return fn

        @staticmethod
        def viper(fn):
            return fn

        const = staticmethod(const)

    # MicroPython's ticks wrap at 2**30 on 32-bit ports (the small-int range): TICKS_PERIOD in
    # py/mphal.h is MICROPY_PY_TIME_TICKS_PERIOD = MP_SMALL_INT_POSITIVE_MASK + 1.
    TICKS_PERIOD = 1 << 30
    TICKS_MAX = TICKS_PERIOD - 1
    TICKS_HALFPERIOD = TICKS_PERIOD >> 1

    _host = None

    def install(host):
        # host provides: now_us() -> int (monotonic, unbounded), block_us(us) for busy waits
        global _host
        _host = host

    def _clock():
        if _host is None:
            raise RuntimeError("no host clock installed: call backhug_host.hostrt.install_*()")
        return _host

    def ticks_us():
        return _clock().now_us() & TICKS_MAX

    def ticks_ms():
        return (_clock().now_us() // 1000) & TICKS_MAX

    def ticks_add(ticks, delta):
        if not -TICKS_HALFPERIOD < delta < TICKS_HALFPERIOD:
            # As extmod/modtime.c: a delta ticks_diff could not give back is an OverflowError.
            raise OverflowError("ticks interval overflow")
        return (ticks + delta) & TICKS_MAX

    def ticks_diff(end, start):
        return ((end - start + TICKS_HALFPERIOD) & TICKS_MAX) - TICKS_HALFPERIOD

    def block_us(us):
        _clock().block_us(us)

    def block_ms(ms):
        _clock().block_us(ms * 1000)

    async def sleep_ms(ms):
        await asyncio.sleep(ms / 1000)

    async def wait_for_ms(aw, timeout_ms):
        return await asyncio.wait_for(aw, timeout_ms / 1000)

    class ThreadSafeFlag:
        # Same contract as MicroPython's: set() from an "ISR" (on the host, emulator code in the
        # loop's thread), wait() returns once per set and clears the flag.
        def __init__(self):
            self._event = asyncio.Event()

        def set(self):
            self._event.set()

        def clear(self):
            self._event.clear()

        async def wait(self):
            await self._event.wait()
            self._event.clear()
