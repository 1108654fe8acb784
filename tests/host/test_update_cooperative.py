"""An update's long work does not stop the device. The upload's last chunk (SHA-256 of the upload,
the Ed25519 signature check, unpacking ~50 files) takes seconds on the ESP32-S3; the SMP server
runs it in steps and lets the other tasks run between them (firmware/update/smp.py). Here that
work is slowed to device speed in virtual time (every step costs STEP_MS during which nothing
else runs, as on the device; ~1.6 s in all) and smpclient uploads a bundle over UDP to the
simulated device: the 100 Hz control loop never comes a period late and the watchdog is never
starved. The same upload with the work done in one go (what the server did before) makes the
watchdog reset the device: the check can tell the two apart."""

import asyncio
import hashlib

import pytest
from smpclient import SMPClient
from smpclient.generics import success
from smpclient.requests.image_management import ImageStatesRead
from smpclient.transport.udp import SMPUDPTransport

from backhug_host import blesim, hostrt
from backhug_host.blesim import BleSim
from firmware import controller, runtime
from firmware.update import slots, smp

# Device time of one step. The slowest steps (one pure-Python SHA-512 block of the signature
# check, one modular exponentiation) measure ~0.6 ms on the WebAssembly build
# (tests/mpy/bench_ed25519.py), more on the ESP32-S3. CPython's asyncio runs a task whose sleep
# ended two loop passes later (the timer completes a future, the future wakes the task): a tick
# may come three steps after it was due, so here three steps must stay under one 10 ms period
# (late means more than one period late). MicroPython's scheduler runs it at the next pass.
STEP_MS = 3
NEW = "9.9.1"


@pytest.fixture(scope="module")
def new_bundle():
    return blesim.make_bundle(version=NEW, counter=blesim.FACTORY_COUNTER + 1).read_bytes()


@pytest.fixture
def slow_completion(monkeypatch):
    """Every step of Slots.upload_complete_steps takes STEP_MS of device time, all of it
    blocking. Returns the list of steps taken."""
    done = []
    real = slots.Slots.upload_complete_steps

    def at_device_speed(self):
        gen = real(self)
        clock = runtime._host
        while True:
            clock.advance_ms(STEP_MS)  # the work of the step that follows
            done.append(1)
            try:
                next(gen)
            except StopIteration as e:
                return e.value
            yield

    monkeypatch.setattr(slots.Slots, "upload_complete_steps", at_device_speed)
    return done


def the_old_blocking_server(monkeypatch):
    """The server as it was: the whole request runs before anything else can."""

    async def blocking(self, packet, buf_size=None):
        return self.handle(packet, buf_size)

    monkeypatch.setattr(smp.SmpServer, "handle_async", blocking)


@pytest.mark.parametrize("server", ["stepped", "blocking"])
def test_the_control_loop_and_watchdog_keep_running_through_an_update(
    new_bundle, slow_completion, monkeypatch, server
):
    if server == "blocking":
        the_old_blocking_server(monkeypatch)

    async def main():
        sim = await BleSim().start()
        try:
            udp = await sim.serve_udp(0)
            client = SMPClient(SMPUDPTransport(), "127.0.0.1")
            await client._transport.connect("127.0.0.1", 2.0, port=udp.port)
            await client._initialize()
            await asyncio.sleep(0.5)  # the control loop settles after boot
            ctl = sim.device.controller
            assert ctl.late_ticks == 0 and ctl.ticks > 0
            offsets = [off async for off in client.upload(new_bundle)]
            assert offsets[-1] == len(new_bundle)
            work_ms = len(slow_completion) * STEP_MS
            # longer than the watchdog's 1 s: done in one go, it resets the device
            assert work_ms >= 1_500, "the completion took %d ms of device time" % work_ms
            await asyncio.sleep(1.5)  # a starved watchdog (1 s) has bitten by now
            r = await client.request(ImageStatesRead())
            assert success(r)
            return ctl, [(i.version, i.hash) for i in r.images if i.slot == 1], sim.run.resets
        finally:
            await sim.close()

    ctl, uploaded, resets = hostrt.run(main())
    if server == "stepped":
        late_ms = ctl.worst_late_ms + controller.PERIOD_MS
        assert ctl.late_ticks == 0, "a control tick came %d ms late" % late_ms
        assert ctl.supervisor.fault_code == 0
        assert resets == []  # the watchdog was fed all along
    else:
        # the control loop stood still for the whole check, the watchdog was not fed, and it
        # reset the device
        assert any("watchdog" in why.lower() for _, why in resets), resets
    # either way the bundle arrived, verified and unpacked
    assert uploaded == [(NEW, hashlib.sha256(new_bundle).digest())]
