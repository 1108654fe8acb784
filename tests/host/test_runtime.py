# firmware.runtime on CPython must keep MicroPython's tick semantics (extmod/modtime.c): ticks wrap
# at 2**30, ticks_diff gives the signed distance in [-2**29, 2**29), and ticks_add refuses a delta
# ticks_diff could not give back. Deadlines computed across a wrap depend on exactly this.

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backhug_host import hostrt
from firmware import runtime

PERIOD = 1 << 30
HALF = PERIOD >> 1

ticks = st.integers(min_value=0, max_value=PERIOD - 1)
deltas = st.integers(min_value=-HALF + 1, max_value=HALF - 1)


def signed_distance(end, start):
    # Reference model, written independently of runtime: the representative of end - start
    # modulo 2**30 that lies in [-2**29, 2**29).
    d = (end - start) % PERIOD
    return d - PERIOD if d >= HALF else d


@given(ticks, deltas)
def test_ticks_add_then_diff_gives_the_delta_back(t, d):
    later = runtime.ticks_add(t, d)
    assert 0 <= later < PERIOD
    assert runtime.ticks_diff(later, t) == d
    assert runtime.ticks_diff(t, later) == -d


@given(ticks, ticks)
def test_ticks_diff_is_the_signed_distance_modulo_the_period(a, b):
    d = runtime.ticks_diff(a, b)
    assert -HALF <= d < HALF
    assert d == signed_distance(a, b)


@given(ticks, st.integers(min_value=HALF, max_value=4 * PERIOD))
def test_ticks_add_refuses_half_a_period_or_more(t, d):
    with pytest.raises(OverflowError):
        runtime.ticks_add(t, d)
    with pytest.raises(OverflowError):
        runtime.ticks_add(t, -d)


def test_ticks_add_bounds_are_exactly_those_of_micropython():
    assert runtime.ticks_add(0, HALF - 1) == HALF - 1
    assert runtime.ticks_add(0, -HALF + 1) == HALF + 1
    for bad in (HALF, -HALF):
        with pytest.raises(OverflowError):
            runtime.ticks_add(0, bad)


@given(ticks, st.lists(st.integers(min_value=0, max_value=10_000_000), min_size=2, max_size=30))
def test_deadlines_stay_ordered_across_the_wrap(start, steps):
    # A sequence of instants less than half a period long keeps its order through ticks_diff
    # wherever it starts, including straddling the wrap.
    total = 0
    stamps = [start]
    for step in steps:
        if total + step >= HALF:
            break
        total += step
        stamps.append(runtime.ticks_add(start, total))
    for earlier, later in zip(stamps, stamps[1:], strict=False):
        assert runtime.ticks_diff(later, earlier) >= 0
    assert runtime.ticks_diff(stamps[-1], start) == total


def test_ticks_follow_the_installed_clock_through_the_wrap(vclock):
    # The default virtual clock starts 30 s before both counters wrap.
    assert runtime.ticks_ms() == PERIOD - 30_000
    t0_ms, t0_us = runtime.ticks_ms(), runtime.ticks_us()
    vclock.advance_ms(29_999)
    assert runtime.ticks_ms() == PERIOD - 1
    vclock.advance_ms(1)
    assert runtime.ticks_ms() == 0
    assert runtime.ticks_us() == 0
    vclock.advance_us(1_234_567)
    assert runtime.ticks_diff(runtime.ticks_ms(), t0_ms) == 31_234
    assert runtime.ticks_diff(runtime.ticks_us(), t0_us) == 31_234_567


def test_block_waits_advance_virtual_time_exactly(vclock):
    t0 = runtime.ticks_us()
    runtime.block_us(10)
    runtime.block_ms(3)
    assert runtime.ticks_diff(runtime.ticks_us(), t0) == 3_010
    assert vclock.elapsed_us() == 3_010


def test_ticks_without_an_installed_clock_raise_instead_of_guessing(vclock):
    runtime.install(None)
    with pytest.raises(RuntimeError, match="no host clock"):
        runtime.ticks_ms()
    hostrt.install_virtual(clock=vclock)
    assert runtime.ticks_ms() == PERIOD - 30_000


def test_const_is_the_identity_on_the_host():
    assert runtime.const(0x40) == 0x40
    assert runtime.ON_DEVICE is False


def test_native_and_viper_decorators_are_the_function_itself_on_cpython():
    from firmware.runtime import micropython

    def f(x):
        return x + 1

    assert micropython.native(f) is f
    assert micropython.viper(f) is f
    assert micropython.const(7) == 7
