# micropython-lib's aioble on the host radio (backhug_host.blestack on Bumble): the firmware's
# GATT server on a bumble Device, a bumble phone on the same virtual link talking real BLE to it.
# Each test checks an aioble behaviour the firmware relies on (docs/ble-adapter.md).

import asyncio
import errno

import pytest
from bumble import att, gatt
from bumble.core import AdvertisingData
from bumble.device import Device, Peer
from bumble.hci import Address
from bumble.transport import open_transport

from backhug_host import blestack, hostrt

aioble = blestack.use_aioble()
import bluetooth  # noqa: E402

_IRQ_MTU_EXCHANGED = 21
_IRQ_ENCRYPTION_UPDATE = 28
_IRQ_GET_SECRET = 29
_IRQ_SET_SECRET = 30
_FLAG_WRITE_ENCRYPTED = 0x1000

SVC = bluetooth.UUID("b4c10000-0000-4000-8000-00805f9b34fb")
STATE = bluetooth.UUID("b4c10001-0000-4000-8000-00805f9b34fb")
CMD = bluetooth.UUID("b4c10002-0000-4000-8000-00805f9b34fb")
BULK = bluetooth.UUID("b4c10003-0000-4000-8000-00805f9b34fb")
SECURE = bluetooth.UUID("b4c10004-0000-4000-8000-00805f9b34fb")
PLAIN = bluetooth.UUID("b4c10005-0000-4000-8000-00805f9b34fb")


def buuid(uuid):
    return gatt.UUID.from_bytes(bytes(uuid))


class BondStore:
    """What the firmware does: keep bonds through the secret IRQs; also logs the IRQs seen."""

    def __init__(self, keep=True):
        self.keep = keep
        self.secrets = {}
        self.sets = []
        self.gets = []
        self.events = []

    def irq(self, event, data):
        if event in (_IRQ_MTU_EXCHANGED, _IRQ_ENCRYPTION_UPDATE):
            self.events.append((event, tuple(data)))
        elif event == _IRQ_SET_SECRET:
            sec_type, key, value = data
            self.sets.append((sec_type, bytes(key), value))
            if not self.keep:
                return False
            if value is None:
                return self.secrets.pop((sec_type, bytes(key)), None) is not None
            self.secrets[sec_type, bytes(key)] = bytes(value)
            return True
        elif event == _IRQ_GET_SECRET:
            sec_type, index, key = data
            self.gets.append((sec_type, index, None if key is None else bytes(key)))
            if key is None:
                matching = [v for (t, _), v in self.secrets.items() if t == sec_type]
                return matching[index] if index < len(matching) else None
            return self.secrets.get((sec_type, bytes(key)))
        return None

    def updates(self):
        return [data for event, data in self.events if event == _IRQ_ENCRYPTION_UPDATE]


@pytest.fixture
def store():
    blestack.reset()
    bonds = BondStore()
    # Registered before the stack starts (and aioble.security adds its handler), as the
    # firmware does; blestack.reset() removes it again.
    aioble.core.register_irq_handler(bonds.irq, None)
    yield bonds
    blestack.reset()


class Gatt:
    """The firmware side: one service with the kinds of characteristic the firmware uses."""

    def __init__(self, secure_flags=_FLAG_WRITE_ENCRYPTED):
        self.service = aioble.Service(SVC)
        self.state = aioble.Characteristic(
            self.service, STATE, read=True, notify=True, indicate=True, initial=b"idle"
        )
        self.cmd = aioble.Characteristic(self.service, CMD, write=True, capture=True)
        self.bulk = aioble.BufferedCharacteristic(
            self.service, BULK, read=True, write=True, capture=True, max_len=64
        )
        self.secure = aioble.Characteristic(self.service, SECURE, read=True, write=True)
        self.secure.flags |= secure_flags
        self.plain = aioble.Characteristic(self.service, PLAIN, read=True, write=True)
        aioble.register_services(self.service)


async def connect(central=None, **adv):
    """Advertise, connect a bumble central, discover: (central, connection, peer, aioble conn)."""
    adv_task = asyncio.create_task(aioble.advertise(50_000, **adv))
    central = central or await blestack.make_central()
    connection = await central.connect(blestack.world().address)
    device_conn = await adv_task
    peer = Peer(connection)
    await peer.discover_services()
    await peer.discover_characteristics()
    return central, connection, peer, device_conn


def proxy(peer, uuid):
    return peer.get_characteristics_by_uuid(buuid(uuid))[0]


def test_advertising_data_reaches_a_scanning_central(store):
    async def main():
        await blestack.start()
        central = await blestack.make_central()
        seen = {}

        def on_adv(advertisement):
            for ad_type, value in advertisement.data.ad_structures:
                seen[ad_type] = value

        central.on("advertisement", on_adv)
        await central.start_scanning(active=True)
        adv = asyncio.create_task(
            aioble.advertise(
                100_000,
                name="BackHug",
                services=[bluetooth.UUID(0x180A), SVC],
                manufacturer=(0xFFFF, b"\x01\x02"),
            )
        )
        await asyncio.sleep(1.0)
        adv.cancel()
        result = await adv
        return seen, result

    seen, result = hostrt.run(main())
    assert seen[AdvertisingData.COMPLETE_LOCAL_NAME] == b"BackHug"
    assert seen[AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS] == b"\x0a\x18"
    assert seen[AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS] == bytes(SVC)
    assert seen[AdvertisingData.MANUFACTURER_SPECIFIC_DATA] == b"\xff\xff\x01\x02"
    assert result is None  # a cancelled advertise() returns None, as aioble's


def test_advertise_timeout_raises_and_connect_reports_the_central(store):
    async def main():
        Gatt()
        with pytest.raises(asyncio.TimeoutError):
            await aioble.advertise(100_000, name="x", timeout_ms=500)
        _, connection, _, device_conn = await connect(name="x")
        return connection, device_conn

    connection, device_conn = hostrt.run(main())
    assert device_conn.device.addr_hex() == blestack.CENTRAL_ADDRESS.lower()
    assert device_conn.device.addr_type == aioble.ADDR_RANDOM
    assert device_conn.mtu is None  # until an MTU exchange


def test_read_write_capture_and_truncation(store):
    async def main():
        g = Gatt()
        _, connection, peer, device_conn = await connect()
        assert await proxy(peer, STATE).read_value() == b"idle"
        g.state.write(b"running")
        assert await proxy(peer, STATE).read_value() == b"running"
        # 30 bytes into a default (20-byte) characteristic: the write succeeds, 20 are kept.
        await proxy(peer, CMD).write_value(bytes(range(30)), with_response=True)
        conn, data = await g.cmd.written(timeout_ms=100)
        assert conn is device_conn and data == bytes(range(20))
        # A non-capture characteristic: written() gives the connection; read() the value.
        await proxy(peer, PLAIN).write_value(b"abc", with_response=True)
        assert await g.plain.written(timeout_ms=100) is device_conn
        assert g.plain.read() == b"abc"
        # max_len=64: a 100-byte (long) write keeps 64.
        await proxy(peer, BULK).write_value(bytes(100), with_response=True)
        _, data = await g.bulk.written(timeout_ms=100)
        assert len(data) == 64
        # A local write longer than the buffer grows it (mp_bluetooth_gatts_db_write).
        g.plain.write(b"L" * 40)
        await proxy(peer, PLAIN).write_value(b"M" * 35, with_response=True)
        return g.plain.read()

    assert hostrt.run(main()) == b"M" * 35


def test_capture_queue_holds_ten_and_drops_the_oldest(store):
    async def main():
        g = Gatt()
        _, _, peer, _ = await connect()
        cmd, bulk = proxy(peer, CMD), proxy(peer, BULK)
        # 12 writes nobody reads yet: the first is handed out at once (in flight), the next 11
        # go into the shared 10-entry queue, which drops the oldest (write 2).
        for i in range(1, 13):
            await (cmd if i % 2 else bulk).write_value(b"w%d" % i, with_response=True)
        received = []

        async def drain(char):
            while True:
                _, data = await char.written()
                received.append(data)

        tasks = [asyncio.create_task(drain(g.cmd)), asyncio.create_task(drain(g.bulk))]
        await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        return received

    assert hostrt.run(main()) == [b"w1"] + [b"w%d" % i for i in range(3, 13)]


def test_notify_and_send_update_reach_a_subscribed_central(store):
    async def main():
        g = Gatt()
        _, _, peer, device_conn = await connect()
        got = []
        await proxy(peer, STATE).subscribe(got.append)
        g.state.notify(device_conn, b"n1")
        g.state.write(b"n2", send_update=True)
        await asyncio.sleep(0.05)
        # A notification is cut to ATT_MTU - 3 (20 bytes at the default MTU).
        g.state.notify(device_conn, bytes(30))
        await asyncio.sleep(0.05)
        return got

    got = hostrt.run(main())
    assert got[:2] == [b"n1", b"n2"]
    assert got[2] == bytes(20)


def test_indicate_waits_for_the_confirmation(store):
    async def main():
        g = Gatt()
        _, _, peer, device_conn = await connect()
        got = []
        await proxy(peer, STATE).subscribe(got.append, prefer_notify=False)
        await g.state.indicate(device_conn, b"i1", timeout_ms=1000)
        return got

    assert hostrt.run(main()) == [b"i1"]


def test_mtu_exchange_sets_connection_mtu_and_raises_the_irq(store):
    async def main():
        aioble.config(mtu=185)
        g = Gatt()
        _, connection, peer, device_conn = await connect()
        mtu = await peer.request_mtu(247)
        await asyncio.sleep(0.01)
        # With the larger MTU a 100-byte notification is not cut.
        got = []
        await proxy(peer, STATE).subscribe(got.append)
        g.state.notify(device_conn, bytes(100))
        await asyncio.sleep(0.05)
        return mtu, device_conn, got

    mtu, device_conn, got = hostrt.run(main())
    assert mtu == 185 and device_conn.mtu == 185
    assert (_IRQ_MTU_EXCHANGED, (device_conn._conn_handle, 185)) in store.events
    assert got == [bytes(100)]


def test_device_initiated_mtu_exchange(store):
    async def main():
        Gatt()
        central = await blestack.make_central()
        central.gatt_server.max_mtu = 100
        _, _, _, device_conn = await connect(central)
        return await device_conn.exchange_mtu(150)

    assert hostrt.run(main()) == 100


def test_unencrypted_write_to_encrypted_characteristic_is_refused(store):
    async def main():
        g = Gatt()
        g.secure.write(b"before")
        _, _, peer, _ = await connect()
        with pytest.raises(att.ATT_Error) as refused:
            await proxy(peer, SECURE).write_value(b"evil", with_response=True)
        # Reads were not protected (only the write flag was set).
        assert await proxy(peer, SECURE).read_value() == b"before"
        with pytest.raises(asyncio.TimeoutError):
            await g.secure.written(timeout_ms=50)
        return refused.value.error_code, g.secure.read()

    code, value = hostrt.run(main())
    # No bond with this central: NimBLE (and the adapter) answer Insufficient Authentication,
    # which makes phones start pairing.
    assert code == att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR
    assert value == b"before"


def test_bonding_stores_a_secret_and_a_reconnect_finds_it(store):
    async def main():
        g = Gatt()
        central, connection, peer, device_conn = await connect()
        await connection.pair()
        await asyncio.sleep(0.05)
        first = (device_conn.encrypted, device_conn.bonded, device_conn.authenticated)
        # Encrypted now: the protected write goes through.
        await proxy(peer, SECURE).write_value(b"ok", with_response=True)
        await g.secure.written(timeout_ms=100)
        await connection.disconnect()
        await device_conn.disconnected(timeout_ms=1000)
        # The phone comes back; before encrypting it is told "insufficient encryption" (it
        # has a bond), then it encrypts with the stored key.
        _, connection, peer, device_conn = await connect(central)
        with pytest.raises(att.ATT_Error) as refused:
            await proxy(peer, SECURE).write_value(b"x", with_response=True)
        await connection.encrypt()
        await asyncio.sleep(0.05)
        second = (device_conn.encrypted, device_conn.bonded, device_conn.authenticated)
        return first, second, refused.value.error_code

    first, second, code = hostrt.run(main())
    assert first == (True, True, False)  # Just Works: encrypted, bonded, not MITM-authenticated
    assert second == (True, True, False)
    assert code == att.ATT_INSUFFICIENT_ENCRYPTION_ERROR
    stored = [s for s in store.sets if s[2] is not None]
    assert len(stored) == 1
    sec_type, key, _ = stored[0]
    assert sec_type == 1
    assert key == b"\x01" + bytes(Address(blestack.CENTRAL_ADDRESS))  # type + LSB-first address
    assert (1, 0, key) in store.gets  # the reconnect looked the key up
    assert all(u[1] and u[3] for u in store.updates())  # every update: encrypted and bonded


def test_a_refused_set_secret_means_not_bonded(store):
    store.keep = False

    async def main():
        Gatt()
        _, connection, _, device_conn = await connect()
        await connection.pair()
        await asyncio.sleep(0.05)
        return device_conn.encrypted, device_conn.bonded

    assert hostrt.run(main()) == (True, False)
    assert len(store.sets) == 1


def test_pairing_without_bonding_encrypts_but_stores_nothing(store):
    async def main():
        aioble.config(bond=False)
        Gatt()
        _, connection, _, device_conn = await connect()
        await connection.pair()
        await asyncio.sleep(0.05)
        return device_conn.encrypted, device_conn.bonded, device_conn.key_size

    assert hostrt.run(main()) == (True, False, 16)
    assert store.sets == []


def test_central_disconnect_wakes_waits(store):
    async def main():
        g = Gatt()
        _, connection, _, device_conn = await connect()

        async def wait_write():
            with device_conn.timeout(None):
                await g.cmd.written()

        waiter = asyncio.create_task(wait_write())
        watcher = asyncio.create_task(device_conn.disconnected())
        await asyncio.sleep(0.01)
        await connection.disconnect()
        await watcher
        with pytest.raises(aioble.DeviceDisconnectedError):
            await waiter
        return device_conn.is_connected(), dict(aioble.device.DeviceConnection._connected)

    assert hostrt.run(main()) == (False, {})


def test_a_gone_connection_is_refused_as_micropython_refuses_it(store):
    # aioble marks a connection gone with _conn_handle = None and still passes it on; the
    # bluetooth module converts handles with mp_obj_get_int: TypeError, not OSError. An int
    # handle with no connection behind it is NimBLE's ENOTCONN.
    async def main():
        g = Gatt()
        _, connection, _, device_conn = await connect()
        await connection.disconnect()
        await device_conn.disconnected(timeout_ms=1000)
        assert device_conn._conn_handle is None
        with pytest.raises(TypeError):
            g.state.notify(device_conn, b"late")
        radio = bluetooth.BLE()
        with pytest.raises(TypeError):
            radio.gatts_indicate(None, g.state._value_handle, b"late")
        for call in (radio.gap_disconnect, radio.gap_pair, radio.gattc_exchange_mtu):
            with pytest.raises(TypeError):
                call(None)
        with pytest.raises(TypeError):
            radio.gatts_read(None)
        with pytest.raises(OSError) as gone:
            radio.gatts_notify(7, g.state._value_handle, b"x")
        return gone.value.args, radio.gap_disconnect(7)

    assert hostrt.run(main()) == ((errno.ENOTCONN,), False)  # MicroPython: OSError(ENOTCONN)


def test_device_disconnect_and_timeout(store):
    async def main():
        Gatt()
        central, connection, _, device_conn = await connect()
        gone = asyncio.get_running_loop().create_future()
        connection.on("disconnection", gone.set_result)
        with pytest.raises(asyncio.TimeoutError):
            with device_conn.timeout(200):
                await asyncio.sleep(1)
        async with device_conn:
            pass  # leaving the block disconnects
        await asyncio.wait_for(gone, 1)
        return device_conn.is_connected()

    assert hostrt.run(main()) is False


def test_long_read_uses_read_blob_and_asks_on_read_each_time(store):
    calls = []

    async def main():
        g = Gatt()
        g.bulk.on_read = lambda connection: calls.append(connection) or 0
        g.bulk.write(bytes(range(64)))
        _, _, peer, _ = await connect()
        value = await proxy(peer, BULK).read_value()
        g.bulk.on_read = lambda connection: 0x80  # an application error refuses the read
        with pytest.raises(att.ATT_Error) as refused:
            await proxy(peer, BULK).read_value()
        return value, refused.value.error_code

    value, code = hostrt.run(main())
    assert value == bytes(range(64))
    assert len(calls) == 3  # 22 + 22 + 20 bytes at MTU 23: one Read and two Read Blobs
    assert code == 0x80


def test_central_over_hci_tcp_in_real_time(store):
    async def main():
        g = Gatt()
        g.plain.write(b"over tcp")
        await blestack.start()
        server = await blestack.serve_hci_tcp(port=0)
        transport = await open_transport(server.spec)
        try:
            central = Device.with_hci(
                "tcp-phone", Address("C0:00:00:00:00:02"), transport.source, transport.sink
            )
            await central.power_on()
            adv = asyncio.create_task(aioble.advertise(20_000))
            connection = await central.connect(blestack.world().address)
            device_conn = await asyncio.wait_for(adv, 5)
            peer = Peer(connection)
            await peer.discover_services()
            await peer.discover_characteristics()
            value = await proxy(peer, PLAIN).read_value()
            await connection.disconnect()
            await device_conn.disconnected(timeout_ms=2000)
            return value
        finally:
            await transport.close()

    assert hostrt.run(main(), virtual=False) == b"over tcp"


def test_reset_is_a_clean_reboot(store):
    async def boot():
        Gatt()
        _, _, _, device_conn = await connect()
        return device_conn

    hostrt.run(boot())
    old_world = blestack.world()
    blestack.reset()
    # Like a fresh boot: only aioble's own handlers, no connections, a new world; the
    # application's handler registered now comes before aioble.security's again.
    assert store.irq not in aioble.core._irq_handlers
    assert aioble.device.DeviceConnection._connected == {}
    aioble.core.register_irq_handler(store.irq, None)
    hostrt.run(boot())
    handlers = aioble.core._irq_handlers
    assert blestack.world() is not old_world
    assert handlers.index(store.irq) < handlers.index(aioble.security._security_irq)


def test_device_initiated_pairing(store):
    async def main():
        Gatt()
        _, connection, _, device_conn = await connect()
        # A phone answers the device's Security Request by pairing.
        connection.on("security_request", lambda _auth: asyncio.ensure_future(connection.pair()))
        await device_conn.pair(timeout_ms=2000)
        return device_conn.encrypted, device_conn.bonded

    assert hostrt.run(main()) == (True, True)
    assert len([s for s in store.sets if s[2] is not None]) == 1
