"""The reference phone-side client: does over BLE what the BackHug phone app does.

link: the few GATT operations the client needs, on Bumble (simulator, HCI transports) and on
bleak (real radios); core: BackHugClient, the protocol of docs/ble-protocol.md on top of a link,
with every encode/decode done by firmware.ble.proto; cli: the `backhug` console script.
"""

from backhug_host.client.core import (
    BackHugClient,
    ClientError,
    CommandRefused,
    CommandTimeout,
    Disconnected,
    ProtocolMismatch,
)
from backhug_host.client.link import Link, LinkError, NotPaired

__all__ = [
    "BackHugClient",
    "ClientError",
    "CommandRefused",
    "CommandTimeout",
    "Disconnected",
    "Link",
    "LinkError",
    "NotPaired",
    "ProtocolMismatch",
]
