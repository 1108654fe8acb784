"""The reference client (backhug_host.client) against a scripted device on an in-memory link.

FakeDevice plays the device's side of docs/ble-protocol.md with firmware.ble.proto: it answers
commands and setting writes on the control point, keeps uploads by offset, cuts telemetry to the
MTU, and can lose answers, stay silent or drop the link. Notifications are delivered on the next
loop turn, as a radio would.
"""

import asyncio
import json
import zlib

import pytest

from backhug_host.client import cli
from backhug_host.client.core import (
    BackHugClient,
    CommandRefused,
    CommandTimeout,
    Disconnected,
    ProtocolMismatch,
)
from backhug_host.client.link import Found, Link, LinkError
from firmware.ble import proto

PROGRAMME = json.dumps(
    {
        "name": "upper back focus",
        "steps": [
            {"area": "full", "flow": "wave", "strength": 4, "duration_s": 180},
            {"area": "upper", "flow": "pulse", "strength": 6, "duration_s": 300},
            {"area": "middle", "flow": "walk", "strength": 5, "duration_s": 240},
        ],
    }
).encode()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


class FakeDevice:
    def __init__(self, fingers=26, major=proto.PROTOCOL_MAJOR):
        self.fingers = fingers
        self.major = major
        self.state = 0
        self.fault = 0
        self.level = 3
        self.area = 3
        self.flow = (0, 100)
        self.elapsed_s = self.total_s = 0
        self.flags = proto.F_PERSON
        self.end = 0
        self.report = None
        self.history = {}  # user -> records, newest first
        self.faultlog = []
        self.selected = None  # what the history/fault characteristic shows
        self.upload = None  # [total, crc, bytearray]
        self.programme = None  # the committed programme bytes
        self.silent = False  # no answers at all
        self.lose_write_once = set()  # upload offsets whose write is lost once (no effect)
        self.lose_answer_once = set()  # upload offsets whose answer is lost once (handled)
        self.stale_answer = False  # send a refusal with another token before each answer
        self.drop_after_pair = False  # pairing window closed: drop the link after pairing
        self.data_writes = []  # (offset, length) of every upload data write
        self.tokens = []
        self.link = None

    # -- what the device sends -----------------------------------------------------------------

    def state_bytes(self):
        buf = bytearray(proto.STATE_SIZE)
        remaining = self.total_s - self.elapsed_s
        proto.pack_state(
            buf, self.state, self.fault, 0xFF, self.level, self.area, self.flow[0],
            self.elapsed_s, remaining, self.total_s, self.flags, self.end,
        )  # fmt: skip
        return bytes(buf)

    def notify_state(self):
        self.link.notify(proto.STATE_UUID, self.state_bytes())

    def answer(self, op, token, result, reason=""):
        if self.stale_answer:
            self.link.notify(
                proto.CONTROL_UUID,
                proto.pack_answer(op, (token + 7) & 0xFF, proto.E_STATE, "stale", self.link.mtu),
            )
        self.link.notify(
            proto.CONTROL_UUID, proto.pack_answer(op, token, result, reason, self.link.mtu)
        )

    def up_answer(self, op, result, reason=""):
        nxt = len(self.upload[2]) if self.upload else 0
        self.link.notify(
            proto.PROGRAMME_UUID, proto.pack_up_answer(op, result, nxt, reason, self.link.mtu)
        )

    def send_frame(self, seq, forces, positions, legrest=2, level=5, skip_part=None):
        """One telemetry frame, cut into notifications as the device does at this MTU."""
        per = proto.telemetry_fingers_per_packet(self.link.mtu)
        buf = bytearray(proto.payload_room(self.link.mtu))
        for k, first in enumerate(range(0, self.fingers, per)):
            n = min(per, self.fingers - first)
            used = proto.pack_telemetry(
                buf, seq, first, n, legrest, level, 6000, forces, positions
            )
            if k != skip_part:
                self.link.notify(proto.TELEMETRY_UUID, bytes(buf[:used]))

    # -- what the device receives --------------------------------------------------------------

    def read(self, uuid):
        if uuid == proto.PROTOCOL_UUID:
            b = bytearray(proto.pack_protocol(self.fingers, 13, 2, 0x0F))
            b[0] = self.major
            return bytes(b)
        if uuid == proto.STATE_UUID:
            return self.state_bytes()
        if uuid == proto.STRENGTH_UUID:
            return proto.pack_strength(self.level)
        if uuid == proto.AREA_UUID:
            return bytes((self.area,))
        if uuid == proto.FLOW_UUID:
            return bytes(self.flow)
        if uuid == proto.TENSION_UUID:
            return proto.pack_report(self.report)
        if uuid in (proto.HISTORY_UUID, proto.FAULTLOG_UUID):
            return self.selected
        raise LinkError("no characteristic %s" % uuid)

    def write(self, uuid, data):
        if self.silent:
            return
        if uuid == proto.CONTROL_UUID:
            return self.command(data)
        if uuid == proto.PROGRAMME_UUID:
            return self.programme_write(data)
        kind = {proto.STRENGTH_UUID: 0, proto.AREA_UUID: 1, proto.FLOW_UUID: 2}[uuid]
        op = proto.OP_SET_STRENGTH + kind
        if kind == 0:
            if not 1 <= data[0] <= 10:
                self.answer(op, 0, proto.E_VALUE, "strength is 1..10, not %d" % data[0])
            else:
                self.level = data[0]
                self.answer(op, 0, proto.OK)
            self.link.notify(uuid, proto.pack_strength(self.level))
        elif kind == 1:
            self.area = data[0]
            self.answer(op, 0, proto.OK)
        else:
            self.flow = (data[0], data[1])
            self.answer(op, 0, proto.OK)

    def command(self, data):
        try:
            op, token, params = proto.unpack_command(data)
        except ValueError as e:
            return self.answer(data[0], data[1] if len(data) > 1 else 0, e.args[0], e.args[1])
        self.tokens.append(token)
        idle = self.state == 0
        if op == proto.OP_START:
            if params[0] not in (10, 20, 30, 40):
                return self.answer(op, token, proto.E_VALUE, "minutes: 10, 20, 30 or 40")
            if not idle:
                return self.answer(op, token, proto.E_STATE, "a session is running")
            self.state, self.total_s, self.elapsed_s = 1, params[0] * 60, 0
        elif op == proto.OP_START_PROGRAMME:
            if self.programme is None:
                return self.answer(op, token, proto.E_NO_PROGRAMME, "upload a programme first")
            self.state, self.total_s, self.elapsed_s = 1, 720, 0
            self.flags |= proto.F_PROGRAMME
        elif op == proto.OP_PAUSE:
            if self.state != 4:
                name = proto.STATE_IDS[self.state]
                return self.answer(op, token, proto.E_STATE, "cannot pause while " + name)
            self.state = 6
        elif op == proto.OP_STOP:
            if idle:
                return self.answer(op, token, proto.E_STATE, "no session running")
            self.state, self.end = 0, 2
        elif op == proto.OP_SELECT_HISTORY:
            user, index = params
            recs = self.history.get(user, [])
            if index < len(recs):
                self.selected = proto.pack_history(0, user, index, len(recs), recs[index])
            else:
                self.selected = proto.pack_history(1, user, index, len(recs))
        elif op == proto.OP_SELECT_FAULT:
            (index,) = params
            n = len(self.faultlog)
            entry = self.faultlog[index] if index < n else None
            self.selected = proto.pack_fault(0 if entry else 1, index, n, entry)
        self.answer(op, token, proto.OK)
        self.notify_state()

    def programme_write(self, data):
        op = data[0]
        if op == proto.UP_BEGIN:
            total, crc = int.from_bytes(data[1:3], "little"), int.from_bytes(data[3:7], "little")
            self.upload = [total, crc, bytearray()]
            return self.up_answer(op, proto.OK)
        if op == proto.UP_DATA:
            offset = int.from_bytes(data[1:3], "little")
            self.data_writes.append((offset, len(data) - 3))
            if offset in self.lose_write_once:
                self.lose_write_once.discard(offset)
                return
            if offset != len(self.upload[2]):
                return self.up_answer(
                    op, proto.E_VALUE, "expected offset %d" % len(self.upload[2])
                )
            self.upload[2] += data[3:]
            if offset in self.lose_answer_once:
                self.lose_answer_once.discard(offset)
                return
            return self.up_answer(op, proto.OK)
        if op == proto.UP_COMMIT:
            total, crc, got = self.upload
            if len(got) != total or zlib.crc32(got) != crc:
                return self.up_answer(op, proto.E_VALUE, "length or CRC does not match")
            steps = json.loads(bytes(got))["steps"]
            for i, step in enumerate(steps):
                if step["flow"] not in proto.FLOW_IDS:
                    reason = "step %d: unknown flow %r" % (i + 1, step["flow"])
                    return self.up_answer(op, proto.E_VALUE, reason)
            self.programme = bytes(got)
            return self.up_answer(op, proto.OK)


class FakeLink(Link):
    def __init__(self, device, mtu=247):
        self.device = device
        self._mtu = mtu
        self.subs = {}
        self.connected = True
        self.paired = False
        self.notified = []  # (uuid, value) of everything sent
        device.link = self

    @property
    def mtu(self):
        return self._mtu

    @property
    def is_connected(self):
        return self.connected

    def notify(self, uuid, value):
        # a notification carries at most MTU - 3 bytes of value
        assert len(value) <= self._mtu - 3, (uuid, len(value))
        self.notified.append((uuid, value))
        cb = self.subs.get(uuid)
        if cb is not None and self.connected:
            asyncio.get_running_loop().call_soon(cb, bytes(value))

    def _live(self):
        if not self.connected:
            raise LinkError("not connected")

    async def read(self, uuid):
        self._live()
        return self.device.read(uuid)

    async def write(self, uuid, data):
        self._live()
        assert len(data) <= self._mtu - 3  # what one ATT write request carries
        self.device.write(uuid, bytes(data))

    async def subscribe(self, uuid, callback):
        self._live()
        self.subs[uuid] = callback

    async def pair(self):
        self.paired = True
        if self.device.drop_after_pair:
            asyncio.get_running_loop().call_later(0.05, self.drop)

    async def disconnect(self):
        self.drop()

    def drop(self):
        if self.connected:
            self.connected = False
            self.subs = {}
            asyncio.get_running_loop().call_soon(self._dropped)

    def reconnect(self):
        self.connected = True


async def connected(device=None, mtu=247, **kw):
    device = device or FakeDevice()
    link = FakeLink(device, mtu)
    client = BackHugClient(link, **kw)
    await client.connect()
    return client, device, link


# -- connecting ---------------------------------------------------------------------------------


def test_connect_reads_board_state_and_settings():
    async def main():
        dev = FakeDevice()
        dev.level, dev.area, dev.flow = 5, 0, (1, 120)
        client, _, link = await connected(dev)
        assert client.protocol["fingers"] == 26 and client.protocol["major"] == 1
        assert client.latest_state["state"] == "idle"
        assert client.settings == {"strength": 5, "area": "upper", "flow": "pulse", "tempo": 120}
        assert proto.TELEMETRY_UUID in link.subs and proto.CONTROL_UUID in link.subs

    run(main())


def test_a_programmes_mixed_area_and_flow_read_as_none():
    async def main():
        dev = FakeDevice()
        dev.area, dev.flow = proto.NONE_ID, (proto.NONE_ID, 100)
        client, _, _ = await connected(dev)
        assert client.settings == {"strength": 3, "area": None, "flow": None, "tempo": 100}
        assert client.bad_notifications == []

    run(main())


@pytest.mark.parametrize("major", [0, 2])
def test_other_protocol_major_is_refused_before_anything_else(major):
    async def main():
        dev = FakeDevice(major=major)
        link = FakeLink(dev)
        with pytest.raises(ProtocolMismatch, match="protocol %d.0, this client 1.0" % major):
            await BackHugClient(link).connect()
        assert link.subs == {}  # nothing subscribed, nothing written

    run(main())


# -- commands and settings ------------------------------------------------------------------------


def test_commands_are_matched_to_their_answers_by_token():
    async def main():
        dev = FakeDevice()
        dev.stale_answer = True  # every answer is preceded by a refusal with another token
        client, _, _ = await connected(dev)
        answer = await client.start(20, 1)
        assert answer["result"] == proto.OK and answer["token"] == dev.tokens[-1]
        await client.wait_state(lambda s: s["state"] == "scanning")
        answer = await client.stop()
        assert answer["token"] == dev.tokens[-1]
        assert len(set(dev.tokens)) == 2 and 0 not in dev.tokens  # fresh token per command
        assert dev.state == 0 and dev.end == 2

    run(main())


def test_refused_command_surfaces_result_and_reason_and_changes_nothing():
    async def main():
        client, dev, _ = await connected()
        with pytest.raises(CommandRefused) as e:
            await client.pause()
        assert e.value.result == proto.E_STATE
        assert e.value.reason == "cannot pause while idle"
        assert str(e.value) == "pause refused: wrong state: cannot pause while idle"
        with pytest.raises(CommandRefused, match="minutes: 10, 20, 30 or 40"):
            await client.start(25)
        assert dev.state == 0

    run(main())


def test_settings_are_answered_and_a_refused_strength_snaps_back():
    async def main():
        client, dev, _ = await connected()
        answer = await client.set_strength(6)
        assert (answer["op"], answer["token"]) == (proto.OP_SET_STRENGTH, 0)
        await asyncio.sleep(0)
        assert dev.level == 6 and client.settings["strength"] == 6
        with pytest.raises(CommandRefused) as e:
            await client.set_strength(11)
        assert (e.value.result, e.value.reason) == (proto.E_VALUE, "strength is 1..10, not 11")
        await asyncio.sleep(0)
        assert client.settings["strength"] == 6  # the device notified the value in force
        await client.set_area("lower")
        await client.set_flow("alternate", 150)
        assert dev.area == 2 and dev.flow == (2, 150)
        with pytest.raises(ValueError):
            await client.set_area("sideways")

    run(main())


def test_silent_device_times_out_with_a_clear_message():
    async def main():
        client, dev, _ = await connected(timeout_s=0.1, retries=1)
        dev.silent = True
        with pytest.raises(CommandTimeout, match=r"no answer to pause \(token 1\) within 0.1 s"):
            await client.pause()
        with pytest.raises(CommandTimeout, match="no answer to set strength"):
            await client.set_strength(4)
        with pytest.raises(CommandTimeout, match="no answer to upload begin within 0.1 s"):
            await client.upload_programme(PROGRAMME)
        with pytest.raises(CommandTimeout, match="no telemetry frame within 0.1 s"):
            await client.next_frame()
        # a late answer to the timed-out command is not taken for the next one's
        dev.silent = False
        dev.answer(proto.OP_PAUSE, 1, proto.OK)
        with pytest.raises(CommandRefused, match="cannot pause while idle"):
            await client.pause()

    run(main())


def test_link_loss_fails_waiting_commands_and_resync_after_reconnect():
    async def main():
        client, dev, link = await connected()
        lost = []
        client.on_disconnect = lambda: lost.append(True)
        dev.silent = True
        pending = asyncio.ensure_future(client.pause())
        await asyncio.sleep(0.01)
        link.drop()
        with pytest.raises(Disconnected):
            await pending
        assert lost == [True]
        with pytest.raises(Disconnected):
            await client.stop()
        # the session went on while the phone was away
        dev.silent = False
        dev.state, dev.total_s, dev.elapsed_s, dev.level = 4, 1200, 300, 7
        link.reconnect()
        await client.connect()
        assert client.latest_state["state"] == "treating"
        assert client.latest_state["elapsed_s"] == 300 and client.settings["strength"] == 7
        await client.pause()
        assert dev.state == 6

    run(main())


# -- programme upload -----------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [23, 247])
def test_programme_upload_arrives_whole_in_mtu_sized_chunks(mtu):
    async def main():
        client, dev, _ = await connected(mtu=mtu)
        seen = []
        answer = await client.upload_programme(PROGRAMME, progress=lambda n, t: seen.append(n))
        assert answer["result"] == proto.OK and dev.programme == PROGRAMME
        room = proto.up_chunk_room(mtu)
        assert max(n for _, n in dev.data_writes) == room
        assert len(dev.data_writes) == -(-len(PROGRAMME) // room)
        assert seen[-1] == len(PROGRAMME)
        await client.start_programme(2)
        assert dev.state == 1 and dev.flags & proto.F_PROGRAMME

    run(main())


def test_upload_resumes_after_a_lost_answer_and_a_lost_write():
    async def main():
        client, dev, _ = await connected(mtu=23, timeout_s=0.1)
        room = proto.up_chunk_room(23)
        dev.lose_answer_once = {2 * room}  # handled, answer lost: resent, refused, resumed
        dev.lose_write_once = {5 * room}  # lost altogether: resent, accepted
        await client.upload_programme(PROGRAMME)
        assert dev.programme == PROGRAMME
        offsets = [o for o, _ in dev.data_writes]
        assert offsets.count(2 * room) == 2 and offsets.count(5 * room) == 2
        assert offsets.count(3 * room) == 1  # resumed at the offset the device gave

    run(main())


def test_upload_resumes_from_the_offset_the_device_expects():
    async def main():
        client, dev, _ = await connected(mtu=23)
        real = dev.programme_write

        def behind(data):
            # the device lost the second chunk's bytes but acknowledged them (a restart)
            real(data)
            if data[0] == proto.UP_DATA and len(dev.data_writes) == 2:
                del dev.upload[2][int.from_bytes(data[1:3], "little") :]

        dev.programme_write = behind
        await client.upload_programme(PROGRAMME)
        assert dev.programme == PROGRAMME
        room = proto.up_chunk_room(23)
        assert [o for o, _ in dev.data_writes][:4] == [0, room, 2 * room, room]

    run(main())


def test_refused_commit_raises_with_the_devices_reason():
    async def main():
        client, dev, _ = await connected()
        bad = json.dumps({"steps": [{"area": "full", "flow": "twirl"}]}).encode()
        with pytest.raises(CommandRefused) as e:
            await client.upload_programme(bad)
        assert e.value.what == "upload commit" and e.value.result == proto.E_VALUE
        assert e.value.reason == "step 1: unknown flow 'twirl'"
        assert dev.programme is None
        with pytest.raises(ValueError, match="at most 4096"):
            await client.upload_programme(b" " * 4097)

    run(main())


# -- telemetry ------------------------------------------------------------------------------------


def _frame(seq):
    forces = [(seq * 100 + i * 37) % 15000 for i in range(26)]
    positions = [i * 1000 + seq * 10 for i in range(26)]
    return forces, positions


@pytest.mark.parametrize("mtu,parts", [(23, 9), (247, 1)])
def test_telemetry_frames_are_assembled_from_partial_notifications(mtu, parts):
    async def main():
        client, dev, link = await connected(mtu=mtu)
        frames = []
        client.on_frame = frames.append
        for seq in (254, 255, 0):  # the sequence wraps
            dev.send_frame(seq, *_frame(seq))
        await asyncio.sleep(0.01)
        sent = [v for u, v in link.notified if u == proto.TELEMETRY_UUID]
        assert len(sent) == 3 * parts
        assert [f["seq"] for f in frames] == [254, 255, 0]
        for f in frames:
            forces, positions = _frame(f["seq"])
            assert f["forces_cn"] == forces and f["positions_um"] == positions
            assert (f["legrest"], f["level"], f["target_n"]) == ("up", 5, 60)
        assert client.frames_dropped == 0 and client.bad_notifications == []

    run(main())


def test_incomplete_telemetry_frame_is_dropped_not_mixed():
    async def main():
        client, dev, _ = await connected(mtu=23)
        dev.send_frame(1, *_frame(1), skip_part=3)  # one notification lost
        dev.send_frame(2, *_frame(2))
        frame = await client.next_frame()
        assert frame["seq"] == 2 and frame["forces_cn"] == _frame(2)[0]
        assert client.frames == 1 and client.frames_dropped == 1

    run(main())


# -- reports --------------------------------------------------------------------------------------


def _record(seq, base):
    return {
        "seq": seq,
        "duration_s": 1200,
        "area": "full",
        "flow": "wave",
        "strength": 5,
        "before": [base + k for k in range(6)],
        "after": [base - 10 + k for k in range(6)],
    }


def test_history_faults_and_tension_report():
    async def main():
        dev = FakeDevice()
        dev.history = {1: [_record(9, 300), _record(8, 320), _record(5, 350)]}
        dev.faultlog = [
            {"code": 6, "seq": 4, "boot": 12, "session_ms": 61000, "detail": "finger 7"},
        ]
        client, _, _ = await connected(dev)
        assert await client.tension_report() is None
        recs = await client.history(1)
        assert [r["seq"] for r in recs] == [9, 8, 5]
        assert recs[2]["before"] == [350, 351, 352, 353, 354, 355]
        assert await client.history(0) == []
        (fault,) = await client.faults()
        assert (fault["code"], fault["detail"], fault["session_ms"]) == (6, "finger 7", 61000)
        dev.report = {
            "user": 1, "reason": "completed", "strength": 5, "elapsed_ms": 1200000,
            "contacts": 24, "tracked": True, "before": [300] * 6, "after": [250] * 6,
        }  # fmt: skip
        rep = await client.tension_report()
        assert rep["end"] == "completed" and rep["after"] == [250] * 6

    run(main())


# -- the console script ---------------------------------------------------------------------------


class Out:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return False


def backhug(argv, device=None, mtu=247, script=None, scanner=None):
    """Run the CLI against a fake device; returns (exit code, stdout, stderr, device)."""
    device = device or FakeDevice()
    out, err = Out(), Out()

    async def factory(args):
        link = FakeLink(device, mtu)
        if script is not None:
            asyncio.ensure_future(script(device, link))
        return link

    code = cli.main(argv, link_factory=factory, scanner=scanner, out=out, err=err)
    return code, out.text, err.text, device


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["strength"],
        ["strength", "many"],
        ["strength", "300"],
        ["area", "sideways"],
        ["flow", "wave", "--tempo", "-1"],
        ["--hci", "tcp-client:127.0.0.1:9", "--sim", "status"],
        ["fly"],
    ],
)
def test_cli_usage_errors_exit_2_without_touching_the_device(argv, capsys):
    code, _, _, dev = backhug(argv)
    assert code == 2 and dev.link is None
    assert "usage: backhug" in capsys.readouterr().err


def test_cli_refused_command_exits_1_with_result_and_reason():
    code, out, err, _ = backhug(["pause"])
    assert code == 1
    assert err.strip() == "refused: wrong state: cannot pause while idle"
    code, _, err, dev = backhug(["strength", "11"])
    assert code == 1 and "bad value: strength is 1..10, not 11" in err and dev.level == 3


def test_cli_commands_reach_the_device():
    code, out, _, dev = backhug(["strength", "6"])
    assert code == 0 and dev.level == 6 and "strength 6" in out
    code, _, _, dev = backhug(["start", "--minutes", "30", "--user", "2"])
    assert code == 0 and dev.state == 1 and dev.total_s == 1800
    code, out, _, _ = backhug(["status"], device=dev)
    assert code == 0 and "scanning" in out and "26 fingers" in out and "00:00 / 30:00" in out
    code, _, _, _ = backhug(["stop"], device=dev)
    assert code == 0 and dev.state == 0


def test_cli_programme_upload_and_run(tmp_path):
    path = tmp_path / "plan.json"
    path.write_bytes(PROGRAMME)
    code, out, _, dev = backhug(["programme", str(path), "--user", "3"], mtu=23)
    assert code == 0, out
    assert dev.programme == PROGRAMME and dev.state == 1
    code, _, _, dev = backhug(["programme", str(path), "--no-start"])
    assert code == 0 and dev.programme == PROGRAMME and dev.state == 0
    (tmp_path / "bad.json").write_text("{steps: [")
    code, _, err, dev = backhug(["programme", str(tmp_path / "bad.json")])
    assert code == 2 and "bad.json" in err and dev.upload is None
    code, _, err, _ = backhug(["programme", str(tmp_path / "missing.json")])
    assert code == 2 and "missing.json" in err


def test_cli_watch_follows_the_session_to_its_end():
    async def script(dev, link):
        while proto.STATE_UUID not in link.subs:
            await asyncio.sleep(0.01)
        for elapsed in (600, 601):
            dev.elapsed_s = elapsed
            dev.send_frame(elapsed & 0xFF, [1000] * 26, [5000] * 26)
            dev.notify_state()
            await asyncio.sleep(0.02)
        dev.state, dev.end = 0, 1
        dev.notify_state()

    dev = FakeDevice()
    dev.state, dev.total_s, dev.elapsed_s = 4, 1200, 599
    code, out, _, _ = backhug(["watch"], device=dev, script=script)
    assert code == 0
    assert "10:00 / 20:00 [############............]" in out
    assert "mean force 10.0 N" in out
    assert out.strip().endswith("session ended: completed")


def test_cli_tension_report_and_picture(tmp_path):
    dev = FakeDevice()
    code, out, _, _ = backhug(["tension"], device=dev)
    assert code == 0 and "no session has finished" in out
    dev.report = {
        "user": 0, "reason": "completed", "strength": 5, "elapsed_ms": 1200000,
        "contacts": 24, "tracked": True, "before": [300, 0, 200, 200, 100, 100],
        "after": [240, 0, 190, 200, 100, 100],
    }  # fmt: skip
    png = tmp_path / "t.png"
    code, out, _, _ = backhug(["tension", "--png", str(png)], device=dev)
    assert code == 0 and "upper_left" in out and "-20%" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_history_with_picture_and_fault_log(tmp_path):
    dev = FakeDevice()
    dev.history = {2: [_record(9, 300), _record(8, 320)]}
    dev.faultlog = [{"code": 9, "seq": 3, "boot": 7, "session_ms": 125000, "detail": "legrest"}]
    png = tmp_path / "h.png"
    code, out, _, _ = backhug(["history", "--user", "2", "--png", str(png)], device=dev)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    rows = [line.split() for line in out.splitlines()[1:3]]
    assert [r[1] for r in rows] == ["9", "8"] and rows[0][-2:] == ["302", "292"]
    code, out, _, _ = backhug(["history", "--user", "1"], device=dev)
    assert code == 0 and "no sessions stored for user 1" in out
    code, out, _, _ = backhug(["faults"], device=dev)
    assert code == 0 and "code 9 leg rest obstructed" in out and "02:05" in out


def test_cli_pair_needs_the_pairing_window(monkeypatch):
    monkeypatch.setattr(cli, "PAIR_SETTLE_S", 0.1)
    dev = FakeDevice()
    dev.drop_after_pair = True
    code, _, err, _ = backhug(["pair"], device=dev)
    assert code == 2 and "open the pairing window" in err
    dev.drop_after_pair = False
    code, out, _, _ = backhug(["pair"], device=dev)
    assert code == 0 and dev.link.paired and "paired and bonded" in out


def test_cli_connection_problems_exit_2():
    async def no_device(args):
        raise LinkError("cannot connect to F0:00:00:00:00:01: timeout")

    err = Out()
    assert cli.main(["status"], link_factory=no_device, err=err) == 2
    assert "cannot connect" in err.text
    code, _, err, _ = backhug(["status"], device=FakeDevice(major=2))
    assert code == 2 and "update the client" in err
    err = Out()  # nothing listens on port 9 here
    assert cli.main(["--hci", "tcp-client:127.0.0.1:9", "status"], err=err) == 2
    assert "cannot open HCI transport tcp-client:127.0.0.1:9" in err.text


def test_cli_scan_lists_devices_or_says_none_found():
    async def two(args):
        return [
            Found("F0:00:00:00:00:01", "BackHug-1A2B", -40, True),
            Found("F0:00:00:00:00:02", "BackHug-9Z9Z", -70, False),
        ]

    async def none(args):
        return []

    code, out, _, _ = backhug(["scan"], scanner=two)
    assert code == 0 and "BackHug-1A2B" in out and "pairing window open" in out
    assert out.count("\n") == 2
    code, _, err, _ = backhug(["scan"], scanner=none)
    assert code == 2 and "no BackHug found" in err


# -- BumbleLink on a real host stack (Bumble, virtual controllers on a local link) ---------------


def test_bumble_link_scans_pairs_and_stays_bonded_across_runs(tmp_path, vrun):
    from bumble.controller import Controller
    from bumble.core import AdvertisingData
    from bumble.device import Device
    from bumble.gatt import Characteristic, Service
    from bumble.hci import Address
    from bumble.link import LocalLink

    from backhug_host.client.link import BumbleLink, NotPaired, scan_bumble

    keys = str(tmp_path / "keys.json")
    value = bytes(range(40))  # longer than MTU 23 - 1: read with Read Blob

    async def main():
        air = LocalLink()

        def device(name, address):
            c = Controller(name, link=air)
            return Device.with_hci(name, Address(address), c, c)

        periph = device("backhug", "F0:F1:F2:F3:F4:F5")
        secret = Characteristic(
            proto.STATE_UUID,
            Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
            Characteristic.READ_REQUIRES_ENCRYPTION,
            value,
        )
        periph.add_service(Service(proto.SERVICE_UUID, [secret]))
        periph.advertising_data = bytes(
            AdvertisingData(
                [
                    (AdvertisingData.COMPLETE_LOCAL_NAME, b"BackHug-TEST"),
                    (AdvertisingData.MANUFACTURER_SPECIFIC_DATA, b"\xff\xff\x01"),
                ]
            )
        )
        await periph.power_on()
        await periph.start_advertising(auto_restart=True)

        async def phone_run():
            # a fresh central each time, like a new CLI process: only the keys file persists
            phone = device("phone", "C0:BA:C4:00:00:01")
            await phone.power_on()
            return BumbleLink(phone, keystore_path=keys)

        link = await phone_run()
        (found,) = await scan_bumble(link.device, timeout_s=5, first=True)
        assert found.name == "BackHug-TEST" and found.pairing
        assert await link.connect(found.address, mtu=None) is False  # no bond yet
        assert link.mtu == 23
        with pytest.raises(NotPaired, match="backhug pair"):
            await link.read(proto.STATE_UUID)
        await link.pair()
        assert await link.read(proto.STATE_UUID) == value
        await link.disconnect()
        assert not link.is_connected

        link = await phone_run()
        assert await link.connect(found.address) is True  # encrypted with the stored bond
        assert link.mtu == 247
        assert await link.read(proto.STATE_UUID) == value
        dropped = asyncio.Event()
        link.on_disconnect = dropped.set
        await periph.connections[next(iter(periph.connections))].disconnect()
        await asyncio.wait_for(dropped.wait(), 5)

    # virtual time: the controllers' advertising and connection timers pass at once
    vrun(main())


def test_cli_sim_runs_against_the_simulated_device_over_ble(tmp_path):
    # --sim: a fresh simulated device (firmware + BLE service on Bumble), bonded in its window
    out, err = Out(), Out()
    assert cli.main(["--sim", "status"], out=out, err=err) == 0, err.text
    assert "protocol 1.0, 26 fingers" in out.text and "idle" in out.text
    out, err = Out(), Out()
    code = cli.main(
        ["--sim", "--mtu", "23", "programme", "docs/examples/programme.json"], out=out, err=err
    )
    assert code == 0, err.text
    assert "programme started for user 0" in out.text
