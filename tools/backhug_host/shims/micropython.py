"""The parts of MicroPython's `micropython` module that micropython-lib's aioble imports, for
CPython (the simulator puts tools/backhug_host/shims/ first on sys.path).

Only what aioble uses is here; the firmware itself takes `const` from firmware.runtime.
"""

import asyncio


def const(value):
    # On MicroPython the compiler folds const() away; at run time it returns its argument.
    return value


def schedule(func, arg):
    # MicroPython runs a scheduled function soon, from the main thread between two bytecodes,
    # never inside the caller (aioble.security uses it to write its secrets file outside the
    # IRQ). The nearest host equivalent: the running loop's next iteration, or at once when no
    # loop runs.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        func(arg)
        return
    loop.call_soon(func, arg)
