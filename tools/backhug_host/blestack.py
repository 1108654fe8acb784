"""The simulator's BLE: a real host stack (Google's Bumble) on virtual controllers.

A `World` is one bumble LocalLink (the air) with the device-side Controller and bumble Device
that the firmware's aioble drives. Phones join the same link: `make_central()` gives an
in-process bumble Device on its own Controller, and `serve_hci_tcp()` exposes another Controller
as HCI over TCP loopback so a central in another process can attach with bumble transport
"tcp-client:127.0.0.1:<port>".

`Radio` is MicroPython's `bluetooth.BLE` object (the methods aioble calls: gatts_*, gap_*,
config, irq) implemented on that bumble Device, with the argument checks and errors of
MicroPython's bluetooth module and the event order of its NimBLE build (encryption updates,
the secret store). shims/bluetooth.py returns it from BLE(), and micropython-lib's aioble (the
pinned files, see use_aioble()) runs on it unchanged.
docs/ble-adapter.md says how each call maps and where the result differs from NimBLE on the
ESP32.

Bumble needs a running event loop for its controllers, so the radio builds its controller on
first use inside a loop; MicroPython's synchronous calls (gap_advertise, gatts_notify, ...) that
need the air are queued as tasks in call order. Works in hostrt's virtual-time loop (everything
in process) and in a normal asyncio loop (needed for the TCP path).

Host only; the firmware never imports this module (it imports `aioble`/`bluetooth`).
"""

import asyncio
import errno
import json
import os
import sys
import traceback

from bumble import att, gatt, hci, keys, pairing
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

SHIMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims")

# The device's own address (random static: top two bits set) and a default phone address.
DEVICE_ADDRESS = "F0:BA:C4:00:00:01"
CENTRAL_ADDRESS = "C0:00:00:00:00:01"

# MicroPython IRQ numbers (extmod/modbluetooth.h).
_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_GATTS_READ_REQUEST = 4
_IRQ_GATTS_INDICATE_DONE = 20
_IRQ_MTU_EXCHANGED = 21
_IRQ_ENCRYPTION_UPDATE = 28
_IRQ_GET_SECRET = 29
_IRQ_SET_SECRET = 30

# Characteristic flag bits (extmod/modbluetooth.h MP_BLUETOOTH_CHARACTERISTIC_FLAG_*).
_FLAG_PROPERTY_MASK = 0x007F  # broadcast..signed write: the GATT properties byte itself
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

# Secret types, as NimBLE hands them to the IRQs: a bond is two secrets, ours (the keys this
# side uses: BLE_STORE_OBJ_TYPE_OUR_SEC) and the peer's (its identity and keys: PEER_SEC); the
# device's own IRK is one more (MicroPython's SECRET_TYPE_OUR_IRK, key b"irk").
SEC_TYPE_OUR = 1
SEC_TYPE_PEER = 2
SEC_TYPE_OUR_IRK = 10
OUR_IRK_KEY = b"irk"

# MicroPython's default attribute buffer (MP_BLUETOOTH_DEFAULT_ATTR_LEN); the ATT MTU of a
# connection before any exchange; the preferred MTU config("mtu") starts at (MicroPython's
# NimBLE syscfg: BLE_ATT_PREFERRED_MTU) and the range ble_att_set_preferred_mtu accepts.
DEFAULT_ATTR_LEN = 20
DEFAULT_MTU = 23
PREFERRED_MTU = 256
MAX_MTU = 527
_BUMBLE_MAX_MTU = 517  # the largest ATT MTU Bumble negotiates
# NimBLE's BLE_SVC_GAP_DEVICE_NAME_MAX_LENGTH in MicroPython's build.
_GAP_NAME_MAX = 31

# NimBLE's BLE_HS_ETIMEOUT, the status an unconfirmed indication reports.
_STATUS_TIMEOUT = 13

# Radio configuration at power-up. bond/le_secure default on here; see docs/ble-adapter.md for
# what NimBLE starts with. config() reads back only gap_name (bytes), mac and mtu, as
# MicroPython's NimBLE build does (the rest are write-only there: ValueError).
_DEFAULT_CONFIG = {
    "mtu": PREFERRED_MTU,
    "gap_name": b"MPY NIMBLE",
    "bond": True,
    "le_secure": True,
    "mitm": False,
    "io": 3,
    "addr_mode": 1,
}

_IO_TO_BUMBLE = {
    0: pairing.PairingDelegate.DISPLAY_OUTPUT_ONLY,
    1: pairing.PairingDelegate.DISPLAY_OUTPUT_AND_YES_NO_INPUT,
    2: pairing.PairingDelegate.KEYBOARD_INPUT_ONLY,
    3: pairing.PairingDelegate.NO_OUTPUT_NO_INPUT,
    4: pairing.PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT,
}


def use_aioble():
    """Make `import aioble` give micropython-lib's aioble, unchanged, and return it.

    The pinned files (mplib.tree("py"), checked against tools/backhug_host/mplib.json) go on
    sys.path after the standard library and site-packages, so only `aioble` comes from there:
    host tools keep CPython's hashlib and PyPI's cbor2 under those names. shims/ goes first
    (MicroPython's `bluetooth`, whose BLE() is this module's Radio, and `micropython`), and
    backhug_host.mpcompat adds what CPython's asyncio lacks before aioble is imported (and
    encodes a str advertising name after). Once per process; later calls return the same module.
    """
    from backhug_host import mpcompat, mplib

    mpcompat.install()
    if SHIMS_DIR not in sys.path:
        sys.path.insert(0, SHIMS_DIR)
    global _AIOBLE_TREE
    if _AIOBLE_TREE is None:
        _AIOBLE_TREE = str(mplib.tree("py"))
    if _AIOBLE_TREE not in sys.path:
        sys.path.append(_AIOBLE_TREE)
    import aioble

    if not getattr(aioble, "__file__", "").startswith(_AIOBLE_TREE + os.sep):
        raise RuntimeError(
            "`aioble` was imported from %r, not micropython-lib's pinned copy in %s"
            % (getattr(aioble, "__file__", None), _AIOBLE_TREE)
        )
    mpcompat.adapt_aioble(aioble)
    return aioble


_AIOBLE_TREE = None


def _int(value):
    # MicroPython converts handles, lengths and intervals with mp_obj_get_int, which takes an
    # int (bool included) and raises TypeError for anything else: None for a connection aioble
    # has already marked gone (its _conn_handle), a float, a str. Not OSError.
    if isinstance(value, int):
        return value
    raise TypeError("can't convert %s to int" % type(value).__name__)


def _str_name(name):
    # Bumble's Device.name is a str; the radio keeps MicroPython's bytes
    return bytes(name).decode("utf-8", "replace")


def secret_key(address):
    """The secret key for a peer: 1 byte address type (0 public, 1 random) + the 6 address bytes
    least significant first (NimBLE's ble_addr_t, which the device hands to _IRQ_*_SECRET)."""
    kind = 0 if address.is_public else 1
    return bytes([kind]) + bytes(address)


def _display_addr(address):
    # MicroPython's IRQs give addresses most significant byte first (reverse_addr_byte_order).
    return bytes(address)[::-1]


class _Entry:
    """One value in the local GATT database, with MicroPython's buffer rules."""

    __slots__ = ("data", "alloc", "append")

    def __init__(self, alloc=DEFAULT_ATTR_LEN):
        self.data = b""
        self.alloc = alloc
        self.append = False


class _Conn:
    """What the radio knows about one connection, by conn_handle."""

    def __init__(self, connection):
        self.connection = connection
        self.handle = connection.handle
        self.addr_type = 0 if connection.peer_address.is_public else 1
        self.addr = _display_addr(connection.peer_address)
        self.encrypted = False
        self.authenticated = False  # MITM-protected key (NimBLE's sense), not bumble's
        self.bonded = False
        self.key_size = 0
        self.stored_keys = None  # PairingKeys that came from GET_SECRET for this link
        self.pairing_reported = False  # this pairing's encryption update has been raised


class _Characteristic(gatt.Characteristic):
    # Security checks as NimBLE's ble_att_svr_check_perms makes them: an unencrypted link gets
    # Insufficient Encryption when a key for the peer is stored, else Insufficient
    # Authentication; "authenticated" means a MITM-protected key, which bumble's own check
    # (connection.authenticated, true after any pairing) does not distinguish.

    def __init__(self, radio, uuid, properties, permissions, value, flags):
        super().__init__(uuid, properties, permissions, value)
        self._radio = radio
        self._mp_flags = flags

    async def read_value(self, bearer):
        # bumble's server does not check its READABLE/WRITEABLE bits; NimBLE answers these
        if not self._mp_flags & _FLAG_READ:
            raise att.ATT_Error(att.ATT_READ_NOT_PERMITTED_ERROR, self.handle)
        await self._radio._check_security(bearer, self, self._mp_flags, read=True)
        return await super().read_value(bearer)

    async def write_value(self, bearer, value):
        if not self._mp_flags & (_FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE):
            raise att.ATT_Error(att.ATT_WRITE_NOT_PERMITTED_ERROR, self.handle)
        await self._radio._check_security(bearer, self, self._mp_flags, read=False)
        return await super().write_value(bearer, value)


class _Descriptor(gatt.Descriptor):
    def __init__(self, radio, uuid, permissions, value, flags):
        super().__init__(uuid, permissions, value)
        self._radio = radio
        self._mp_flags = flags

    async def read_value(self, bearer):
        await self._radio._check_security(bearer, self, self._mp_flags, read=True)
        return await super().read_value(bearer)

    async def write_value(self, bearer, value):
        await self._radio._check_security(bearer, self, self._mp_flags, read=False)
        return await super().write_value(bearer, value)


def _permissions(flags):
    p = att.Attribute.Permissions(0)
    if flags & _FLAG_READ:
        p |= att.Attribute.READABLE
    if flags & (_FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE):
        p |= att.Attribute.WRITEABLE
    if flags & _FLAG_READ_ENCRYPTED:
        p |= att.Attribute.READ_REQUIRES_ENCRYPTION
    if flags & _FLAG_READ_AUTHENTICATED:
        p |= att.Attribute.READ_REQUIRES_AUTHENTICATION
    if flags & _FLAG_READ_AUTHORIZED:
        p |= att.Attribute.READ_REQUIRES_AUTHORIZATION
    if flags & _FLAG_WRITE_ENCRYPTED:
        p |= att.Attribute.WRITE_REQUIRES_ENCRYPTION
    if flags & _FLAG_WRITE_AUTHENTICATED:
        p |= att.Attribute.WRITE_REQUIRES_AUTHENTICATION
    if flags & _FLAG_WRITE_AUTHORIZED:
        p |= att.Attribute.WRITE_REQUIRES_AUTHORIZATION
    return p


def _bumble_uuid(uuid):
    return gatt.UUID.from_bytes(bytes(uuid))


class IrqKeyStore(keys.KeyStore):
    """Bumble's key store, answered by the firmware through _IRQ_GET_SECRET/_IRQ_SET_SECRET.

    A bond is two secrets, as NimBLE stores it: SEC_TYPE_OUR (1) and SEC_TYPE_PEER (2), both
    under key = secret_key(address) (7 bytes), each value UTF-8 JSON {"addr": "<bumble address
    string>", "keys": <part of PairingKeys.to_dict()>}: ours holds the LTK this side uses, the
    peer's its identity (IRK, address type) and keys. Keys are not kept here; what is kept is
    NimBLE's resolving list (the radio's `_resolving`: the peer secrets found by the walk at
    active(True) and the bonds stored since), which is what Bumble's get_all() is answered
    from, without IRQs, as NimBLE never walks the store after boot.
    """

    def __init__(self, radio):
        self._radio = radio

    async def get(self, name):
        radio = self._radio
        key = secret_key(hci.Address(name))
        found = [radio._secret(t, key) for t in (SEC_TYPE_OUR, SEC_TYPE_PEER)]
        if found == [None, None]:
            return None
        merged = {}
        for part in found:
            merged.update(part or {})
        return keys.PairingKeys.from_dict(merged)

    async def update(self, name, pairing_keys):
        self._radio._store_bond(name, pairing_keys)

    async def delete(self, name):
        self._radio._delete_bond(secret_key(hci.Address(name)))

    async def get_all(self):
        return [(name, pk) for name, pk in self._radio._resolving.items()]

    async def delete_all(self):
        for name, _ in await self.get_all():
            await self.delete(name)


# Which PairingKeys entries go into which secret: ours has the key this side encrypts with, the
# peer's everything it told us (with LE Secure Connections the one LTK is both sides' key, as
# in NimBLE's two records).
_OUR_KEYS = ("address_type", "ltk", "ltk_peripheral")
_PEER_KEYS = ("address_type", "ltk", "ltk_central", "irk", "csrk", "link_key", "link_key_type")


def _encode_keys(name, pairing_keys, names):
    d = pairing_keys.to_dict()
    return json.dumps({"addr": name, "keys": {k: d[k] for k in names if k in d}}).encode()


def _decode_keys(value):
    try:
        doc = json.loads(bytes(value).decode())
        if not isinstance(doc["addr"], str) or not isinstance(doc["keys"], dict):
            raise ValueError
        return doc["addr"], doc["keys"]
    except (ValueError, KeyError, TypeError):
        # A secret the adapter did not write (or a corrupted one): no usable keys.
        return None, None


class _DeviceSide(Device):
    """The firmware's bumble Device: an LTK request reads our secret (GET_SECRET(1, 0, key), as
    NimBLE's ble_sm_ltk_req_rx reads its OUR_SEC) and tells the radio the key came from the bond
    store (so the encryption update can report bonded=1)."""

    radio = None

    async def get_long_term_key(self, connection_handle, rand, ediv):
        connection = self.lookup_connection(connection_handle)
        if connection is None:
            return None
        ltk = self.smp_manager.get_long_term_key(connection, rand, ediv)
        if ltk is not None:
            return ltk
        ours = self.radio._secret(SEC_TYPE_OUR, secret_key(connection.peer_address))
        if ours is None:
            return None
        stored = keys.PairingKeys.from_dict(ours)
        record = self.radio._conns.get(connection_handle)
        if record is not None:
            record.stored_keys = stored
        for key in (stored.ltk, stored.ltk_peripheral):
            if key is not None:
                return key.value
        return None


class World:
    """One virtual BLE world: the link, the device-side controller and bumble Device."""

    def __init__(self, address=DEVICE_ADDRESS):
        self.link = LocalLink()
        self.address = hci.Address(address)
        self.controller = None
        self.device = None
        self.servers = []  # HciTcpServer objects
        self.centrals = []
        self._started = None

    async def start(self):
        """Build the device-side controller and power the bumble Device on (once)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._power_on())
        await asyncio.shield(self._started)
        return self

    async def _power_on(self):
        self.controller = Controller("device", link=self.link)
        self.device.host = Host(self.controller, AsyncPipeSink(self.controller))
        await self.device.power_on()

    def close(self):
        for controller in list(self.link.controllers):
            self.link.remove_controller(controller)
        for server in self.servers:
            server.close()
        self.servers = []
        for central in self.centrals:
            _close_device(central)
        self.centrals = []
        if self.device is not None:
            _close_device(self.device)


def _close_device(device):
    # Drop every connection without waiting for the air: the world is going away.
    try:
        device.on_flush()
    except Exception:
        pass


class Radio:
    """MicroPython's bluetooth.BLE on a bumble Device (see the module docstring)."""

    def __init__(self):
        self._world = None
        self._active = False
        self._irq_handler = None
        self._config = dict(_DEFAULT_CONFIG)
        self._db = {}  # value handle -> _Entry
        self._attrs = {}  # value handle -> bumble attribute
        self._conns = {}  # conn handle -> _Conn
        self._resolving = {}  # NimBLE's resolving list: peer address string -> PairingKeys
        self._adv_data = b""
        self._resp_data = b""
        self._op_chain = None  # last queued radio operation (keeps MicroPython call order)
        self._tasks = set()
        self.irq_errors = []  # exceptions raised by IRQ handlers (printed, as MicroPython does)

    # -- world -------------------------------------------------------------------------------

    @property
    def world(self):
        """The World this radio runs in (made on first activation)."""
        if self._world is None:
            self._world = World()
            self._make_device()
        return self._world

    def _make_device(self):
        world = self._world
        device = _DeviceSide(name=_str_name(self._config["gap_name"]), address=world.address)
        device.radio = self
        device.keystore = IrqKeyStore(self)
        device.pairing_config_factory = self._pairing_config
        device.gatt_server.max_mtu = min(self._config["mtu"], _BUMBLE_MAX_MTU)
        device.on("connection", self._on_connection)
        world.device = device

    async def started(self):
        return await self.world.start()

    def _queue(self, coro_fn, *args):
        # Run radio operations one after another, in the order MicroPython code asked for them.
        previous = self._op_chain

        async def run():
            if previous is not None:
                try:
                    await previous
                except BaseException:
                    pass
            await self.started()
            return await coro_fn(*args)

        task = asyncio.ensure_future(run())
        self._op_chain = task
        self._keep(task)
        return task

    def _keep(self, task):
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print("[blestack] radio operation failed:", repr(task.exception()), file=sys.stderr)

    def shutdown(self):
        """Forget everything (a reboot): close the world, drop the database and connections."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._op_chain = None
        self._conns.clear()  # first, so closing the world raises no disconnect IRQs
        self._resolving = {}
        if self._world is not None:
            self._world.close()
        self._world = None
        self._active = False
        self._db.clear()
        self._attrs.clear()
        self._adv_data = b""
        self._resp_data = b""

    # -- MicroPython API: control ------------------------------------------------------------

    def active(self, state=None):
        if state is None:
            return self._active
        if state:
            _ = self.world
            if not self._active:
                self._active = True
                self._load_irk()
        elif self._active:
            # Deactivating drops connections and the GATT database, as on the device.
            self.shutdown()
        return self._active

    def irq(self, handler):
        self._irq_handler = handler

    def config(self, *args, **kwargs):
        # As modbluetooth.c's bluetooth_ble_config on MicroPython's NimBLE build.
        if not kwargs:
            if len(args) != 1:
                raise TypeError("must query one param")
            name = args[0]
            if name == "mac":
                return (1, _display_addr(self.world.address))
            if name == "gap_name":
                return bytes(self._config["gap_name"])
            if name == "mtu":
                self._check_active()
                return self._config["mtu"]
            # bond, le_secure, mitm, io, addr_mode can only be set; rxbuf does not exist with
            # synchronous events (NimBLE builds), nor does interval
            raise ValueError("unknown config param")
        if args:
            raise TypeError("can't specify pos and kw args")
        for name, value in kwargs.items():
            if name == "mtu":
                self._check_active()
                value = _int(value)
                if not DEFAULT_MTU <= value <= MAX_MTU:
                    raise OSError(errno.EINVAL)  # ble_att_set_preferred_mtu refuses it
                if self._world is not None and self._world.device is not None:
                    self._world.device.gatt_server.max_mtu = min(value, _BUMBLE_MAX_MTU)
            elif name == "gap_name":
                # any buffer (a str is one on MicroPython: its UTF-8 bytes)
                value = value.encode() if isinstance(value, str) else bytes(memoryview(value))
                if len(value) > _GAP_NAME_MAX:
                    raise OSError(errno.EINVAL)
                if self._world is not None:
                    self._world.device.name = _str_name(value)
            elif name in ("bond", "le_secure", "mitm"):
                value = bool(value)
            elif name == "io":
                value = _int(value)
                if value not in _IO_TO_BUMBLE:
                    raise ValueError("invalid io capability")  # NimBLE takes it; pairing fails
            elif name == "addr_mode":
                value = _int(value)
            else:
                raise ValueError("unknown config param")
            self._config[name] = value
        return None

    def _check_active(self):
        if not self._active:
            raise OSError(errno.EPERM)  # MicroPython's ERRNO_BLUETOOTH_NOT_ACTIVE

    def _pairing_config(self, _connection):
        cfg = self._config
        return pairing.PairingConfig(
            sc=cfg["le_secure"],
            mitm=cfg["mitm"],
            bonding=cfg["bond"],
            delegate=pairing.PairingDelegate(io_capability=_IO_TO_BUMBLE[cfg["io"]]),
        )

    def _irq_call(self, event, data):
        # Exceptions in an IRQ handler are printed and the event counts as unhandled
        # (MicroPython prints "Unhandled exception in IRQ callback handler").
        if self._irq_handler is None:
            return None
        try:
            return self._irq_handler(event, data)
        except Exception as exc:
            self.irq_errors.append(exc)
            print("Unhandled exception in IRQ callback handler", file=sys.stderr)
            traceback.print_exc()
            return None

    # -- MicroPython API: GAP ----------------------------------------------------------------

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        if interval_us is None:
            self._queue(self._stop_advertising)
            return
        interval_us = _int(interval_us)
        # None re-uses the previous payload, as MicroPython documents.
        if adv_data is not None:
            self._adv_data = bytes(adv_data)
        if resp_data is not None:
            self._resp_data = bytes(resp_data)
        self._queue(self._advertise, interval_us, self._adv_data, self._resp_data, connectable)

    async def _advertise(self, interval_us, adv_data, resp_data, connectable):
        device = self.world.device
        from bumble.device import AdvertisingType

        if connectable:
            kind = AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE
        elif resp_data:
            kind = AdvertisingType.UNDIRECTED_SCANNABLE
        else:
            kind = AdvertisingType.UNDIRECTED
        interval_ms = max(20.0, interval_us / 1000)
        # Bumble's virtual controller never sends the scan response (its "scan response"
        # report repeats the advertising data), so the scan response fields ride in the
        # advertising PDU too: a scanning central then sees every field, as after an active
        # scan of the real device.
        await device.start_advertising(
            advertising_type=kind,
            advertising_data=adv_data + resp_data,
            scan_response_data=resp_data,
            advertising_interval_min=interval_ms,
            advertising_interval_max=interval_ms,
        )

    async def _stop_advertising(self):
        await self.world.device.stop_advertising()

    def gap_disconnect(self, conn_handle):
        record = self._conns.get(_int(conn_handle))
        if record is None:
            return False
        self._queue(self._disconnect, record.connection)
        return True

    async def _disconnect(self, connection):
        try:
            await connection.disconnect()
        except Exception:
            pass  # already gone

    def gap_pair(self, conn_handle):
        record = self._conns.get(_int(conn_handle))
        if record is None:
            raise OSError(errno.ENOTCONN)
        # A peripheral asks the central to pair with an SMP Security Request (as NimBLE does).
        self.world.device.request_pairing(record.connection)

    def gattc_exchange_mtu(self, conn_handle):
        record = self._conns.get(_int(conn_handle))
        if record is None:
            raise OSError(errno.ENOTCONN)
        self._queue(self._exchange_mtu, record.connection)

    async def _exchange_mtu(self, connection):
        mtu = await connection.gatt_client.request_mtu(self._config["mtu"])
        connection.on_att_mtu_update(mtu)

    # -- MicroPython API: GATT server ------------------------------------------------------

    def gatts_register_services(self, services):
        """Replace the whole GATT database (as NimBLE does) and return the value handles."""
        from bumble import gatt_server

        device = self.world.device
        device.gatt_server = gatt_server.Server(device)
        device.gatt_server.max_mtu = self._config["mtu"]
        device.add_default_services(add_gap_service=False)
        device.add_service(self._gap_service())
        self._db.clear()
        self._attrs.clear()
        built = []
        for service_def in services:
            service_uuid, char_defs = service_def[0], service_def[1]
            chars = []
            order = []
            for char_def in char_defs:
                uuid, flags = char_def[0], char_def[1]
                descriptor_defs = char_def[2] if len(char_def) > 2 else ()
                characteristic = self._make_characteristic(uuid, flags)
                order.append(characteristic)
                for d_uuid, d_flags in descriptor_defs:
                    descriptor = self._make_descriptor(d_uuid, d_flags)
                    characteristic.descriptors.append(descriptor)
                    order.append(descriptor)
                chars.append(characteristic)
            device.add_service(gatt.Service(_bumble_uuid(service_uuid), chars))
            built.append(order)
        handles = []
        for order in built:
            service_handles = []
            for attr in order:
                self._db[attr.handle] = _Entry()
                self._attrs[attr.handle] = attr
                attr._value_handle = attr.handle
                service_handles.append(attr.handle)
            handles.append(tuple(service_handles))
        return tuple(handles)

    def _gap_service(self):
        name = gatt.Characteristic(
            gatt.GATT_DEVICE_NAME_CHARACTERISTIC,
            gatt.Characteristic.Properties.READ,
            att.Attribute.READABLE,
            gatt.CharacteristicValue(read=lambda _c: bytes(self._config["gap_name"])),
        )
        appearance = gatt.Characteristic(
            gatt.GATT_APPEARANCE_CHARACTERISTIC,
            gatt.Characteristic.Properties.READ,
            att.Attribute.READABLE,
            bytes(2),
        )
        return gatt.Service(gatt.GATT_GENERIC_ACCESS_SERVICE, [name, appearance])

    def _make_characteristic(self, uuid, flags):
        holder = {}
        value = gatt.CharacteristicValue(
            read=lambda connection: self._remote_read(connection, holder["attr"]),
            write=lambda connection, data: self._remote_write(connection, holder["attr"], data),
        )
        attr = _Characteristic(
            self,
            _bumble_uuid(uuid),
            gatt.Characteristic.Properties(flags & _FLAG_PROPERTY_MASK),
            _permissions(flags),
            value,
            flags,
        )
        holder["attr"] = attr
        return attr

    def _make_descriptor(self, uuid, flags):
        holder = {}
        value = att.AttributeValue(
            read=lambda connection: self._remote_read(connection, holder["attr"]),
            write=lambda connection, data: self._remote_write(connection, holder["attr"], data),
        )
        attr = _Descriptor(self, _bumble_uuid(uuid), _permissions(flags), value, flags)
        holder["attr"] = attr
        return attr

    async def _check_security(self, bearer, attr, flags, read):
        connection = getattr(bearer, "connection", bearer)
        record = self._conns.get(getattr(connection, "handle", None))
        if record is None:
            return
        if read:
            enc, authen = flags & _FLAG_READ_ENCRYPTED, flags & _FLAG_READ_AUTHENTICATED
        else:
            enc, authen = flags & _FLAG_WRITE_ENCRYPTED, flags & _FLAG_WRITE_AUTHENTICATED
        if (enc or authen) and not record.encrypted:
            # NimBLE reads the peer's secret and looks for an LTK in it
            peer = self._secret(SEC_TYPE_PEER, secret_key(connection.peer_address))
            known = peer is not None and ("ltk" in peer or "ltk_central" in peer)
            code = att.ATT_INSUFFICIENT_ENCRYPTION_ERROR if known else None
            raise att.ATT_Error(
                error_code=code or att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR,
                att_handle=attr.handle,
            )
        if authen and not record.authenticated:
            raise att.ATT_Error(
                error_code=att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR, att_handle=attr.handle
            )

    def _remote_read(self, connection, attr):
        # _IRQ_GATTS_READ_REQUEST may refuse the read with an ATT error code (for every Read
        # and Read Blob request, as NimBLE asks for each one).
        result = self._irq_call(_IRQ_GATTS_READ_REQUEST, (connection.handle, attr.handle))
        if result:
            raise att.ATT_Error(error_code=int(result), att_handle=attr.handle)
        return self._db[attr.handle].data

    def _remote_write(self, connection, attr, data):
        # NimBLE's access callback: the value is cut to the buffer size without an error.
        entry = self._db[attr.handle]
        offset = len(entry.data) if entry.append else 0
        keep = max(0, min(entry.alloc, len(data) + offset) - offset)
        entry.data = entry.data[:offset] + bytes(data[:keep])
        self._irq_call(_IRQ_GATTS_WRITE, (connection.handle, attr.handle))

    def _entry(self, value_handle):
        entry = self._db.get(_int(value_handle))
        if entry is None:
            raise OSError(errno.EINVAL)
        return entry

    def gatts_read(self, value_handle):
        return self._entry(value_handle).data

    def gatts_write(self, value_handle, data, send_update=False):
        entry = self._entry(value_handle)
        data = bytes(data)
        # mp_bluetooth_gatts_db_write grows the buffer to fit a longer local value.
        entry.alloc = max(entry.alloc, len(data))
        entry.data = data
        if send_update:
            self._send_update(value_handle, data)

    def gatts_set_buffer(self, value_handle, length, append=False):
        entry = self._entry(value_handle)
        length = _int(length)
        # mp_bluetooth_gatts_db_resize: new size, append mode, and the value is emptied.
        entry.alloc = length
        entry.append = bool(append)
        entry.data = b""

    def _connection(self, conn_handle):
        record = self._conns.get(conn_handle)
        if record is None:
            raise OSError(errno.ENOTCONN)
        return record.connection

    def gatts_notify(self, conn_handle, value_handle, data=None):
        # Sent whether or not the central subscribed (ble_gatts_notify_custom), value taken now.
        conn_handle, value_handle = _int(conn_handle), _int(value_handle)
        connection = self._connection(conn_handle)
        attr = self._attrs.get(value_handle)
        if attr is None:
            raise OSError(errno.EINVAL)
        value = self._db[value_handle].data if data is None else bytes(data)
        self._queue(self._notify, connection, attr, value)

    async def _notify(self, connection, attr, value):
        await self.world.device.gatt_server.notify_subscriber(connection, attr, value, force=True)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        conn_handle, value_handle = _int(conn_handle), _int(value_handle)
        connection = self._connection(conn_handle)
        attr = self._attrs.get(value_handle)
        if attr is None:
            raise OSError(errno.EINVAL)
        value = self._db[value_handle].data if data is None else bytes(data)
        self._queue(self._indicate, connection, attr, value, conn_handle, value_handle)

    async def _indicate(self, connection, attr, value, conn_handle, value_handle):
        server = self.world.device.gatt_server
        # Queued in order, but the confirmation is awaited off the queue so notifications that
        # follow are not held up (NimBLE sends them while an indication is outstanding).
        task = asyncio.ensure_future(server.indicate_subscriber(connection, attr, value, True))
        self._keep_quiet(task, conn_handle, value_handle)

    def _keep_quiet(self, task, conn_handle, value_handle):
        self._tasks.add(task)

        def done(t):
            self._tasks.discard(t)
            if t.cancelled():
                return
            status = 0 if t.exception() is None else _STATUS_TIMEOUT
            if conn_handle in self._conns:
                self._irq_call(_IRQ_GATTS_INDICATE_DONE, (conn_handle, value_handle, status))

        task.add_done_callback(done)

    def _send_update(self, value_handle, data):
        # gatts_write(..., send_update=True): notify or indicate each subscribed central.
        attr = self._attrs.get(value_handle)
        if attr is None or self._world is None:
            return
        server = self._world.device.gatt_server
        for bearer, cccds in list(server.subscribers.items()):
            cccd = cccds.get(value_handle)
            handle = getattr(bearer, "handle", None)
            if not cccd or handle not in self._conns:
                continue
            if cccd[0] & 0x01:
                self._queue(self._notify, bearer, attr, data)
            elif cccd[0] & 0x02:
                self._queue(self._indicate, bearer, attr, data, handle, value_handle)

    # -- connection events -----------------------------------------------------------------

    def _on_connection(self, connection):
        if connection.role != hci.Role.PERIPHERAL:
            return
        record = _Conn(connection)
        self._conns[connection.handle] = record
        connection.on("disconnection", lambda _reason: self._on_disconnection(record))
        connection.on("connection_att_mtu_update", lambda: self._on_mtu(record))
        connection.on("connection_encryption_change", lambda: self._on_encryption(record))
        connection.on("pairing_start", lambda: self._on_pairing_start(record))
        connection.on("pairing", lambda pairing_keys: self._on_paired(record, pairing_keys))
        connection.on("pairing_failure", lambda _reason: self._on_pairing_failed(record))
        self._irq_call(_IRQ_CENTRAL_CONNECT, (record.handle, record.addr_type, record.addr))

    def _on_disconnection(self, record):
        if self._conns.get(record.handle) is record:
            del self._conns[record.handle]
            self._irq_call(_IRQ_CENTRAL_DISCONNECT, (record.handle, record.addr_type, record.addr))

    def _on_mtu(self, record):
        self._irq_call(_IRQ_MTU_EXCHANGED, (record.handle, record.connection.att_mtu))

    def _encryption_update(self, record):
        # ints, as modbluetooth.c passes them (mp_int_t args[])
        self._irq_call(
            _IRQ_ENCRYPTION_UPDATE,
            (
                record.handle,
                int(record.encrypted),
                int(record.authenticated),
                int(record.bonded),
                record.key_size if record.encrypted else 0,
            ),
        )

    def _pairing_session(self, record):
        session = self.world.device.smp_manager.sessions.get(record.handle)
        return session if session is not None and not session.completed else None

    def _on_encryption(self, record):
        connection = record.connection
        if not connection.encryption:
            record.encrypted = False
            self._encryption_update(record)
            return
        if self._pairing_session(record) is not None:
            # NimBLE reports a pairing when it is complete (keys exchanged), once
            return
        if record.pairing_reported:
            return  # Bumble's encryption change after the pairing it already reported
        stored = record.stored_keys
        record.encrypted = True
        record.key_size = connection.encryption_key_size or 16
        record.bonded = stored is not None  # re-encrypted with a stored key
        record.authenticated = bool(stored and stored.ltk and stored.ltk.authenticated)
        self._encryption_update(record)

    def _on_pairing_start(self, record):
        # A central that pairs again while we hold its bond lost its keys: NimBLE finds its
        # peer secret, deletes the old bond (MicroPython's BLE_GAP_EVENT_REPEAT_PAIRING:
        # ble_store_util_delete_peer) and lets it pair again (RETRY).
        key = secret_key(record.connection.peer_address)
        if self._secret(SEC_TYPE_PEER, key) is not None:
            self._delete_bond(key)
        record.pairing_reported = False

    def _paired(self, record, pairing_keys, bonded):
        # The one encryption update of a pairing, with bonded the negotiated flag (NimBLE's
        # sec_state.bonded), raised before its keys are stored (ble_sm_process_result calls
        # ble_gap_enc_event, then ble_sm_persist_keys).
        connection = record.connection
        ltk = pairing_keys.ltk or pairing_keys.ltk_peripheral
        record.encrypted = bool(connection.encryption)
        record.key_size = connection.encryption_key_size or 16
        record.authenticated = bool(ltk and ltk.authenticated)
        record.bonded = bonded
        record.stored_keys = None
        record.pairing_reported = True
        self._encryption_update(record)

    def _store_bond(self, name, pairing_keys):
        # Called by bumble for every completed pairing, before its "pairing" event: a bonding
        # one is reported (bonded=1) and then stored as NimBLE stores it, our secret then the
        # peer's, whatever the store answers (a refusal does not undo bonded). Bumble calls it
        # even when bonding was not agreed; NimBLE stores nothing then.
        device = self.world.device
        for session in device.smp_manager.sessions.values():
            peer = session.peer_bd_addr or session.connection.peer_address
            if str(peer) != name:
                continue
            if not session.bonding:
                return
            record = self._conns.get(session.connection.handle)
            if record is not None:
                self._paired(record, pairing_keys, bonded=True)
            key = secret_key(hci.Address(name))
            self._irq_call(
                _IRQ_SET_SECRET, (SEC_TYPE_OUR, key, _encode_keys(name, pairing_keys, _OUR_KEYS))
            )
            kept = self._irq_call(
                _IRQ_SET_SECRET,
                (SEC_TYPE_PEER, key, _encode_keys(name, pairing_keys, _PEER_KEYS)),
            )
            if kept:
                self._resolving[name] = pairing_keys  # NimBLE adds the peer's IRK at once
            return

    def _on_paired(self, record, pairing_keys):
        if record.pairing_reported:
            return  # reported by _store_bond, before the secrets
        self._paired(record, pairing_keys, bonded=False)

    def _secret(self, sec_type, key):
        # GET_SECRET for one peer: the decoded keys dict, or None
        value = self._irq_call(_IRQ_GET_SECRET, (sec_type, 0, key))
        return _decode_keys(value)[1] if value is not None else None

    def _delete_bond(self, key):
        # NimBLE's ble_store_util_delete_peer: each of our and the peer's secrets is deleted
        # until the store says there is none left (ble_store_util_delete_all)
        for sec_type in (SEC_TYPE_OUR, SEC_TYPE_PEER):
            for _ in range(8):
                if not self._irq_call(_IRQ_SET_SECRET, (sec_type, key, None)):
                    break
        for name in list(self._resolving):
            if secret_key(hci.Address(name)) == key:
                del self._resolving[name]

    def _load_irk(self):
        # MicroPython's load_irk() at every active(True) (else NimBLE would use its fixed
        # default IRK): the device's own IRK from the store, or a new one saved there; then
        # ble_hs_misc_restore_irks walks the peer secrets, GET_SECRET(2, i, None) until none,
        # into the resolving list. A store that refuses the new IRK leaves NimBLE's default
        # and no walk.
        irk = self._irq_call(_IRQ_GET_SECRET, (SEC_TYPE_OUR_IRK, 0, OUR_IRK_KEY))
        if irk is None or len(irk) != 16:
            irk = os.urandom(16)
            if not self._irq_call(_IRQ_SET_SECRET, (SEC_TYPE_OUR_IRK, OUR_IRK_KEY, irk)):
                return
        self.world.device.irk = bytes(irk)  # the IRK this side distributes when bonding
        self._resolving = {}
        for index in range(256):
            value = self._irq_call(_IRQ_GET_SECRET, (SEC_TYPE_PEER, index, None))
            name, found = _decode_keys(value) if value is not None else (None, None)
            if name is None:
                break  # none left (or a value NimBLE would not take: the walk ends there)
            self._resolving[name] = keys.PairingKeys.from_dict(found)

    def _on_pairing_failed(self, record):
        record.encrypted = bool(record.connection.encryption)
        self._encryption_update(record)


_radio = None


def radio():
    """The process-wide Radio (what bluetooth.BLE() returns)."""
    global _radio
    if _radio is None:
        _radio = Radio()
    return _radio


def world():
    """The current World (made on first use)."""
    return radio().world


async def start():
    """Power on the device side of the current world and return it."""
    return await radio().started()


def reset():
    """Tear everything down so a test or a simulated reboot starts clean.

    If aioble is loaded: its shutdown handlers run (characteristics, the capture queue and task,
    a pending advertise, aioble.security's secrets), and its IRQ handler list goes back to what
    a fresh boot has: the handlers aioble's modules register at import, without the
    application's. aioble.security is imported by aioble's first activation (ensure_active)
    and registers its handler then, after the application's bond store; so it is dropped from
    sys.modules here and the next activation imports it afresh, in that same order. Then the
    world closes: links, controllers, TCP servers; the radio's config returns to its defaults.
    """
    core = sys.modules.get("aioble.core")
    if core is not None:
        for handler in list(core._shutdown_handlers):
            try:
                handler()
            except Exception:
                traceback.print_exc()
        for handlers in (core._irq_handlers, core._shutdown_handlers):
            handlers[:] = [h for h in handlers if _aioble_own(h)]
        package = sys.modules.get("aioble")
        if sys.modules.pop("aioble.security", None) is not None and package is not None:
            package.__dict__.pop("security", None)
        device_mod = sys.modules.get("aioble.device")
        if device_mod is not None:
            device_mod.DeviceConnection._connected.clear()
    if _radio is not None:
        _radio.shutdown()
        _radio._config = dict(_DEFAULT_CONFIG)
        _radio.irq_errors.clear()


def _aioble_own(handler):
    module = getattr(handler, "__module__", "") or ""
    return module.startswith("aioble.") and module != "aioble.security"


async def make_central(link=None, name="phone", address=CENTRAL_ADDRESS):
    """A powered-on bumble Device on its own controller on `link` (default: the current world's
    link), ready to scan, connect, discover and pair like a phone."""
    w = world()
    link = link or w.link
    controller = Controller(name, link=link)
    device = Device(name=name, address=hci.Address(address))
    device.host = Host(controller, AsyncPipeSink(controller))
    await device.power_on()
    if link is w.link:
        w.centrals.append(device)
    return device


class HciTcpServer:
    """A Controller on the link whose HCI is a TCP server (bumble transport "tcp-server")."""

    def __init__(self, transport, controller, port):
        self.transport = transport
        self.controller = controller
        self.port = port

    @property
    def spec(self):
        """The transport string a client process opens."""
        return "tcp-client:127.0.0.1:%d" % self.port

    def close(self):
        server = getattr(self.transport, "server", None)
        if server is not None:
            server.close()
        sink = getattr(self.transport, "sink", None)
        peer = getattr(sink, "transport", None)
        if peer is not None:
            peer.close()


async def serve_hci_tcp(link=None, port=0, name="remote"):
    """Expose a new Controller on `link` as HCI over TCP on 127.0.0.1:`port` (0: any free
    port; read it back from .port). Another process attaches a bumble Device with transport
    "tcp-client:127.0.0.1:<port>"."""
    import socket

    from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

    w = world()
    link = link or w.link
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    transport = await open_tcp_server_transport_with_socket(sock)
    controller = Controller(
        name, host_source=transport.source, host_sink=transport.sink, link=link
    )
    server = HciTcpServer(transport, controller, sock.getsockname()[1])
    if link is w.link:
        w.servers.append(server)
    return server
