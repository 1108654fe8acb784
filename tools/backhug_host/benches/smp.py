"""Firmware upload over SMP: the device-side cost of one 244-byte upload chunk against the time
that chunk takes on the air at LE 2M PHY (target: under 10 %).

HOST FIGURE, NOT A DEVICE ONE. The cost is the firmware's own SMP handler
(firmware/update/smp.py: header and CBOR decode, checks, the slot write of
firmware/update/slots.py into a file, the response encode) plus the SHA-256 of the chunk's bytes
(slots hashes the whole upload once it is complete; its share per chunk is taken here), timed on
CPython with PyPI's cbor2. On the device the same code runs on MicroPython with
micropython-lib's pure-Python cbor2 and LittleFS writes, typically tens of times slower than
this; the same handler on the MicroPython interpreter of tier 2, with the pinned cbor2, is
tests/mpy/bench_upload.py's upload_chunk_smp_wasm (WebAssembly, not the ESP32-S3 either).
Measure on hardware before relying on the ratio.

Air time of one chunk (docs/updates.md, "Throughput"), LE 2M PHY (2 bits/us), data length
extension (LL payload up to 251 bytes), encrypted link (4-byte MIC):
- the chunk is one ATT Write Command of ATT_MTU - 3 = 244 bytes (MTU 247): ATT opcode + handle
  3 bytes + 244 = 247, L2CAP header 4 -> LL payload 251;
- LL data PDU: preamble 2 + access address 4 + header 2 + payload 251 + MIC 4 + CRC 3 = 266
  bytes = 1064 us; then T_IFS 150 us, the peer's empty PDU (2+4+2+3 = 11 bytes, no MIC) 44 us,
  T_IFS 150 us: 1408 us per chunk when the chunks go back to back in a connection event;
- the SMP answer {"off": n} (8 + 9 bytes) is one notification: LL payload 4+3+17 = 24, PDU 39
  bytes = 156 us + 150 + 44 + 150 = 500 us per request, shared by the chunks of one request.
Two cases: a request that is one chunk (buf_size 244, the worst case: every chunk pays the
whole request overhead and an answer), and the device's buf_size over BLE (8 writes of 244).
"""

import hashlib
import tempfile
import time

from firmware.update import smp

CHUNK = 244
US_PER_BYTE_2M = 4  # 8 bits at 2 Mbit/s
T_IFS_US = 150
EMPTY_PDU_US = (2 + 4 + 2 + 3) * US_PER_BYTE_2M
REQUEST_WRITES = 8  # firmware.update.smpble.WRITES_PER_REQUEST
TOTAL = 96 * 1024  # the simulated upload (a bundle is about 120 KB)
TARGET_PCT = 10


def air_us_per_write(att_payload=CHUNK):
    ll_payload = 4 + 3 + att_payload  # L2CAP + ATT headers
    pdu = 2 + 4 + 2 + ll_payload + 4 + 3
    return pdu * US_PER_BYTE_2M + T_IFS_US + EMPTY_PDU_US + T_IFS_US


class _Device:
    update_in_progress = False

    class session:
        state = 0  # idle


def _requests(size):
    # ImageUploadWrite packets (v2, as smpclient sends them) of `size` bytes on the wire
    import cbor2

    image = bytes(i * 7 & 0xFF for i in range(TOTAL))
    sha = hashlib.sha256(image).digest()
    out, off, seq = [], 0, 0
    while off < TOTAL:
        head = {"off": off}
        if off == 0:
            head.update(len=TOTAL, sha=sha)
        fixed = len(cbor2.dumps(dict(head, data=b""))) + smp.HEADER_SIZE
        n = min(TOTAL - off, size - fixed - 2)  # 2: the data length needs 2 more bytes
        body = cbor2.dumps(dict(head, data=image[off : off + n]))
        out.append(smp.pack_header(smp.OP_WRITE, smp.V2, len(body), 1, seq, 1) + body)
        off += n
        seq = (seq + 1) & 0xFF
    return out, image


class _Slots:
    # slots.Slots' upload path without verification at the end (the chunk cost is what counts)
    def __init__(self, root):
        from firmware.update import slots

        self._s = slots.Slots(root, "sim", 0, b"\0" * 32)

    def upload_begin(self, total, sha):
        self._s.upload_begin(total, sha)

    def upload_offset(self):
        return self._s.upload_offset()

    def upload_write(self, off, data):
        return self._s.upload_write(off, data)

    def upload_complete(self):
        return {}


def _per_request_us(size):
    reqs, image = _requests(size)
    best = None
    for _ in range(3):
        with tempfile.TemporaryDirectory() as root:
            server = smp.SmpServer(_Slots(root), _Device())
            t0 = time.perf_counter()
            for r in reqs:
                server.handle(r)
            dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    t0 = time.perf_counter()
    hashlib.sha256(image).digest()
    hash_s = time.perf_counter() - t0
    data_per_req = TOTAL / len(reqs)
    return best / len(reqs) * 1e6, hash_s / TOTAL * data_per_req * 1e6, data_per_req


def run():
    from backhug_host import hostrt

    hostrt.install_virtual()
    answer_us = air_us_per_write(17)  # the {"off": n} notification
    results = []
    for label, size, writes in (
        ("1 chunk per request", CHUNK, 1),
        ("%d chunks per request" % REQUEST_WRITES, CHUNK * REQUEST_WRITES, REQUEST_WRITES),
    ):
        handle_us, hash_us, _ = _per_request_us(size)
        cost_us = (handle_us + hash_us) / writes
        air_us = air_us_per_write() + answer_us / writes
        results += [
            {"name": "SMP upload, %s: host cost per 244-byte chunk" % label,
             "value": round(cost_us, 1), "unit": "us"},
            {"name": "SMP upload, %s: air time per chunk at LE 2M" % label,
             "value": round(air_us, 1), "unit": "us"},
            {"name": "SMP upload, %s: host cost / air time (HOST figure, not device)" % label,
             "value": round(100 * cost_us / air_us, 2), "unit": "%", "target": TARGET_PCT,
             "better": "lower"},
        ]  # fmt: skip
    return results


if __name__ == "__main__":
    for r in run():
        print(r)
