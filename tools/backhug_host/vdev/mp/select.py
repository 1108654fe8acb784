# The virtual device's `select`: MicroPython's own module, with poll() objects whose wait hands
# the CPU to the host instead of sleeping. asyncio's only blocking point is poll.ipoll(dt): with
# nothing ready, the host advances virtual time by up to dt ms (an event, such as a BLE IRQ
# setting a ThreadSafeFlag, ends the wait early).
import sys

import vlink

_path = sys.path
sys.path = []
from select import *  # noqa: E402,F403 - MicroPython's built-in select (extensible module)
from select import POLLIN, POLLOUT  # noqa: E402

sys.path = _path
del _path

_POLL = 3  # MP_STREAM_POLL


class _Poll:
    def __init__(self):
        self._objs = {}  # id -> [obj, flags]

    def register(self, obj, flags=POLLIN | POLLOUT):
        self._objs[id(obj)] = [obj, flags]

    def modify(self, obj, flags):
        e = self._objs.get(id(obj))
        if e is None:
            raise OSError(2)  # MicroPython: ENOENT for an object not registered
        e[1] = flags

    def unregister(self, obj):
        self._objs.pop(id(obj), None)

    def _ready(self):
        out = []
        for obj, flags in self._objs.values():
            ev = obj.ioctl(_POLL, flags)
            if ev:
                out.append((obj, ev))
        return out

    def ipoll(self, timeout=-1, flags=0):
        ready = self._ready()
        if ready or timeout == 0:
            return ready
        vlink.idle(-1 if timeout < 0 else timeout * 1000)
        return self._ready()

    poll = ipoll


def poll():
    return _Poll()
