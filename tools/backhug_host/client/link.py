"""The GATT link the client talks through, and its two implementations.

`Link` is the whole surface BackHugClient uses: read, write with response, subscribe, the ATT
MTU, pair, disconnect and a disconnect callback. Characteristics are named by UUID string.
BumbleLink drives a Bumble `Device` acting as central (the simulator in process, or any HCI
transport such as `tcp-client:127.0.0.1:9000`); BleakLink drives the computer's own radio.
The scan helpers find BackHug devices by the control service UUID or the `BackHug-` name.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from firmware.ble import proto

NAME_PREFIX = "BackHug-"
_COMPANY_ID = 0xFFFF  # manufacturer data "FF FF <flags>" (docs/ble-protocol.md)
_ADV_PAIRING = 0x01
# ATT errors that mean "encrypt (pair) first": insufficient authentication, encryption key
# size, encryption.
_ATT_SECURITY_ERRORS = (0x05, 0x0C, 0x0F)


class LinkError(Exception):
    """The link failed: not connected, no such characteristic, an ATT error."""


class NotPaired(LinkError):
    """The device refused an unencrypted access: this central is not bonded to it."""

    def __init__(self, detail=""):
        super().__init__(
            "the device needs a paired (bonded) link%s: hold its button for 3 s to open the "
            "pairing window, then run `backhug pair`" % (" (%s)" % detail if detail else "")
        )


@dataclass
class Found:
    """A BackHug device seen while scanning."""

    address: object  # what connect() takes: a bumble hci.Address or a bleak BLEDevice/str
    name: str
    rssi: int
    pairing: bool  # the pairing window is open (manufacturer data flag)

    @property
    def address_text(self):
        return getattr(self.address, "address", None) or str(self.address)


class Link:
    """The interface BackHugClient uses. Values are bytes; characteristics are UUID strings."""

    # Called with no argument when the link drops (set by the client).
    on_disconnect = None

    @property
    def mtu(self) -> int:
        raise NotImplementedError

    @property
    def is_connected(self) -> bool:
        raise NotImplementedError

    async def read(self, uuid: str) -> bytes:
        raise NotImplementedError

    async def write(self, uuid: str, data: bytes) -> None:
        raise NotImplementedError

    async def subscribe(self, uuid: str, callback) -> None:
        raise NotImplementedError

    async def pair(self) -> None:
        raise NotImplementedError

    async def disconnect(self) -> None:
        raise NotImplementedError

    def _dropped(self):
        cb = self.on_disconnect
        if cb is not None:
            cb()


def _is_backhug(name, uuids):
    return proto.SERVICE_UUID in uuids or (name or "").startswith(NAME_PREFIX)


# -- Bumble ------------------------------------------------------------------------------------


def default_keystore_path():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "backhug", "bumble-keys.json")


class BumbleLink(Link):
    """A link from a powered-on Bumble Device (the central) to one BackHug.

    keystore_path: a JSON file for the bonds, so a later run is still bonded; None keeps them
    in memory (tests). The device's own key store is replaced, so pair() and encrypt() use it.
    """

    def __init__(self, device, *, keystore_path=None):
        from bumble import pairing
        from bumble.keys import JsonKeyStore, MemoryKeyStore

        self.device = device
        self.connection = None
        self.peer = None
        self._chars = {}
        self._transport = None
        if keystore_path:
            os.makedirs(os.path.dirname(os.path.abspath(keystore_path)), exist_ok=True)
            device.keystore = JsonKeyStore(filename=keystore_path)
        elif device.keystore is None:
            device.keystore = MemoryKeyStore()
        # LE Secure Connections, Just Works (the device has no display), bonding.
        device.pairing_config_factory = lambda _connection: pairing.PairingConfig(
            sc=True,
            mitm=False,
            bonding=True,
            delegate=pairing.PairingDelegate(
                io_capability=pairing.PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
            ),
        )

    @classmethod
    async def open_hci(cls, transport_name, *, own_address="C0:BA:C4:00:00:01", **kw):
        """Open an HCI transport, power on a central on it and return an unconnected link.

        own_address is a fixed static random address: the device keys its bond by it, so it
        must be the same on every run for a stored bond to be recognised.
        """
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.transport import open_transport

        try:
            transport = await open_transport(transport_name)
        except Exception as e:
            raise LinkError("cannot open HCI transport %s: %s" % (transport_name, e)) from e
        try:
            device = Device.with_hci(
                "backhug-client", Address(own_address), transport.source, transport.sink
            )
            await device.power_on()
        except BaseException:
            await transport.close()
            raise
        link = cls(device, **kw)
        link._transport = transport
        return link

    @property
    def mtu(self):
        return self.connection.att_mtu if self.connection else proto.ATT_DEFAULT_MTU

    @property
    def is_connected(self):
        return self.connection is not None

    async def connect(self, address, *, mtu=proto.ATT_MAX_MTU, timeout_s=10.0, encrypt=True):
        """Connect, exchange the MTU (None: stay at 23), encrypt with a stored bond if there
        is one, and discover the services. Returns True when the link is encrypted."""
        from bumble.device import Peer

        try:
            self.connection = await self.device.connect(address, timeout=timeout_s)
            self.connection.on(self.connection.EVENT_DISCONNECTION, self._on_disconnection)
            self.peer = Peer(self.connection)
            if mtu:
                await self.peer.request_mtu(mtu)
            encrypted = False
            if encrypt and await self.is_bonded():
                await self.encrypt()
                encrypted = True
            await self._discover()
        except LinkError:
            raise
        except Exception as e:
            raise LinkError("cannot connect to %s: %s" % (address, e)) from e
        return encrypted

    async def is_bonded(self):
        keys = await self.device.keystore.get(str(self.connection.peer_address))
        return keys is not None and (keys.ltk is not None or keys.ltk_central is not None)

    async def encrypt(self):
        try:
            await self.connection.encrypt()
        except Exception as e:
            # e.g. the device forgot its bonds (very long press): pair again
            raise NotPaired("encryption with the stored bond failed: %s" % e) from e

    async def pair(self):
        try:
            await self.connection.pair()
        except Exception as e:
            raise LinkError("pairing failed: %s" % e) from e

    async def _discover(self):
        await self.peer.discover_services()
        for service in self.peer.services:
            await service.discover_characteristics()
        self._chars = {}
        for service in self.peer.services:
            for c in service.characteristics:
                self._chars.setdefault(str(c.uuid).lower(), c)

    def _char(self, uuid):
        if self.connection is None:
            raise LinkError("not connected")
        try:
            return self._chars[uuid.lower()]
        except KeyError:
            raise LinkError("the device has no characteristic %s" % uuid) from None

    async def _att(self, coro):
        from bumble.att import ATT_Error

        try:
            return await coro
        except ATT_Error as e:
            if e.error_code in _ATT_SECURITY_ERRORS:
                raise NotPaired(e.error_name) from e
            raise LinkError("ATT error %s" % e) from e
        except asyncio.CancelledError:
            # bumble cancels an ATT request in flight when the link drops; our own task being
            # cancelled must stay a cancellation
            task = asyncio.current_task()
            if self.connection is None and task is not None and not task.cancelling():
                raise LinkError("the link dropped") from None
            raise
        except Exception as e:  # the stack's own errors: timeouts, a link that went away
            if self.connection is None:
                raise LinkError("the link dropped") from e
            raise LinkError("%s: %s" % (type(e).__name__, e)) from e

    async def read(self, uuid):
        return bytes(await self._att(self.peer.read_value(self._char(uuid))))

    async def write(self, uuid, data):
        await self._att(self.peer.write_value(self._char(uuid), bytes(data), with_response=True))

    async def subscribe(self, uuid, callback):
        await self._att(self.peer.subscribe(self._char(uuid), lambda v: callback(bytes(v))))

    async def disconnect(self):
        if self.connection is not None:
            try:
                await self.connection.disconnect()
            except Exception:  # already gone: nothing left to close
                pass
        await self.close()

    async def close(self):
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()

    def _on_disconnection(self, _reason):
        self.connection = None
        self.peer = None
        self._dropped()


async def scan_bumble(device, timeout_s=5.0, first=False):
    """Scan with a powered-on Bumble device; list the BackHugs seen (first: stop at one)."""
    from bumble.core import AdvertisingData

    found = {}
    done = asyncio.Event()

    def on_advertisement(adv):
        data = adv.data
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.SHORTENED_LOCAL_NAME
        )
        uuids = []
        for t in (
            AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        ):
            uuids += [str(u).lower() for u in data.get(t) or ()]
        if not _is_backhug(name, uuids):
            return
        pairing = False
        for company, payload in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA):
            if company == _COMPANY_ID and payload:
                pairing = bool(payload[0] & _ADV_PAIRING)
        found[str(adv.address)] = Found(adv.address, name or "", adv.rssi, pairing)
        if first:
            done.set()

    device.on(device.EVENT_ADVERTISEMENT, on_advertisement)
    try:
        await device.start_scanning(filter_duplicates=True)
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except TimeoutError:
            pass
        await device.stop_scanning()
    finally:
        device.remove_listener(device.EVENT_ADVERTISEMENT, on_advertisement)
    return list(found.values())


# -- bleak -------------------------------------------------------------------------------------


class BleakLink(Link):
    """A link over bleak (the computer's Bluetooth adapter). Bonds live in the OS."""

    def __init__(self, address_or_device, *, timeout_s=20.0):
        from bleak import BleakClient

        self.client = BleakClient(
            address_or_device,
            disconnected_callback=lambda _client: self._dropped(),
            services=[proto.SERVICE_UUID, "180a"],
            timeout=timeout_s,
        )

    async def connect(self):
        from bleak.exc import BleakError

        try:
            await self.client.connect()
        except (BleakError, TimeoutError) as e:
            raise LinkError("cannot connect to %s: %s" % (self.client.address, e)) from e

    @property
    def mtu(self):
        # BlueZ reports 23 whatever was negotiated; the protocol works at 23, just slower.
        return self.client.mtu_size

    @property
    def is_connected(self):
        return self.client.is_connected

    async def _call(self, coro):
        from bleak.exc import BleakError, BleakGATTProtocolError

        try:
            return await coro
        except BleakGATTProtocolError as e:
            if int(e.code) in _ATT_SECURITY_ERRORS:
                raise NotPaired(str(e)) from e
            raise LinkError(str(e)) from e
        except BleakError as e:
            raise LinkError(str(e)) from e

    async def read(self, uuid):
        return bytes(await self._call(self.client.read_gatt_char(uuid)))

    async def write(self, uuid, data):
        await self._call(self.client.write_gatt_char(uuid, bytes(data), response=True))

    async def subscribe(self, uuid, callback):
        await self._call(self.client.start_notify(uuid, lambda _char, v: callback(bytes(v))))

    async def pair(self):
        try:
            await self._call(self.client.pair())
        except NotImplementedError:
            # macOS pairs by itself on the first access that needs encryption
            await self.read(proto.PROTOCOL_UUID)

    async def disconnect(self):
        await self.client.disconnect()


async def scan_bleak(timeout_s=5.0):
    """Scan with the computer's adapter; list the BackHugs seen."""
    from bleak import BleakScanner

    seen = await BleakScanner.discover(
        timeout_s, return_adv=True, service_uuids=[proto.SERVICE_UUID]
    )
    found = []
    for device, adv in seen.values():
        uuids = [u.lower() for u in adv.service_uuids]
        name = adv.local_name or device.name or ""
        if not _is_backhug(name, uuids):
            continue
        flags = adv.manufacturer_data.get(_COMPANY_ID, b"")
        found.append(Found(device, name, adv.rssi, bool(flags and flags[0] & _ADV_PAIRING)))
    return found
