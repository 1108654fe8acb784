"""aioble.server on the host: Service, Characteristic, BufferedCharacteristic, Descriptor,
register_services, with aioble's write capture queue."""

import asyncio
from collections import deque

from .core import GattError, _Flag, ble, ensure_active, register_irq_handler
from .device import DeviceConnection, DeviceTimeout

_registered_characteristics = {}

_IRQ_GATTS_WRITE = 3
_IRQ_GATTS_READ_REQUEST = 4
_IRQ_GATTS_INDICATE_DONE = 20

_FLAG_READ = 0x0002
_FLAG_WRITE_NO_RESPONSE = 0x0004
_FLAG_WRITE = 0x0008
_FLAG_NOTIFY = 0x0010
_FLAG_INDICATE = 0x0020

_FLAG_READ_ENCRYPTED = 0x0200
_FLAG_READ_AUTHENTICATED = 0x0400
_FLAG_READ_AUTHORIZED = 0x0800
_FLAG_WRITE_ENCRYPTED = 0x1000
_FLAG_WRITE_AUTHENTICATED = 0x2000
_FLAG_WRITE_AUTHORIZED = 0x4000

_FLAG_WRITE_CAPTURE = 0x10000

# One queue for every capture characteristic; when full the oldest write is dropped.
_WRITE_CAPTURE_QUEUE_LIMIT = 10


def _server_irq(event, data):
    if event == _IRQ_GATTS_WRITE:
        conn_handle, attr_handle = data
        Characteristic._remote_write(conn_handle, attr_handle)
    elif event == _IRQ_GATTS_READ_REQUEST:
        conn_handle, attr_handle = data
        return Characteristic._remote_read(conn_handle, attr_handle)
    elif event == _IRQ_GATTS_INDICATE_DONE:
        conn_handle, value_handle, status = data
        Characteristic._indicate_done(conn_handle, value_handle, status)
    return None


def _server_shutdown():
    global _registered_characteristics
    _registered_characteristics = {}
    if hasattr(BaseCharacteristic, "_capture_queue"):
        task = BaseCharacteristic._capture_task
        if task is not None:
            task.cancel()
        del BaseCharacteristic._capture_queue
        del BaseCharacteristic._capture_write_event
        del BaseCharacteristic._capture_consumed_event
        del BaseCharacteristic._capture_task


register_irq_handler(_server_irq, _server_shutdown)


class Service:
    def __init__(self, uuid):
        self.uuid = uuid
        self.characteristics = []

    def _tuple(self):
        return (self.uuid, tuple(c._tuple() for c in self.characteristics))


class BaseCharacteristic:
    def _register(self, value_handle):
        self._value_handle = value_handle
        _registered_characteristics[value_handle] = self
        if self._initial is not None:
            self.write(self._initial)
            self._initial = None

    def read(self):
        if self._value_handle is None:
            return self._initial or b""
        return ble.gatts_read(self._value_handle)

    def write(self, data, send_update=False):
        if self._value_handle is None:
            self._initial = data
        else:
            ble.gatts_write(self._value_handle, data, send_update)

    @staticmethod
    def _init_capture():
        if hasattr(BaseCharacteristic, "_capture_queue"):
            return
        BaseCharacteristic._capture_queue = deque((), _WRITE_CAPTURE_QUEUE_LIMIT)
        BaseCharacteristic._capture_write_event = _Flag()
        BaseCharacteristic._capture_consumed_event = _Flag()
        # aioble starts the task here; CPython needs a running loop, so it may start later.
        BaseCharacteristic._capture_task = None
        BaseCharacteristic._start_capture_task()

    @staticmethod
    def _start_capture_task():
        if not hasattr(BaseCharacteristic, "_capture_queue"):
            return
        task = BaseCharacteristic._capture_task
        if task is not None and not task.done():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        BaseCharacteristic._capture_task = asyncio.create_task(
            BaseCharacteristic._run_capture_task()
        )

    @staticmethod
    async def _run_capture_task():
        # Hand queued writes to their characteristics one at a time: the next one is released
        # only after written() has returned the previous one.
        write = BaseCharacteristic._capture_write_event
        consumed = BaseCharacteristic._capture_consumed_event
        q = BaseCharacteristic._capture_queue
        while True:
            if len(q):
                conn, data, characteristic = q.popleft()
                characteristic._write_data = (conn, data)
                characteristic._write_event.set()
                await consumed.wait()
            if not len(q):
                await write.wait()

    async def written(self, timeout_ms=None):
        """Wait for a remote write: returns the connection, or (connection, data) with
        capture=True. None for a characteristic that is not writable."""
        if not hasattr(self, "_write_event"):
            return None
        if self.flags & _FLAG_WRITE_CAPTURE:
            BaseCharacteristic._start_capture_task()
        with DeviceTimeout(None, timeout_ms):
            await self._write_event.wait()
        data = self._write_data
        self._write_data = None
        if self.flags & _FLAG_WRITE_CAPTURE:
            BaseCharacteristic._capture_consumed_event.set()
        return data

    def on_read(self, connection):
        return 0

    def _remote_write(conn_handle, value_handle):
        characteristic = _registered_characteristics.get(value_handle)
        if characteristic is None:
            return
        conn = DeviceConnection._connected.get(conn_handle)
        if characteristic.flags & _FLAG_WRITE_CAPTURE:
            # The value is read now, in the IRQ, so later writes cannot overwrite it.
            BaseCharacteristic._capture_queue.append((conn, characteristic.read(), characteristic))
            BaseCharacteristic._start_capture_task()
            BaseCharacteristic._capture_write_event.set()
        else:
            characteristic._write_data = conn
            characteristic._write_event.set()

    def _remote_read(conn_handle, value_handle):
        characteristic = _registered_characteristics.get(value_handle)
        if characteristic is None:
            return None
        return characteristic.on_read(DeviceConnection._connected.get(conn_handle))


class Characteristic(BaseCharacteristic):
    def __init__(
        self,
        service,
        uuid,
        read=False,
        write=False,
        write_no_response=False,
        notify=False,
        indicate=False,
        initial=None,
        capture=False,
    ):
        service.characteristics.append(self)
        self.descriptors = []
        flags = 0
        if read:
            flags |= _FLAG_READ
        if write or write_no_response:
            if write:
                flags |= _FLAG_WRITE
            if write_no_response:
                flags |= _FLAG_WRITE_NO_RESPONSE
            if capture:
                flags |= _FLAG_WRITE_CAPTURE
                BaseCharacteristic._init_capture()
            self._write_event = _Flag()
            self._write_data = None
        if notify:
            flags |= _FLAG_NOTIFY
        if indicate:
            flags |= _FLAG_INDICATE
            # One indication at a time per characteristic, as aioble.
            self._indicate_connection = None
            self._indicate_event = _Flag()
            self._indicate_status = None
        self.uuid = uuid
        self.flags = flags
        self._value_handle = None
        self._initial = initial

    def _tuple(self):
        if self.descriptors:
            return (self.uuid, self.flags, tuple(d._tuple() for d in self.descriptors))
        return (self.uuid, self.flags)

    def notify(self, connection, data=None):
        if not (self.flags & _FLAG_NOTIFY):
            raise ValueError("Not supported")
        ble.gatts_notify(connection._conn_handle, self._value_handle, data)

    async def indicate(self, connection, data=None, timeout_ms=1000):
        if not (self.flags & _FLAG_INDICATE):
            raise ValueError("Not supported")
        if self._indicate_connection is not None:
            raise ValueError("In progress")
        if not connection.is_connected():
            raise ValueError("Not connected")
        self._indicate_connection = connection
        self._indicate_status = None
        try:
            with connection.timeout(timeout_ms):
                ble.gatts_indicate(connection._conn_handle, self._value_handle, data)
                await self._indicate_event.wait()
                if self._indicate_status != 0:
                    raise GattError(self._indicate_status)
        finally:
            self._indicate_connection = None

    def _indicate_done(conn_handle, value_handle, status):
        characteristic = _registered_characteristics.get(value_handle)
        if characteristic is None:
            return
        connection = DeviceConnection._connected.get(conn_handle)
        if connection is None:
            return
        if not getattr(characteristic, "_indicate_connection", None):
            return  # timed out already (or a send_update indication)
        characteristic._indicate_status = status
        characteristic._indicate_event.set()


class BufferedCharacteristic(Characteristic):
    def __init__(self, *args, max_len=20, append=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_len = max_len
        self._append = append

    def _register(self, value_handle):
        super()._register(value_handle)
        # As on the device, resizing empties the value: `initial` does not survive here.
        ble.gatts_set_buffer(value_handle, self._max_len, self._append)


class Descriptor(BaseCharacteristic):
    def __init__(self, characteristic, uuid, read=False, write=False, initial=None):
        characteristic.descriptors.append(self)
        flags = 0
        if read:
            flags |= _FLAG_READ
        if write:
            flags |= _FLAG_WRITE
            self._write_event = _Flag()
            self._write_data = None
        self.uuid = uuid
        self.flags = flags
        self._value_handle = None
        self._initial = initial

    def _tuple(self):
        return (self.uuid, self.flags)


def register_services(*services):
    """Register the services (replacing any earlier ones) and bind each characteristic and
    descriptor to its value handle."""
    ensure_active()
    _registered_characteristics.clear()
    handles = ble.gatts_register_services(tuple(s._tuple() for s in services))
    for service, service_handles in zip(services, handles, strict=True):
        n = 0
        for characteristic in service.characteristics:
            characteristic._register(service_handles[n])
            n += 1
            for descriptor in characteristic.descriptors:
                descriptor._register(service_handles[n])
                n += 1
