"""aioble.security on the host: encryption state on connections, and pair().

Unlike the device's aioble.security there is no JSON secret file: bonds are kept by whoever
answers _IRQ_GET_SECRET/_IRQ_SET_SECRET (the firmware registers that handler with
aioble.core.register_irq_handler). This module answers neither event.
"""

from . import core
from .core import _Flag, ble, log_error, log_info, register_irq_handler
from .device import DeviceConnection

_IRQ_ENCRYPTION_UPDATE = 28
_IRQ_GET_SECRET = 29
_IRQ_SET_SECRET = 30
_IRQ_PASSKEY_ACTION = 31

_IO_CAPABILITY_DISPLAY_ONLY = 0
_IO_CAPABILITY_DISPLAY_YESNO = 1
_IO_CAPABILITY_KEYBOARD_ONLY = 2
_IO_CAPABILITY_NO_INPUT_OUTPUT = 3
_IO_CAPABILITY_KEYBOARD_DISPLAY = 4

_PASSKEY_ACTION_INPUT = 2
_PASSKEY_ACTION_DISP = 3
_PASSKEY_ACTION_NUMCMP = 4


def _security_irq(event, data):
    if event == _IRQ_ENCRYPTION_UPDATE:
        conn_handle, encrypted, authenticated, bonded, key_size = data
        log_info("encryption update", conn_handle, encrypted, authenticated, bonded, key_size)
        connection = DeviceConnection._connected.get(conn_handle)
        if connection is not None:
            connection.encrypted = encrypted
            connection.authenticated = authenticated
            connection.bonded = bonded
            connection.key_size = key_size
            if encrypted and connection._pair_event:
                connection._pair_event.set()
    elif event in (_IRQ_GET_SECRET, _IRQ_SET_SECRET):
        _warn_secret_order()
    elif event == _IRQ_PASSKEY_ACTION:
        conn_handle, action, passkey = data
        log_info("passkey action", conn_handle, action, passkey)
    return None


_warned = False


def _warn_secret_order():
    # Reaching this handler means no earlier handler answered the secret. On the device this
    # module answers it from ble_secrets.json, so a bond store registered after this module never
    # sees secrets there; say so instead of hiding the difference.
    global _warned
    if _warned:
        return
    handlers = core._irq_handlers
    if _security_irq in handlers and handlers.index(_security_irq) < len(handlers) - 1:
        _warned = True
        log_error(
            "a secret IRQ reached aioble.security before a later handler: on the device "
            "aioble.security would store it in ble_secrets.json itself"
        )


def _register():
    if _security_irq not in core._irq_handlers:
        register_irq_handler(_security_irq, None)


_register()


async def pair(
    connection,
    bond=True,
    le_secure=True,
    mitm=False,
    io=_IO_CAPABILITY_NO_INPUT_OUTPUT,
    timeout_ms=20000,
):
    """Ask the central to pair (an SMP Security Request from the peripheral) and wait until the
    link is encrypted. Sets the radio's bond/le_secure/mitm/io config like aioble."""
    ble.config(bond=bond, le_secure=le_secure, mitm=mitm, io=io)
    with connection.timeout(timeout_ms):
        connection._pair_event = _Flag()
        ble.gap_pair(connection._conn_handle)
        await connection._pair_event.wait()
