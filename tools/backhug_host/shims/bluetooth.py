"""Host stand-in for MicroPython's `bluetooth` module (docs: library/bluetooth.rst).

`UUID`, the characteristic `FLAG_*` constants and `BLE()`, which returns the one radio object.
On the host that radio is backhug_host.blestack.Radio: MicroPython's low-level BLE methods
(gatts_*, gap_*, config, irq) implemented on Google's Bumble. micropython-lib's aioble
(backhug_host.blestack.use_aioble()) drives it as it drives the device's radio.
"""

FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020

_HEX = "0123456789abcdef"


class UUID:
    """A 16-, 32- or 128-bit Bluetooth UUID, as MicroPython's bluetooth.UUID.

    UUID(0x180D), UUID("6e400001-b5a3-f393-e0a9-e50e24dcca9e"), UUID("0x180d") or a 2/4/16-byte
    little-endian buffer. bytes(uuid) is the little-endian form used on the air (2, 4 or 16
    bytes), like MicroPython.
    """

    def __init__(self, value):
        if isinstance(value, UUID):
            self._le = value._le
        elif isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            self._le = value.to_bytes(2, "little")
        elif isinstance(value, str):
            self._le = _parse_str(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) not in (2, 4, 16):
                raise ValueError("invalid UUID")
            self._le = raw
        else:
            raise TypeError("UUID takes an int, a str or a buffer")

    def __bytes__(self):
        return self._le

    def __len__(self):
        return len(self._le)

    def __eq__(self, other):
        return isinstance(other, UUID) and self._le == other._le

    def __hash__(self):
        return hash(self._le)

    def __str__(self):
        if len(self._le) == 16:
            h = self._le[::-1].hex()
            return "UUID('%s-%s-%s-%s-%s')" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        return "UUID(0x%s)" % self._le[::-1].hex()

    __repr__ = __str__


def _parse_str(text):
    digits = text.lower().replace("-", "")
    if digits.startswith("0x"):
        digits = digits[2:]
    if len(digits) not in (4, 8, 32) or any(c not in _HEX for c in digits):
        raise ValueError("invalid UUID")
    return bytes.fromhex(digits)[::-1]


def BLE():
    """The radio singleton (MicroPython's bluetooth.BLE() also returns one object)."""
    from backhug_host import blestack

    return blestack.radio()
