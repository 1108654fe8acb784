# Cost of one whole control tick on the real MicroPython interpreter (WebAssembly build under
# Node, so the time is relative, not the ESP32's) and the heap bytes it allocates in steady state.

import gc

from tickrig import build, run_until

from firmware import session as ses
from firmware.runtime import ticks_diff, ticks_us

_N = 500

ctl, session, person = build()
session.begin(20 * 60_000)
now = run_until(ctl, session, ses.TREATING, 0)
for _ in range(100):
    now += 10
    ctl.tick(now)
gc.collect()
before = gc.mem_alloc()
t0 = ticks_us()
for _ in range(_N):
    now += 10
    ctl.tick(now)
t1 = ticks_us()
grown = gc.mem_alloc() - before
print("BENCH control_tick_heap %d bytes/tick" % (grown // _N))
print("BENCH control_tick_wasm %d us" % (ticks_diff(t1, t0) // _N))
