"""A phone that writes arbitrary bytes to the simulated BackHug over real BLE (Bumble), and the
oracle that says what the device may answer to each write (docs/ble-protocol.md).

`FuzzPhone` drives one BleSim. Every action (a write, a read of everything, a disconnect in the
middle of a write or an upload, a stranger's visit) is checked as it completes:
  - the write was answered exactly once, on the control point or the programme characteristic,
    with a result the protocol allows for those bytes in the state the device was in (the oracle
    is written from the protocol document, not from the firmware), a reason with every refusal,
    and a notification no longer than the link carries;
  - a refused write changed nothing (the session's requested settings and duration, the kept
    programme, the state at idle or paused, the upload's next offset), an accepted one did what
    it asked;
  - the device is healthy and safe: no task died, no fault latched, no watchdog reset, strength
    1..10, session at most 60 minutes, no finger's true force at the board's absolute cap.
A failure raises AssertionError with the recent actions.
"""

import asyncio
import json
import struct
import zlib

from bumble import att

from backhug_host import blestack
from backhug_host.client.core import BackHugClient
from backhug_host.client.link import BumbleLink, LinkError, NotPaired
from firmware import session as ses
from firmware.ble import proto
from firmware.boardspec import FORCE_CAP_MAX_CN
from firmware.treatments import flows
from firmware.treatments import programme as progmod

OK = proto.OK
E_STATE = proto.E_STATE
E_VALUE = proto.E_VALUE
E_BUSY = proto.E_BUSY
E_FAULT = proto.E_FAULT
E_LENGTH = proto.E_LENGTH
E_OPCODE = proto.E_OPCODE
E_NO_PROGRAMME = proto.E_NO_PROGRAMME

# The device's value buffers keep this much of a remote write; Bumble's server takes writes
# longer than the ATT MTU allows (a real controller would not), so the cut is what it sees.
WRITE_KEEP = proto.PROGRAMME_WRITE_MAX
WRITABLE = {
    "strength": proto.STRENGTH_UUID,
    "area": proto.AREA_UUID,
    "flow": proto.FLOW_UUID,
    "control": proto.CONTROL_UUID,
    "programme": proto.PROGRAMME_UUID,
}
READ_SIZES = {
    proto.PROTOCOL_UUID: 8,
    proto.STRENGTH_UUID: 1,
    proto.AREA_UUID: 1,
    proto.FLOW_UUID: 2,
    proto.STATE_UUID: 14,
    proto.TENSION_UUID: 56,
    proto.HISTORY_UUID: 61,
    proto.FAULTLOG_UUID: 40,
}
SECURITY_ERRORS = (
    att.ATT_INSUFFICIENT_AUTHENTICATION_ERROR,
    att.ATT_INSUFFICIENT_ENCRYPTION_ERROR,
)

# The control point's commands and their parameter bytes, from the protocol document.
START, START_PROGRAMME, PAUSE, RESUME, STOP, ACKNOWLEDGE, SELECT_HISTORY, SELECT_FAULT = range(
    1, 9
)
PARAM_BYTES = {
    START: 2,
    START_PROGRAMME: 1,
    PAUSE: 0,
    RESUME: 0,
    STOP: 0,
    ACKNOWLEDGE: 0,
    SELECT_HISTORY: 2,
    SELECT_FAULT: 1,
}
SETTING_OPS = {"strength": 0x10, "area": 0x11, "flow": 0x12}
DURATIONS_MIN = (10, 20, 30, 40)
USERS = 5
LEVELS = range(1, 11)
PAUSABLE = (ses.WARMUP, ses.TREATING, ses.COOLDOWN)
UP_BEGIN, UP_DATA, UP_COMMIT, UP_ABORT = 1, 2, 3, 4
UPLOAD_MAX = 4096
SESSION_MAX_MS = 60 * 60_000
ANSWER_TIMEOUT_S = 2.0

with open("docs/examples/programme.json", "rb") as _f:
    EXAMPLE_PROGRAMME = _f.read()


async def until(predicate, timeout_s, step_s=0.05, what="condition"):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError("%s not met within %.1f s" % (what, timeout_s))
        await asyncio.sleep(step_s)


class Ctx:
    """What a write's verdict depends on: the session and device as a command meets them."""

    def __init__(self, device, service):
        s = device.session
        self.state = s.state
        self.programme_running = s.plan is not None and s.state != ses.IDLE
        self.has_programme = service.programme is not None
        self.blocked = device.update_in_progress or device.safestop.active
        self.fault = device.supervisor.fault_code
        self.has_area = s.has_area


class CommandSpy:
    """Stands in for device.commands: notes the context each command met, then calls it.

    The session moves on by itself between a write leaving the phone and its handling; the
    verdict is judged against the state the command really met.
    """

    def __init__(self, sim):
        self._sim = sim
        self._real = sim.device.commands
        self.seen = None

    def __getattr__(self, name):
        fn = getattr(self._real, name)

        def call(*args, **kwargs):
            self.seen = Ctx(self._sim.device, self._sim.service)
            return fn(*args, **kwargs)

        return call


# -- the oracle: results the protocol allows for these bytes (the device sees data[:WRITE_KEEP])


def expect_setting(kind, data, ctx):
    if len(data) != (2 if kind == "flow" else 1):
        return {E_LENGTH}
    v = data[0]
    errs = set()
    if kind == "strength":
        if v not in LEVELS:
            errs.add(E_VALUE)
        return errs or {OK}
    names = proto.AREA_IDS if kind == "area" else proto.FLOW_IDS
    if v >= len(names) or (kind == "area" and not ctx.has_area(names[v])):
        errs.add(E_VALUE)
    if kind == "flow" and not flows.TEMPO_MIN_PCT <= data[1] <= flows.TEMPO_MAX_PCT:
        errs.add(E_VALUE)
    if ctx.programme_running:
        errs.add(E_STATE)
    return errs or {OK}


def expect_command(data, ctx):
    if len(data) < 2:
        return {E_LENGTH}
    op = data[0]
    if op not in PARAM_BYTES:
        return {E_OPCODE}
    if len(data) != 2 + PARAM_BYTES[op]:
        return {E_LENGTH}
    p = data[2:]
    errs = set()
    if op in (START, START_PROGRAMME):
        if op == START_PROGRAMME and not ctx.has_programme:
            errs.add(E_NO_PROGRAMME)
        if ctx.blocked:
            errs |= {E_FAULT, E_BUSY}
        if ctx.state != ses.IDLE:
            errs.add(E_STATE)
        user = p[1] if op == START else p[0]
        if user >= USERS or (op == START and p[0] not in DURATIONS_MIN):
            errs.add(E_VALUE)
    elif op == PAUSE:
        if ctx.state not in PAUSABLE:
            errs.add(E_STATE)
    elif op == RESUME:
        if ctx.state != ses.PAUSED:
            errs.add(E_STATE)
        if ctx.blocked:
            errs |= {E_FAULT, E_BUSY}
    elif op == STOP:
        if ctx.state in (ses.IDLE, ses.FINISHING):
            errs.add(E_STATE)
    elif op == ACKNOWLEDGE:
        return {E_STATE} if not ctx.fault else {OK, E_FAULT}
    elif op == SELECT_HISTORY:
        if p[0] >= USERS:
            errs.add(E_VALUE)
    return errs or {OK}


class Upload:
    """The upload the device should be holding: announced length and CRC, bytes so far."""

    def __init__(self, total, crc):
        self.total = total
        self.crc = crc
        self.next = 0
        self.buf = bytearray(total)


def expect_upload(data, ctx, up, board):
    op = data[0] if data else 0
    if op == UP_BEGIN:
        if len(data) != 7:
            return {E_LENGTH}
        total = data[1] | data[2] << 8
        errs = set()
        if ctx.programme_running:
            errs.add(E_STATE)
        if not 0 < total <= UPLOAD_MAX:
            errs.add(E_VALUE)
        return errs or {OK}
    if op == UP_DATA:
        if len(data) < 4:
            return {E_LENGTH}
        if up is None:
            return {E_STATE}
        offset = data[1] | data[2] << 8
        if offset != up.next or offset + len(data) - 3 > up.total:
            return {E_VALUE}
        return {OK}
    if op == UP_COMMIT:
        if len(data) != 1:
            return {E_LENGTH}
        if up is None:
            return {E_STATE}
        if up.next != up.total or zlib.crc32(up.buf) & 0xFFFFFFFF != up.crc:
            return {E_VALUE}
        try:
            progmod.parse(json.loads(bytes(up.buf).decode()), board)
        except Exception:  # not UTF-8, not JSON, not a programme: all refused
            return {E_VALUE}
        return {OK}
    if op == UP_ABORT:
        return {OK} if len(data) == 1 else {E_LENGTH}
    return {E_OPCODE}


# -- snapshots ----------------------------------------------------------------------------------


def snapshot(sim):
    s = sim.device.session
    return {
        "strength": s.strength,
        "area": s.area,
        "flow": s.flow,
        "tempo_pct": s.tempo_pct,
        "total_ms": s.total_ms,
        "programme": sim.service.programme,
        "state": s.state,
    }


def changes(before, after):
    """What differs that a refused write must not change (the state only at idle or paused:
    a running session moves on by itself)."""
    out = []
    for k in ("strength", "area", "flow", "tempo_pct", "total_ms"):
        if before[k] != after[k]:
            out.append("%s %r -> %r" % (k, before[k], after[k]))
    if before["programme"] is not after["programme"]:
        out.append("the kept programme was replaced")
    if before["state"] in (ses.IDLE, ses.PAUSED) and after["state"] != before["state"]:
        out.append(
            "state %s -> %s" % (ses.STATE_NAMES[before["state"]], ses.STATE_NAMES[after["state"]])
        )
    return out


# -- the phone ----------------------------------------------------------------------------------


class FuzzPhone:
    def __init__(self, sim, person=None, monitor=None):
        self.sim = sim
        self.nobody = person == "nobody"
        self.monitor = monitor
        self.spy = None
        self.central = None
        self.client = None
        self.mtu_asked = None
        self.answers = []  # notifications on the control point and the programme characteristic
        self.up = None  # the Upload the device should hold, or None
        self.log = []
        self.counts = {
            "writes": 0,
            "accepted": 0,
            "refused": 0,
            "att_refused": 0,
            "reads": 0,
            "cuts": 0,
            "upload_cuts": 0,
            "strangers": 0,
        }
        self._legrest_start = None

    # -- set-up and links ----------------------------------------------------------------------

    async def pair(self, mtu):
        self.spy = CommandSpy(self.sim)
        self.sim.device.commands = self.spy
        self.mtu_asked = mtu
        self.central = await self.sim.central()
        self.client = await self.sim.phone(self.central, mtu=mtu)
        await self._listen()
        # as if the window's 60 s had passed: strangers later must not bond
        self.sim.service.bonds.close_window()
        await asyncio.sleep(0.2)  # the service tells the stack at its next 100 ms round
        self._legrest_start = self.sim.run.sim.legrest_position()
        self.check_safe("paired")

    async def _listen(self):
        link = self.client.link
        for uuid in (proto.CONTROL_UUID, proto.PROGRAMME_UUID):
            await link.subscribe(uuid, lambda v, u=uuid: self.answers.append((u, bytes(v))))
        self.answers.clear()

    async def reconnect(self):
        """The bonded phone comes back: it encrypts with its bond (no pairing window), resyncs,
        and the device answers a command."""
        link = BumbleLink(self.central)
        encrypted = await link.connect(blestack.world().address, mtu=self.mtu_asked)
        assert encrypted, "the bonded phone could not encrypt after reconnecting"
        self.client = BackHugClient(link)
        await self.client.connect()
        await self._listen()
        answer = await self.client.command(proto.OP_SELECT_FAULT, 0)
        assert answer["result"] == OK
        self.answers.clear()  # that answer was the client's

    def note(self, what):
        self.log.append(
            "%9.3f s  %s  [%s]"
            % (
                self.sim.run.sim.elapsed_ms() / 1000,
                what,
                ses.STATE_NAMES[self.sim.device.session.state],
            )
        )
        del self.log[:-25]

    def fail(self, why):
        raise AssertionError("%s\nlast actions:\n  %s" % (why, "\n  ".join(self.log)))

    # -- checks after every action -------------------------------------------------------------

    def check_safe(self, what):
        sim = self.sim
        d = sim.device
        s = d.session
        problems = []
        if sim.run.boots != 1 or sim.run.resets:
            problems.append("the device reset: %r" % (sim.run.resets,))
        if d.crashed is not None:
            problems.append("task %s died" % d.crashed)
        if d.supervisor.fault_code:
            problems.append("fault %d latched" % d.supervisor.fault_code)
        errors = blestack.radio().irq_errors
        if errors:
            problems.append("BLE IRQ handler raised %r" % (errors,))
        if s.strength not in LEVELS:
            problems.append("strength %r" % (s.strength,))
        if s.total_ms > SESSION_MAX_MS:
            problems.append("session of %d ms" % s.total_ms)
        peak = max(sim.run.sim.max_forces_n())
        if peak >= FORCE_CAP_MAX_CN / 100:
            problems.append("a finger pressed %.1f N" % peak)
        if self.monitor is not None and self.monitor.violation:
            problems.append("safety monitor: " + self.monitor.violation)
        if self.client.bad_notifications:
            problems.append("malformed notifications %r" % (self.client.bad_notifications,))
        if self.nobody:
            if sim.run.sim.legrest_position() > self._legrest_start:
                problems.append("the leg rest rose with nobody on the device")
            if s.state in (ses.IDLE, ses.FINISHING) and any(d.hw.fingers.targets_um):
                problems.append("fingers out with nobody on the device")
        if problems:
            self.fail("after %s: %s" % (what, "; ".join(problems)))

    def _check_answer(self, uuid, raw, op, token, allowed):
        # -> (result, next offset or None); fails on anything the protocol does not allow
        room = proto.payload_room(self.client.link.mtu)
        if len(raw) > room:
            self.fail("answer of %d bytes on a link that carries %d" % (len(raw), room))
        if uuid == proto.CONTROL_UUID:
            if len(raw) < 4 or raw[0] != proto.RESPONSE or raw[1] != op or raw[2] != token:
                self.fail(
                    "unexpected control answer %s (for op %d token %d)" % (raw.hex(), op, token)
                )
            result, nxt, reason = raw[3], None, raw[4:]
        else:
            if len(raw) < 4 or raw[0] != op:
                self.fail("unexpected programme answer %s (for op %d)" % (raw.hex(), op))
            result, nxt, reason = raw[1], raw[2] | raw[3] << 8, raw[4:]
        try:
            reason = reason.decode("utf-8")
        except UnicodeError:
            self.fail("answer reason is not UTF-8: %r" % reason)
        if result not in allowed:
            self.fail("result %d (%r), the protocol allows %s" % (result, reason, sorted(allowed)))
        if (result == OK) != (reason == ""):
            self.fail("result %d with reason %r" % (result, reason))
        return result, nxt

    async def _answer(self, uuid):
        loop = asyncio.get_running_loop()
        end = loop.time() + ANSWER_TIMEOUT_S
        while not self.answers:
            if loop.time() > end:
                self.check_safe("a write with no answer")  # a dead device says why
                self.fail("no answer within %.1f s" % ANSWER_TIMEOUT_S)
            await asyncio.sleep(0.005)
        got_uuid, raw = self.answers.pop(0)
        if got_uuid != uuid:
            self.fail("answer on the wrong characteristic: %s %s" % (got_uuid, raw.hex()))
        return raw

    # -- one write from the bonded phone -------------------------------------------------------

    def _allowed(self, kind, seen, ctx):
        if kind in SETTING_OPS:
            return expect_setting(kind, seen, ctx)
        if kind == "control":
            return expect_command(seen, ctx)
        return expect_upload(seen, ctx, self.up, self.sim.device.board)

    def _key(self, kind, data):
        if kind in SETTING_OPS:
            return proto.CONTROL_UUID, SETTING_OPS[kind], 0
        if kind == "control":
            return proto.CONTROL_UUID, data[0] if data else 0, data[1] if len(data) > 1 else 0
        return proto.PROGRAMME_UUID, data[0] if data else 0, None

    async def write(self, kind, data):
        """Write `data` to a characteristic, wait for its answer and check everything."""
        sim = self.sim
        data = bytes(data)
        seen = data[:WRITE_KEEP]
        self.note(
            "write %s %s%s (%d bytes)"
            % (kind, seen[:12].hex(), "..." if len(data) > 12 else "", len(data))
        )
        before = snapshot(sim)
        ctx_before = Ctx(sim.device, sim.service)
        self.spy.seen = None
        if self.answers:
            self.fail("answers nobody asked for: %r" % (self.answers,))
        self.counts["writes"] += 1
        try:
            await asyncio.wait_for(self.client.link.write(WRITABLE[kind], data), 5)
        except LinkError as e:
            # the stack refused it: fine, if nothing changed and nothing answers
            self.counts["att_refused"] += 1
            await asyncio.sleep(0.2)
            if self.answers:
                self.fail("answer %r to a write the stack refused (%s)" % (self.answers, e))
            self._unchanged(before, "a write the stack refused")
            self.check_safe("a refused write")
            return None
        uuid, op, token = self._key(kind, data)
        raw = await self._answer(uuid)
        after = snapshot(sim)
        ctx = self.spy.seen or ctx_before
        allowed = self._allowed(kind, seen, ctx)
        if kind == "programme":
            # an upload's verdict reads the session directly; it may have ended meanwhile
            allowed |= self._allowed(kind, seen, Ctx(sim.device, sim.service))
        result, nxt = self._check_answer(uuid, raw, op, token, allowed)
        if kind == "programme":
            self._follow_upload(seen, result, nxt)
        if result == OK:
            self.counts["accepted"] += 1
            await self._did_what_it_asked(kind, seen, before)
        else:
            self.counts["refused"] += 1
            self._unchanged(before, "a refused write (result %d)" % result, after)
        self.check_safe("write %s" % kind)
        return result

    def _unchanged(self, before, what, after=None):
        diff = changes(before, after or snapshot(self.sim))
        if diff:
            self.fail("%s changed the device: %s" % (what, ", ".join(diff)))

    def _follow_upload(self, data, result, nxt):
        op = data[0] if data else 0
        up = self.up
        if op == UP_BEGIN and result == OK:
            total, crc = struct.unpack_from("<HI", data, 1)
            self.up = Upload(total, crc)
        elif op == UP_DATA and result == OK:
            n = len(data) - 3
            up.buf[up.next : up.next + n] = data[3:]
            up.next += n
        elif op == UP_COMMIT and len(data) == 1 and up is not None and up.next == up.total:
            self.up = None  # whatever the verdict, a complete upload's commit ends it
            if result == OK:
                kept = self.sim.service.programme
                if kept != json.loads(bytes(up.buf).decode()):
                    self.fail("the committed programme is not what was uploaded")
        elif op == UP_ABORT and result == OK:
            self.up = None
        expected = self.up.next if self.up is not None else 0
        if nxt != expected:
            self.fail("upload answer says next offset %d, expected %d" % (nxt, expected))

    async def _did_what_it_asked(self, kind, data, before):
        s = self.sim.device.session
        if kind == "strength":
            ok = s.strength == data[0]
        elif kind == "area":
            ok = s.area == proto.AREA_IDS[data[0]]
        elif kind == "flow":
            ok = (s.flow, s.tempo_pct) == (proto.FLOW_IDS[data[0]], data[1])
        elif kind == "control":
            op, p = data[0], data[2:]
            if op == START:
                ok = (
                    s.state != ses.IDLE
                    and s.total_ms == p[0] * 60_000
                    and s.plan is None
                    and s.user == p[1]
                )
            elif op == START_PROGRAMME:
                ok = s.plan is not None and s.user == p[0] and s.total_ms == s.plan.total_ms
            elif op == PAUSE:
                ok = s.state == ses.PAUSED
            elif op == RESUME:
                ok = s.state != ses.PAUSED
            elif op == STOP:
                ok = s.state in (ses.FINISHING, ses.IDLE) and s.end_reason == ses.END_STOPPED
            elif op == SELECT_HISTORY:
                rec = proto.unpack_history(await self.client.link.read(proto.HISTORY_UUID))
                ok = (rec["user"], rec["index"]) == (p[0], p[1])
            elif op == SELECT_FAULT:
                rec = proto.unpack_fault(await self.client.link.read(proto.FAULTLOG_UUID))
                ok = rec["index"] == p[0]
            else:
                ok = True
        else:
            ok = True  # uploads: followed in _follow_upload
        if not ok:
            self.fail("accepted %s %s but did not do it" % (kind, data.hex()))
        if kind != "control":
            diff = [k for k in ("total_ms", "state") if before[k] != snapshot(self.sim)[k]]
            if diff and before["state"] in (ses.IDLE, ses.PAUSED):
                self.fail("a setting write changed %s" % diff)

    # -- reads ---------------------------------------------------------------------------------

    async def read_all(self):
        """Read every readable characteristic and check it decodes and agrees with the device."""
        self.note("read all")
        link = self.client.link
        # settings characteristics are rewritten with the value in force every 100 ms
        await asyncio.sleep(0.15)
        s = self.sim.device.session
        values = {}
        for uuid, size in READ_SIZES.items():
            v = await link.read(uuid)
            if len(v) != size:
                self.fail("read %s: %d bytes, expected %d" % (uuid, len(v), size))
            values[uuid] = v
            self.counts["reads"] += 1
        info = proto.unpack_protocol(values[proto.PROTOCOL_UUID])
        assert info["major"] == proto.PROTOCOL_MAJOR
        assert info["fingers"] == self.sim.device.board.finger_count
        in_force = (
            bytes((s.strength,)),
            bytes((proto.name_id(proto.AREA_IDS, s.area),)),
            bytes((proto.name_id(proto.FLOW_IDS, s.flow), s.tempo_pct)),
        )
        got = tuple(values[u] for u in (proto.STRENGTH_UUID, proto.AREA_UUID, proto.FLOW_UUID))
        if got != in_force:
            self.fail("settings read %r, in force %r" % (got, in_force))
        st = proto.unpack_state(values[proto.STATE_UUID])
        if st["fault"] or st["state"] not in proto.STATE_IDS:
            self.fail("state read %r" % (st,))
        proto.unpack_report(values[proto.TENSION_UUID])
        for uuid, unpack in (
            (proto.HISTORY_UUID, proto.unpack_history),
            (proto.FAULTLOG_UUID, proto.unpack_fault),
        ):
            rec = unpack(values[uuid])
            assert values[uuid][0] in (0, 1), rec
        self.check_safe("reads")

    # -- disconnects ---------------------------------------------------------------------------

    async def cut(self, kind, data, delay_ms):
        """Write and drop the link before (or while) the device handles it; come back."""
        sim = self.sim
        data = bytes(data)
        self.note("cut %s %s after %d ms" % (kind, data[:12].hex(), delay_ms))
        self.counts["cuts"] += 1
        before = snapshot(sim)
        allowed = self._allowed(kind, data[:WRITE_KEEP], Ctx(sim.device, sim.service))
        link = self.client.link
        task = asyncio.create_task(link.write(WRITABLE[kind], data))
        await asyncio.sleep(delay_ms / 1000)
        await link.disconnect()
        try:
            await task
        except (LinkError, asyncio.CancelledError):
            pass  # the link went first (bumble cancels a request the link dropped under)
        await self.reconnect()
        if OK not in allowed:
            self._unchanged(before, "an interrupted write the device must refuse")
        elif kind == "programme":
            # it may or may not have landed: start the upload model afresh
            await self.write("programme", bytes((UP_ABORT,)))
        self.check_safe("cut")

    async def upload_cut(self, chunks_before, delay_ms):
        """Upload the example programme, drop the link during a data write, reconnect, resume
        where the device says it is, and commit."""
        s = self.sim.device.session
        if s.plan is not None and s.state != ses.IDLE:
            return  # uploads are refused while a programme runs (the writes check that)
        self.counts["upload_cuts"] += 1
        data = EXAMPLE_PROGRAMME
        room = proto.up_chunk_room(self.client.link.mtu)
        crc = zlib.crc32(data) & 0xFFFFFFFF
        assert await self.write("programme", proto.pack_up_begin(len(data), crc)) == OK
        for _ in range(chunks_before):
            off = self.up.next
            if off + room >= len(data):
                break
            assert (
                await self.write("programme", proto.pack_up_data(off, data[off : off + room]))
                == OK
            )
        off = self.up.next
        chunk = data[off : off + room]
        self.note("upload cut at %d after %d ms" % (off, delay_ms))
        link = self.client.link
        task = asyncio.create_task(
            link.write(proto.PROGRAMME_UUID, proto.pack_up_data(off, chunk))
        )
        await asyncio.sleep(delay_ms / 1000)
        await link.disconnect()
        try:
            await task
        except (LinkError, asyncio.CancelledError):
            pass
        await self.reconnect()
        # the partial upload is kept for the same bonded phone; the chunk landed or not
        self.answers.clear()
        await self.client.link.write(proto.PROGRAMME_UUID, proto.pack_up_data(off, chunk))
        raw = await self._answer(proto.PROGRAMME_UUID)
        result, nxt = self._check_answer(proto.PROGRAMME_UUID, raw, UP_DATA, None, {OK, E_VALUE})
        if nxt != off + len(chunk):
            self.fail(
                "after the reconnect the device expects %d, not %d" % (nxt, off + len(chunk))
            )
        self.up.buf[off:nxt] = chunk
        self.up.next = nxt
        while self.up.next < len(data):
            off = self.up.next
            assert (
                await self.write("programme", proto.pack_up_data(off, data[off : off + room]))
                == OK
            )
        assert await self.write("programme", bytes((UP_COMMIT,))) == OK
        assert self.sim.service.programme == json.loads(data)

    # -- strangers -----------------------------------------------------------------------------

    async def stranger(self, writes, pair):
        """The phone leaves; an unbonded central writes (ATT refuses: not encrypted), reads
        (refused too), maybe pairs outside the window and writes valid commands in the 100 ms
        before the device drops it; nothing changes; the phone comes back."""
        sim = self.sim
        self.note("stranger (%d writes, pair=%s)" % (len(writes), pair))
        self.counts["strangers"] += 1
        before = snapshot(sim)
        bonds = sim.service.bonds.count()
        await self.client.link.disconnect()
        # an address of its own (a stranger with the phone's address can erase its bond: reported)
        n = self.counts["strangers"]
        link = BumbleLink(await sim.central(address="D0:00:00:00:%02X:%02X" % (n >> 8, n & 0xFF)))
        assert not await link.connect(blestack.world().address)
        for kind, data in writes:
            try:
                await link.write(WRITABLE[kind], data)
            except NotPaired as e:
                if e.__cause__.error_code not in SECURITY_ERRORS:
                    self.fail("stranger's write refused with %r" % e.__cause__)
                self.counts["att_refused"] += 1
            else:
                self.fail("a stranger's %s write was accepted" % kind)
        for uuid in READ_SIZES:
            try:
                await link.read(uuid)
            except NotPaired:
                pass
            else:
                self.fail("a stranger read %s" % uuid)
        self._unchanged(before, "a stranger's writes")
        if pair:
            await link.pair()
            # encrypted, not bonded: ATT lets writes through and the device must refuse them
            s = sim.device.session
            level = s.strength % 10 + 1
            if s.state == ses.IDLE:
                command = proto.pack_command(proto.OP_START, 1, 10, 0)
            elif s.state in PAUSABLE:
                command = proto.pack_command(proto.OP_PAUSE, 1)
            else:
                command = proto.pack_command(proto.OP_RESUME, 1)
            for uuid, data in (
                (proto.STRENGTH_UUID, bytes((level,))),
                (proto.CONTROL_UUID, command),
            ):
                try:
                    await link.write(uuid, data)
                except LinkError:
                    break  # already dropped
            await until(lambda: not link.is_connected, 1.0, step_s=0.01, what="stranger dropped")
            if sim.device.session.state == ses.PAUSED and before["state"] != ses.PAUSED:
                self.fail("an unbonded link paused the session")
        else:
            await link.disconnect()
        if sim.service.bonds.count() != bonds:
            self.fail("a stranger changed the bonds")
        self._unchanged(before, "a stranger")
        await self.reconnect()
        self.check_safe("stranger")

    # -- driving the device into a state with valid commands -----------------------------------

    async def to_idle(self):
        s = self.sim.device.session
        if s.state not in (ses.IDLE, ses.FINISHING):
            await self.client.stop()
        await until(lambda: s.state == ses.IDLE, 30, what="idle")

    async def drive(self, stage):
        """Bring the session to `stage` (a state name, or "programme": a programme running)."""
        s = self.sim.device.session
        self.note("drive to " + stage)
        order = ("scanning", "legrest_rising", "warmup", "treating")
        if stage == "idle":
            await self.to_idle()
        elif stage == "programme":
            await self.to_idle()
            if self.sim.service.programme is None:
                await self.client.upload_programme(EXAMPLE_PROGRAMME)
            await self.client.start_programme(0)
            await until(lambda: s.state == ses.WARMUP, 60, what="programme warm-up")
        elif stage in order:
            target = order.index(stage) + 1  # state ids follow the same order
            if s.plan is not None or not (ses.IDLE < s.state <= target):
                await self.to_idle()
                await self.client.start(10, 0)
            await until(lambda: s.state == target, 120, step_s=0.1, what=stage)
        elif stage == "paused":
            if s.state != ses.PAUSED:
                if s.state not in PAUSABLE:
                    await self.drive("warmup")
                await self.client.pause()
        elif stage == "finishing":
            if s.state != ses.FINISHING:
                if s.state == ses.IDLE:
                    await self.drive("warmup")
                await self.client.stop()
        else:
            raise ValueError(stage)
        self.answers.clear()
        self.check_safe("drive to " + stage)
