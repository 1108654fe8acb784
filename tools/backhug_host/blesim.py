"""The simulated device with its BLE service, and phones talking to it over real BLE.

BleSim is SimRun (the unchanged firmware on the simulated hardware) with the firmware's BLE
service (firmware/ble/service.py) attached at every boot, running on the aioble adapter over
Bumble (backhug_host.blestack). Phones are Bumble centrals on the same virtual link driven by the
reference client (backhug_host.client), so everything between the client's calls and the
firmware's commands is the real protocol on a real BLE host stack: advertising, connection, MTU
exchange, LE Secure Connections pairing and bonding, ATT reads/writes/notifications.

Runs in hostrt's virtual-time loop (tests, `make sim`) or in real time (an external client over
the HCI TCP socket, `python -m backhug_host.sim serve`).
"""

from __future__ import annotations

import asyncio
import logging

from backhug_host import blestack
from backhug_host.client.core import BackHugClient
from backhug_host.client.link import BumbleLink, NotPaired
from backhug_host.simsession import SimRun

IDENTITY = {"serial": "BH3-SIM-0001", "hardware": "v3.0-sim"}
LONG_PRESS_MS = 3_500  # past the button's 3 s long press: opens the pairing window
# The device notifies settings as soon as a phone is bonded, maybe before it subscribed: normal.
logging.getLogger("bumble.gatt_client").setLevel(logging.ERROR)
PHONE_ADDRESSES = ["C0:00:00:00:00:%02X" % n for n in range(1, 16)]


class BleSim:
    def __init__(self, person=None, seed=0, data_dir=None, clock=None, identity=None):
        self.identity = dict(identity or IDENTITY)
        self.services = []  # one BleService per boot, the running one last
        self._phones = 0
        blestack.reset()
        self.aioble = blestack.use_fake_aioble()
        self.run = SimRun(
            person=person, seed=seed, data_dir=data_dir, clock=clock, services=self._attach
        )

    def _attach(self, device, store):
        from firmware.ble.service import BleService

        if self.services:
            blestack.reset()  # a reboot: the radio, its links and its GATT table start over
        svc = BleService(device, store, self.identity)
        self.services.append(svc)
        return [svc]

    @property
    def service(self):
        return self.services[-1]

    @property
    def device(self):
        return self.run.device

    async def start(self, selftest=True):
        await self.run.start(selftest)
        await blestack.start()
        return self

    async def close(self):
        await self.run.close()
        blestack.reset()

    async def open_pairing_window(self):
        """Hold the device's button like a person would, until the window is open."""
        self.run.sim.press_button(hold_ms=LONG_PRESS_MS)
        await asyncio.sleep(LONG_PRESS_MS / 1000 + 0.1)  # released again, like the person's hand
        if not self.service.bonds.window_open():
            raise TimeoutError("the pairing window did not open")

    async def central(self, address=None, name=None):
        """A new phone (a Bumble central on the link)."""
        if address is None:
            address = PHONE_ADDRESSES[self._phones % len(PHONE_ADDRESSES)]
        self._phones += 1
        return await blestack.make_central(name=name or "phone%d" % self._phones, address=address)

    async def phone(self, central=None, *, pair=True, window=True, mtu=247):
        """Connect a phone; pair it (opening the window first if asked); return its client."""
        if central is None:
            central = await self.central()
        link = BumbleLink(central)
        await self.connect(link, pair=pair, window=window, mtu=mtu)
        client = BackHugClient(link)
        if pair:
            await client.connect()
        return client

    async def connect(self, link, *, pair=True, window=True, mtu=247):
        address = blestack.world().address
        try:
            encrypted = await link.connect(address, mtu=mtu)
        except NotPaired:
            # the phone kept keys the device never stored (or has forgotten): drop them and
            # pair afresh, as the app does
            await link.device.keystore.delete(str(address))
            if link.is_connected:
                await link.disconnect()
            encrypted = await link.connect(address, mtu=mtu, encrypt=False)
        if pair and not encrypted:
            if window:
                await self.open_pairing_window()
            await link.pair()
            # the device disconnects a link it did not bond within its 100 ms link check
            await asyncio.sleep(0.3)
        return link


async def serve(port=0, seconds=None, open_window=False, person=None, out=None):
    """The simulated device in wall-clock time with a second controller on its link exposed as
    HCI over TCP: another process (`backhug --hci tcp-client:127.0.0.1:PORT ...`, smpclient's
    Bumble transport) is the phone. Prints the transport to use, then runs for `seconds` (None:
    until cancelled). open_window: hold the button at boot so the first phone can bond."""
    import sys

    out = out or sys.stdout
    sim = await BleSim(person=person).start()
    try:
        server = await blestack.serve_hci_tcp(port=port)
        if open_window:
            await sim.open_pairing_window()
        out.write("device %s, HCI: %s\n" % (blestack.world().address, server.spec))
        out.flush()
        if seconds is None:
            await asyncio.Event().wait()
        await asyncio.sleep(seconds)
    finally:
        await sim.close()
