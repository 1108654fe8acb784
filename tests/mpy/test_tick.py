# The whole control tick (read forces, supervisor, session, clamp, write fingers) on the real
# MicroPython interpreter: it runs a session through its states and allocates nothing per tick
# in steady state.

import gc

from tickrig import build, run_until

from firmware import session as ses


def _alloc_per_tick(ctl, now_ms, ticks):
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(ticks):
        now_ms += 10
        ctl.tick(now_ms)
    return gc.mem_alloc() - before, now_ms


def test_session_reaches_treatment_and_tick_allocates_nothing():
    ctl, session, person = build()
    session.begin(10 * 60_000)
    now = run_until(ctl, session, ses.LEGREST_RISING, 0)
    assert session.scan.contacts == 26
    now = run_until(ctl, session, ses.WARMUP, now)
    for _ in range(50):  # warm-up: whatever is made lazily is made now
        now += 10
        ctl.tick(now)
    grown, now = _alloc_per_tick(ctl, now, 200)
    assert grown == 0, "%d bytes allocated in 200 warm-up ticks" % grown
    now = run_until(ctl, session, ses.TREATING, now)
    for _ in range(50):
        now += 10
        ctl.tick(now)
    grown, now = _alloc_per_tick(ctl, now, 200)
    assert grown == 0, "%d bytes allocated in 200 treating ticks" % grown


def test_forces_stay_under_the_cap_and_stop_ends_the_session():
    ctl, session, person = build()
    session.begin(10 * 60_000)
    now = run_until(ctl, session, ses.TREATING, 0)
    session.set_strength(10)
    peak = 0
    for _ in range(3000):
        now += 10
        ctl.tick(now)
        for f in ctl.forces_cn:
            if f > peak:
                peak = f
    assert 0 < peak < session.board.force_cap_cn, peak
    session.stop()
    run_until(ctl, session, ses.IDLE, now)
    assert max(ctl.targets_um) == 0
    assert session.result["reason"] == ses.END_STOPPED
