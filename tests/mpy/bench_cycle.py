# Driver work of one control tick on the real MicroPython interpreter (WebAssembly build, so the
# times are relative, not the ESP32's): heap bytes allocated per cycle (the goal is 0) and the
# time of FingerBank.write() (26 fingers, two PCA9685 bursts) and ForceArray.read() (26 sensors
# through two muxes), on the allocation-free fakes of tests/mpy/test_drivers.py.

import gc
import sys

import mpytest

if sys.platform == "webassembly":
    mpytest._patch_webassembly_asyncio()  # firmware.runtime needs asyncio.ThreadSafeFlag

from test_drivers import cycle, make  # noqa: E402

from firmware.runtime import ticks_diff, ticks_us  # noqa: E402

_N = 200

board, bank, forces, i2c, adcs = make("sim")
cycle(bank, forces, 0)

gc.collect()
before = gc.mem_alloc()
for t in range(_N):
    cycle(bank, forces, t)
after = gc.mem_alloc()
print("BENCH drivers_cycle_alloc %d bytes/cycle" % ((after - before) // _N))

# The mux settle waits (16 x settle_us on the device) are left out of the timing: the WebAssembly
# port's sleep_us is far coarser than the ESP32's and would swamp the driver's own work.
forces._settle_us = 0
t0 = ticks_us()
for _ in range(_N):
    bank.write()
t1 = ticks_us()
for _ in range(_N):
    forces.read()
t2 = ticks_us()
print("BENCH fingers_write_wasm %d us" % (ticks_diff(t1, t0) // _N))
print("BENCH forces_read_wasm %d us" % (ticks_diff(t2, t1) // _N))
