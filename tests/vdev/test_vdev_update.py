# Tier 4: updates on the virtual device, as a maintainer runs them: smpclient (MCUmgr's Python
# client) over a bonded phone's BLE connection uploads a newer signed bundle into the unit's
# inactive slot, marks it for test and resets. The unit boots the trial from its flash through
# /boot.py; the trial confirms itself once its self-test passed and BLE is up; a trial whose
# control loop never ticks is reset by the watchdog and /boot.py goes back to the old bundle.

import asyncio
import hashlib
from pathlib import Path

from smpclient import SMPClient
from smpclient.generics import success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import ResetWrite
from smpclient.transport.bumble import SMPBumbleTransport, borrowed_connection

from backhug_host import hostrt
from backhug_host.vdev import sim as vsim
from backhug_host.vdev.sim import VdevSim
from firmware import version

ROOT = Path(__file__).resolve().parents[2]
OLD = version.VERSION
NEW = "9.9.1"
DEVICE = "F0:BA:C4:00:00:01"
# what the running firmware is, read inside it: its version and where its modules came from
RUNNING = "from firmware import app, version", "(version.VERSION, app.__file__)"


def images(response):
    assert success(response), response
    return [(i.slot, i.version, i.active, i.confirmed, i.pending) for i in response.images]


async def until(predicate, timeout_s, step_s=0.05):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met within %.1f s" % timeout_s)
        await asyncio.sleep(step_s)


def _new_bundle(extra=""):
    # the repository's firmware with its version.py saying NEW (so what runs afterwards tells
    # which bundle it came from), plus `extra` appended to controller.py
    replace = {"firmware/version.py": 'VERSION = "%s"\n' % NEW}
    if extra:
        replace["firmware/controller.py"] = (ROOT / "firmware/controller.py").read_text() + extra
    return vsim.make_bundle(version=NEW, counter=2, replace=replace).read_bytes()


async def _smp(phone):
    return borrowed_connection(SMPBumbleTransport(), phone.link.connection)


async def _upload_and_test(sim, bundle):
    phone = await sim.phone()
    async with await _smp(phone) as t:
        client = SMPClient(t, DEVICE)
        await client._initialize()
        assert images(await client.request(ImageStatesRead())) == [(0, OLD, True, True, False)]
        offsets = [off async for off in client.upload(bundle)]
        assert offsets[-1] == len(bundle)
        r = await client.request(ImageStatesWrite(hash=hashlib.sha256(bundle).digest()))
        assert images(r)[1] == (1, NEW, False, False, True)  # pending: runs at the next boot
        assert success(await client.request(ResetWrite()))


def test_an_update_with_smpclient_runs_the_new_bundle_and_confirms_itself(tmp_path):
    bundle = _new_bundle()

    async def main():
        sim = VdevSim(person={}, workdir=tmp_path)
        await sim.start()
        try:
            assert sim.device.debug_exec(*RUNNING) == (OLD, "/slots/a/firmware/app.mpy")
            await _upload_and_test(sim, bundle)
            await until(lambda: len(sim.device.resets) == 1, 5.0, step_s=0.01)
            assert sim.device.resets[-1][1] == "machine.reset()"
            await asyncio.sleep(8)  # boot self-test, BLE up, the trial confirms itself
            # what runs is the new bundle's code, from slot b of the flash
            assert sim.device.debug_exec(*RUNNING) == (NEW, "/slots/b/firmware/app.mpy")
            phone = await sim.phone()  # the radio started over: the phone connects again
            async with await _smp(phone) as t:
                client = SMPClient(t, DEVICE)
                await client._initialize()
                state = images(await client.request(ImageStatesRead()))
            assert state == [(0, NEW, True, True, False), (1, OLD, False, False, False)]
            assert len(sim.device.resets) == 1, sim.device.resets
        finally:
            await sim.close()

    hostrt.run(main(), idle_grace_s=5.0)


def test_a_trial_whose_control_loop_never_ticks_goes_back_to_the_old_bundle(tmp_path):
    # the broken bundle: its controller's tick does nothing, so the watchdog is never fed
    bundle = _new_bundle("\n\ndef _stuck(self, now_ms):\n    pass\n\n\nController.tick = _stuck\n")

    async def main():
        sim = VdevSim(person={}, workdir=tmp_path)
        await sim.start()
        try:
            await _upload_and_test(sim, bundle)
            await until(lambda: len(sim.device.resets) >= 2, 30.0, step_s=0.05)
            assert sim.device.resets[0][1] == "machine.reset()"
            assert "watchdog" in sim.device.resets[1][1]
            await asyncio.sleep(3)
            assert sim.device.debug_exec(*RUNNING) == (OLD, "/slots/a/firmware/app.mpy")
            phone = await sim.phone()
            async with await _smp(phone) as t:
                client = SMPClient(t, DEVICE)
                await client._initialize()
                state = images(await client.request(ImageStatesRead()))
            assert state == [(0, OLD, True, True, False), (1, NEW, False, False, False)]
            assert len(sim.device.resets) == 2, sim.device.resets
        finally:
            await sim.close()

    hostrt.run(main(), idle_grace_s=5.0)
