"""`make sim ARGS="--vdev"`: the BLE session of simsession on the virtual device.

simsession's BLE session drives a BleSim through the reference client and reads the progress,
the report and the picture from the client's notifications, with the physics (SimDevice) on the
side for the true peak force, the leg rest and the person. VdevSession gives it the same face on
a VdevSim: the firmware runs inside MicroPython, so nothing here reaches into firmware objects;
`run` is a small record of the SimDevice and what the phone received.
"""

from __future__ import annotations

import time

from backhug_host.vdev import build


def ensure_interpreter(out):
    """The MicroPython unix port's binary, built first (and said so) if it is not there yet.
    Raises build.BuildError."""
    if not (build.BUILD / "micropython").is_file():
        out.write(
            "building MicroPython's unix port from ../shared into build/vdev/ for the virtual"
            " device (needs a C compiler; about a minute, once) ...\n"
        )
        out.flush()
        t0 = time.perf_counter()
        path = build.interpreter()
        out.write(f"built {path} in {time.perf_counter() - t0:.0f} s\n")
        return path
    return build.interpreter()


class _Run:
    # What the session report reads of a SimRun: the physics, the board, the samples.
    def __init__(self, sim):
        self.sim = sim
        self.board = sim.board
        self.times_s = []
        self.forces_cn = []  # from the phone's telemetry frames
        self.peak_truth_n = 0.0


class VdevSession:
    """A VdevSim as simsession's BLE session uses a BleSim: start(), phone(), close(), `run`.
    Runs inside hostrt.run(..., virtual=True)."""

    def __init__(self, person=None, seed=0, out=None, workdir=None):
        from backhug_host.vdev.sim import VdevSim

        self.out = out
        self.vdev = VdevSim(person=person, seed=seed, workdir=workdir)
        self.run = _Run(self.vdev.sim)
        self.packets = 0  # telemetry notifications the phone received
        self._boots0 = 0

    def _say(self, text):
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    async def start(self):
        if not self.vdev.flash.exists():
            t0 = time.perf_counter()
            self._say("provisioning the virtual device (the factory's provisioning) ...")
            self.vdev.provision()
            self._say(f"provisioned in {time.perf_counter() - t0:.0f} s; booting it")
        self._boots0 = self.vdev.device.boots  # the provisioning's script sessions not counted
        await self.vdev.start()
        return self

    async def phone(self):
        client = await self.vdev.phone()
        client.on_packet = self._packet
        return client

    def _packet(self, _part):
        self.packets += 1

    def summary(self):
        dev = self.vdev.device
        resets = ", ".join(f"{why} at {ms / 1000:.1f} s" for ms, why in dev.resets) or "none"
        boots = dev.boots - self._boots0
        return (
            f"virtual device: the firmware on MicroPython ({dev.binary}), {boots} boot(s),"
            f" resets: {resets}"
        )

    def console_tail(self, lines=20):
        return "\n".join(self.vdev.console_text().splitlines()[-lines:])

    async def close(self):
        await self.vdev.close()
