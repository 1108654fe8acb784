# firmware.runtime on the real MicroPython interpreter: the device branch is taken, the tick
# functions are MicroPython's own (and agree with what the host copy promises), const works,
# and gc.mem_alloc() can measure allocation, which the per-tick heap benchmarks rely on.

import gc
import sys
from micropython import const

import mpytest

from firmware import runtime

_PERIOD = const(1 << 30)
_HALF = const(1 << 29)


def test_device_branch_is_taken():
    assert sys.implementation.name == "micropython"
    assert runtime.ON_DEVICE is True


def test_const_folds_to_its_value():
    assert runtime.const(0x41) == 0x41
    assert _HALF * 2 == _PERIOD


def test_ticks_are_small_ints_in_the_period():
    for t in (runtime.ticks_ms(), runtime.ticks_us()):
        assert 0 <= t < _PERIOD


def test_ticks_add_and_diff_round_trip_across_the_wrap():
    # The same identities tests/host/test_runtime.py checks against the host copy.
    starts = (0, 1, _HALF - 1, _HALF, _PERIOD - 1, _PERIOD - 1000, 123456789)
    deltas = (0, 1, -1, 999, -1000, _HALF - 1, -_HALF + 1, 20_000_000, -20_000_000)
    for t in starts:
        for d in deltas:
            later = runtime.ticks_add(t, d)
            assert 0 <= later < _PERIOD
            assert runtime.ticks_diff(later, t) == d
            assert runtime.ticks_diff(t, later) == -d


def test_ticks_diff_is_signed_distance():
    assert runtime.ticks_diff(0, _PERIOD - 1) == 1
    assert runtime.ticks_diff(_PERIOD - 1, 0) == -1
    assert runtime.ticks_diff(_HALF, 0) == -_HALF
    assert runtime.ticks_diff(_HALF - 1, 0) == _HALF - 1


def test_ticks_add_overflow_at_half_period():
    for bad in (_HALF, -_HALF, _PERIOD):
        with mpytest.raises(OverflowError):
            runtime.ticks_add(0, bad)


def test_block_us_waits_at_least_that_long():
    t0 = runtime.ticks_us()
    runtime.block_us(2000)
    assert runtime.ticks_diff(runtime.ticks_us(), t0) >= 2000


async def test_sleep_ms_and_wait_for_ms():
    t0 = runtime.ticks_ms()
    await runtime.sleep_ms(20)
    assert runtime.ticks_diff(runtime.ticks_ms(), t0) >= 19
    flag = runtime.ThreadSafeFlag()
    with mpytest.raises(Exception) as caught:
        await runtime.wait_for_ms(flag.wait(), 10)
    assert type(caught.value).__name__ == "TimeoutError"


def _integer_work(n):
    acc = 0
    for i in range(n):
        acc = (acc + i * 3) & 0xFFFF
    return acc


def test_mem_alloc_sees_allocation_and_its_absence():
    gc.collect()
    before = gc.mem_alloc()
    buf = bytearray(4096)
    grown = gc.mem_alloc() - before
    assert grown >= 4096, grown
    assert len(buf) == 4096
    _integer_work(10)  # warm up: first calls may intern or cache
    gc.collect()
    before = gc.mem_alloc()
    _integer_work(1000)
    assert gc.mem_alloc() - before == 0
