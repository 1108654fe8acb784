# The virtual device's `time`: MicroPython's own module (ticks_add, ticks_diff, localtime, ...)
# with the clock replaced by the host's virtual one. Blocking sleeps hand the CPU to the host for
# that long (the world moves on, as it does while a real MCU busy-waits).
import struct
import sys

import vlink

_path = sys.path
sys.path = []
from time import *  # noqa: E402,F403 - MicroPython's built-in time (extensible module)

sys.path = _path
del _path

# The ESP32's tick period (MICROPY_PY_TIME_TICKS_PERIOD: the small-int range of a 32-bit port).
# A 64-bit unix port's own ticks_add/ticks_diff wrap at 2**62, so they are replaced too: the
# virtual clock starts 30 s before the wrap, where mixing the two stalled every task.
_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1


def ticks_add(ticks, delta):
    if not -_HALF < delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF


def ticks_us():
    return vlink.now_us & _MASK


def ticks_ms():
    return (vlink.now_us // 1000) & _MASK


def ticks_cpu():
    return vlink.now_us & _MASK


def sleep_us(us):
    # A busy-wait: the device's clock moves on, nothing else runs (the host catches up at the
    # next request).
    if us > 0:
        vlink.now_us += us
        vlink.post(vlink.ADVANCE, struct.pack("<I", us))


def sleep_ms(ms):
    if ms > 0:
        vlink.idle(ms * 1000, early=False)  # long enough for the world to run meanwhile


def sleep(s):
    sleep_ms(int(s * 1000))
