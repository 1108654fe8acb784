"""The phone's view, end to end through a real BLE host stack (Bumble, virtual controllers): the
reference client pairs with the simulated device in the pairing window, runs a session, changes
strength mid-session, survives a disconnect, stops; strangers get nothing but the Device
Information Service."""

import asyncio

import pytest
from bumble import att
from bumble.core import UUID
from bumble.device import Peer

from backhug_host import blestack, hostrt
from backhug_host.blesim import BleSim
from backhug_host.client.core import BackHugClient, CommandRefused
from backhug_host.client.link import BumbleLink, LinkError, NotPaired
from firmware import runtime
from firmware import session as ses
from firmware.ble import proto

TICK_MS = 10


def sim_run(coro):
    return hostrt.run(coro, virtual=True)


def _now_ms():
    return asyncio.get_running_loop().time() * 1000


async def _until(predicate, timeout_s, step_s=0.05):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met within %.1f s" % timeout_s)
        await asyncio.sleep(step_s)


def test_session_from_the_phone_with_strength_change_and_reconnect():
    async def main():
        sim = await BleSim(person={"stiff": ("upper_left",)}).start()
        try:
            phone = await sim.central()
            client = await sim.phone(phone)
            assert sim.service.bonds.count() == 1
            assert client.latest_state["state"] == "idle" and client.latest_state["pairing"]
            assert tuple(sim.device.hw.led.rgb) == (0, 0, 200)  # the window shows on the LED

            await client.start(10, 0)
            st = await client.wait_state(lambda s: s["state"] == "treating", timeout_s=200)
            assert st["person"] and st["total_s"] == 600

            # strength mid-session: the device applies it at the next control tick and the next
            # telemetry notification carries it
            packets = []
            client.on_packet = lambda p: packets.append((_now_ms(), p))
            level_seen = []
            svc = sim.service
            ramp = sim.device.session.ramp
            before = ramp.level
            t0 = _now_ms()
            await client.set_strength(7)
            await _until(lambda: ramp.level == 7, 1.0, step_s=0.001)
            level_seen.append(_now_ms())
            await _until(lambda: any(p["level"] == 7 for _, p in packets), 1.0, step_s=0.005)
            t_tele = next(t for t, p in packets if p["level"] == 7)
            assert before != 7
            # answer (<= one 50 ms notification slot), then the telemetry in the next slot
            assert t_tele - t0 <= 2 * 50 + TICK_MS, (t0, level_seen, t_tele)
            assert all(p["level"] == 7 for t, p in packets if t > t_tele)
            assert client.settings["strength"] == 7
            sent_before = svc.sent

            # the phone walks out of range: the session goes on
            elapsed = sim.device.session.elapsed_ms
            await client.link.disconnect()
            await asyncio.sleep(5)
            assert sim.device.session.state == ses.TREATING
            assert sim.device.session.elapsed_ms >= elapsed + 4_900
            # ... and comes back: bonded, so it encrypts without the window, and resyncs
            link = BumbleLink(phone)
            assert await link.connect(blestack.world().address) is True
            client = BackHugClient(link)
            await client.connect()
            assert client.latest_state["state"] == "treating"
            assert client.latest_state["strength"] == 7 and client.settings["strength"] == 7
            assert client.latest_state["elapsed_s"] >= (elapsed + 5_000) // 1000
            frame = await client.next_frame(timeout_s=3)
            assert len(frame["forces_cn"]) == 26
            assert svc.sent > sent_before

            await client.stop()
            st = await client.wait_state(lambda s: s["state"] == "idle", timeout_s=30)
            assert st["end"] == "stopped"
            report = await client.tension_report()
            assert report["end"] == "stopped" and report["strength"] == 7
            await _until(sim.device.hw.legrest.at_bottom, 15.0)
        finally:
            await sim.close()

    sim_run(main())


def test_a_phone_dropping_while_notifications_flow_leaves_the_ble_service_running():
    # Once a phone is gone, aioble's connection has no handle (None) while the service's link
    # check (every 100 ms) has not noticed yet; MicroPython's gatts_notify refuses None with
    # TypeError, as the host radio does. Dropping the link at every phase of the 50 ms
    # notification slot, with telemetry flowing, must never end the BLE task (which would stop
    # the watchdog feeding and reset the device); the phone reconnects each time.
    async def main():
        sim = await BleSim().start()
        try:
            phone = await sim.central()
            client = await sim.phone(phone)
            await client.start(10, 0)
            await client.wait_state(lambda s: s["state"] == "treating", timeout_s=200)
            svc = sim.service
            for delay_ms in range(0, 100, 10):
                sent = asyncio.get_running_loop().create_future()
                client.on_packet = lambda _p, sent=sent: sent.done() or sent.set_result(None)
                await asyncio.wait_for(sent, 3)
                await asyncio.sleep(delay_ms / 1000)
                await client.link.disconnect()
                await asyncio.sleep(0.5)
                assert sim.device.crashed is None, delay_ms
                assert sim.device.supervisor.fault_code == 0, delay_ms
                link = BumbleLink(phone)
                assert await link.connect(blestack.world().address) is True
                client = BackHugClient(link)
                await client.connect()
                assert client.latest_state["state"] == "treating"
            assert sim.service is svc and sim.run.resets == []
            frame = await client.next_frame(timeout_s=3)
            assert len(frame["forces_cn"]) == 26
            await client.set_strength(6)
            assert sim.device.session.strength == 6
        finally:
            await sim.close()

    sim_run(main())


def test_strangers_read_only_device_information_and_bond_only_in_the_window():
    async def main():
        sim = await BleSim().start()
        try:
            # an unpaired central: the Device Information Service reads, everything else fails
            phone = await sim.central()
            link = BumbleLink(phone)
            await link.connect(blestack.world().address)
            peer = Peer(link.connection)
            dis = [s for s in peer.services if s.uuid == UUID.from_16_bits(proto.DIS_UUID)]
            assert dis, "no Device Information Service"
            serial = UUID.from_16_bits(proto.DIS_SERIAL)
            serial = [c for c in dis[0].characteristics if c.uuid == serial][0]
            assert bytes(await peer.read_value(serial)) == b"BH3-SIM-0001"
            strength_before = sim.device.session.strength
            for uuid, data in (
                (proto.STRENGTH_UUID, b"\x09"),
                (proto.CONTROL_UUID, proto.pack_command(proto.OP_START, 1, 20, 0)),
                (proto.PROGRAMME_UUID, proto.pack_up_begin(10, 0)),
            ):
                with pytest.raises(NotPaired) as err:
                    await link.write(uuid, data)
                cause = err.value.__cause__
                assert isinstance(cause, att.ATT_Error)
                assert cause.error_code in (
                    att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR,
                    att.ATT_INSUFFICIENT_ENCRYPTION_ERROR,
                )
            for uuid in (proto.STATE_UUID, proto.TENSION_UUID, proto.PROTOCOL_UUID):
                with pytest.raises(NotPaired):
                    await link.read(uuid)
            await asyncio.sleep(0.5)
            assert sim.device.session.state == ses.IDLE
            assert sim.device.session.strength == strength_before

            # pairing outside the window: the link is encrypted but not bonded, and dropped
            await link.pair()
            await _until(lambda: not link.is_connected, 1.0)
            assert sim.service.bonds.count() == 0
            assert sim.service.disconnects == 1
            assert sim.device.session.state == ses.IDLE

            # in the window the same phone bonds, and can then drive the device
            client = await sim.phone(phone)
            assert sim.service.bonds.count() == 1
            with pytest.raises(LinkError, match="READ_NOT_PERMITTED"):
                await client.link.read(proto.CONTROL_UUID)  # write/notify only
            await client.set_strength(4)
            assert sim.device.session.strength == 4
        finally:
            await sim.close()

    sim_run(main())


def test_very_long_press_forgets_every_phone():
    async def main():
        sim = await BleSim().start()
        try:
            phone = await sim.central()
            client = await sim.phone(phone)
            assert sim.service.bonds.count() == 1
            sim.run.sim.press_button(hold_ms=10_500)
            await _until(lambda: not client.link.is_connected, 12.0)
            assert sim.service.bonds.count() == 0
            # its stored keys no longer open the link
            await asyncio.sleep(61)  # the window the long press opened has closed
            link = BumbleLink(phone)
            with pytest.raises(NotPaired):
                await link.connect(blestack.world().address)
        finally:
            await sim.close()

    sim_run(main())


def test_a_bond_is_two_secrets_and_the_device_irk_outlives_a_reboot():
    # NimBLE's order: the stack asks for its own IRK when it starts (and saves one the first
    # time), reports a pairing (bonded) before storing the bond as two secrets, ours and the
    # phone's; the store keeps the IRK outside the pairing window and across reboots.
    async def main():
        sim = await BleSim().start()
        try:
            phone = await sim.central()
            await sim.phone(phone)
            b = sim.service.bonds
            irk = b.get_secret(10, 0, b"irk")
            assert irk is not None and len(irk) == 16
            key = blestack.secret_key(phone.random_address)
            assert b.count() == 1
            assert b.get_secret(1, 0, key) is not None and b.get_secret(2, 0, key) is not None
            await asyncio.sleep(0.2)  # housekeeping writes the table
            sim.run.reset("test")
            await _until(lambda: sim.run.boots == 2 and sim.service.bonds is not b, 5)
            await asyncio.sleep(1)
            again = sim.service.bonds
            assert again.get_secret(10, 0, b"irk") == irk  # found, not made again
            assert again.count() == 1 and again.get_secret(1, 0, key) is not None
            assert blestack.world().device.irk == irk  # what the stack distributes
        finally:
            await sim.close()

    sim_run(main())


def test_after_a_watchdog_reset_the_new_boots_bond_store_keeps_the_bonds(tmp_path, monkeypatch):
    # The loop stands still for 1.5 s (the watchdog bites) while the device advertises: the
    # reboot's cancellation lands as aioble's advertising timeout fires and is turned into
    # TimeoutError. The old firmware must still end before the new one boots: if its
    # advertising loop ran on, it would wake the new boot's radio first, aioble.security would
    # come before the bond store and keep the next phone's keys itself (in ble_secrets.json).
    monkeypatch.chdir(tmp_path)

    async def main():
        sim = await BleSim().start()
        try:
            await asyncio.sleep(0.55)
            runtime._host.advance_ms(1_500)  # one step that takes 1.5 s
            await _until(lambda: sim.run.boots == 2, 5)
            await asyncio.sleep(1)
            assert [why for _, why in sim.run.resets if "watchdog" in why]
            await sim.phone()
            assert sim.service.bonds.count() == 1
        finally:
            await sim.close()

    sim_run(main())
    assert not (tmp_path / "ble_secrets.json").exists()


def test_programme_upload_at_default_mtu_then_history_and_fault_log():
    async def main():
        sim = await BleSim().start()
        try:
            # a stored session and a logged fault, as earlier sessions would have left them
            rec = {
                "duration_s": 1200,
                "area": "full",
                "flow": "wave",
                "strength": 5,
                "before": [1500, 1400, 1300, 1200, 1100, 1000],
                "after": [1300, 1300, 1200, 1100, 1000, 900],
            }
            sim.device.history.add(2, rec)
            sim.device.faultlog.note(8, "pca9685@0x41", 61_000)
            sim.device.faultlog.flush()

            client = await sim.phone(mtu=None)
            assert client.link.mtu == proto.ATT_DEFAULT_MTU
            with open("docs/examples/programme.json", "rb") as f:
                data = f.read()
            assert len(data) > 10 * proto.up_chunk_room(23)  # many chunks at this MTU
            answer = await client.upload_programme(data)
            assert answer["result"] == proto.OK
            assert sim.service.programme is not None

            # a broken programme is refused with the validator's reason; the good one stays
            bad = data.replace(b'"strength"', b'"strenght"', 1)
            with pytest.raises(CommandRefused) as err:
                await client.upload_programme(bad)
            # at MTU 23 the reason is cut to 16 bytes, enough to name the step
            assert err.value.result == proto.E_VALUE and err.value.reason.startswith("step 1")
            kept = sim.service.programme

            await client.start_programme(1)
            st = await client.wait_state(lambda s: s["state"] != "idle", timeout_s=5)
            assert st["programme"]
            assert sim.service.programme is kept
            await client.stop()

            history = await client.history(2)
            assert len(history) == 1 and history[0]["before"] == rec["before"]
            assert history[0]["duration_s"] == 1200
            assert await client.history(3) == []
            faults = await client.faults()
            assert faults[0]["code"] == 8 and faults[0]["detail"] == "pca9685@0x41"
        finally:
            await sim.close()

    sim_run(main())
