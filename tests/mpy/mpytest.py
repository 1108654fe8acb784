# Tiny test harness for the real MicroPython interpreter (tier 2), also runnable on CPython.
#
# tests/mpy/run.mjs loads the official MicroPython WebAssembly build under Node and, per test file,
# does `await mpytest.main("test_x")`. main() imports the module, runs every function whose name
# starts with `test_` (sorted by name: MicroPython dicts keep no definition order), awaits the
# ones that are coroutines, prints one FAIL line plus the indented traceback per failure and
# ends with the plain line `N passed, N failed`, which the runner parses.
#
# In tests: plain `assert`, and `with mpytest.raises(ValueError):` for expected exceptions.

import sys

try:
    import io
except ImportError:  # pragma: no cover - every MicroPython port we use has io
    io = None


class raises:
    # Context manager: the block must raise `exc_type` (or a subclass). The exception is kept in
    # `.value` for further checks.
    def __init__(self, exc_type):
        self.exc_type = exc_type
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError("did not raise " + self.exc_type.__name__)
        if not issubclass(exc_type, self.exc_type):
            return False  # a different exception: let it propagate as the failure
        self.value = exc
        return True


def _format_exception(exc):
    # sys.print_exception is MicroPython's traceback printer; CPython has traceback instead.
    if hasattr(sys, "print_exception") and io is not None:
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        return buf.getvalue()
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _report_failure(label, exc):
    print("FAIL " + label + ": " + type(exc).__name__ + ": " + str(exc))
    for line in _format_exception(exc).rstrip().split("\n"):
        print("    " + line)


def _patch_webassembly_asyncio():
    # The webassembly port's asyncio (driven by JS promises) has no ThreadSafeFlag: there are no
    # interrupts. firmware.runtime needs the name at import, so provide the same contract
    # (set() wakes one wait(), which clears it) on top of asyncio.Event. Device builds have it.
    import asyncio

    if hasattr(asyncio, "ThreadSafeFlag"):
        return

    class ThreadSafeFlag:
        def __init__(self):
            self._event = asyncio.Event()

        def set(self):
            self._event.set()

        def clear(self):
            self._event.clear()

        async def wait(self):
            await self._event.wait()
            self._event.clear()

    asyncio.ThreadSafeFlag = ThreadSafeFlag


async def run_module(name):
    """Run the tests of module `name`; returns (passed, failed)."""
    try:
        module = __import__(name)
    except BaseException as exc:  # a broken import is one failure, reported like the others
        _report_failure(name + " (import)", exc)
        return 0, 1
    names = sorted(n for n in dir(module) if n.startswith("test_"))
    passed = failed = 0
    for test_name in names:
        fn = getattr(module, test_name)
        if not callable(fn):
            continue
        try:
            result = fn()
            if result is not None and hasattr(result, "send"):  # a coroutine (async def)
                await result
            passed += 1
        except Exception as exc:
            failed += 1
            _report_failure(name + "." + test_name, exc)
    return passed, failed


async def main(*names):
    if sys.platform == "webassembly":
        _patch_webassembly_asyncio()
    passed = failed = 0
    for name in names:
        p, f = await run_module(name)
        passed += p
        failed += f
    print("%d passed, %d failed" % (passed, failed))
    return failed
