"""Host-side tools for the BackHug firmware (CPython only, never on the device).

hostrt: the clocks and the virtual-time asyncio loop that firmware.runtime runs on; mpycheck: the
tier-3 check (mpy-cross and MicroPython imports); bench: the benchmark runner (benches/). The
simulator, emulated chips and factory tools live in the other modules and sub-packages here.
This package may import anything; firmware/ must never import it.
"""

import os as _os
import sys as _sys

# The firmware and board packages live at the repository root, beside tools/. The host package is
# installed in editable mode, so that root is two levels up; put it on sys.path so the console
# scripts and `python -m backhug_host...` run the same firmware from any working directory.
REPO_ROOT = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
if REPO_ROOT not in _sys.path:
    _sys.path.append(REPO_ROOT)
