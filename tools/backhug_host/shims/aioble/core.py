"""aioble.core on the host: the radio, IRQ fan-out to the sub-modules, logging, config()."""

import asyncio
import bluetooth

log_level = 1


def log_error(*args):
    if log_level > 0:
        print("[aioble] E:", *args)


def log_warn(*args):
    if log_level > 1:
        print("[aioble] W:", *args)


def log_info(*args):
    if log_level > 2:
        print("[aioble] I:", *args)


class GattError(Exception):
    def __init__(self, status):
        super().__init__(status)
        self._status = status


class _Flag:
    """asyncio.ThreadSafeFlag for CPython: set() wakes the one waiter; wait() clears the flag.

    Bound to no loop until a wait, so objects made at import time work in any later loop.
    """

    def __init__(self):
        self._flag = False
        self._waiter = None

    def set(self):
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self):
        self._flag = False

    async def wait(self):
        if not self._flag:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        self._flag = False


def ensure_active():
    # As aioble: the first activation imports .security (if present), which registers its IRQ
    # handler then. The device's aioble also loads its JSON secret file here; the host shim has
    # no file store: the firmware's own IRQ handler keeps bonds (docs/ble-adapter.md).
    if not ble.active():
        try:
            from . import security

            security._register()  # again after blestack.reset(), as on a fresh boot
        except ImportError:
            pass
        ble.active(True)


def config(*args, **kwargs):
    ensure_active()
    return ble.config(*args, **kwargs)


# Sub-modules add their handlers when imported, as in aioble.
_irq_handlers = []
_shutdown_handlers = []


def register_irq_handler(irq, shutdown):
    if irq:
        _irq_handlers.append(irq)
    if shutdown:
        _shutdown_handlers.append(shutdown)


def stop():
    ble.active(False)
    for handler in _shutdown_handlers:
        handler()


def ble_irq(event, data):
    # The first handler that returns something other than None answers the event.
    log_info(event, data)
    for handler in _irq_handlers:
        result = handler(event, data)
        if result is not None:
            return result
    return None


ble = bluetooth.BLE()
ble.irq(ble_irq)
