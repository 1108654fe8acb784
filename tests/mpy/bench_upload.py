# The device-side cost of one 244-byte SMP upload chunk on the real MicroPython interpreter
# (WebAssembly under Node: relative, not the ESP32-S3's time): the slot write the SMP handler
# makes for each chunk (firmware/update/slots.py upload_write: offset check, file write, flush),
# the chunk's share of the SHA-256 the upload's end computes, and the whole SMP handler per
# one-chunk request (firmware/update/smp.py: header, CBOR decode with micropython-lib's cbor2 as
# pinned in /lib, checks, the slot write, the {"off"} answer encoded), as the device runs it.

import hashlib
import os
import sys

import mpytest

if sys.platform == "webassembly":
    mpytest._patch_webassembly_asyncio()  # firmware.runtime needs asyncio.ThreadSafeFlag

from firmware.runtime import ticks_diff, ticks_us  # noqa: E402
from firmware.update import slots  # noqa: E402

_CHUNK = 244
_TOTAL = 244 * 200  # a 48.8 KB upload
_ROOT = "/tmp/bh_bench_slots"

try:
    os.mkdir(_ROOT)
except OSError:
    pass
s = slots.Slots(_ROOT, "sim", None, bytes(32))
data = bytes(range(256)) * (_TOTAL // 256 + 1)
data = data[:_TOTAL]
s.upload_begin(_TOTAL, hashlib.sha256(data).digest())
chunk = memoryview(data)
t0 = ticks_us()
off = 0
while off < _TOTAL:
    off = s.upload_write(off, chunk[off : off + _CHUNK])
t1 = ticks_us()
h = hashlib.sha256()
for i in range(0, _TOTAL, _CHUNK):
    h.update(chunk[i : i + _CHUNK])
t2 = ticks_us()
n = _TOTAL // _CHUNK
print("BENCH upload_chunk_write_wasm %d us" % (ticks_diff(t1, t0) // n))
print("BENCH upload_chunk_sha256_wasm %d us" % (ticks_diff(t2, t1) // n))


# The whole handler per request of one chunk, as smpclient sends them (v2, {"off", "data"}, and
# "len"/"sha" at offset 0), the same shape as tools/backhug_host/benches/smp.py times on CPython.
import cbor2  # noqa: E402

from firmware.update import smp  # noqa: E402


class _Device:
    update_in_progress = False

    class session:
        state = 0  # idle


def _request(off, seq):
    body = {"off": off, "data": bytes(chunk[off : off + _CHUNK])}
    if off == 0:
        body["len"] = _TOTAL
        body["sha"] = hashlib.sha256(data).digest()
    raw = cbor2.dumps(body)
    return smp.pack_header(smp.OP_WRITE, smp.V2, len(raw), smp.GROUP_IMAGE, seq, 1) + raw


s2 = slots.Slots(_ROOT + "/smp", "sim", None, bytes(32))
server = smp.SmpServer(s2, _Device())
offs = list(range(0, _TOTAL - _CHUNK, _CHUNK))  # all but the last: no verification at the end
reqs = [_request(off, i & 0xFF) for i, off in enumerate(offs)]
t0 = ticks_us()
for r in reqs:
    rsp = server.handle(r)
t1 = ticks_us()
assert cbor2.loads(rsp[smp.HEADER_SIZE :]) == {"off": offs[-1] + _CHUNK}
print("BENCH upload_chunk_smp_wasm %d us" % (ticks_diff(t1, t0) // len(reqs)))
