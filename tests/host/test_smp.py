"""The SMP handler (firmware/update/smp.py) at the byte level, against a slot store that behaves
like firmware.update.slots: every command an MCUmgr client sends, answered so smpclient's own
message classes parse it; bad input (truncated, not CBOR, unknown group, offsets out of order or
with gaps, a second image mid-upload) refused with a clear SMP error and nothing changed; the
session and the upload exclude each other. Long requests run in steps under handle_async, other
tasks running between them; a request that comes meanwhile is answered EBUSY."""

import asyncio
import hashlib

import cbor2
import pytest
from smp import header as smphdr
from smpclient.generics import error_v1, error_v2, success
from smpclient.requests.image_management import (
    ImageErase,
    ImageStatesRead,
    ImageStatesWrite,
    ImageUploadWrite,
)
from smpclient.requests.os_management import EchoWrite, MCUMgrParametersRead, ResetWrite

from backhug_host import hostrt
from backhug_host.sim.device import SimDevice
from firmware import app, commands, runtime
from firmware import session as ses
from firmware.update import smp

RUNNING = {"version": "0.2.0", "hash": hashlib.sha256(b"factory").digest()}


class FakeError(Exception):
    pass  # UpdateError(rc, message)


class FakeSlots:
    """Slots' API and rules, in RAM: the upload goes to a buffer, completion checks the SHA."""

    def __init__(self):
        self.part = None  # [total, sha, bytearray, next]
        self.other = None  # {"version", "hash"} once an upload completed
        self.pending = False
        self.confirmed_calls = []
        self.begins = 0
        self.steps = 3  # yields of upload_complete_steps, as slots.Slots' long work has
        self.steps_taken = 0

    def images(self):
        out = [dict(slot=0, name="a", bootable=True, confirmed=True, active=True, **RUNNING)]
        if self.other:
            out.append(dict(slot=1, name="b", bootable=True, pending=self.pending, **self.other))
        return out

    def upload_begin(self, total, sha):
        if total > 100_000:
            raise FakeError(smp.ENOMEM, "bundle too large for the slot")
        self.begins += 1
        self.part = [total, sha, bytearray(total), 0]

    def upload_offset(self):
        return self.part[3] if self.part else 0

    def upload_write(self, off, data):
        p = self.part
        if off != p[3]:
            raise FakeError(smp.EINVAL, "slots: offset")
        p[2][off : off + len(data)] = data
        p[3] = off + len(data)
        return p[3]

    def upload_complete_steps(self):
        for _ in range(self.steps):
            self.steps_taken += 1
            yield
        return self.upload_complete()

    def upload_complete(self):
        total, sha, buf, _ = self.part
        self.part = None
        if hashlib.sha256(buf).digest() != sha:
            raise FakeError(smp.ECORRUPT, "SHA-256 of the upload does not match")
        self.other = {"version": "0.3.0", "hash": hashlib.sha256(bytes(buf)).digest()}
        return {"version": "0.3.0"}

    def erase(self):
        self.part = None
        self.other = None
        self.pending = False

    def mark_test(self, h):
        if self.other is None or h != self.other["hash"]:
            raise FakeError(smp.EBADSTATE, "not the inactive slot")
        self.pending = True

    def confirm(self, h=None):
        self.confirmed_calls.append(h)


@pytest.fixture
def dev():
    hw = SimDevice("sim", person="nobody", clock=hostrt.install_virtual()).build_hal()
    return app.Device("sim", hw=hw)


@pytest.fixture
def server(dev):
    resets = []
    s = smp.SmpServer(FakeSlots(), dev, reset=lambda: resets.append(1))
    s.resets = resets
    return s


def ask(server, request, **kw):
    """What SMPClient.request does with the answer: the response, else error v1, else v2."""
    return parse(request, server.handle(request.BYTES, **kw))


def parse(request, raw):
    head = smphdr.Header.loads(raw[:8])
    assert head.sequence == request.header.sequence and head.length == len(raw) - 8
    assert head.op == request.header.op + 1 and head.version == request.header.version
    for cls in (request._Response, request._ErrorV1, request._ErrorV2):
        try:
            return cls.loads(raw)
        except Exception:  # noqa: BLE001, S112 - pydantic's ValidationError: try the next shape
            continue
    raise AssertionError("unparseable answer %r" % raw)


def chunks(image, size=200):
    sha = hashlib.sha256(image).digest()
    out = [ImageUploadWrite(off=0, data=image[:size], len=len(image), sha=sha)]
    for off in range(size, len(image), size):
        out.append(ImageUploadWrite(off=off, data=image[off : off + size]))
    return out


def test_header_bytes_and_echo(dev):
    assert smp.pack_header(smp.OP_WRITE_RSP, smp.V2, 0x1234, 1, 7, 5) == bytes(
        [0x0B, 0, 0x12, 0x34, 0, 1, 7, 5]
    )
    # a literal request: v1 write, OS group, sequence 9, echo {"d": "hi"}
    body = cbor2.dumps({"d": "hi"})
    pkt = bytes([2, 0, 0, len(body), 0, 0, 9, 0]) + body
    rsp = smp.SmpServer(FakeSlots(), dev).handle(pkt)
    assert rsp[:8] == bytes([3, 0, 0, len(rsp) - 8, 0, 0, 9, 0])
    assert cbor2.loads(rsp[8:]) == {"r": "hi"}


def test_os_group(server):
    r = ask(server, EchoWrite(d="hello"))
    assert success(r) and r.r == "hello"
    r = ask(server, MCUMgrParametersRead())
    assert success(r) and (r.buf_size, r.buf_count) == (smp.BUF_SIZE, 1)
    r = ask(server, MCUMgrParametersRead(), buf_size=512)  # a BLE link sizes it to its MTU
    assert r.buf_size == 512
    r = ask(server, ResetWrite())
    assert success(r) and server.resets == [1]


def test_image_state_as_a_client_sees_it(server):
    r = ask(server, ImageStatesRead())
    assert success(r)
    (img,) = r.images
    assert (img.slot, img.version, img.hash) == (0, "0.2.0", RUNNING["hash"])
    assert img.active and img.confirmed and img.bootable and not img.pending


def test_upload_test_confirm(server, dev):
    image = bytes(range(256)) * 9
    offs = []
    for req in chunks(image):
        r = ask(server, req)
        assert success(r), r
        offs.append(r.off)
        assert dev.update_in_progress == (r.off < len(image))
    assert offs[-1] == len(image) and r.match is True
    states = ask(server, ImageStatesRead()).images
    new = states[1]
    assert (new.slot, new.version, new.pending) == (1, "0.3.0", False)
    r = ask(server, ImageStatesWrite(hash=new.hash))
    assert success(r) and r.images[1].pending
    r = ask(server, ImageStatesWrite(confirm=True))
    assert success(r) and server.slots.confirmed_calls == [None]


def test_resume_with_the_same_image_from_offset_zero(server):
    image = b"x" * 1000
    reqs = chunks(image)
    for req in reqs[:3]:
        ask(server, req)
    # the phone reconnects and starts over, as MCUmgr clients do: told where to go on
    r = ask(server, chunks(image)[0])
    assert success(r) and r.off == 600 and server.slots.begins == 1
    for req in reqs[3:]:
        r = ask(server, req)
    assert r.off == 1000 and server.slots.other is not None


@pytest.mark.parametrize("version", [smphdr.Version.V1, smphdr.Version.V2])
def test_out_of_order_gap_and_a_second_image_are_refused(server, dev, version):
    image = b"y" * 1000
    reqs = chunks(image)
    ask(server, reqs[0])
    ask(server, reqs[1])

    def refused(req, rc, group_rc, words):
        req = type(req)(version=version, **req.model_dump(exclude_unset=True, exclude={"header"}))
        r = ask(server, req)
        if version == smphdr.Version.V2 and group_rc is not None:
            assert error_v2(r) and (r.err.group, r.err.rc) == (1, group_rc), r
        else:
            assert error_v1(r) and r.rc == rc and words in r.rsn, r
        return r

    refused(reqs[3], smp.EINVAL, smp.IMG_INVALID_OFFSET, "gap, expected 400")
    refused(reqs[1], smp.EINVAL, smp.IMG_INVALID_OFFSET, "out of order, expected 400")
    refused(chunks(b"z" * 800)[0], smp.EBUSY, None, "another upload is in progress")
    refused(ImageUploadWrite(off=400, data=b"q" * 700), smp.EINVAL, 31, "past the announced")
    # nothing of that was written: the upload goes on and completes
    assert server.slots.upload_offset() == 400 and dev.update_in_progress
    for req in reqs[2:]:
        r = ask(server, req)
    assert success(r) and r.off == 1000


def test_bad_sha_fails_the_upload_and_frees_the_device(server, dev):
    image = b"w" * 500
    reqs = chunks(image)
    first = ImageUploadWrite(off=0, data=image[:200], len=500, sha=b"\x00" * 32)
    ask(server, first)
    ask(server, reqs[1])
    r = ask(server, reqs[2])
    assert error_v1(r) and r.rc == smp.ECORRUPT and "SHA-256" in r.rsn
    assert not dev.update_in_progress and server.slots.other is None


def test_missing_len_or_sha_and_a_chunk_without_a_beginning(server):
    r = ask(server, ImageUploadWrite(off=0, data=b"ab", len=2))
    assert error_v2(r) and r.err.rc == smp.IMG_INVALID_HASH
    r = ask(server, ImageUploadWrite(off=0, data=b"ab", sha=b"1" * 32))
    assert error_v2(r) and r.err.rc == smp.IMG_INVALID_LENGTH
    r = ask(server, ImageUploadWrite(off=10, data=b"ab"))
    assert error_v1(r) and r.rc == smp.EBADSTATE and "offset 0" in r.rsn
    r = ask(server, ImageUploadWrite(off=0, data=b"", len=200_000, sha=b"1" * 32))
    assert error_v1(r) and r.rc == smp.ENOMEM and "too large" in r.rsn


def test_session_and_upload_exclude_each_other(server, dev):
    reqs = chunks(b"v" * 1000)
    ask(server, reqs[0])
    assert dev.update_in_progress
    code, why = dev.commands.start(duration_min=10)
    assert code == commands.E_BUSY and "update" in why
    assert dev.session.state == ses.IDLE
    r = ask(server, ImageErase())
    assert success(r) and not dev.update_in_progress and server.slots.part is None
    assert dev.commands.start(duration_min=10) == (commands.OK, "")
    r = ask(server, reqs[0])
    assert error_v1(r) and r.rc == smp.EBUSY and "session" in r.rsn
    assert server.slots.part is None and not dev.update_in_progress
    r = ask(server, ResetWrite())
    assert error_v1(r) and r.rc == smp.EBUSY and server.resets == []


def test_a_stalled_upload_stops_blocking_sessions(server, dev):
    clock = runtime._host  # the virtual clock the device fixture installed
    reqs = chunks(b"u" * 1000)
    ask(server, reqs[0])
    clock.advance_ms(smp.STALL_MS - 1)
    server.poll()
    assert dev.update_in_progress
    clock.advance_ms(1)
    server.poll()
    assert not dev.update_in_progress  # the phone walked away: sessions may start again
    # the upload itself stays resumable once nothing else runs
    r = ask(server, reqs[0])
    assert success(r) and r.off == 200 and dev.update_in_progress


@pytest.mark.parametrize(
    "packet, rc, words",
    [
        (bytes([2, 0, 0, 3, 0, 0, 1, 0]) + b"\xff\xff\xff", smp.EINVAL, "not CBOR"),
        (bytes([2, 0, 0, 2, 0, 0, 1, 0]) + cbor2.dumps([1]), smp.EINVAL, "not a CBOR map"),
        (bytes([2, 0, 0, 9, 0, 0, 1, 0]) + b"\xa0", smp.EINVAL, "header says 9"),
        (bytes([0, 0, 0, 0, 0, 9, 1, 0]), smp.ENOTSUP, "group 9"),
        (bytes([0, 0, 0, 0, 0, 1, 1, 7]), smp.ENOTSUP, "command 7"),
        (bytes([0, 0, 0, 0, 0, 0, 1, 0]), smp.ENOTSUP, "(r)"),  # echo is a write
        (bytes([2, 0, 0, 1, 0, 0, 1, 0]) + b"\xa1", smp.EINVAL, "not CBOR"),  # cut short
        (bytes([2, 0, 0, 4, 0, 0, 1, 0]) + cbor2.dumps({"d": 5}), smp.EINVAL, "d must be"),
    ],
)
def test_malformed_requests(server, packet, rc, words):
    rsp = server.handle(packet)
    assert rsp[:1] == bytes([packet[0] + 1]) and rsp[6] == 1
    body = cbor2.loads(rsp[8:])
    assert body["rc"] == rc and words in body["rsn"], body


def test_truncated_header_and_responses_get_no_answer(server):
    assert server.handle(b"\x02\x00\x00") is None
    assert server.handle(bytes([1, 0, 0, 0, 0, 0, 1, 0])) is None  # a read response
    assert server.requests == 0


def test_a_version_newer_than_2_is_answered_in_version_2(server):
    rsp = server.handle(bytes([3 << 3 | smp.OP_WRITE, 0, 0, 1, 0, 0, 4, 0]) + b"\xa0")
    assert rsp[0] == smp.V2 << 3 | smp.OP_WRITE_RSP and rsp[6] == 4
    assert cbor2.loads(rsp[8:])["rc"] == smp.UNSUPPORTED_TOO_NEW


def test_a_long_request_lets_other_tasks_run_and_a_second_one_is_refused(server, dev):
    image = bytes(range(200)) * 5
    reqs = chunks(image)
    for req in reqs[:-1]:
        ask(server, req)
    server.slots.steps = 20

    async def main():
        turns = []

        async def control_loop():  # stands for every other task on the device
            while True:
                turns.append(server.slots.steps_taken)
                await asyncio.sleep(0)

        other = asyncio.create_task(control_loop())
        last = asyncio.create_task(server.handle_async(reqs[-1].BYTES))
        while server.slots.steps_taken < 5:
            await asyncio.sleep(0)
        assert dev.update_in_progress  # a session still cannot start
        echo = EchoWrite(d="hi")
        busy = parse(echo, await server.handle_async(echo.BYTES))
        done = parse(reqs[-1], await last)
        again = parse(echo, await server.handle_async(echo.BYTES))
        other.cancel()
        return turns, busy, done, again

    turns, busy, done, again = asyncio.run(main())
    # the other task ran between every two steps of the completion
    assert set(range(1, 20)) <= set(turns)
    assert error_v1(busy) and busy.rc == smp.EBUSY and "busy" in busy.rsn
    assert success(done) and done.off == len(image) and done.match is True
    assert success(again) and again.r == "hi"
    assert server.busy_refused == 1 and not dev.update_in_progress


def test_a_request_cancelled_mid_way_leaves_the_server_free(server, dev):
    reqs = chunks(b"t" * 600)
    for req in reqs[:-1]:
        ask(server, req)
    server.slots.steps = 10

    async def main():
        last = asyncio.create_task(server.handle_async(reqs[-1].BYTES))
        while server.slots.steps_taken < 3:
            await asyncio.sleep(0)
        last.cancel()
        with pytest.raises(asyncio.CancelledError):
            await last

    asyncio.run(main())
    assert not dev.update_in_progress  # the upload no longer blocks sessions
    r = ask(server, EchoWrite(d="still here"))
    assert success(r) and r.r == "still here"


def test_a_store_without_step_forms_is_run_in_one_step(dev):
    slots = FakeSlots()
    slots.upload_complete_steps = None  # a host bench's stand-in has only upload_complete()
    server = smp.SmpServer(slots, dev)
    image = b"s" * 300
    for req in chunks(image):
        r = ask(server, req)
    assert success(r) and r.match is True and slots.other is not None
