"""What CPython's asyncio lacks for micropython-lib's aioble, added to the asyncio module.

The simulator runs micropython-lib's aioble unchanged (the pinned files, backhug_host.mplib) on
CPython. aioble is written for MicroPython's asyncio, which has a few names CPython's lacks and
one behaviour it does not share; install() (called by blestack.use_aioble() before aioble is
imported) adds exactly these, each as MicroPython documents it:

- `asyncio.ThreadSafeFlag`: aioble's IRQ handlers set() it from the radio's callbacks; one task
  waits; wait() returns once per set() and clears the flag. Not bound to a loop until a wait
  starts, because aioble makes some at import and the host runs many loops one after another.
- `asyncio.sleep_ms(ms)`, `asyncio.wait_for_ms(aw, ms)`: MicroPython's millisecond forms.
- `asyncio.create_task()` with no loop running: MicroPython has one scheduler, so a task made
  before `asyncio.run()` simply starts when the loop does (aioble makes its write-capture task
  when a characteristic is constructed, which firmware.main.build() does before the loop runs).
  Here such a task is held and started by the next event loop that runs.

Nothing else is changed; with a loop running, create_task is CPython's own. One difference is
in the language rather than asyncio, handled by adapt_aioble() after the import:

- a `str` name for `aioble.advertise(name=...)`: aioble appends it with `bytes + name`, which
  MicroPython does with the str's UTF-8 bytes (its str has the buffer protocol) and CPython
  refuses; the name is encoded first.
"""

import asyncio
import functools

_installed = False
_create_task = asyncio.create_task
_held = []  # tasks made while no loop ran, oldest first


class ThreadSafeFlag:
    """MicroPython's asyncio.ThreadSafeFlag (extmod/asyncio/event.py) on CPython."""

    def __init__(self):
        self._state = False
        self._waiter = None  # the future the one waiting task sleeps on
        self._loop = None

    def set(self):
        self._state = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if asyncio._get_running_loop() is self._loop:
            waiter.set_result(None)
        else:  # another thread (or no loop): wake the waiter in its own loop
            self._loop.call_soon_threadsafe(_wake, waiter)

    def clear(self):
        self._state = False

    async def wait(self):
        if not self._state:
            if self._waiter is not None:
                # MicroPython allows one waiter (its I/O queue asserts there is no other)
                raise RuntimeError("ThreadSafeFlag: another task is already waiting")
            self._loop = asyncio.get_running_loop()
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        self._state = False


def _wake(waiter):
    if not waiter.done():
        waiter.set_result(None)


async def sleep_ms(ms):
    await asyncio.sleep(ms / 1000)


async def wait_for_ms(aw, timeout_ms):
    return await asyncio.wait_for(aw, timeout_ms / 1000)


class _HeldTask:
    """A task made before any loop ran: becomes a real asyncio.Task when a loop starts."""

    def __init__(self, coro, name):
        self._coro = coro
        self._name = name
        self._task = None
        self._cancelled = False

    def _start(self, loop):
        self._task = loop.create_task(self._coro, name=self._name)

    def cancel(self, msg=None):
        if self._task is not None:
            return self._task.cancel(msg)
        if self._cancelled:
            return False
        self._cancelled = True
        _held.remove(self)
        self._coro.close()  # never started: nothing to unwind
        return True

    def cancelled(self):
        return self._cancelled if self._task is None else self._task.cancelled()

    def done(self):
        return self._cancelled if self._task is None else self._task.done()

    def __await__(self):
        if self._task is None:
            raise RuntimeError("a task made before the loop ran cannot be awaited before it")
        return self._task.__await__()


def create_task(coro, *, name=None, **kwargs):
    if asyncio._get_running_loop() is not None:
        return _create_task(coro, name=name, **kwargs)
    held = _HeldTask(coro, name)
    _held.append(held)
    return held


def _start_held(loop):
    while _held:
        _held.pop(0)._start(loop)


def adapt_aioble(aioble):
    """Encode a str advertising name as MicroPython's `bytes + str` would (see above)."""
    peripheral = aioble.peripheral
    advertise = peripheral.advertise
    if getattr(advertise, "_str_name_encoded", False):
        return

    @functools.wraps(advertise)
    async def advertise_encoding_name(*args, name=None, **kwargs):
        if isinstance(name, str):
            name = name.encode()
        return await advertise(*args, name=name, **kwargs)

    advertise_encoding_name._str_name_encoded = True
    peripheral.advertise = advertise_encoding_name
    aioble.advertise = advertise_encoding_name


def install():
    """Add the names above to asyncio (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    asyncio.ThreadSafeFlag = ThreadSafeFlag
    asyncio.sleep_ms = sleep_ms
    asyncio.wait_for_ms = wait_for_ms
    asyncio.create_task = create_task
    run_forever = asyncio.BaseEventLoop.run_forever

    def run_forever_with_held_tasks(self):
        # every loop (hostrt's virtual one and asyncio.run's) starts the held tasks first
        if _held:
            self.call_soon(_start_held, self)
        return run_forever(self)

    asyncio.BaseEventLoop.run_forever = run_forever_with_held_tasks
