# The device's entry point: builds the device from flash (the identity the factory wrote, the
# history, the fault log, the bonds) with its BLE service, and runs it. On the device a fixed
# boot.py calls start(); the simulator assembles the same parts itself (backhug_host.blesim).
#
# The identity file ("identity" in the data store) is written at provisioning (docs/factory.md):
#   board     board id under boards/ (default DEFAULT_BOARD)
#   serial    the unit's serial number (DIS, advertised name)
#   hardware  hardware revision (DIS)
# A missing or malformed file leaves the defaults: the device still works, reports itself
# unprovisioned, and the store records why the file was set aside.

import asyncio

from firmware import app, faultlog, history, storage
from firmware.ble.service import BleService

DATA_ROOT = "/data"
DEFAULT_BOARD = "backhug_v3"
IDENTITY_FILE = "identity"
_IDENTITY_KEYS = ("board", "serial", "hardware")


def _check_identity(obj):
    if type(obj) is not dict:
        raise ValueError("identity: not an object")
    for k in obj:
        if k not in _IDENTITY_KEYS:
            raise ValueError("identity: unknown key %r" % (k,))
        v = obj[k]
        if type(v) is not str or not 0 < len(v) <= 32:
            raise ValueError("identity.%s: 1..32 characters" % k)
        for c in v:
            if not " " <= c <= "~":
                raise ValueError("identity.%s: printable ASCII only" % k)


def load_identity(store):
    return store.load(IDENTITY_FILE, None, _check_identity) or {}


def build(root=DATA_ROOT, hw=None):
    store = storage.Store(root)
    identity = load_identity(store)
    device = app.Device(
        identity.get("board", DEFAULT_BOARD),
        hw=hw,
        history=history.TensionHistory(store),
        faultlog=faultlog.FaultLog(store),
    )
    device.add_service(BleService(device, store, identity))
    return device


def start():
    asyncio.run(build().run())
