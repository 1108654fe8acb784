"""A BackHug whose firmware runs on MicroPython, provisioned as at the factory, with phones.

VdevSim is to the virtual device what blesim.BleSim is to the CPython simulator:

    sim = VdevSim(person={...}, seed=1)
    await sim.start()                  # provisioned on first start, then boots from its flash
    client = await sim.phone()         # a Bumble central, paired in the pairing window
    ...
    await sim.close()

Provisioning is the factory's own (factory/provision.py) over the interpreter's script channel:
micropython-lib's pinned .mpy files into /lib, the fixed /boot.py and /main.py, the identity,
and a signed bundle of the repository's firmware into slot a. The bundle is compiled for the
interpreter's architecture (x64: the .mpy ABI the device checks is the interpreter's own) and
signed with the development key. From then on the device runs what is on its flash: boot.py
picks the slot, main.py starts the firmware from it, aioble comes from /lib.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from pathlib import Path

from backhug_host import blesim, blestack, bundler, mplib
from backhug_host.client.core import BackHugClient
from backhug_host.client.link import BumbleLink
from backhug_host.factory import devlink, provision
from backhug_host.sim.device import SimDevice
from backhug_host.vdev.host import VirtualDevice

BOARD = "sim"
ARCH = "x64"  # the unix port's native architecture (its sys.implementation._mpy)
IDENTITY = {"serial": "BH3-VDEV-0001", "hardware": "v3.0-vdev"}
BUNDLE_CACHE = mplib.ROOT / "build" / "vdev" / "bundles"
LONG_PRESS_MS = 3_500
PHONE_ADDRESS = "C0:00:00:00:%02X:%02X"


def make_bundle(version=None, counter=1, board=BOARD, replace=None):
    """A signed bundle of the repository's firmware for the virtual device (cached by content).
    replace: {repo-relative .py path: source text} swapped in (a broken bundle for a test)."""
    version = version or bundler.firmware_version()
    files = bundler.sources(board)
    h = hashlib.sha256(("%s|%s|%d|%s" % (ARCH, version, counter, board)).encode())
    for path, rel in files:
        h.update(rel.encode() + b"\0" + Path(path).read_bytes())
    for rel, text in sorted((replace or {}).items()):
        h.update(b"replace:" + rel.encode() + b"\0" + text.encode())
    out = BUNDLE_CACHE / ("%s-%s-c%d-%s.bhb" % (board, version, counter, h.hexdigest()[:16]))
    if out.is_file():
        return out
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    with tempfile.TemporaryDirectory() as tmp:
        if replace:
            swapped = []
            for path, rel in files:
                if rel in replace:
                    p = Path(tmp) / "src" / rel
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(replace[rel])
                    path = str(p)
                swapped.append((path, rel))
            files = swapped
        compiled = bundler.compile_sources(files, Path(tmp) / "mpy", arch=ARCH)
    abi = bundler.target_abi(arch=ARCH)
    manifest = bundler.make_manifest(compiled, version, board, abi, counter)
    blob = bundler.pack(manifest, compiled, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(blob)
    tmp_out.replace(out)
    return out


class ScriptTransport:
    """What factory/devlink.py needs of mpremote's transport, on the virtual device's script
    channel (its REPL mode)."""

    def __init__(self, vdev):
        self.vdev = vdev

    def exec(self, code):
        ok, out = self.vdev.run_script(code)
        if not ok:
            err = RuntimeError("script failed")
            err.error_output = out
            raise err
        return out.encode()

    def exec_raw_no_follow(self, code):
        self.vdev.run_script(code)


def packages():
    """[(device path, bytes, sha256)] of micropython-lib's pinned .mpy files, for /lib."""
    return [
        ("/lib/" + rel, data, hashlib.sha256(data).hexdigest())
        for rel, data in sorted(mplib.read("mpy").items())
    ]


class VdevSim:
    def __init__(self, person=None, seed=0, workdir=None, heap=None, identity=None, log=None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="backhug-vdev-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.flash = self.workdir / "flash.img"
        self.identity = dict(identity or IDENTITY)
        self.sim = SimDevice(BOARD, person=person if person is not None else {}, seed=seed)
        self.console = open(self.workdir / "console.log", "ab")
        kw = {} if heap is None else {"heap": heap}
        self.device = VirtualDevice(self.sim, self.flash, console=self.console, **kw)
        self.log = log or (lambda msg: None)
        self._phones = 0

    def console_text(self):
        self.console.flush()
        return (self.workdir / "console.log").read_text(errors="replace")

    def provision(self, bundle=None):
        """The factory's provisioning of this unit (skipped if its flash already holds it)."""
        bundle = bundle or make_bundle()
        self.device.open_scripts()
        try:
            link = devlink.DevLink(ScriptTransport(self.device), "vdev")
            return provision.provision(
                link,
                BOARD,
                str(bundle),
                bundler.dev_public_key(),
                serial=self.identity["serial"],
                hardware=self.identity["hardware"],
                packages=packages(),
                reset=False,
                log=self.log,
            )
        finally:
            self.device.close_scripts()

    async def start(self):
        if not self.flash.exists():
            self.provision()
        blestack.reset()
        await self.device.start()
        return self

    async def close(self):
        await self.device.stop()
        blestack.reset()
        self.console.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def open_pairing_window(self):
        self.sim.press_button(hold_ms=LONG_PRESS_MS)
        await asyncio.sleep(LONG_PRESS_MS / 1000 + 0.2)

    async def central(self, address=None, name=None):
        if address is None:
            n = self._phones + 1
            address = PHONE_ADDRESS % (n >> 8, n & 0xFF)
        self._phones += 1
        return await blestack.make_central(name=name or "phone%d" % self._phones, address=address)

    async def phone(self, *, pair=True, window=True, mtu=247):
        """A new phone, connected (and paired in the pairing window); returns its client."""
        link = BumbleLink(await self.central())
        await blesim.connect_phone(link, self.open_pairing_window, pair=pair, window=window,
                                   mtu=mtu)  # fmt: skip
        client = BackHugClient(link)
        if pair:
            await client.connect()
        return client
