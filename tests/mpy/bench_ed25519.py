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


# The longest piece of work between two yields of the step generator (firmware/update/ed25519.py
# "Steps"): how long the other tasks (the 10 ms control loop) wait at most while a bundle's
# signature is checked, the first verification after boot included (it builds B's table). The
# message's length sets the number of steps, not the longest (one SHA-512 block per step): the
# RFC vector's 1023 bytes stand in for a bundle's header and manifest. ticks_us has 1 ms
# resolution in the WebAssembly build, so _LOCKSTEP identical generators take each step together
# and the batch's time is divided by their number.
_LOCKSTEP = 64


def _step_times_us(key, msg, sig):
    gens = [ed25519.verify_steps(key, msg, sig) for _ in range(_LOCKSTEP)]
    times = []
    while True:
        done = 0
        t0 = ticks_us()
        for g in gens:
            try:
                next(g)
            except StopIteration as e:
                assert e.value is True
                done += 1
        times.append(ticks_diff(ticks_us(), t0) / _LOCKSTEP)
        if done:
            assert done == _LOCKSTEP
            return times


ed25519._b_table = None
first = _step_times_us(key, msg, sig)
again = _step_times_us(key, msg, sig)
print("BENCH ed25519_steps_wasm %d steps" % len(again))
# The longest steps are one SHA-512 block and one point decoding (a modular exponentiation);
# the scalar multiplication's steps (STEP_BITS bits each) take about a quarter of that.
print("BENCH ed25519_max_step_wasm %d us" % max(max(first), max(again)))
