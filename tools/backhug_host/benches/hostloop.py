"""How fast the virtual-time loop runs a bare 100 Hz control tick (no firmware work in it).

This is the ceiling for every simulation: a full session cannot simulate faster than its empty
tick loop. The tick paces itself like the firmware does (ticks_add/ticks_diff deadlines).
"""

import time

from backhug_host import hostrt
from firmware import runtime

TICK_MS = 10
SIM_SECONDS = 120  # crosses the tick wrap (the virtual clock starts 30 s before it)


async def _tick_loop(n_ticks):
    deadline = runtime.ticks_ms()
    for _ in range(n_ticks):
        deadline = runtime.ticks_add(deadline, TICK_MS)
        await runtime.sleep_ms(max(0, runtime.ticks_diff(deadline, runtime.ticks_ms())))


def run():
    clock = hostrt.VirtualClock()
    n_ticks = SIM_SECONDS * 1000 // TICK_MS
    wall0 = time.perf_counter()
    hostrt.run(_tick_loop(n_ticks), clock=clock)
    wall = time.perf_counter() - wall0
    simulated = clock.elapsed_us() / 1e6
    return [
        {
            "name": "hostloop_100hz_speed",
            "value": round(simulated / wall, 1),
            "unit": "sim_s/wall_s",
            # A bare loop at 600x leaves room for a 20-minute session to simulate in seconds.
            "target": 600,
            "better": "higher",
        },
        {
            "name": "hostloop_tick_overhead",
            "value": round(wall / n_ticks * 1e6, 2),
            "unit": "us/tick",
            "better": "lower",
        },
    ]
