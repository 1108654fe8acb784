"""Firmware updates as a maintainer runs them: the smpclient package (MCUmgr's Python client)
against the simulated device, over UDP and over BLE (smpclient's Bumble transport on the
simulator's HCI socket, from another process). Upload a newer signed bundle, mark it for test,
reset: the trial boots, confirms itself once the self-test passed and BLE is up; a trial that
hangs or resets before that goes back to the previous bundle. Strangers cannot reach the SMP
characteristic; a session and an upload exclude each other."""

import asyncio
import hashlib

import pytest
from bumble import att
from bumble.core import UUID
from bumble.device import Peer
from smpclient import SMPClient
from smpclient.exceptions import SMPUploadError
from smpclient.generics import error_v1, success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import EchoWrite, ResetWrite
from smpclient.transport.bumble import SMPBumbleTransport, borrowed_connection
from smpclient.transport.bumble.keystore import Custom
from smpclient.transport.bumble.pairing import NoInputNoOutput
from smpclient.transport.udp import SMPUDPTransport

from backhug_host import blesim, blestack, hostrt
from backhug_host.blesim import BleSim
from backhug_host.client.core import BackHugClient, CommandRefused
from backhug_host.client.link import BumbleLink
from firmware import version
from firmware.update import smp

blestack.use_aioble()
from firmware.update import smpble  # noqa: E402  (imports micropython-lib's aioble)

OLD = version.VERSION
NEW = "9.9.1"  # any version: the bundle's counter, not its version, guards against rollback
DEVICE = "F0:BA:C4:00:00:01"


@pytest.fixture(scope="module")
def new_bundle():
    return blesim.make_bundle(version=NEW, counter=blesim.FACTORY_COUNTER + 1).read_bytes()


def images(response):
    """What an MCUmgr client shows: (slot, version, active, confirmed, pending) per image."""
    assert success(response), response
    return [(i.slot, i.version, i.active, i.confirmed, i.pending) for i in response.images]


async def udp_client(sim):
    udp = await sim.serve_udp(0)
    client = SMPClient(SMPUDPTransport(), "127.0.0.1")
    await client._transport.connect("127.0.0.1", 2.0, port=udp.port)
    await client._initialize()  # what SMPClient.connect() does, on our port
    return client


async def until(predicate, timeout_s, step_s=0.05):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met within %.1f s" % timeout_s)
        await asyncio.sleep(step_s)


async def upload_and_test(client, bundle):
    offsets = [off async for off in client.upload(bundle)]
    assert offsets[-1] == len(bundle)
    r = await client.request(ImageStatesWrite(hash=hashlib.sha256(bundle).digest()))
    assert images(r)[1] == (1, NEW, False, False, True)  # pending: runs at the next boot
    assert success(await client.request(ResetWrite()))


def test_update_over_udp(new_bundle):
    async def main():
        sim = await BleSim().start()
        try:
            client = await udp_client(sim)
            assert (await client.request(EchoWrite(d="ping"))).r == "ping"
            before = images(await client.request(ImageStatesRead()))
            assert before == [(0, OLD, True, True, False)]
            await upload_and_test(client, new_bundle)

            await until(lambda: sim.run.boots == 2, 2.0, step_s=0.01)
            assert sim.running_version == NEW and sim.run.resets[-1][1] == "SMP reset"
            # the trial: the new bundle runs, not confirmed; the old one is what a failed trial
            # goes back to (reported confirmed, as MCUboot's image state does)
            trial = images(await client.request(ImageStatesRead()))
            assert trial == [(0, NEW, True, False, False), (1, OLD, False, True, False)]
            await until(lambda: sim.update.confirmed, 10.0)
            after = images(await client.request(ImageStatesRead()))
            assert after == [(0, NEW, True, True, False), (1, OLD, False, False, False)]
            assert sim.update.slots.state()["counter"] == blesim.FACTORY_COUNTER + 1
        finally:
            await sim.close()

    hostrt.run(main())


@pytest.mark.parametrize("failure", ["hang", "reset"])
def test_a_trial_that_does_not_confirm_goes_back(new_bundle, failure):
    async def main():
        sim = await BleSim().start()
        try:
            client = await udp_client(sim)
            sim.hang_trials = failure == "hang"
            await upload_and_test(client, new_bundle)
            await until(lambda: sim.run.boots == 2, 2.0, step_s=0.01)
            assert sim.running_version == NEW
            if failure == "reset":
                # reset again before the trial confirmed itself (BLE not up for long enough)
                assert success(await client.request(ResetWrite()))
            await until(lambda: sim.run.boots == 3, 30.0)
            if failure == "hang":
                assert "watchdog" in sim.run.resets[-1][1].lower()
            assert sim.running_version == OLD
            await asyncio.sleep(2)  # the old bundle was confirmed all along: nothing to do
            assert not sim.update.confirmed
            state = images(await client.request(ImageStatesRead()))
            assert state == [(0, OLD, True, True, False), (1, NEW, False, False, False)]
            assert sim.update.slots.state()["counter"] == blesim.FACTORY_COUNTER
        finally:
            await sim.close()

    hostrt.run(main())


def test_strangers_refused_and_session_and_upload_exclude_each_other(new_bundle):
    async def main():
        sim = await BleSim().start()
        try:
            # a central that never paired: the stack refuses its write, nothing reaches SMP
            stranger = await sim.central()
            conn = await stranger.connect(DEVICE)
            peer = Peer(conn)
            await peer.discover_services([UUID(smpble.SERVICE_UUID)])
            (svc,) = peer.get_services_by_uuid(UUID(smpble.SERVICE_UUID))
            await svc.discover_characteristics()
            (char,) = svc.get_characteristics_by_uuid(UUID(smpble.CHARACTERISTIC_UUID))
            echo = EchoWrite(d="hi").BYTES
            with pytest.raises(att.ATT_Error) as e:
                await char.write_value(echo, with_response=True)
            assert e.value.error_code == att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR
            await char.write_value(echo, with_response=False)  # a write command: dropped
            await asyncio.sleep(0.5)
            assert sim.update.server.requests == 0
            await conn.disconnect()

            # a bonded phone: smpclient on its BLE connection
            phone = await sim.phone()
            link: BumbleLink = phone.link
            async with borrowed_connection(SMPBumbleTransport(), link.connection) as t:
                client = SMPClient(t, DEVICE)
                await client._initialize()
                assert (await client.request(EchoWrite(d="ping"))).r == "ping"
                await phone.start(10, 0)
                with pytest.raises(SMPUploadError) as e:
                    async for _ in client.upload(new_bundle):
                        pass
                r = e.value.args[0]
                assert error_v1(r) and r.rc == smp.EBUSY and "session" in r.rsn
                r = await client.request(ResetWrite())
                assert error_v1(r) and r.rc == smp.EBUSY
                await phone.stop()
                await phone.wait_state(lambda s: s["state"] == "idle", timeout_s=120)
                uploading = client.upload(new_bundle)
                assert await uploading.__anext__() > 0  # the first chunk is in
                with pytest.raises(CommandRefused) as e:
                    await phone.start(10, 0)
                assert e.value.result_name == "busy"
                offsets = [off async for off in uploading]
                assert offsets[-1] == len(new_bundle)
                await phone.start(10, 0)  # the upload is over: sessions again
        finally:
            await sim.close()

    hostrt.run(main())


def test_a_phone_dropping_before_its_smp_answer_leaves_the_service_running():
    # The answer goes to a connection that is gone: aioble hands gatts_notify the handle None,
    # which MicroPython refuses with TypeError (as the host radio does); that must be a dropped
    # link for the SMP task, never a failure of the BLE service.
    async def main():
        sim = await BleSim().start()
        try:
            phone = await sim.phone()
            central = phone.link.device
            for _ in range(3):
                conn = phone.link.connection
                peer = Peer(conn)
                await peer.discover_services([UUID(smpble.SERVICE_UUID)])
                (svc,) = peer.get_services_by_uuid(UUID(smpble.SERVICE_UUID))
                await svc.discover_characteristics()
                (char,) = svc.get_characteristics_by_uuid(UUID(smpble.CHARACTERISTIC_UUID))
                await char.subscribe(lambda _value: None)
                served = sim.update.server.requests
                await char.write_value(ImageStatesRead().BYTES, with_response=False)
                await conn.disconnect()
                await until(lambda served=served: sim.update.server.requests > served, 2)
                await asyncio.sleep(0.5)
                assert sim.device.crashed is None
                link = BumbleLink(central)
                assert await link.connect(blestack.world().address) is True
                phone = BackHugClient(link)
                await phone.connect()
            async with borrowed_connection(SMPBumbleTransport(), phone.link.connection) as t:
                client = SMPClient(t, DEVICE)
                await client._initialize()
                assert (await client.request(EchoWrite(d="still here"))).r == "still here"
            assert sim.run.resets == []
        finally:
            await sim.close()

    hostrt.run(main())


def test_update_over_ble_from_another_process(served, tmp_path, new_bundle):
    # smpclient's own Bumble transport on the simulator's HCI socket, in real time: it pairs
    # and bonds in the pairing window, uploads, marks for test, resets; after the reboot it
    # connects again with its bond and sees the new bundle running and confirmed.
    keys = Custom(path=tmp_path / "bonds.json")

    def transport():
        return SMPBumbleTransport(
            hci=served, keystore=keys, pair_on_connect=NoInputNoOutput(), settle_s=0.3
        )

    async def main():
        client = SMPClient(transport(), DEVICE, timeout_s=5)
        await client.connect(10)
        assert client._transport.max_unencoded_size == 8 * 244  # 8 writes at MTU 247
        assert images(await client.request(ImageStatesRead())) == [(0, OLD, True, True, False)]
        await upload_and_test(client, new_bundle)
        await asyncio.sleep(1.0)  # the device resets; the link drops
        try:
            await asyncio.wait_for(client.disconnect(), 1.0)
        except asyncio.TimeoutError:
            pass  # bumble waits for a disconnection the dead link never confirms

        client = SMPClient(transport(), DEVICE, timeout_s=5)
        await client.connect(10)  # with the stored bond: no pairing window needed now
        try:
            for _ in range(40):
                state = images(await client.request(ImageStatesRead()))
                if state[0][3]:
                    break
                assert state[0][:3] == (0, NEW, True)  # the trial, not yet confirmed
                await asyncio.sleep(0.25)
            assert state == [(0, NEW, True, True, False), (1, OLD, False, False, False)]
        finally:
            await asyncio.wait_for(client.disconnect(), 5.0)

    asyncio.run(main())
