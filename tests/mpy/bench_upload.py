# The device-side cost of one 244-byte SMP upload chunk on the real MicroPython interpreter
# (WebAssembly under Node: relative, not the ESP32-S3's time), without the CBOR decoding
# (micropython-lib's cbor2 cannot be installed in this build): the slot write the SMP handler
# makes for each chunk (firmware/update/slots.py upload_write: offset check, file write, flush)
# plus the chunk's share of the SHA-256 the upload's end computes.

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
