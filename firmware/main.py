# The device's entry point: builds the device from flash (the identity the factory wrote, the
# history, the fault log, the bonds, the update slots) with its BLE service and the update
# service (SMP, an extra GATT service of the BLE one), and runs it. On the device the fixed
# boot.py (firmware/update/boot.py) picks the slot and calls start(); the simulator assembles
# the same parts itself (backhug_host.blesim).
#
# The identity file ("identity" in the data store) is written at provisioning (docs/factory.md):
#   board     board id under boards/ (default DEFAULT_BOARD)
#   serial    the unit's serial number (DIS, advertised name)
#   hardware  hardware revision (DIS)
#   update_key  the public half of the bundle signing key, 64 hex digits (docs/updates.md)
# A missing or malformed file leaves the defaults: the device still works, reports itself
# unprovisioned, and the store records why the file was set aside.

import asyncio

from firmware import app, faultlog, history, storage
from firmware.ble.service import BleService
from firmware.update import boot
from firmware.update import service as updates

DATA_ROOT = "/data"
DEFAULT_BOARD = "backhug_v3"
IDENTITY_FILE = "identity"
_IDENTITY_KEYS = ("board", "serial", "hardware", "update_key")
_HEX = "0123456789abcdef"


def _check_identity(obj):
    if type(obj) is not dict:
        raise ValueError("identity: not an object")
    for k in obj:
        if k not in _IDENTITY_KEYS:
            raise ValueError("identity: unknown key %r" % (k,))
        v = obj[k]
        if k == "update_key":
            if type(v) is not str or len(v) != 64 or any(c not in _HEX for c in v):
                raise ValueError("identity.update_key: 64 lowercase hex digits")
            continue
        if type(v) is not str or not 0 < len(v) <= 32:
            raise ValueError("identity.%s: 1..32 characters" % k)
        for c in v:
            if not " " <= c <= "~":
                raise ValueError("identity.%s: printable ASCII only" % k)


def load_identity(store):
    return store.load(IDENTITY_FILE, None, _check_identity) or {}


def build(root=DATA_ROOT, hw=None, slots_root=boot.ROOT):
    store = storage.Store(root)
    identity = load_identity(store)
    device = app.Device(
        identity.get("board", DEFAULT_BOARD),
        hw=hw,
        history=history.TensionHistory(store),
        faultlog=faultlog.FaultLog(store),
    )
    update = updates.build(device, identity, slots_root)
    device.add_service(BleService(device, store, identity, extras=update.extras))
    device.add_service(update)
    return device


def start():
    asyncio.run(build().run())
