# The SMP GATT service (MCUmgr's standard one, so smpclient/smpmgr, nRF Connect Device Manager
# and mcumgr find it): one characteristic, write without response (and write) + notify,
# encrypted link only. Runs as an extra of the BLE service (firmware/ble/service.py): its GATT
# table is registered with the control service's, serve() runs with its tasks.
#
# A request may arrive split over several writes (a write carries at most ATT_MTU - 3 bytes):
# the pieces are joined until the header's length is reached, then the whole packet goes to the
# SMP server (firmware/update/smp.py); one request at a time, the client waits for each answer.
# A long request (an upload's last chunk) is awaited: the other tasks run meanwhile, and writes
# that come in wait in aioble's queue. The answer is notified in pieces of ATT_MTU - 3 bytes.
#
# aioble's traps here: all capture characteristics share one 10-entry queue that drops the
# oldest, so the buffer size announced to a client (MCUmgr parameters) is at most
# WRITES_PER_REQUEST writes at the link's MTU; the value buffer is sized for the largest write
# (MTU 247), longer writes would be cut silently; notify has no back-pressure, so a piece
# refused for lack of buffers is retried a few times.
#
# Security: the stack refuses a write from an unencrypted central (ATT Insufficient
# Encryption/Authentication; a write command is dropped), so nothing reaches this module. An
# encrypted link that is not bonded (paired outside the pairing window, dropped by the BLE
# service within 100 ms) is answered EACCESSDENIED without reaching the server.

import bluetooth

import aioble

from firmware.runtime import const, sleep_ms, ticks_diff, ticks_ms
from firmware.update import smp

SERVICE_UUID = "8D53DC1D-1DB7-4CD3-868B-8A527460AA84"
CHARACTERISTIC_UUID = "DA2E7828-FBCE-4E01-AE9E-261174997C48"

_FLAG_WRITE_ENCRYPTED = const(0x1000)
ATT_MAX_MTU = const(247)
ATT_DEFAULT_MTU = const(23)
WRITE_MAX = const(244)  # ATT_MAX_MTU - 3: the largest write a client can send
WRITES_PER_REQUEST = const(8)  # stays under aioble's 10-entry capture queue
REASSEMBLY_MS = const(2_000)  # pieces of one request stop coming: drop what we have
NOTIFY_TRIES = const(20)
NOTIFY_RETRY_MS = const(10)


class SmpBle:
    def __init__(self, server):
        self.server = server
        self._svc = aioble.Service(bluetooth.UUID(SERVICE_UUID))
        ch = aioble.BufferedCharacteristic(
            self._svc,
            bluetooth.UUID(CHARACTERISTIC_UUID),
            write=True,
            write_no_response=True,
            notify=True,
            capture=True,  # each write's bytes travel with their connection, in order
            max_len=WRITE_MAX,
        )
        ch.flags |= _FLAG_WRITE_ENCRYPTED
        self.char = ch
        self._buf = bytearray(smp.BUF_SIZE)
        self._mv = memoryview(self._buf)
        self._n = 0  # bytes of the current request so far
        self._need = 0  # its total size once the header is in (0: not yet)
        self._skip = 0  # bytes still to ignore of a request too large for the buffer
        self._conn = None
        self._ms = 0
        self.refused = 0  # requests answered without reaching the server (not bonded, too big)
        self.dropped = 0  # partial requests dropped (timed out, other link)
        self.on_serving = None  # called when serve() starts: the GATT table is registered

    def gatt_services(self):
        return (self._svc,)

    @staticmethod
    def buf_size(conn):
        mtu = (conn.mtu if conn is not None else None) or ATT_DEFAULT_MTU
        return min(smp.BUF_SIZE, WRITES_PER_REQUEST * (min(mtu, ATT_MAX_MTU) - 3))

    async def serve(self, ble):
        if self.on_serving is not None:
            self.on_serving()
        while True:
            got = await self.char.written()
            if got is None:
                continue
            conn, data = got
            packet, rsp = self._piece(conn, data)
            if packet is not None:
                if ble.trusted(conn):
                    rsp = await self.server.handle_async(packet, self.buf_size(conn))
                else:
                    self.refused += 1
                    rsp = smp.error_for(packet, smp.EACCESSDENIED, "pair in the pairing window")
            if rsp is not None:
                await self._send(conn, rsp)

    def _piece(self, conn, data):
        # Join the pieces of one request. Returns (packet, None) once it is complete (a
        # memoryview into the buffer, valid until the next call), (None, answer) for a request
        # refused from its header alone, else (None, None).
        now = ticks_ms()
        if self._n or self._skip:
            if conn is not self._conn or ticks_diff(now, self._ms) > REASSEMBLY_MS:
                self.dropped += 1
                self._n = self._need = self._skip = 0
        self._conn = conn
        self._ms = now
        if self._skip:
            self._skip = max(0, self._skip - len(data))
            return None, None
        n = self._n
        end = n + len(data)
        if end > len(self._buf):
            end = len(self._buf)
        self._buf[n:end] = data[: end - n]
        self._n = end
        if not self._need and end >= smp.HEADER_SIZE:
            self._need = smp.packet_length(self._buf)
            if self._need > self.buf_size(conn):
                self._skip = max(0, self._need - end)
                self._n = self._need = 0
                self.refused += 1
                why = "request larger than buf_size %d" % self.buf_size(conn)
                return None, smp.error_for(self._buf, smp.EMSGSIZE, why)
        if self._need and self._n >= self._need:
            packet = self._mv[: self._need]
            self._n = self._need = 0
            return packet, None
        return None, None

    async def _send(self, conn, rsp):
        # The answer goes to the connection that asked; once it is gone the rest is dropped.
        # aioble hands a gone connection's handle (None) to gatts_notify, which MicroPython
        # refuses with TypeError (the disconnect IRQ can come between the check and the
        # notify): like ENOTCONN, that is the link dropping, not a failure of this task.
        if conn is None:
            return
        size = (conn.mtu or ATT_DEFAULT_MTU) - 3
        for i in range(0, len(rsp), size):
            piece = rsp[i : i + size]
            for _ in range(NOTIFY_TRIES):
                if not conn.is_connected():
                    return
                try:
                    self.char.notify(conn, piece)
                    break
                except OSError:  # ENOMEM: the stack's buffers are full; ENOTCONN: gone
                    pass
                except TypeError:
                    if conn.is_connected():
                        raise  # not the link: a bug
                await sleep_ms(NOTIFY_RETRY_MS)
