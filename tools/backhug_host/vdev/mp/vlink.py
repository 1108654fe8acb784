# MicroPython side of the virtual device's link to the host (backhug_host.vdev.host).
#
# The host owns time and the hardware. This interpreter runs the firmware; every hardware access
# of the bridge modules (machine.py, bluetooth.py, time.py, select.py here) is a frame on a pipe:
#   frame = op (1 byte) + payload length (u32 LE) + payload
# Device -> host requests get exactly one answer (OK, RAW or ERR); while the device waits for
# it, and while it idles, the host may call in (IRQ: a BLE event handler to run, its result
# sent back with IRQ_RET) and, at the end of an idle, says WAKE with the new virtual time.
# Lockstep: only one side runs at a time, so virtual time moves only while the device idles.

import struct
import sys

# device -> host
CALL = 1  # repr((object id, method, args, kwargs)) -> OK repr(result) | ERR
PIN_SET = 2  # <HB object id, level; no answer
PIN_GET = 3  # <H -> RAW <B
ADC_U16 = 4  # <H -> RAW <H
I2C_WMEM = 5  # <HBB + data: object, address, register -> RAW b"" | ERR
I2C_RMEM = 6  # <HBBH: object, address, register, n -> RAW data | ERR
IDLE = 7  # <qB microseconds (-1: no limit), 1: an event ends it early -> [IRQ ...] WAKE
IRQ_RET = 8  # repr(result) of an IRQ the host called
HELLO = 9  # repr(info) once at start -> OK repr(config)
ADVANCE = 10  # <I microseconds the device busy-waited (time.sleep_us); no answer
REPL = 11  # the last script's answer -> RAW the next script to run (b"": stop)
# host -> device
OK = 0x81
RAW = 0x82
ERR = 0x83
IRQ = 0x84  # <Q now_us + repr((handler id, args))
WAKE = 0x85  # <Q now_us

_ERRORS = {
    "OSError": OSError,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
    "IndexError": IndexError,
    "RuntimeError": RuntimeError,
    "NotImplementedError": NotImplementedError,
    "AttributeError": AttributeError,
    "OverflowError": OverflowError,
    "MemoryError": MemoryError,
}

now_us = 0
config = None  # what the host said at HELLO (constants of the modules it stands in for)
handlers = {}  # handler id -> callable the host may call (BLE irq)
_rx = None
_tx = None
_out = bytearray()  # frames not yet written: those without an answer wait for the next request


def open_link(fd_in, fd_out):
    global _rx, _tx
    _rx = open(fd_in, "rb")
    _tx = open(fd_out, "wb")


def _read_exact(n):
    buf = bytearray(n)
    mv = memoryview(buf)
    got = 0
    while got < n:
        k = _rx.readinto(mv[got:])
        if not k:
            # the host is gone: nothing can run any more
            sys.exit(3)
        got += k
    return buf


def post(op, payload=b""):
    # A frame that needs no answer: kept until the next request goes out (fewer system calls).
    _out.extend(struct.pack("<BI", op, len(payload)))
    _out.extend(payload)


def send(op, payload=b""):
    post(op, payload)
    _tx.write(_out)
    _out[:] = b""


def _eval(payload):
    return eval(str(payload, "utf-8"))


def _raise(payload):
    name, args = _eval(payload)
    exc = _ERRORS.get(name, RuntimeError)
    raise exc(*args)


def _irq(payload):
    global now_us
    now_us = struct.unpack_from("<Q", payload, 0)[0]
    hid, args = _eval(payload[8:])
    try:
        result = handlers[hid](*args)
    except Exception as e:  # the handler's own failure: report it, as the stack would print
        sys.print_exception(e)
        result = None
    send(IRQ_RET, repr(result).encode())


def _frame():
    h = _read_exact(5)
    op, n = struct.unpack("<BI", h)
    return op, (_read_exact(n) if n else b"")


def wait_answer():
    # The answer to the request just sent; IRQs the host calls meanwhile run first.
    while True:
        op, payload = _frame()
        if op == RAW:
            return payload
        if op == OK:
            return _eval(payload) if payload else None
        if op == ERR:
            _raise(payload)
        if op == IRQ:
            _irq(payload)
        else:
            raise RuntimeError("vlink: unexpected frame %d" % op)


def request(op, payload=b""):
    send(op, payload)
    return wait_answer()


def call(obj, method, *args, **kwargs):
    return request(CALL, repr((obj, method, args, kwargs)).encode())


def idle(us, early=True):
    # Give the host the CPU for `us` microseconds (-1: no limit), or until an event (early):
    # returns once the host says WAKE, after any IRQs it delivered meanwhile.
    global now_us
    send(IDLE, struct.pack("<qB", us, 1 if early else 0))
    while True:
        op, payload = _frame()
        if op == WAKE:
            now_us = struct.unpack("<Q", payload)[0]
            return
        if op == IRQ:
            _irq(payload)
        else:
            raise RuntimeError("vlink: unexpected frame %d while idle" % op)
