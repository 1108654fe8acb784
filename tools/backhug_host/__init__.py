"""Host-side tools for the BackHug firmware (CPython only, never on the device).

hostrt: the clocks and the virtual-time asyncio loop that firmware.runtime runs on; mpycheck: the
tier-3 check (mpy-cross and MicroPython imports); bench: the benchmark runner (benches/). The
simulator, emulated chips and factory tools live in the other modules and sub-packages here.
This package may import anything; firmware/ must never import it.
"""
