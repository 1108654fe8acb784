# The device side of updates (docs/updates.md): the slot store on the data file system, the SMP
# server and its GATT service (an extra of the BLE service), the self-confirmation of a trial,
# and the reset an SMP client asks for.
#
# A trial bundle confirms itself only once the device has shown it works: the boot self-test
# passed, the BLE service registered its GATT table (SMP included) and has run its tasks
# (advertising) for BLE_SETTLE_MS, the control loop is on time and no task has died. A trial
# that crashes, hangs into the watchdog or resets before that is reverted by boot.py at the
# next start.
#
# Runs as a device service (app.Device.add_service): its task also ends stalled uploads.

import asyncio
import binascii

from firmware.runtime import const, sleep_ms, ticks_diff, ticks_ms
from firmware.update import boot, slots, smp, smpble

CHECK_MS = const(250)
BLE_SETTLE_MS = const(1_000)  # BLE tasks running this long: the phone can reach the device
RESET_DELAY_MS = const(300)  # the reset's answer goes out first
_CONTROL_LATE_MS = const(30)  # as the watchdog task: 3 control periods


def device_abi():
    # the .mpy ABI this interpreter loads (sys.implementation._mpy); None on CPython
    import sys

    return getattr(sys.implementation, "_mpy", None)


def build(device, identity, root=boot.ROOT, abi=None, reset=None, fs=None):
    # The update service for `device` from the identity the factory wrote (update_key: the
    # bundle signing key's public half, hex). Without a key nothing can be verified, so every
    # upload is refused at its end (and the image state still reads).
    key = identity.get("update_key")
    public_key = binascii.unhexlify(key) if key else None
    if abi is None:
        abi = device_abi()
    store = slots.Slots(root, device.board.id, abi, public_key, fs=fs)
    return UpdateService(device, store, reset)


class UpdateService:
    # reset: what an SMP reset does; None means machine.reset() (through firmware.hal)
    def __init__(self, device, store, reset=None):
        self.device = device
        self.slots = store
        self._reset = reset
        self.server = smp.SmpServer(store, device, self.request_reset)
        self.ble = smpble.SmpBle(self.server)
        self.ble.on_serving = self._ble_serving
        self.extras = (self.ble,)  # for BleService(extras=...)
        self._ble_ms = None  # when the SMP GATT service started serving
        self._healthy_since = None
        self.confirmed = False  # this boot confirmed its own trial
        self.reset_requested = False

    def _ble_serving(self):
        self._ble_ms = ticks_ms()

    def trial(self):
        st = self.slots.state()
        return st is not None and not st["confirmed"]

    def healthy(self):
        d = self.device
        report = d.selftest_report
        if report is None or not report["ok"] or d.crashed is not None:
            return False
        if self._ble_ms is None or ticks_diff(ticks_ms(), self._ble_ms) < BLE_SETTLE_MS:
            return False
        last = d.controller._last_ms
        return last is not None and ticks_diff(ticks_ms(), last) <= _CONTROL_LATE_MS

    async def run(self, device):
        pending_trial = self.trial()
        while True:
            if pending_trial and self.healthy():
                self.slots.confirm()  # the running bundle; its counter becomes the floor
                self.confirmed = True
                pending_trial = False
            self.server.poll()
            await sleep_ms(CHECK_MS)

    def request_reset(self):
        # called by the SMP server inside a request: reset once the answer has gone out
        if not self.reset_requested:
            self.reset_requested = True
            asyncio.create_task(self._reset_later())

    async def _reset_later(self):
        await sleep_ms(RESET_DELAY_MS)
        if self._reset is not None:
            self._reset()
            return
        from firmware import hal  # the one module that imports machine

        hal.machine.reset()
