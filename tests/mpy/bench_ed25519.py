# Ed25519 verification on the real MicroPython interpreter (WebAssembly build under Node, so the
# time is relative, not the ESP32-S3's): one bundle signature check is one verify() over the
# header and manifest. The SHA-512 here is the pure-Python fallback (the build has no sha512),
# as it is micropython-lib's pure-Python one on the device.

import gc
import sys

import mpytest

if sys.platform == "webassembly":
    mpytest._patch_webassembly_asyncio()  # firmware.runtime needs asyncio.ThreadSafeFlag

from test_ed25519 import _vectors  # noqa: E402

from firmware.runtime import ticks_diff, ticks_us  # noqa: E402
from firmware.update import ed25519, sha512  # noqa: E402

_N = 5

key, msg, sig = _vectors()[3]  # RFC 8032 TEST 1024: a 1023-byte message
assert ed25519.verify(key, msg, sig)  # also builds the table of multiples of B (once)
gc.collect()
t0 = ticks_us()
for _ in range(_N):
    ed25519.verify(key, msg, sig)
t1 = ticks_us()
print("BENCH ed25519_verify_wasm %.1f ms" % (ticks_diff(t1, t0) / _N / 1000))

# A bundle's manifest is ~6.4 KB for backhug_v3: the hash share of its verification.
data = bytes(8192)
t0 = ticks_us()
sha512.new(data).digest()
t1 = ticks_us()
print("BENCH sha512_fallback_wasm %d us/KB" % (ticks_diff(t1, t0) // 8))
