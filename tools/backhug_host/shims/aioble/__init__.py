"""Host stand-in for micropython-lib's aioble, running on backhug_host.blestack (Bumble).

Same modules, names and semantics as aioble (core, device, peripheral, server, security); the
radio underneath is bluetooth.BLE() from the sibling shim. Central/client/L2CAP support is not
provided (the firmware is a peripheral). docs/ble-adapter.md lists what differs from the device.
"""

from .core import GattError, config, log_error, log_info, log_warn, stop
from .device import Device, DeviceConnection, DeviceDisconnectedError
from .peripheral import advertise
from .server import (
    BufferedCharacteristic,
    Characteristic,
    Descriptor,
    Service,
    register_services,
)

ADDR_PUBLIC = 0
ADDR_RANDOM = 1

__all__ = [
    "ADDR_PUBLIC",
    "ADDR_RANDOM",
    "BufferedCharacteristic",
    "Characteristic",
    "Descriptor",
    "Device",
    "DeviceConnection",
    "DeviceDisconnectedError",
    "GattError",
    "Service",
    "advertise",
    "config",
    "log_error",
    "log_info",
    "log_warn",
    "register_services",
    "stop",
]
