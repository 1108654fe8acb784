# The BLE GATT server the phone app talks to (DESIGN section 7; wire format in
# docs/ble-protocol.md, codec in firmware/ble/proto.py). Runs as a device service
# (app.Device.add_service): its tasks only read the session and call firmware.commands, which
# validate everything; nothing here touches an output, so no BLE input can bypass the safety
# layer.
#
# aioble's traps, and what this module does about them:
#   - value buffers default to 20 bytes and longer remote writes are cut silently: every writable
#     characteristic gets a buffer of the largest write a 247-byte MTU allows, and each decoder
#     checks exact lengths, so a cut write is refused, never misread;
#   - all capture characteristics share one 10-entry queue that drops the oldest: the phone waits
#     for each write's answer before the next (docs/ble-protocol.md), uploads carry offsets;
#   - notify has no back-pressure: one sender task sends at most one notification per 50 ms,
#     answers first, telemetry at most 5 a second;
#   - advertise() returns None when cancelled and raises on its timeout: both just loop.

import asyncio
import bluetooth
import json

import aioble

from firmware import commands, legrestctl, version
from firmware import session as ses
from firmware.ble import bonds as bondstore
from firmware.ble import proto
from firmware.runtime import const, sleep_ms, ticks_add, ticks_diff, ticks_ms
from firmware.storage import crc32
from firmware.treatments import programme

# MicroPython bluetooth characteristic flags aioble has no keyword for
_FLAG_READ_ENCRYPTED = const(0x0200)
_FLAG_WRITE_ENCRYPTED = const(0x1000)
_IO_NO_INPUT_OUTPUT = const(3)

ADV_INTERVAL_US = const(250_000)
ADV_REFRESH_MS = const(1_000)  # re-advertise this often so the pairing flag stays current
NOTIFY_GAP_MS = const(50)
TELEMETRY_PERIOD_MS = const(250)
TELEMETRY_WINDOW_MS = const(1_000)
TELEMETRY_MAX = const(5)  # notifications per TELEMETRY_WINDOW_MS
STATE_REFRESH_MS = const(1_000)  # elapsed/remaining while a session runs
LINK_CHECK_MS = const(100)
ANSWERS_MAX = const(8)
MANUFACTURER_ID = const(0xFFFF)  # "no company" test id until the product has its SIG id

_RUNNING = (ses.SCANNING, ses.LEGREST_RISING, ses.WARMUP, ses.TREATING, ses.COOLDOWN, ses.PAUSED)
_UNPROVISIONED = "UNPROVISIONED"


def _trusted(conn):
    return conn is not None and conn.encrypted and conn.bonded


def _peer(conn):
    d = conn.device
    return bytes((d.addr_type,)) + bytes(d.addr)


class BleService:
    # extras: other GATT services sharing this radio (the SMP update service): objects with
    # gatt_services() -> aioble.Service objects to register with ours (aioble registers one
    # table, all at once) and `async serve(ble)`, run with this service's tasks; `ble.conn` is
    # the phone's connection and `ble.trusted(conn)` says whether it is encrypted and bonded.
    def __init__(self, device, store, identity=None, extras=()):
        self._d = device
        self.extras = tuple(extras)
        self.bonds = bondstore.Bonds(store)
        identity = identity or {}
        self.serial = identity.get("serial", _UNPROVISIONED)
        self.hardware = identity.get("hardware", device.board.id)
        self.name = "BackHug-" + self.serial[-4:]
        self.conn = None
        self.programme = None  # the last validated programme upload (a parsed JSON object)
        self._up = None  # upload in progress: [buffer, total, crc, next offset, peer]
        self._answers = []  # (characteristic, bytes) waiting for the sender, oldest first
        self._echo = []  # setting characteristics whose value changed, to notify
        self._settings = [None, None, None]  # strength, area, flow bytes last written
        self._state_buf = bytearray(proto.STATE_SIZE)
        self._state_sent = bytearray(proto.STATE_SIZE)
        self._state_ms = 0
        self._state_due = True
        self._tele_buf = bytearray(proto.ATT_MAX_MTU)
        self._tele_mv = memoryview(self._tele_buf)
        self._tele_seq = 0
        self._tele_first = 0
        self._tele_ms = 0
        long_ago = ticks_add(ticks_ms(), -TELEMETRY_WINDOW_MS)
        self._tele_times = [long_ago] * TELEMETRY_MAX  # when the last 5 went out (a ring)
        self._tele_slot = 0
        self._tele_level = -1
        self._zeros = [0] * device.board.finger_count
        self._window = False
        self.sent = 0  # notifications sent (benchmarks)
        self.disconnects = 0  # links this side dropped: encrypted but not bonded
        self._build()

    # -- the GATT table -----------------------------------------------------------------------

    def _build(self):
        b = self._d.board
        dis = aioble.Service(bluetooth.UUID(proto.DIS_UUID))
        for uuid, value in (
            (proto.DIS_MANUFACTURER, "BackHug"),
            (proto.DIS_MODEL, b.id),
            (proto.DIS_SERIAL, self.serial),
            (proto.DIS_HARDWARE, self.hardware),
            (proto.DIS_FIRMWARE, version.VERSION),
        ):
            aioble.Characteristic(dis, bluetooth.UUID(uuid), read=True, initial=value.encode())
        svc = aioble.Service(bluetooth.UUID(proto.SERVICE_UUID))
        self._svc_uuid = svc.uuid
        c = self._char
        bits = 0
        for i in range(len(proto.AREA_IDS)):
            if self._d.session.has_area(proto.AREA_IDS[i]):
                bits |= 1 << i
        shape = proto.pack_protocol(b.finger_count, b.rows, b.cols, bits)
        self._shape = shape
        self.protocol = c(svc, proto.PROTOCOL_UUID, len(shape), read=True)
        self.strength = c(svc, proto.STRENGTH_UUID, proto.PROGRAMME_WRITE_MAX, True, True, True)
        self.area = c(svc, proto.AREA_UUID, proto.PROGRAMME_WRITE_MAX, True, True, True)
        self.flow = c(svc, proto.FLOW_UUID, proto.PROGRAMME_WRITE_MAX, True, True, True)
        big = proto.PROGRAMME_WRITE_MAX
        self.control = c(svc, proto.CONTROL_UUID, big, write=True, notify=True)
        self.state = c(svc, proto.STATE_UUID, proto.STATE_SIZE, read=True, notify=True)
        self.telemetry = c(svc, proto.TELEMETRY_UUID, proto.ATT_MAX_MTU, notify=True)
        self.report = c(svc, proto.TENSION_UUID, proto.REPORT_SIZE, read=True)
        self.history = c(svc, proto.HISTORY_UUID, proto.HISTORY_SIZE, read=True)
        self.faultlog = c(svc, proto.FAULTLOG_UUID, proto.FAULT_SIZE, read=True)
        self.upload = c(
            svc, proto.PROGRAMME_UUID, proto.PROGRAMME_WRITE_MAX, write=True, notify=True
        )
        self._services = (dis, svc)

    @staticmethod
    def _char(svc, uuid, size, read=False, write=False, notify=False):
        # no initial= here: gatts_set_buffer (run after the initial write) empties the value
        ch = aioble.BufferedCharacteristic(
            svc,
            bluetooth.UUID(uuid),
            read=read,
            write=write,
            notify=notify,
            capture=write,  # the written bytes travel with their connection, in order
            max_len=size,
        )
        if read:
            ch.flags |= _FLAG_READ_ENCRYPTED
        if write:
            ch.flags |= _FLAG_WRITE_ENCRYPTED
        return ch

    @staticmethod
    def trusted(conn):
        return _trusted(conn)

    # -- button hooks (app.Device calls these) -------------------------------------------------

    def open_pairing_window(self):
        self.bonds.open_window()

    def pairing_window_open(self):
        return self.bonds.window_open()

    def clear_bonds(self):
        self.bonds.clear()
        conn = self.conn
        if conn is not None:
            asyncio.create_task(conn.disconnect())  # that phone is not bonded any more

    # -- tasks --------------------------------------------------------------------------------

    async def run(self, device):
        # The bond store must be the first IRQ handler: aioble.security (imported when the stack
        # starts) would otherwise store secrets itself, outside the pairing-window policy.
        aioble.core.register_irq_handler(self.bonds.irq, None)
        aioble.config(
            gap_name=self.name,
            mtu=proto.ATT_MAX_MTU,
            bond=False,
            le_secure=True,
            mitm=False,
            io=_IO_NO_INPUT_OUTPUT,
        )
        services = list(self._services)
        for x in self.extras:
            services.extend(x.gatt_services())
        aioble.register_services(*services)
        self.protocol.write(self._shape)
        self.report.write(proto.pack_report(None))
        self.history.write(proto.pack_history(1, 0, 0, 0))
        self.faultlog.write(proto.pack_fault(1, 0, 0))
        jobs = (
            self._serve(),
            self._writes(self.control, self._command),
            self._writes(self.strength, self._set_strength),
            self._writes(self.area, self._set_area),
            self._writes(self.flow, self._set_flow),
            self._writes(self.upload, self._upload),
            self._sender(),
            self._housekeeping(),
        ) + tuple(x.serve(self) for x in self.extras)
        tasks = [asyncio.create_task(j) for j in jobs]
        try:
            await asyncio.gather(*tasks)  # returns only if one of them fails: that is a fault
        finally:
            for t in tasks:
                t.cancel()

    async def _serve(self):
        # one phone at a time; advertise again when it has gone
        while True:
            flags = 1 if self.bonds.window_open() else 0
            try:
                conn = await aioble.advertise(
                    ADV_INTERVAL_US,
                    name=self.name,
                    services=[self._svc_uuid],
                    manufacturer=(MANUFACTURER_ID, bytes((flags,))),
                    timeout_ms=ADV_REFRESH_MS,
                )
            except asyncio.TimeoutError:
                continue
            if conn is None:
                return  # aioble returns None when this task was cancelled: stop with it
            await self._connected(conn)

    async def _connected(self, conn):
        self.conn = conn
        self._state_due = True
        self._settings = [None, None, None]
        self._tele_first = 0
        try:
            while conn.is_connected():
                if conn.encrypted and not conn.bonded:
                    # paired outside the pairing window (or the bond could not be kept)
                    self.disconnects += 1
                    await conn.disconnect()
                    break
                await sleep_ms(LINK_CHECK_MS)
        finally:
            self.conn = None
            self._answers = []
            self._echo = []

    async def _writes(self, char, handle):
        while True:
            got = await char.written()
            if got is not None:
                conn, data = got
                handle(conn, bytes(data))

    async def _housekeeping(self):
        while True:
            window = self.bonds.window_open()
            if window != self._window:
                self._window = window
                aioble.config(bond=window)
            try:
                self.bonds.save()
            except OSError:
                pass  # flash full or failing: the table stays dirty and is written next time
            self._refresh_settings()
            self._refresh_state()
            await sleep_ms(LINK_CHECK_MS)

    async def _sender(self):
        while True:
            await sleep_ms(NOTIFY_GAP_MS)
            conn = self.conn
            # a phone that has gone stays self.conn until _connected's next link check (up to
            # LINK_CHECK_MS): never notify it
            if not _trusted(conn) or not conn.is_connected():
                continue
            try:
                self._send_one(conn)
            except OSError:
                pass  # ENOMEM: the stack's buffers are full, this one is lost; ENOTCONN: gone
            except TypeError:
                # the link dropped between the check and the notify (the disconnect IRQ runs
                # in the stack's task): aioble passed gatts_notify its handle None, which
                # MicroPython refuses with TypeError. A lost notification, not a failure;
                # _connected cleans up. On a live link a TypeError is a bug: let it out.
                if conn.is_connected():
                    raise

    def _send_one(self, conn):
        # one notification, the most urgent first: answers, a strength change in telemetry
        # (so the phone sees it one slot after the answer), state, setting echoes, telemetry
        if self._answers:
            char, data = self._answers.pop(0)
            char.notify(conn, data)
        elif self._tele_allowed() and self._d.session.ramp.level != self._tele_level:
            self._send_telemetry(conn)
        elif self._state_due:
            self._state_due = False
            self._state_ms = ticks_ms()
            self._state_sent[:] = self._state_buf
            self.state.notify(conn, self._state_buf)
        elif self._echo:
            self._echo.pop(0).notify(conn)  # the value it holds: the setting in force
        elif self._tele_allowed() and self._tele_period_over():
            self._send_telemetry(conn)
        else:
            return
        self.sent += 1

    # -- answers ------------------------------------------------------------------------------

    def _queue(self, char, data):
        if len(self._answers) >= ANSWERS_MAX:
            self._answers.pop(0)  # a phone not waiting for answers loses the oldest
        self._answers.append((char, data))

    def _mtu(self):
        conn = self.conn
        return conn.mtu if conn is not None else None

    def _answer(self, op, token, code, reason=""):
        self._queue(self.control, proto.pack_answer(op, token, code, reason, self._mtu()))
        self._state_due = True  # a command's effect shows in the state right after its answer

    # -- the control point and the settings ---------------------------------------------------

    def _command(self, conn, data):
        if not _trusted(conn):
            op = data[0] if data else 0
            token = data[1] if len(data) > 1 else 0
            self._answer(op, token, proto.E_AUTH, "pair in the pairing window first")
            return
        try:
            op, token, params = proto.unpack_command(data)
        except ValueError as e:
            self._answer(data[0] if data else 0, data[1] if len(data) > 1 else 0, *e.args)
            return
        c = self._d.commands
        if op == proto.OP_START:
            code, reason = c.start(duration_min=params[0], user=params[1])
        elif op == proto.OP_START_PROGRAMME:
            if self.programme is None:
                code, reason = proto.E_NO_PROGRAMME, "upload a programme first"
            else:
                code, reason = c.start(programme_obj=self.programme, user=params[0])
        elif op == proto.OP_PAUSE:
            code, reason = c.pause()
        elif op == proto.OP_RESUME:
            code, reason = c.resume()
        elif op == proto.OP_STOP:
            code, reason = c.stop()
        elif op == proto.OP_ACKNOWLEDGE:
            code, reason = c.acknowledge()
        elif op == proto.OP_SELECT_HISTORY:
            code, reason = self._select_history(params[0], params[1])
        else:  # OP_SELECT_FAULT (unpack_command knows no other opcode)
            code, reason = self._select_fault(params[0])
        self._answer(op, token, code, reason)

    def _setting(self, conn, data, op, size):
        # the checks every setting write shares; returns True when the value may be applied
        if not _trusted(conn):
            self._answer(op, 0, proto.E_AUTH, "pair in the pairing window first")
            return False
        if len(data) != size:
            self._answer(op, 0, proto.E_LENGTH, "%d byte(s) expected" % size)
            return False
        return True

    def _settled(self, op, kind, code, reason):
        # the value in force goes back into the characteristic (and is notified) before the
        # answer leaves, so a read after a refusal never sees the refused bytes
        self._settings[kind] = None
        self._refresh_settings()
        self._answer(op, 0, code, reason)

    def _set_strength(self, conn, data):
        if self._setting(conn, data, proto.OP_SET_STRENGTH, 1):
            code, reason = self._d.commands.set_strength(data[0])
            self._settled(proto.OP_SET_STRENGTH, 0, code, reason)
        else:
            self._settings[0] = None
            self._refresh_settings()

    def _set_area(self, conn, data):
        if self._setting(conn, data, proto.OP_SET_AREA, 1):
            if data[0] < len(proto.AREA_IDS):
                code, reason = self._d.commands.set_area(proto.AREA_IDS[data[0]])
            else:
                code, reason = proto.E_VALUE, "area: unknown id %d" % data[0]
            self._settled(proto.OP_SET_AREA, 1, code, reason)
        else:
            self._settings[1] = None
            self._refresh_settings()

    def _set_flow(self, conn, data):
        if self._setting(conn, data, proto.OP_SET_FLOW, 2):
            if data[0] < len(proto.FLOW_IDS):
                code, reason = self._d.commands.set_flow(proto.FLOW_IDS[data[0]], data[1])
            else:
                code, reason = proto.E_VALUE, "flow: unknown id %d" % data[0]
            self._settled(proto.OP_SET_FLOW, 2, code, reason)
        else:
            self._settings[2] = None
            self._refresh_settings()

    def _refresh_settings(self):
        s = self._d.session
        values = (
            proto.pack_strength(s.strength),
            bytes((proto.name_id(proto.AREA_IDS, s.area),)),
            bytes((proto.name_id(proto.FLOW_IDS, s.flow), s.tempo_pct)),
        )
        chars = (self.strength, self.area, self.flow)
        for k in range(3):
            if values[k] != self._settings[k]:
                self._settings[k] = values[k]
                chars[k].write(values[k])
                if chars[k] not in self._echo:
                    self._echo.append(chars[k])

    # -- history and fault log ----------------------------------------------------------------

    def _select_history(self, user, index):
        h = self._d.history
        if h is None:
            return commands.E_STATE, "this device keeps no history"
        if user >= 5:
            return commands.E_VALUE, "user: must be 0..4"
        records = h.get(user)
        count = len(records)
        if index < count:
            rec = records[count - 1 - index]
            self.history.write(proto.pack_history(0, user, index, count, rec))
        else:
            self.history.write(proto.pack_history(1, user, index, count))
        return commands.OK, ""

    def _select_fault(self, index):
        log = self._d.faultlog
        entries = log.entries() if log is not None else []
        count = min(len(entries), 255)
        if index < count:
            entry = entries[len(entries) - 1 - index]
            self.faultlog.write(proto.pack_fault(0, index, count, entry))
        else:
            self.faultlog.write(proto.pack_fault(1, index, count))
        return commands.OK, ""

    # -- programme upload ---------------------------------------------------------------------

    def _up_answer(self, op, code, reason=""):
        nxt = self._up[3] if self._up is not None else 0
        self._queue(self.upload, proto.pack_up_answer(op, code, nxt, reason, self._mtu()))

    def _upload(self, conn, data):
        op = data[0] if data else 0
        if not _trusted(conn):
            self._up_answer(op, proto.E_AUTH, "pair in the pairing window first")
            return
        if op == proto.UP_BEGIN:
            self._up_begin(conn, data)
        elif op == proto.UP_DATA:
            self._up_data(conn, data)
        elif op == proto.UP_COMMIT:
            self._up_commit(conn, data)
        elif op == proto.UP_ABORT:
            if len(data) != 1:
                self._up_answer(op, proto.E_LENGTH, "abort is 1 byte")
                return
            self._up = None
            self._up_answer(op, proto.OK)
        else:
            self._up_answer(op, proto.E_OPCODE, "unknown upload opcode 0x%02x" % op)

    def _up_begin(self, conn, data):
        if len(data) != 7:
            self._up_answer(proto.UP_BEGIN, proto.E_LENGTH, "begin is 7 bytes")
            return
        s = self._d.session
        if s.plan is not None and s.state != ses.IDLE:
            self._up_answer(proto.UP_BEGIN, proto.E_STATE, "a programme is running")
            return
        total = data[1] | data[2] << 8
        crc = data[3] | data[4] << 8 | data[5] << 16 | data[6] << 24
        if not 0 < total <= proto.PROGRAMME_MAX:
            self._up_answer(
                proto.UP_BEGIN, proto.E_VALUE, "length must be 1..%d" % proto.PROGRAMME_MAX
            )
            return
        self._up = [bytearray(total), total, crc, 0, _peer(conn)]
        self._up_answer(proto.UP_BEGIN, proto.OK)

    def _up_check(self, conn, op):
        up = self._up
        if up is None:
            self._up_answer(op, proto.E_STATE, "no upload begun")
            return None
        if up[4] != _peer(conn):
            self._up_answer(op, proto.E_STATE, "another phone's upload: begin again")
            return None
        return up

    def _up_data(self, conn, data):
        if len(data) < 4:
            self._up_answer(proto.UP_DATA, proto.E_LENGTH, "data is offset and bytes")
            return
        up = self._up_check(conn, proto.UP_DATA)
        if up is None:
            return
        offset = data[1] | data[2] << 8
        n = len(data) - 3
        if offset != up[3]:
            self._up_answer(proto.UP_DATA, proto.E_VALUE, "expected offset %d" % up[3])
            return
        if offset + n > up[1]:
            self._up_answer(proto.UP_DATA, proto.E_VALUE, "past the announced length")
            return
        up[0][offset : offset + n] = data[3:]
        up[3] = offset + n
        self._up_answer(proto.UP_DATA, proto.OK)

    def _up_commit(self, conn, data):
        if len(data) != 1:
            self._up_answer(proto.UP_COMMIT, proto.E_LENGTH, "commit is 1 byte")
            return
        up = self._up_check(conn, proto.UP_COMMIT)
        if up is None:
            return
        if up[3] != up[1]:
            self._up_answer(
                proto.UP_COMMIT, proto.E_VALUE, "incomplete: %d of %d bytes" % (up[3], up[1])
            )
            return
        self._up = None  # whatever the verdict, a commit ends the upload
        if crc32(up[0]) != up[2]:
            self._up_answer(proto.UP_COMMIT, proto.E_VALUE, "CRC mismatch: upload again")
            return
        # RuntimeError: nesting deeper than the parser's recursion limit (a bad upload, not a
        # reason to lose the BLE task); MemoryError: more objects than the heap holds
        try:
            obj = json.loads(bytes(up[0]).decode())
        except (ValueError, UnicodeError, RuntimeError, MemoryError) as e:
            self._up_answer(proto.UP_COMMIT, proto.E_VALUE, "not JSON: %s" % e)
            return
        try:
            programme.parse(obj, self._d.board)
        except (programme.ProgrammeError, RuntimeError, MemoryError) as e:
            self._up_answer(proto.UP_COMMIT, proto.E_VALUE, str(e))
            return
        self.programme = obj
        self._up_answer(proto.UP_COMMIT, proto.OK)

    # -- session state ------------------------------------------------------------------------

    def _refresh_state(self):
        d = self._d
        s = d.session
        st = s.state
        flags = 0
        if s.occupied:
            flags |= proto.F_PERSON
        if s.plan is not None and st != ses.IDLE:
            flags |= proto.F_PROGRAMME
        if d.update_in_progress:
            flags |= proto.F_UPDATING
        if self._window:
            flags |= proto.F_PAIRING
        if d.safestop.active:
            flags |= proto.F_SAFE_STOP
        running = st != ses.IDLE
        buf = self._state_buf
        proto.pack_state(
            buf,
            st,
            d.supervisor.fault_code & 0xFF,
            s.step_index if (s.plan is not None and running and s.step_index >= 0) else 0xFF,
            s.ramp.level if running and s.ramp.level else s.strength,
            proto.name_id(proto.AREA_IDS, s.area),
            proto.name_id(proto.FLOW_IDS, s.flow),
            min(s.elapsed_ms // 1000, 0xFFFF) if running else 0,
            min(s.remaining_ms // 1000, 0xFFFF) if running else 0,
            min(s.total_ms // 1000, 0xFFFF),
            flags,
            proto.end_id(s.end_reason),
        )
        self.state.write(buf)  # a read always gets the current state
        changed = buf[0:6] != self._state_sent[0:6] or buf[12:] != self._state_sent[12:]
        if changed:
            if s.result is not None:
                self.report.write(proto.pack_report(s.result))
            self._state_due = True
        elif st in _RUNNING and ticks_diff(ticks_ms(), self._state_ms) >= STATE_REFRESH_MS:
            self._state_due = True

    # -- telemetry ----------------------------------------------------------------------------

    def _tele_allowed(self):
        # the ring holds the send times of the last TELEMETRY_MAX telemetry notifications
        return ticks_diff(ticks_ms(), self._tele_times[self._tele_slot]) >= TELEMETRY_WINDOW_MS

    def _tele_period_over(self):
        return ticks_diff(ticks_ms(), self._tele_ms) >= TELEMETRY_PERIOD_MS

    def _legrest_id(self):
        lr = self._d.legrest
        if lr.fault_code:
            return 5
        drv = self._d.hw.legrest
        if not lr.settled():
            return 1 if lr.goal == legrestctl.UP else 3
        if drv.at_top():
            return 2
        if drv.at_bottom():
            return 0
        return 4

    def _send_telemetry(self, conn):
        d = self._d
        n = d.board.finger_count
        first = self._tele_first
        count = min(proto.telemetry_fingers_per_packet(conn.mtu), n - first)
        forces = d.controller.forces_cn
        ramp = d.session.ramp
        size = proto.pack_telemetry(
            self._tele_buf,
            self._tele_seq,
            first,
            count,
            self._legrest_id(),
            ramp.level,
            ramp.current_cn,
            forces if forces is not None else self._zeros,
            d.hw.fingers.targets_um,
        )
        self.telemetry.notify(conn, self._tele_mv[:size])
        now = ticks_ms()
        self._tele_ms = now
        self._tele_times[self._tele_slot] = now
        self._tele_slot = (self._tele_slot + 1) % TELEMETRY_MAX
        self._tele_level = ramp.level
        first += count
        if first >= n:
            first = 0
            self._tele_seq = (self._tele_seq + 1) & 0xFF
        self._tele_first = first
