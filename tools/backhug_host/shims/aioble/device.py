"""aioble.device on the host: Device, DeviceConnection, DeviceTimeout, DeviceDisconnectedError."""

import asyncio
import binascii

from .core import _Flag, ble, log_error, register_irq_handler

_IRQ_MTU_EXCHANGED = 21


class DeviceDisconnectedError(Exception):
    pass


def _device_irq(event, data):
    if event == _IRQ_MTU_EXCHANGED:
        conn_handle, mtu = data
        connection = DeviceConnection._connected.get(conn_handle)
        if connection is not None:
            connection.mtu = mtu
            if connection._mtu_event is not None:
                connection._mtu_event.set()


register_irq_handler(_device_irq, None)


class DeviceTimeout:
    """`with connection.timeout(ms):` - ends the wait inside with asyncio.TimeoutError after
    timeout_ms, or DeviceDisconnectedError when the connection drops; another cancellation
    passes through. Either argument may be None."""

    def __init__(self, connection, timeout_ms):
        self._connection = connection
        self._timeout_ms = timeout_ms
        self._timeout_task = None
        self._task = asyncio.current_task()
        if connection:
            connection._timeouts.append(self)

    async def _timeout_sleep(self):
        try:
            await asyncio.sleep(self._timeout_ms / 1000)
        except asyncio.CancelledError:
            return  # the operation finished first
        # None marks "the timer fired" for __exit__.
        self._timeout_task = None
        self._task.cancel()

    def __enter__(self):
        if self._timeout_ms:
            self._timeout_task = asyncio.create_task(self._timeout_sleep())

    def __exit__(self, exc_type, exc_val, exc_traceback):
        if self._connection:
            self._connection._timeouts.remove(self)
        try:
            if exc_type is asyncio.CancelledError:
                if self._timeout_ms and self._timeout_task is None:
                    # CPython counts cancellations; this one is consumed here.
                    self._task.uncancel()
                    raise asyncio.TimeoutError
                if self._connection and self._connection._conn_handle is None:
                    self._task.uncancel()
                    raise DeviceDisconnectedError
            return None
        finally:
            if self._timeout_task:
                self._timeout_task.cancel()


class Device:
    def __init__(self, addr_type, addr):
        self.addr_type = addr_type
        self.addr = bytes(addr) if len(addr) == 6 else binascii.unhexlify(addr.replace(":", ""))
        self._connection = None

    def __eq__(self, rhs):
        return self.addr_type == rhs.addr_type and self.addr == rhs.addr

    def __hash__(self):
        return hash((self.addr_type, self.addr))

    def __str__(self):
        return "Device({}, {}{})".format(
            "ADDR_PUBLIC" if self.addr_type == 0 else "ADDR_RANDOM",
            self.addr_hex(),
            ", CONNECTED" if self._connection else "",
        )

    def addr_hex(self):
        return binascii.hexlify(self.addr, ":").decode()

    async def connect(self, *args, **kwargs):
        raise NotImplementedError("the host aioble has no central role")


class DeviceConnection:
    # conn_handle -> DeviceConnection, for routing IRQs.
    _connected = {}

    def __init__(self, device):
        self.device = device
        device._connection = self
        self.encrypted = False
        self.authenticated = False
        self.bonded = False
        self.key_size = False
        self.mtu = None
        self._conn_handle = None
        # Set by the disconnect IRQ; device_task waits on it.
        self._event = _Flag()
        self._mtu_event = None
        self._characteristics = {}
        self._task = None
        self._timeouts = []
        self._pair_event = None

    async def device_task(self):
        assert self._conn_handle is not None
        await self._event.wait()
        del DeviceConnection._connected[self._conn_handle]
        self._conn_handle = None
        self.device._connection = None
        # Wake every wait on this connection: its DeviceTimeout turns this into
        # DeviceDisconnectedError.
        for t in self._timeouts:
            t._task.cancel()

    def _run_task(self):
        self._task = asyncio.create_task(self.device_task())

    async def disconnect(self, timeout_ms=2000):
        await self.disconnected(timeout_ms, disconnect=True)

    async def disconnected(self, timeout_ms=None, disconnect=False):
        if not self.is_connected():
            return
        assert self._task
        if disconnect:
            try:
                ble.gap_disconnect(self._conn_handle)
            except OSError as e:
                log_error("Disconnect", e)
        with DeviceTimeout(None, timeout_ms):
            await self._task

    async def pair(self, *args, **kwargs):
        from .security import pair

        await pair(self, *args, **kwargs)

    def is_connected(self):
        return self._conn_handle is not None

    def timeout(self, timeout_ms):
        return DeviceTimeout(self, timeout_ms)

    async def exchange_mtu(self, mtu=None, timeout_ms=1000):
        if not self.is_connected():
            raise ValueError("Not connected")
        if mtu:
            ble.config(mtu=mtu)
        self._mtu_event = self._mtu_event or _Flag()
        ble.gattc_exchange_mtu(self._conn_handle)
        with self.timeout(timeout_ms):
            await self._mtu_event.wait()
        return self.mtu

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc_val, exc_traceback):
        await self.disconnect()
