"""BackHugClient: the phone app's side of docs/ble-protocol.md over a `Link`.

Every byte goes through firmware.ble.proto. Writes are stop-and-wait: the device may drop writes
that arrive faster than it handles them, and its answer (control point or programme
characteristic) is what says a write was handled. Every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import zlib

from firmware.ble import proto

_SETTING_UUIDS = {
    "strength": proto.STRENGTH_UUID,
    "area": proto.AREA_UUID,
    "flow": proto.FLOW_UUID,
}
_UP_NAMES = {
    proto.UP_BEGIN: "upload begin",
    proto.UP_DATA: "upload data",
    proto.UP_COMMIT: "upload commit",
    proto.UP_ABORT: "upload abort",
}
_MAX_SELECT = 256  # history and fault indices are u8


class ClientError(Exception):
    """Anything that keeps a client operation from completing (exit code 2 in the CLI)."""


class CommandRefused(ClientError):
    """The device answered with a result other than ok; nothing was changed."""

    def __init__(self, what, result, reason):
        self.what = what
        self.result = result
        self.result_name = proto.RESULT_NAMES.get(result, "result %d" % result)
        self.reason = reason
        super().__init__(
            "%s refused: %s%s" % (what, self.result_name, ": " + reason if reason else "")
        )


class CommandTimeout(ClientError):
    """No answer within the timeout (the write may or may not have been handled)."""


class Disconnected(ClientError):
    """The link dropped while waiting."""


class ProtocolMismatch(ClientError):
    """The device speaks a protocol major version this client does not know."""


class BackHugClient:
    """One connected BackHug.

    After connect(): `protocol` (the decoded protocol characteristic), `latest_state` (kept
    from notifications), `settings` ({"strength", "area", "flow", "tempo"}), `latest_frame`
    (the last complete telemetry frame). Callbacks, each optional: on_state(state dict),
    on_frame(frame dict), on_packet(one decoded telemetry notification), on_disconnect().
    """

    def __init__(self, link, *, timeout_s=5.0, retries=3):
        self.link = link
        self.timeout_s = timeout_s
        self.retries = retries  # lost upload answers tolerated per write
        self.protocol = None
        self.latest_state = None
        self.latest_frame = None
        self.settings = {}
        self.frames = 0  # complete telemetry frames assembled
        self.frames_dropped = 0  # frames superseded before all their fingers arrived
        self.bad_notifications = []  # decode errors (kept, not raised: they come from the radio)
        self.on_state = None
        self.on_frame = None
        self.on_packet = None
        self.on_disconnect = None
        self._token = 0
        self._pending = {}  # (op, token) -> future of the control-point answer
        self._up_answers = asyncio.Queue()
        self._lock = asyncio.Lock()  # one write in flight at a time
        self._parts = {}  # telemetry: finger index -> (force, position) for _part_seq
        self._part_seq = None
        self._state_changed = asyncio.Event()
        self._frame_ready = asyncio.Event()
        self._connected = False
        link.on_disconnect = self._on_link_lost

    # -- set-up ---------------------------------------------------------------------------------

    async def connect(self):
        """Check the protocol version, subscribe, read state and settings. Call it again after
        the link has been re-established (subscriptions belong to a connection)."""
        self._connected = self.link.is_connected
        info = proto.unpack_protocol(await self._bounded(self.link.read(proto.PROTOCOL_UUID)))
        if info["major"] != proto.PROTOCOL_MAJOR:
            raise ProtocolMismatch(
                "the device speaks BLE protocol %d.%d, this client %d.%d: update the %s"
                % (
                    info["major"],
                    info["minor"],
                    proto.PROTOCOL_MAJOR,
                    proto.PROTOCOL_MINOR,
                    "client" if info["major"] > proto.PROTOCOL_MAJOR else "device firmware",
                )
            )
        self.protocol = info
        self._parts = {}
        self._part_seq = None
        for uuid, handler in (
            (proto.CONTROL_UUID, self._on_control),
            (proto.PROGRAMME_UUID, self._on_programme),
            (proto.STATE_UUID, self._on_state),
            (proto.TELEMETRY_UUID, self._on_telemetry),
            (proto.STRENGTH_UUID, lambda v: self._on_setting("strength", v)),
            (proto.AREA_UUID, lambda v: self._on_setting("area", v)),
            (proto.FLOW_UUID, lambda v: self._on_setting("flow", v)),
        ):
            await self._bounded(self.link.subscribe(uuid, handler))
        await self.resync()
        return info

    async def resync(self):
        """Read state and settings again (after connecting: notifications may have been missed)."""
        state = await self.state()
        for kind, uuid in _SETTING_UUIDS.items():
            self._on_setting(kind, await self._bounded(self.link.read(uuid)))
        return state

    async def close(self):
        await self.link.disconnect()

    # -- reads ----------------------------------------------------------------------------------

    async def state(self):
        """Read and decode the session state (also kept as latest_state)."""
        st = proto.unpack_state(await self._bounded(self.link.read(proto.STATE_UUID)))
        self._set_state(st)
        return st

    async def tension_report(self):
        """The last finished session's report, or None when none finished since boot."""
        return proto.unpack_report(await self._bounded(self.link.read(proto.TENSION_UUID)))

    async def history(self, user=0):
        """The user's stored sessions, newest first."""
        return await self._records(
            proto.HISTORY_UUID, proto.unpack_history, proto.OP_SELECT_HISTORY, user
        )

    async def faults(self):
        """The fault log, newest first."""
        return await self._records(proto.FAULTLOG_UUID, proto.unpack_fault, proto.OP_SELECT_FAULT)

    async def _records(self, uuid, unpack, op, *select):
        out = []
        for index in range(_MAX_SELECT):
            await self.command(op, *select, index)
            rec = unpack(await self._bounded(self.link.read(uuid)))
            if not rec["found"]:
                break
            out.append(rec)
            if index + 1 >= rec["count"]:
                break
        return out

    # -- commands -------------------------------------------------------------------------------

    async def command(self, op, *params):
        """Send a control-point command; return its answer dict, raise CommandRefused."""
        self._token = self._token % 255 + 1  # 1..255: never 0, the settings answers' token
        token = self._token
        data = proto.pack_command(op, token, *params)
        return await self._exchange(proto.CONTROL_UUID, data, op, token)

    async def start(self, minutes=20, user=0):
        return await self.command(proto.OP_START, minutes, user)

    async def start_programme(self, user=0):
        return await self.command(proto.OP_START_PROGRAMME, user)

    async def pause(self):
        return await self.command(proto.OP_PAUSE)

    async def resume(self):
        return await self.command(proto.OP_RESUME)

    async def stop(self):
        return await self.command(proto.OP_STOP)

    async def acknowledge(self):
        return await self.command(proto.OP_ACKNOWLEDGE)

    # After an ok the value is in force; the characteristic's notification follows and
    # confirms it, so settings reflect the answer at once.
    async def set_strength(self, level):
        data = proto.pack_strength(level)
        answer = await self._exchange(proto.STRENGTH_UUID, data, proto.OP_SET_STRENGTH, 0)
        self.settings["strength"] = level
        return answer

    async def set_area(self, name):
        data = proto.pack_area(name)
        answer = await self._exchange(proto.AREA_UUID, data, proto.OP_SET_AREA, 0)
        self.settings["area"] = name
        return answer

    async def set_flow(self, name, tempo_pct=100):
        data = proto.pack_flow(name, tempo_pct)
        answer = await self._exchange(proto.FLOW_UUID, data, proto.OP_SET_FLOW, 0)
        self.settings["flow"], self.settings["tempo"] = name, tempo_pct
        return answer

    async def _exchange(self, uuid, data, op, token):
        what = proto.OP_NAMES.get(op, "opcode 0x%02x" % op)
        async with self._lock:
            self._check_connected()
            key = (op, token)
            fut = asyncio.get_running_loop().create_future()
            # registered before the write: the answer may overtake the write's own response
            self._pending[key] = fut
            try:
                await self._bounded(self.link.write(uuid, data))
                answer = await self._wait(fut, "no answer to %s (token %d)" % (what, token))
            finally:
                if self._pending.get(key) is fut:
                    del self._pending[key]
        if answer["result"] != proto.OK:
            raise CommandRefused(what, answer["result"], answer["reason"])
        return answer

    # -- programme upload -----------------------------------------------------------------------

    async def upload_programme(self, data, progress=None):
        """Upload programme JSON (bytes) and commit it; return the commit answer.

        Chunks are sized to the link's MTU; each waits for its answer. A lost answer is
        retried; a chunk refused with the offset the device expects resumes from there.
        progress(sent, total) is called after every accepted chunk.
        """
        data = bytes(data)
        limit = (self.protocol or {}).get("programme_max", proto.PROGRAMME_MAX)
        if len(data) > limit:
            raise ValueError(
                "programme: %d bytes, the device takes at most %d" % (len(data), limit)
            )
        crc = zlib.crc32(data) & 0xFFFFFFFF
        answer = await self._up(proto.pack_up_begin(len(data), crc), proto.UP_BEGIN, retry=True)
        self._up_check(answer)
        offset = 0
        # Every write moves the upload forward or resumes it; bound the total so a device
        # that keeps answering inconsistently cannot keep us here.
        room = proto.up_chunk_room(self.link.mtu)
        budget = 3 * (len(data) // max(room, 1) + 1) + 8
        while offset < len(data):
            budget -= 1
            if budget < 0:
                raise ClientError("programme upload makes no progress (at byte %d)" % offset)
            room = proto.up_chunk_room(self.link.mtu)
            chunk = data[offset : offset + room]
            answer = await self._up(proto.pack_up_data(offset, chunk), proto.UP_DATA, retry=True)
            nxt = answer["next"]
            if answer["result"] == proto.OK or (
                answer["result"] == proto.E_VALUE and nxt != offset and nxt <= len(data)
            ):
                # ok: the device's next offset is authoritative; E_VALUE with another offset:
                # it holds more (or less) than we thought, resume where it expects
                if nxt > len(data):
                    raise ClientError("device expects byte %d of %d" % (nxt, len(data)))
                offset = nxt
                if progress is not None:
                    progress(offset, len(data))
            else:
                self._up_check(answer)
        answer = await self._up(bytes((proto.UP_COMMIT,)), proto.UP_COMMIT)
        self._up_check(answer)
        return answer

    async def abort_upload(self):
        return await self._up(bytes((proto.UP_ABORT,)), proto.UP_ABORT)

    def _up_check(self, answer):
        if answer["result"] != proto.OK:
            raise CommandRefused(
                _UP_NAMES.get(answer["op"], "upload"), answer["result"], answer["reason"]
            )

    async def _up(self, data, op, retry=False):
        # Upload answers carry no token: drop any stale one before writing, and skip answers
        # to other opcodes. Begin and data are safe to resend (begin restarts, a repeated
        # chunk is refused with the offset the device expects); commit is not.
        tries = self.retries + 1 if retry else 1
        async with self._lock:
            for attempt in range(tries):
                self._check_connected()
                while not self._up_answers.empty():
                    self._up_answers.get_nowait()
                await self._bounded(self.link.write(proto.PROGRAMME_UUID, data))
                try:
                    return await self._next_up_answer(op)
                except CommandTimeout:
                    if attempt + 1 == tries:
                        raise

    async def _next_up_answer(self, op):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            answer = await self._wait(
                self._up_answers.get(),
                "no answer to %s" % _UP_NAMES[op],
                deadline - loop.time(),
                self.timeout_s,
            )
            if isinstance(answer, Exception):
                raise answer
            if answer["op"] == op:
                return answer

    # -- waiting on notifications ---------------------------------------------------------------

    async def wait_state(self, predicate=None, timeout_s=None):
        """Wait until predicate(latest state) is true (now or at a later notification); with no
        predicate, for the next state notification."""
        if predicate is not None and self.latest_state and predicate(self.latest_state):
            return self.latest_state
        loop = asyncio.get_running_loop()
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = loop.time() + timeout_s
        while True:
            self._state_changed.clear()
            await self._wait(
                self._state_changed.wait(), "no matching state", deadline - loop.time(), timeout_s
            )
            self._check_connected()
            if predicate is None or predicate(self.latest_state):
                return self.latest_state

    async def next_frame(self, timeout_s=None):
        """Wait for the next complete telemetry frame."""
        self._frame_ready.clear()
        await self._wait(self._frame_ready.wait(), "no telemetry frame", timeout_s)
        self._check_connected()
        return self.latest_frame

    async def _wait(self, awaitable, what, timeout_s=None, total_s=None):
        # what: "no answer to ..."; total_s: the whole wait when timeout_s is what is left of it
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(awaitable, max(timeout_s, 0))
        except TimeoutError:
            self._check_connected()
            total_s = timeout_s if total_s is None else total_s
            raise CommandTimeout("%s within %.1f s" % (what, total_s)) from None

    async def _bounded(self, coro):
        # link operations too: a stack that never answers must not hang the client
        return await self._wait(coro, "the link did not complete an operation")

    def _check_connected(self):
        if not self._connected:
            raise Disconnected("the link to the device is down")

    # -- notifications --------------------------------------------------------------------------

    def _bad(self, what, value, err):
        self.bad_notifications.append("%s %s: %s" % (what, bytes(value).hex(), err))
        del self.bad_notifications[:-20]

    def _on_control(self, value):
        try:
            answer = proto.unpack_answer(value)
        except ValueError as e:
            return self._bad("control", value, e)
        fut = self._pending.get((answer["op"], answer["token"]))
        # an answer nobody waits for (a timed-out command's, late) is dropped
        if fut is not None and not fut.done():
            fut.set_result(answer)

    def _on_programme(self, value):
        try:
            self._up_answers.put_nowait(proto.unpack_up_answer(value))
        except ValueError as e:
            self._bad("programme", value, e)

    def _on_state(self, value):
        try:
            st = proto.unpack_state(value)
        except ValueError as e:
            return self._bad("state", value, e)
        self._set_state(st)

    def _set_state(self, st):
        self.latest_state = st
        self._state_changed.set()
        if self.on_state is not None:
            self.on_state(st)

    def _on_setting(self, kind, value):
        value = bytes(value)
        try:
            v = proto.unpack_setting(kind, value)
        except ValueError as e:
            if not value or value[0] != proto.NONE_ID:
                return self._bad(kind, value, e)
            # 0xFF: none of the named ones (a programme's own area or flow)
            v = (None, value[1]) if kind == "flow" and len(value) == 2 else None
        if kind == "flow":
            self.settings["flow"], self.settings["tempo"] = v
        else:
            self.settings[kind] = v

    def _on_telemetry(self, value):
        try:
            part = proto.unpack_telemetry(value)
        except ValueError as e:
            return self._bad("telemetry", value, e)
        if self.on_packet is not None:
            self.on_packet(part)
        n = self.protocol["fingers"]
        if part["seq"] != self._part_seq:
            if self._parts:
                self.frames_dropped += 1
            self._parts = {}
            self._part_seq = part["seq"]
        for k, (f, p) in enumerate(zip(part["forces_cn"], part["positions_um"], strict=True)):
            i = part["first"] + k
            if i < n:
                self._parts[i] = (f, p)
        if len(self._parts) < n:
            return
        frame = {
            "seq": part["seq"],
            "forces_cn": [self._parts[i][0] for i in range(n)],
            "positions_um": [self._parts[i][1] for i in range(n)],
            # from the frame's last notification: the newest values
            "legrest": part["legrest"],
            "level": part["level"],
            "target_n": part["target_n"],
        }
        self._parts = {}
        self._part_seq = None
        self.latest_frame = frame
        self.frames += 1
        self._frame_ready.set()
        if self.on_frame is not None:
            self.on_frame(frame)

    def _on_link_lost(self):
        self._connected = False
        err = Disconnected("the link to the device dropped")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._up_answers.put_nowait(err)
        self._state_changed.set()
        self._frame_ready.set()
        if self.on_disconnect is not None:
            self.on_disconnect()
