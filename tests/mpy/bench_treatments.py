# Benchmark: one control tick's treatment work on the real MicroPython interpreter.
# Prints `BENCH <name> <value> <unit>` lines (tests/mpy/run.mjs --bench collects them):
#   treatments_tick_heap      bytes allocated per tick once warm (the goal is 0)
#   treatments_tick_us        Ramp.step + Pattern.fill + demand + ForceControl.step +
#                             Tension.observe, 26 fingers (the 100 Hz tick has 10 000 us in all)
#   <part>_us                 each of those parts alone, and the contour scan's step
# WebAssembly under Node is not an ESP32: compare the times between commits, not with the budget.

import gc
import sys
from time import ticks_diff, ticks_us

import mpytest

if sys.platform == "webassembly":
    # firmware.runtime needs asyncio.ThreadSafeFlag, which this port lacks (mpytest.main()
    # provides it for tests; a bench runs without the harness)
    mpytest._patch_webassembly_asyncio()

from test_treatments import SIM, TICK_MS, _Pipeline  # noqa: E402

from firmware.treatments import contour  # noqa: E402

_TICKS = 1_000


def _bench(name, fn):
    t0 = ticks_us()
    for _ in range(_TICKS):
        fn()
    print("BENCH %s %d us" % (name, ticks_diff(ticks_us(), t0) // _TICKS))


def main():
    p = _Pipeline()
    for _ in range(500):
        p.tick()

    # heap: the whole tick, including the test's spring model (itself allocation-free)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(_TICKS):
        p.tick()
    print("BENCH treatments_tick_heap %d bytes" % ((gc.mem_alloc() - before) // _TICKS))

    # time: the treatment work only (forces stay as the model last gave them)
    def treatment():
        p.t += TICK_MS
        level = p.ramp.step(TICK_MS)
        p.pattern.fill(p.t, p.intensity)
        span = level - p.touch
        for i in range(len(p.demand)):
            p.demand[i] = p.touch + span * p.intensity[i] // 100
        p.ctl.step(TICK_MS, p.forces, p.demand, p.targets)
        p.est.observe(p.forces, p.targets, p.scan.contact_um)

    _bench("treatments_tick_us", treatment)
    _bench("ramp_step_us", lambda: p.ramp.step(TICK_MS))
    _bench("pattern_fill_us", lambda: p.pattern.fill(p.t, p.intensity))
    _bench("control_step_us", lambda: p.ctl.step(TICK_MS, p.forces, p.demand, p.targets))
    _bench("tension_observe_us", lambda: p.est.observe(p.forces, p.targets, p.scan.contact_um))
    scan = contour.ContourScan(SIM)
    _bench("contour_step_us", lambda: scan.step(TICK_MS, p.forces, p.targets))


main()
