# The device's entry point: builds the device from flash (the identity the factory wrote, the
# history, the fault log, the bonds, the update slots) with its BLE service and the update
# service (SMP, an extra GATT service of the BLE one), and runs it. On the device the fixed
# boot.py (firmware/update/boot.py) picks the slot and calls start(); the simulator assembles
# the same parts itself (backhug_host.blesim).
#
# The identity file ("identity" in the data store, firmware/identity.py) is written at
# provisioning (docs/factory.md): board, serial, hardware revision, the update key and the
# factory calibration. A missing or malformed file leaves the defaults: the device still works,
# reports itself unprovisioned, refuses updates (no key), and the store records why the file was
# set aside (a calibration that does not fit the board makes the whole file malformed).
#
# start() never returns to the REPL: whatever ends the main loop resets the device, so a trial
# bundle that crashes is reverted by boot.py at the next start.

import asyncio

from firmware import app, faultlog, history, identity, storage
from firmware.ble.service import BleService
from firmware.update import boot
from firmware.update import service as updates

DATA_ROOT = "/data"
DEFAULT_BOARD = "backhug_v3"


def load_identity(store):
    return identity.load(store)


def build(root=DATA_ROOT, hw=None, slots_root=boot.ROOT):
    store = storage.Store(root)
    ident = identity.load(store)
    device = app.Device(
        ident.get("board", DEFAULT_BOARD),
        hw=hw,
        history=history.TensionHistory(store),
        faultlog=faultlog.FaultLog(store),
    )
    identity.apply(ident, device.hw, device.board)  # load() checked it against this board
    update = updates.build(device, ident, slots_root)
    device.add_service(BleService(device, store, ident, extras=update.extras))
    device.add_service(update)
    return device


def start():
    try:
        asyncio.run(build().run())
    except KeyboardInterrupt:
        raise  # Ctrl-C on the USB console: a bench engineer wants the REPL (docs/bench.md)
    except BaseException as e:  # noqa: BLE001 - anything else: reset rather than sit in the REPL
        import sys

        if hasattr(sys, "print_exception"):
            sys.print_exception(e)
    from firmware import hal

    hal.reset()
