# The virtual-time event loop: simulated hours must pass without real waiting, timers must fire in
# order at exactly their virtual instant, firmware ticks must follow loop time, real threads and
# sockets must keep working, and a program that can never progress must fail instead of hanging.

import asyncio
import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backhug_host import hostrt
from firmware import runtime

PERIOD = 1 << 30


def test_an_hour_of_sleep_passes_without_waiting_an_hour(vclock, vrun):
    async def main():
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    wall0 = time.monotonic()
    t_end = vrun(main())
    wall = time.monotonic() - wall0
    assert vclock.elapsed_us() == 3600 * 1_000_000
    assert t_end == vclock.now_us() / 1e6
    # Had the loop really slept this would take an hour; the bound only proves it did not.
    assert wall < 30


def test_a_100hz_tick_loop_does_not_drift(vclock, vrun):
    # 6000 plain sleeps of 10 ms must be exactly 60 s of virtual time: float rounding in the
    # loop's timers must not add up.
    async def main():
        for _ in range(6000):
            await asyncio.sleep(0.01)

    vrun(main())
    assert vclock.elapsed_us() == 60_000_000


def test_a_deadline_paced_loop_sees_exact_tick_intervals_across_the_wrap(vclock, vrun):
    # The firmware's control loop paces itself with ticks_add/ticks_diff; the clock starts 30 s
    # before the wrap, so this crosses it.
    intervals = []

    async def main():
        next_ms = runtime.ticks_ms()
        last = next_ms
        for _ in range(4000):
            next_ms = runtime.ticks_add(next_ms, 10)
            await runtime.sleep_ms(runtime.ticks_diff(next_ms, runtime.ticks_ms()))
            now = runtime.ticks_ms()
            intervals.append(runtime.ticks_diff(now, last))
            last = now

    vrun(main())
    assert set(intervals) == {10}
    assert vclock.elapsed_us() == 40_000_000


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=1, max_size=20))
def test_timers_fire_in_order_at_their_exact_virtual_time(delays_ms):
    clock = hostrt.VirtualClock()
    woke = []

    async def sleeper(i, delay_ms):
        await asyncio.sleep(delay_ms / 1000)
        woke.append((clock.elapsed_us(), i))

    async def main():
        await asyncio.gather(*(sleeper(i, d) for i, d in enumerate(delays_ms)))

    previous = getattr(runtime, "_host", None)
    try:
        hostrt.run(main(), clock=clock, idle_grace_s=0)
    finally:
        runtime.install(previous)
    assert len(woke) == len(delays_ms)
    times = [t for t, _ in woke]
    assert times == sorted(times)
    for t, i in woke:
        assert t == delays_ms[i] * 1000
    assert clock.elapsed_us() == max(delays_ms) * 1000


def test_ticks_ms_follows_loop_time_across_the_wrap(vclock, vrun):
    samples = []

    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(90):
            samples.append((loop.time(), runtime.ticks_ms()))
            await asyncio.sleep(0.75)

    vrun(main())
    t0, k0 = samples[0]
    for t, k in samples:
        assert runtime.ticks_diff(k, k0) == round((t - t0) * 1000)
    wraps = sum(1 for (_, a), (_, b) in zip(samples, samples[1:], strict=False) if b < a)
    assert wraps == 1


def test_runtime_sleep_and_wait_for_run_in_virtual_time(vclock, vrun):
    async def main():
        await runtime.sleep_ms(1500)
        assert vclock.elapsed_us() == 1_500_000
        with pytest.raises(asyncio.TimeoutError):
            await runtime.wait_for_ms(asyncio.Event().wait(), 250)
        assert vclock.elapsed_us() == 1_750_000

    vrun(main())


def test_busy_wait_inside_a_task_delays_the_other_timers(vclock, vrun):
    # block_us is a busy wait: nothing else runs meanwhile, so a timer due during it fires late.
    fired = []

    async def timer():
        await asyncio.sleep(0.001)
        fired.append(vclock.elapsed_us())

    async def main():
        task = asyncio.create_task(timer())
        await asyncio.sleep(0)
        runtime.block_ms(5)
        await task

    vrun(main())
    assert fired == [5000]


def test_a_task_waiting_forever_is_a_deadlock_error_not_a_hang(vrun):
    async def stuck_forever():
        await asyncio.Event().wait()

    async def main():
        await asyncio.gather(stuck_forever(), stuck_forever())

    wall0 = time.monotonic()
    with pytest.raises(hostrt.VirtualDeadlock) as err:
        vrun(main(), idle_grace_s=0)
    assert time.monotonic() - wall0 < 10
    message = str(err.value)
    assert "deadlocked" in message
    assert "stuck_forever" in message


def test_thread_jobs_complete_without_a_deadlock_error(vclock, vrun):
    # Nothing is scheduled in virtual time while the thread works: the loop must wait for it.
    async def main():
        return await asyncio.to_thread(lambda: (time.sleep(0.2), "done")[1])

    assert vrun(main(), idle_grace_s=0) == "done"
    assert vclock.elapsed_us() == 0


def test_real_sockets_are_served_while_virtual_timers_run(vclock, vrun):
    a, b = socket.socketpair()
    a.setblocking(False)
    ticks = []

    async def ticker():
        while True:
            await asyncio.sleep(0.01)
            ticks.append(1)

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(ticker())
        threading.Timer(0.05, b.sendall, (b"hello",)).start()
        data = await loop.sock_recv(a, 16)
        task.cancel()
        return data

    try:
        assert vrun(main()) == b"hello"
    finally:
        a.close()
        b.close()
    # Virtual time kept running (at full speed) while the real bytes were on their way.
    assert len(ticks) > 0
    assert vclock.elapsed_us() >= len(ticks) * 10_000


def test_real_time_mode_uses_the_host_clock():
    async def main():
        t0 = runtime.ticks_ms()
        await asyncio.sleep(0.03)
        return runtime.ticks_diff(runtime.ticks_ms(), t0)

    previous = getattr(runtime, "_host", None)
    try:
        waited_ms = hostrt.run(main(), virtual=False)
        assert isinstance(hostrt.install_real(), hostrt.RealClock)
    finally:
        runtime.install(previous)
    assert waited_ms >= 29


def test_new_virtual_loop_without_a_clock_installs_a_fresh_one():
    previous = getattr(runtime, "_host", None)
    loop = hostrt.new_virtual_loop()
    try:
        assert runtime.ticks_ms() == PERIOD - 30_000
        loop.run_until_complete(asyncio.sleep(2))
        assert loop.clock.elapsed_us() == 2_000_000
        assert runtime.ticks_ms() == PERIOD - 28_000
    finally:
        loop.close()
        runtime.install(previous)
