# Shared fixtures for the host tests (tier 1). Nothing is autouse: tests ask for what they need.

import pytest

from backhug_host import hostrt
from firmware import runtime


@pytest.fixture
def vclock():
    """A fresh VirtualClock installed as firmware.runtime's clock (30 s before the tick wrap).

    The previously installed clock is put back afterwards, so tests do not leak clocks.
    """
    previous = getattr(runtime, "_host", None)
    clock = hostrt.install_virtual()
    yield clock
    runtime.install(previous)


@pytest.fixture
def vrun(vclock):
    """Run a coroutine to completion on a fresh virtual-time loop driven by `vclock`.

    Usage: `result = vrun(main())`; `vrun(main(), idle_grace_s=0)` makes deadlock detection
    immediate (the default waits 0.5 s of real time for threads or sockets first).
    """

    def run(coro, idle_grace_s=0.5):
        return hostrt.run(coro, clock=vclock, idle_grace_s=idle_grace_s)

    return run
