# Cost of one whole control tick on the real MicroPython interpreter (WebAssembly build under
# Node, so the time is relative, not the ESP32's) and the heap bytes it allocates in steady state.
# tickrig's BenchRig: stand-ins of about a C call's cost, the person computed between ticks
# (left out of the time). The ESP32-S3 estimate is tools/backhug_host/benches/tick.py's, from
# the unix port.

import gc

from tickrig import BenchRig

from firmware.runtime import ticks_diff, ticks_us

_N = 500

rig = BenchRig()
rig.treating()
gc.collect()
before = gc.mem_alloc()
for _ in range(_N):
    rig.step()
grown = gc.mem_alloc() - before
spent = 0
for _ in range(_N):
    rig.now_ms += 10
    t0 = ticks_us()
    rig.ctl.tick(rig.now_ms)
    spent += ticks_diff(ticks_us(), t0)
    rig.physics()
print("BENCH control_tick_heap %d bytes/tick" % (grown // _N))
print("BENCH control_tick_wasm %d us" % (spent // _N))
