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
        self.log = []  # every IRQ this handler saw, in order: (event, data)

    def irq(self, event, data):
        self.log.append((event, tuple(data)))
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

    def bond_sets(self):
        # SET_SECRETs of a phone's bond (not the stack's own IRK, sec_type 10)
        return [s for s in self.sets if s[0] != 10]


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
    key = b"\x01" + bytes(Address(blestack.CENTRAL_ADDRESS))  # type + LSB-first address
    # As NimBLE: one encryption update for the pairing, with ints, before the bond's two
    # secrets, ours (1) then the phone's (2), under the same key
    log = [
        (e, d[:2]) if e == _IRQ_SET_SECRET else (e, d)
        for e, d in store.log
        if e == _IRQ_ENCRYPTION_UPDATE or (e == _IRQ_SET_SECRET and d[0] != 10)
    ]
    handle = log[0][1][0]
    assert log[:3] == [
        (_IRQ_ENCRYPTION_UPDATE, (handle, 1, 0, 1, 16)),
        (_IRQ_SET_SECRET, (1, key)),
        (_IRQ_SET_SECRET, (2, key)),
    ]
    assert all(type(v) is int for v in log[0][1])
    assert [s[:2] for s in store.bond_sets()] == [(1, key), (2, key)]
    assert (1, 0, key) in store.gets  # the reconnect's LTK request read our secret
    assert (2, 0, key) in store.gets  # the refused write looked for the phone's secret
    assert [u[1:4] for u in store.updates()] == [(1, 0, 1), (1, 0, 1)]  # pairing, reconnect


def test_the_stack_keeps_its_own_irk_and_walks_the_bonds_at_every_activation(store):
    async def main():
        Gatt()
        _, connection, _, device_conn = await connect()
        await connection.pair()
        await asyncio.sleep(0.05)

    hostrt.run(main())
    irk_sets = [s for s in store.sets if s[0] == 10]
    assert len(irk_sets) == 1 and irk_sets[0][1] == b"irk" and len(irk_sets[0][2]) == 16
    assert store.log[0] == (_IRQ_GET_SECRET, (10, 0, b"irk"))  # first thing at active(True)
    # a reboot: the stored IRK is found (not made again), then the phones' secrets are walked
    # by index until there is none
    blestack.reset()
    aioble.core.register_irq_handler(store.irq, None)
    store.log.clear()
    hostrt.run(main())
    secrets = [(e, d) for e, d in store.log if e in (_IRQ_GET_SECRET, _IRQ_SET_SECRET)]
    assert secrets[:3] == [
        (_IRQ_GET_SECRET, (10, 0, b"irk")),
        (_IRQ_GET_SECRET, (2, 0, None)),
        (_IRQ_GET_SECRET, (2, 1, None)),
    ]
    assert len([s for s in store.sets if s[0] == 10]) == 1


def test_a_store_refusing_the_bond_does_not_undo_bonded(store):
    # bonded is what the pairing negotiated (NimBLE's sec_state.bonded), reported before the
    # secrets are offered; a store that refuses them changes nothing on this link
    store.keep = False

    async def main():
        Gatt()
        _, connection, _, device_conn = await connect()
        await connection.pair()
        await asyncio.sleep(0.05)
        return device_conn.encrypted, device_conn.bonded

    assert hostrt.run(main()) == (True, True)
    assert [s[0] for s in store.bond_sets()] == [1, 2]
    # the IRK was refused too: NimBLE keeps its default one and does not walk the store
    assert not [g for g in store.gets if g[0] == 2 and g[2] is None]


def test_pairing_without_bonding_encrypts_but_stores_nothing(store):
    async def main():
        aioble.config(bond=False)
        Gatt()
        _, connection, _, device_conn = await connect()
        await connection.pair()
        await asyncio.sleep(0.05)
        return device_conn.encrypted, device_conn.bonded, device_conn.key_size

    assert hostrt.run(main()) == (True, False, 16)
    assert store.bond_sets() == []
    assert [u[1:] for u in store.updates()] == [(1, 0, 0, 16)]


def test_config_reads_back_what_micropython_nimble_reads_back(store):
    async def main():
        assert aioble.config("mtu") == 256  # NimBLE's preferred MTU before any config(mtu=)
        aioble.config(gap_name="BackHug-0001", mtu=247, bond=True, io=3)
        assert aioble.config("gap_name") == b"BackHug-0001"
        assert aioble.config("mtu") == 247
        assert aioble.config("mac")[0] in (0, 1)
        for name in ("bond", "le_secure", "mitm", "io", "addr_mode", "rxbuf", "interval"):
            with pytest.raises(ValueError):
                aioble.config(name)
        for bad in ({"rxbuf": 512}, {"interval": 100}, {"colour": 1}):
            with pytest.raises(ValueError):
                aioble.config(**bad)
        with pytest.raises(OSError):
            aioble.config(mtu=20)
        with pytest.raises(OSError):
            aioble.config(gap_name="x" * 32)
        Gatt()
        _, _, peer, _ = await connect()
        name = peer.get_characteristics_by_uuid(gatt.GATT_DEVICE_NAME_CHARACTERISTIC)[0]
        return bytes(await name.read_value())

    assert hostrt.run(main()) == b"BackHug-0001"


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
    assert [s[0] for s in store.bond_sets() if s[2] is not None] == [1, 2]
