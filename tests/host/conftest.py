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


@pytest.fixture
def served():
    """`python -m backhug_host.sim serve --open-window` in a subprocess (wall-clock time); yields
    the Bumble transport string of its HCI socket ("tcp-client:127.0.0.1:PORT")."""
    import os
    import re
    import subprocess
    import sys

    from backhug_host import blesim

    blesim.make_bundle()  # the factory bundle, built (or found in the cache) before the clock
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "backhug_host.sim", "serve", "--port", "0", "--open-window"]
    proc = subprocess.Popen(
        cmd + ["--seconds", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"tcp-client:127\.0\.0\.1:\d+", line)
        assert m, "no HCI transport announced: %r" % line
        yield m.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
