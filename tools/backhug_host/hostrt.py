"""Host runtime: the clocks firmware.runtime reads on CPython, and an asyncio loop in virtual time.

Two clocks satisfy the runtime seam (`now_us() -> int`, `block_us(us)`, docs/interfaces.md):

- `VirtualClock`: integer microseconds that only move when something advances them (the virtual
  loop when it would otherwise sleep, or a driver's busy wait). It starts 30 s before the point
  where MicroPython's 2**30 tick counters wrap, so every simulation crosses a ticks_ms and a
  ticks_us wrap in its first minute and wrap bugs cannot hide.
- `RealClock`: time.monotonic_ns(), for running against real clients in real time.

`VirtualLoop` is a selector event loop whose `time()` is the virtual clock. When no callback is
ready it jumps the clock to the next timer instead of sleeping; real sockets and threads still
work because the real selector is polled (timeout 0) on every iteration. If nothing is ready,
nothing is scheduled and no real work is pending, the program can never make progress: the loop
raises `VirtualDeadlock` instead of hanging.
"""

import asyncio
import selectors
import time

from firmware import runtime

# MicroPython's tick period (py/mpconfig.h: MICROPY_PY_TIME_TICKS_PERIOD on 32-bit ports).
TICKS_PERIOD = 1 << 30
# The first virtual microsecond at which ticks_ms (and, being a multiple of 2**30, ticks_us) wrap.
TICKS_MS_WRAP_US = TICKS_PERIOD * 1000
# Default start: 30 s before both wraps.
DEFAULT_START_US = TICKS_MS_WRAP_US - 30_000_000


class VirtualClock:
    """Integer-microsecond clock that advances only when told to."""

    def __init__(self, start_us=DEFAULT_START_US):
        if start_us < 0:
            raise ValueError("start_us must be >= 0")
        self.start_us = start_us
        self._now_us = start_us

    def now_us(self):
        return self._now_us

    def elapsed_us(self):
        # Virtual time since this clock was made (what a test or report usually wants).
        return self._now_us - self.start_us

    def advance_us(self, us):
        if us < 0:
            raise ValueError("a clock cannot go backwards")
        self._now_us += int(us)

    def advance_ms(self, ms):
        self.advance_us(ms * 1000)

    def block_us(self, us):
        # A busy wait on the device takes exactly that long and lets nothing else run.
        self.advance_us(us)

    def __repr__(self):
        return "VirtualClock(t=+%.6f s)" % (self.elapsed_us() / 1e6)


class RealClock:
    """The host's monotonic clock, in integer microseconds."""

    def now_us(self):
        return time.monotonic_ns() // 1000

    def block_us(self, us):
        # Busy waits are short (sensor settle times); sleeping is close enough on the host.
        if us > 0:
            time.sleep(us / 1e6)


def install_virtual(start_us=DEFAULT_START_US, clock=None):
    """Install a (new, unless given) VirtualClock as firmware.runtime's clock and return it."""
    if clock is None:
        clock = VirtualClock(start_us)
    runtime.install(clock)
    return clock


def install_real():
    """Install a RealClock as firmware.runtime's clock and return it."""
    clock = RealClock()
    runtime.install(clock)
    return clock


class VirtualDeadlock(RuntimeError):
    """Nothing can ever run again: no ready callback, no timer, no pending real I/O or thread."""


class _VirtualSelector(selectors.BaseSelector):
    # Wraps the real selector; select() is where the event loop would block, so this is where
    # virtual time jumps forward.

    def __init__(self, clock, idle_grace_s, paced=False):
        self._real = selectors.DefaultSelector()
        self._clock = clock
        self._idle_grace_s = idle_grace_s
        self._paced = paced
        self._loop = None  # set by VirtualLoop once it exists
        self._baseline_fds = frozenset()  # the loop's own wake-up pipe

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj):
        return self._real.get_key(fileobj)

    def get_map(self):
        return self._real.get_map()

    def close(self):
        self._real.close()

    def select(self, timeout=None):
        if self._paced:
            return self._select_paced(timeout)
        # Real I/O first: anything that arrived is handled "now", without advancing time.
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is not None:
            # The loop would sleep until its next timer: be there at once. Rounding (not ceil)
            # keeps repeated sleeps exact; at least 1 us so a sub-microsecond timer still fires.
            self._clock.advance_us(max(1, round(timeout * 1e6)))
            return events
        return self._idle()

    def _select_paced(self, timeout):
        # Virtual time that keeps pace with the wall clock (a real client in another process):
        # wait for real I/O up to the next timer, then advance by the time that really passed.
        t0 = time.monotonic()
        events = self._real.select(timeout)
        waited = time.monotonic() - t0
        if timeout is not None:
            waited = min(waited, timeout) if events else timeout
        self._clock.advance_us(round(waited * 1e6))
        return events

    def _idle(self):
        # No ready callback and no timer. Only the real world can still wake the loop: a socket,
        # or a thread calling call_soon_threadsafe (executor jobs, the executor shutdown thread).
        # Wait for it in real time while executor jobs are outstanding, else for a short grace.
        deadline = time.monotonic() + self._idle_grace_s
        while True:
            events = self._real.select(0.05)
            if events:
                return events
            if self._loop.pending_executor_jobs == 0 and time.monotonic() >= deadline:
                raise VirtualDeadlock(self._describe())

    def _describe(self):
        loop = self._loop
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        extra_fds = set(self._real.get_map()) - self._baseline_fds
        lines = [
            "virtual-time event loop deadlocked at %r: no callback is ready, no timer is "
            "scheduled, no real I/O arrived within %.2f s" % (self._clock, self._idle_grace_s),
            "%d task(s) wait forever%s" % (len(tasks), ":" if tasks else "."),
        ]
        lines += ["  " + _task_summary(t) for t in tasks[:10]]
        if extra_fds:
            lines.append("real file descriptors still registered: %s" % sorted(extra_fds))
        return "\n".join(lines)


def _task_summary(task):
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    where = ""
    if frame is not None:
        where = " at %s:%d" % (frame.f_code.co_filename, frame.f_lineno)
    return "%s %s%s" % (task.get_name(), getattr(coro, "__qualname__", coro), where)


class VirtualLoop(asyncio.SelectorEventLoop):
    """asyncio event loop whose time is `clock` (a VirtualClock) and which never sleeps."""

    def __init__(self, clock, idle_grace_s=0.5, paced=False):
        selector = _VirtualSelector(clock, idle_grace_s, paced)
        super().__init__(selector)
        self.clock = clock
        self.pending_executor_jobs = 0
        selector._loop = self
        selector._baseline_fds = frozenset(selector.get_map())

    def time(self):
        return self.clock.now_us() / 1e6

    def run_in_executor(self, executor, func, *args):
        # Counted so an idle loop waits for thread jobs instead of declaring a deadlock.
        fut = super().run_in_executor(executor, func, *args)
        self.pending_executor_jobs += 1
        fut.add_done_callback(self._executor_job_done)
        return fut

    def _executor_job_done(self, _fut):
        self.pending_executor_jobs -= 1

    async def shutdown_default_executor(self, *args):
        # asyncio.Runner ends with this; it waits on a plain thread, so count it as real work.
        self.pending_executor_jobs += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self.pending_executor_jobs -= 1


def new_virtual_loop(clock=None, idle_grace_s=0.5):
    """A new VirtualLoop on `clock`; without one, a fresh VirtualClock is installed first."""
    if clock is None:
        clock = install_virtual()
    return VirtualLoop(clock, idle_grace_s)


def run(coro, virtual=True, clock=None, idle_grace_s=0.5, paced=False):
    """Run `coro` to completion like asyncio.run(), in virtual time (default) or real time.

    In virtual mode `clock` (or a fresh VirtualClock) is installed into firmware.runtime and the
    coroutine runs on a new VirtualLoop; paced=True makes that virtual time keep pace with the
    wall clock (for clients in other processes). In real mode a RealClock is installed and the
    standard asyncio loop is used.
    """
    if not virtual:
        if clock is not None:
            raise ValueError("a clock can only be given in virtual mode")
        install_real()
        return asyncio.run(coro)
    if clock is None:
        clock = install_virtual()
    else:
        runtime.install(clock)
    with asyncio.Runner(loop_factory=lambda: VirtualLoop(clock, idle_grace_s, paced)) as runner:
        return runner.run(coro)
