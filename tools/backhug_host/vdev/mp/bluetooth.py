# The virtual device's `bluetooth`: BLE() is a stand-in for the host's radio
# (backhug_host.blestack.Radio, MicroPython's low-level BLE API on Google's Bumble); every method
# call goes to it, and the events it raises come back as IRQ frames that run the handler given
# to irq() here, with the handler's return value sent back (as NimBLE asks for it).
import vlink

FLAG_READ = 0x0002
FLAG_WRITE_NO_RESPONSE = 0x0004
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010
FLAG_INDICATE = 0x0020
FLAG_AUTHENTICATE = 0x0040  # not used by the firmware; the host stack ignores it

_HEX = "0123456789abcdef"
_UUID_TAG = "__uuid__"


class UUID:
    def __init__(self, value):
        if isinstance(value, UUID):
            self._le = value._le
        elif isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            self._le = bytes((value & 0xFF, value >> 8))
        elif isinstance(value, str):
            digits = value.lower().replace("-", "")
            if digits.startswith("0x"):
                digits = digits[2:]
            if len(digits) not in (4, 8, 32) or any(c not in _HEX for c in digits):
                raise ValueError("invalid UUID")
            raw = bytes(int(digits[i : i + 2], 16) for i in range(0, len(digits), 2))
            self._le = bytes(reversed(raw))
        else:
            raw = bytes(value)
            if len(raw) not in (2, 4, 16):
                raise ValueError("invalid UUID")
            self._le = raw

    def __bytes__(self):
        return self._le

    def __iter__(self):
        # MicroPython's bytes() ignores __bytes__; the real UUID has the buffer protocol, and
        # aioble writes bytes(uuid). Iterating the little-endian bytes gives the same result.
        return iter(self._le)

    def __len__(self):
        return len(self._le)

    def __eq__(self, other):
        return isinstance(other, UUID) and self._le == other._le

    def __hash__(self):
        return hash(self._le)

    def __repr__(self):
        h = "".join("%02x" % b for b in reversed(self._le))
        if len(self._le) == 16:
            return "UUID('%s-%s-%s-%s-%s')" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        return "UUID(0x%s)" % h


def _out(v):
    # arguments as literals the host can read back: UUIDs tagged, buffers as bytes
    if isinstance(v, UUID):
        return (_UUID_TAG, v._le)
    if isinstance(v, (tuple, list)):
        return tuple(_out(x) for x in v)
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return v


def _in(v):
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == _UUID_TAG:
            return UUID(v[1])
        return tuple(_in(x) for x in v)
    return v


_RADIO = 1  # object id of the host's radio


class BLE:
    _one = None

    def __new__(cls):
        if BLE._one is None:
            BLE._one = object.__new__(cls)
            BLE._one._hid = None
        return BLE._one

    def __init__(self):
        pass

    def _call(self, method, *args, **kwargs):
        r = vlink.call(_RADIO, method, *_out(args), **{k: _out(v) for k, v in kwargs.items()})
        return _in(r)

    def irq(self, handler):
        if self._hid is not None:
            vlink.handlers.pop(self._hid, None)

        def call(event, data):
            return handler(event, _in(data))

        self._hid = id(call)
        vlink.handlers[self._hid] = call
        vlink.call(_RADIO, "irq", ("__handler__", self._hid))

    def active(self, *a):
        return self._call("active", *a)

    def config(self, *a, **kw):
        return self._call("config", *a, **kw)

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        return self._call("gap_advertise", interval_us, adv_data, resp_data, connectable)

    def gap_disconnect(self, conn_handle):
        return self._call("gap_disconnect", conn_handle)

    def gap_pair(self, conn_handle):
        return self._call("gap_pair", conn_handle)

    def gattc_exchange_mtu(self, conn_handle):
        return self._call("gattc_exchange_mtu", conn_handle)

    def gatts_register_services(self, services):
        return self._call("gatts_register_services", services)

    def gatts_read(self, value_handle):
        return self._call("gatts_read", value_handle)

    def gatts_write(self, value_handle, data, send_update=False):
        return self._call("gatts_write", value_handle, data, send_update)

    def gatts_set_buffer(self, value_handle, length, append=False):
        return self._call("gatts_set_buffer", value_handle, length, append)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        return self._call("gatts_notify", conn_handle, value_handle, data)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        return self._call("gatts_indicate", conn_handle, value_handle, data)
