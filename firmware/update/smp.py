# The SMP server (MCUmgr's Simple Management Protocol, docs/updates.md): one request packet in,
# one response packet out, whatever carried it (the SMP GATT service in smpble.py, UDP in the
# simulator). Groups: OS (echo, reset, MCUmgr parameters) and Image (state, upload, erase).
#
# A packet is an 8-byte header (op+version, flags, length u16, group u16, sequence, command id;
# big-endian) and a CBOR map of `length` bytes. Responses carry the request's version, group,
# sequence and command, with op + 1.
#
# Errors, as SMP defines them: an SMP-level error is `{"rc": MGMT_ERR, "rsn": text}` in both
# versions; in version 2 a condition the Image group has its own code for is
# `{"err": {"group": 1, "rc": IMG_MGMT_ERR}}` (no "rsn": MCUmgr clients accept no other key
# next to "err"). Unknown keys in a request are ignored, as MCUmgr servers do: clients send
# optional fields ("image", "upgrade") that older servers do not know.
#
# The session and the update exclude each other: an upload is refused while a session runs, and
# device.update_in_progress (which makes firmware.commands refuse a start) is set from the first
# chunk until the upload completes, fails, is erased, or stalls for STALL_MS.
#
# Long requests and the other tasks: the upload's last chunk (hash, signature, unpack), a state
# write that marks a slot for test (every file hashed again) and erase take most of a second to
# seconds on the device, ten to a hundred control periods. The transports await handle_async(),
# which runs the slot store's step generators (slots.py, ed25519.py "Steps") with
# `await sleep_ms(0)` after every step, so the control loop, the watchdog task and BLE keep
# running. One request at a time: a request that arrives while one is being processed (UDP
# answers each datagram as it comes; BLE and UDP at once) is answered EBUSY at once and not
# run; a client waits for each answer, so only a second client sees it. handle() is the same
# without the pauses, for host tools and tests.

import cbor2

from firmware import session as ses
from firmware.runtime import const, sleep_ms, ticks_diff, ticks_ms
from firmware.update.ed25519 import run_steps
from firmware.update.slots import (  # noqa: F401 - MCUmgr's codes, also for the tests
    EACCESSDENIED,
    EBADSTATE,
    EBUSY,
    ECORRUPT,
    EINVAL,
    EMSGSIZE,
    ENOENT,
    ENOMEM,
    ENOTSUP,
    EUNKNOWN,
)

HEADER_SIZE = const(8)
BUF_SIZE = const(2048)  # the largest request a transport takes (MCUmgr parameters buf_size)
STALL_MS = const(30_000)  # an upload without a chunk for this long no longer blocks sessions

OP_READ = const(0)
OP_READ_RSP = const(1)
OP_WRITE = const(2)
OP_WRITE_RSP = const(3)
V1 = const(0)
V2 = const(1)

GROUP_OS = const(0)
GROUP_IMAGE = const(1)
OS_ECHO = const(0)
OS_RESET = const(5)
OS_PARAMS = const(6)
IMG_STATE = const(0)
IMG_UPLOAD = const(1)
IMG_ERASE = const(5)

# MCUmgr's MGMT_ERR (the ones slots raise are defined there, with UpdateError)
EOK = const(0)
UNSUPPORTED_TOO_NEW = const(13)

# MCUmgr's IMG_MGMT_ERR (Image group codes, version 2 only)
IMG_HASH_NOT_FOUND = const(8)
IMG_INVALID_OFFSET = const(20)
IMG_INVALID_LENGTH = const(21)
IMG_INVALID_HASH = const(24)
IMG_DATA_OVERRUN = const(31)

_SHA256_SIZE = const(32)
_ECHO_MAX = const(256)
_IMAGE_KEYS = (
    "slot",
    "version",
    "hash",
    "bootable",
    "pending",
    "confirmed",
    "active",
    "permanent",
)


class SmpError(Exception):
    # rc: MGMT_ERR; group_rc: the Image/OS group's own code for this condition, if it has one
    def __init__(self, rc, rsn, group_rc=None):
        super().__init__(rc, rsn)
        self.rc = rc
        self.rsn = rsn
        self.group_rc = group_rc


def pack_header(op, version, length, group, seq, cmd):
    return bytes(
        (
            (version & 3) << 3 | (op & 7),
            0,
            length >> 8,
            length & 0xFF,
            group >> 8,
            group & 0xFF,
            seq & 0xFF,
            cmd & 0xFF,
        )
    )


def packet_length(header):
    # total packet size announced by a header (transports reassemble with it)
    return HEADER_SIZE + (header[2] << 8 | header[3])


def error_for(packet, rc, rsn):
    # An error answer to a request that is not run (refused by its transport), in the form both
    # SMP versions share; None when there is nothing to answer.
    if len(packet) < HEADER_SIZE or packet[0] & 7 not in (OP_READ, OP_WRITE):
        return None
    version = min((packet[0] >> 3) & 3, V2)
    data = cbor2.dumps({"rc": rc, "rsn": rsn})
    group = packet[4] << 8 | packet[5]
    return pack_header((packet[0] & 7) + 1, version, len(data), group, packet[6], packet[7]) + data


def _is_bytes(x):
    return type(x) is bytes or type(x) is bytearray


def _is_int(x):
    return type(x) is int  # bool is not an int here (MicroPython and CPython alike)


class SmpServer:
    # slots: firmware.update.slots.Slots (or anything with its API); device: app.Device (its
    # session and update_in_progress); reset: called after an accepted OS reset, it must let the
    # response go out first (UpdateService defers the reboot).
    def __init__(self, slots, device, reset=None, buf_size=BUF_SIZE):
        self.slots = slots
        self.device = device
        self.reset = reset
        self.buf_size = buf_size
        self._up = None  # the upload we are receiving: [total, sha256]
        self._last_ms = 0  # when its last chunk arrived
        self._busy = False  # a request is being processed
        self.requests = 0
        self.errors = 0
        self.busy_refused = 0  # requests answered EBUSY because another one was running

    # -- framing ----------------------------------------------------------------------------

    async def handle_async(self, packet, buf_size=None):
        # One request packet -> one response packet (bytes), or None when there is nothing to
        # answer: fewer than 8 bytes (no header, so no sequence to answer) or a response op.
        # Other tasks run between the steps of a long request.
        gen = self._process(packet, buf_size)
        try:
            while True:
                try:
                    next(gen)
                except StopIteration as e:
                    return e.value
                await sleep_ms(0)
        finally:
            gen.close()  # cancelled mid-request: files closed, busy cleared

    def handle(self, packet, buf_size=None):
        # handle_async() run to its end without letting anything else run: host tools, tests.
        return run_steps(self._process(packet, buf_size))

    def _process(self, packet, buf_size):
        # The request as a step generator; returns the response.
        if len(packet) < HEADER_SIZE:
            return None
        op = packet[0] & 7
        version = (packet[0] >> 3) & 3
        group = packet[4] << 8 | packet[5]
        seq = packet[6]
        cmd = packet[7]
        if op != OP_READ and op != OP_WRITE:
            return None
        if self._busy:
            self.busy_refused += 1
            return error_for(packet, EBUSY, "busy with another request: send it again")
        self._busy = True
        try:
            rsp = yield from self._answer(packet, op, version, group, cmd, buf_size)
        finally:
            self._busy = False
        data = cbor2.dumps(rsp)
        return pack_header(op + 1, min(version, V2), len(data), group, seq, cmd) + data

    def _answer(self, packet, op, version, group, cmd, buf_size):
        # The response body (a dict) to one request; a step generator.
        self.requests += 1
        self.poll()
        try:
            if version > V2:
                version = V2
                raise SmpError(UNSUPPORTED_TOO_NEW, "SMP version 1 or 2 only")
            if packet_length(packet) != len(packet):
                raise SmpError(
                    EINVAL,
                    "length: header says %d bytes, got %d"
                    % (packet_length(packet) - HEADER_SIZE, len(packet) - HEADER_SIZE),
                )
            body = self._decode(packet)
            return (yield from self._dispatch(op, group, cmd, body, buf_size or self.buf_size))
        except SmpError as e:
            self.errors += 1
            return self._error(min(version, V2), group, e)
        except Exception as e:  # noqa: BLE001 - a bug or a broken flash must not kill the link
            self.errors += 1
            return self._error(min(version, V2), group, _update_error(e))

    @staticmethod
    def _decode(packet):
        if len(packet) == HEADER_SIZE:
            return {}
        try:
            body = cbor2.loads(bytes(packet[HEADER_SIZE:]))
        except Exception:  # noqa: BLE001 - micropython-lib's cbor2 raises several kinds
            raise SmpError(EINVAL, "body: not CBOR")
        if type(body) is not dict:
            raise SmpError(EINVAL, "body: not a CBOR map")
        return body

    @staticmethod
    def _error(version, group, e):
        if version == V2 and e.group_rc is not None:
            return {"err": {"group": group, "rc": e.group_rc}}
        return {"rc": e.rc, "rsn": e.rsn}

    def _dispatch(self, op, group, cmd, body, buf_size):
        # A step generator: the long commands yield from the slot store's steps.
        write = op == OP_WRITE
        if group == GROUP_OS:
            if cmd == OS_ECHO and write:
                return self._echo(body)
            if cmd == OS_RESET and write:
                return self._reset()
            if cmd == OS_PARAMS and not write:
                return {"buf_size": buf_size, "buf_count": 1}
        elif group == GROUP_IMAGE:
            if cmd == IMG_STATE:
                if not write:
                    return self._images()
                return (yield from self._state_write(body))
            if cmd == IMG_UPLOAD and write:
                return (yield from self._upload(body))
            if cmd == IMG_ERASE and write:
                return (yield from self._erase(body))
        raise SmpError(
            ENOTSUP, "group %d command %d (%s) not supported" % (group, cmd, "rw"[write])
        )

    # -- OS group ---------------------------------------------------------------------------

    @staticmethod
    def _echo(body):
        d = body.get("d")
        if type(d) is not str:
            raise SmpError(EINVAL, "echo: d must be a text string")
        if len(d) > _ECHO_MAX:
            raise SmpError(EMSGSIZE, "echo: at most %d characters" % _ECHO_MAX)
        return {"r": d}

    def _reset(self):
        if self._session_running():
            raise SmpError(EBUSY, "a session is running: reset after it")
        if self.reset is not None:
            self.reset()
        return {}

    # -- Image group ------------------------------------------------------------------------

    def _images(self):
        out = []
        for img in self.slots.images():
            e = {}
            for k in _IMAGE_KEYS:
                v = img.get(k)
                if v is not None:
                    e[k] = bytes(v) if k == "hash" else v
            out.append(e)
        return {"images": out, "splitStatus": 0}

    def _state_write(self, body):
        h = body.get("hash")
        confirm = body.get("confirm", False)
        if type(confirm) is not bool:
            raise SmpError(EINVAL, "confirm: must be true or false")
        if h is not None:
            if not _is_bytes(h) or len(h) != _SHA256_SIZE:
                raise SmpError(EINVAL, "hash: 32 bytes (SHA-256)", IMG_INVALID_HASH)
            h = bytes(h)
            if not any(bytes(i.get("hash") or b"") == h for i in self.slots.images()):
                raise SmpError(ENOENT, "hash: no image with this hash", IMG_HASH_NOT_FOUND)
        if confirm:
            self.slots.confirm(h)
        elif h is None:
            raise SmpError(EINVAL, "hash: needed to mark an image for test", IMG_INVALID_HASH)
        else:
            yield from _steps(self.slots, "mark_test", h)
        return self._images()

    def _erase(self, body):
        slot = body.get("slot", 1)
        if not _is_int(slot) or slot != 1:
            raise SmpError(EINVAL, "slot: only slot 1 (the inactive one) can be erased")
        self._end_upload()
        yield from _steps(self.slots, "erase")
        return {}

    def _upload(self, body):
        off = body.get("off")
        data = body.get("data")
        if not _is_int(off) or off < 0:
            raise SmpError(EINVAL, "off: a non-negative integer", IMG_INVALID_OFFSET)
        if not _is_bytes(data):
            raise SmpError(EINVAL, "data: a byte string")
        if self._session_running():
            raise SmpError(EBUSY, "a session is running: update after it")
        if off == 0:
            total, sha = self._upload_args(body)
            up = self._up
            if up is not None and up[0] == total and up[1] == sha:
                # the same image again from the start: resume where it stopped (MCUmgr clients
                # always open with offset 0 and the image's SHA-256)
                nxt = self.slots.upload_offset() or 0
                if nxt > 0:
                    self._touch()
                    return {"off": nxt}
            elif up is not None and self.device.update_in_progress:
                raise SmpError(
                    EBUSY,
                    "another upload is in progress: erase it or wait %d s" % (STALL_MS // 1000),
                )
            self.slots.upload_begin(total, sha)
            self._up = [total, sha]
        else:
            up = self._up
            if up is None:
                raise SmpError(EBADSTATE, "no upload begun: start at offset 0 with len and sha")
            expected = self.slots.upload_offset() or 0
            if off != expected:
                kind = "gap" if off > expected else "out of order"
                raise SmpError(
                    EINVAL, "off %d: %s, expected %d" % (off, kind, expected), IMG_INVALID_OFFSET
                )
        total = self._up[0]
        if off + len(data) > total:
            raise SmpError(EINVAL, "data: past the announced len", IMG_DATA_OVERRUN)
        self._touch()
        nxt = self.slots.upload_write(off, data)
        if nxt < total:
            return {"off": nxt}
        try:
            # SHA-256, signature, board, ABI, counter; unpacked: the longest request
            yield from _steps(self.slots, "upload_complete")
        finally:
            self._end_upload()
        return {"off": nxt, "match": True}

    @staticmethod
    def _upload_args(body):
        total = body.get("len")
        sha = body.get("sha")
        image = body.get("image", 0)
        if not _is_int(image) or image != 0:
            raise SmpError(EINVAL, "image: this device has one image (0)")
        if not _is_int(total) or total <= 0:
            raise SmpError(EINVAL, "len: the image size is needed at offset 0", IMG_INVALID_LENGTH)
        if not _is_bytes(sha) or len(sha) != _SHA256_SIZE:
            raise SmpError(
                EINVAL, "sha: the image's SHA-256 is needed at offset 0", IMG_INVALID_HASH
            )
        return total, bytes(sha)

    # -- upload bookkeeping -----------------------------------------------------------------

    def _touch(self):
        self._last_ms = ticks_ms()
        self.device.update_in_progress = True

    def _end_upload(self):
        self._up = None
        self.device.update_in_progress = False

    def poll(self):
        # Called at every request and periodically: a phone that walked away mid-upload must
        # not block sessions for ever. The upload stays resumable (offset 0 with the same SHA).
        if self.device.update_in_progress and self._up is not None:
            if ticks_diff(ticks_ms(), self._last_ms) >= STALL_MS:
                self.device.update_in_progress = False

    def _session_running(self):
        return self.device.session.state != ses.IDLE


def _steps(slots, name, *args):
    # Runs the slot store's step generator `<name>_steps`, or its plain `name` in one step when
    # it has none (a store without steps: a host bench's stand-in).
    steps = getattr(slots, name + "_steps", None)
    if steps is None:
        return getattr(slots, name)(*args)
    return (yield from steps(*args))


def _update_error(e):
    # slots.UpdateError(rc, message) -> SmpError; anything else is EUNKNOWN with its text
    args = e.args
    if len(args) >= 2 and _is_int(args[0]) and 0 < args[0] < 256:
        return SmpError(args[0], str(args[1]))
    return SmpError(EUNKNOWN, "%s: %s" % (type(e).__name__, e))
