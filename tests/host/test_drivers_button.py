"""The button driver in virtual time: edges driven on the emulated pin (with contact bounce) become
debounced PRESSED / SHORT / LONG / VERY_LONG events at the right moments."""

import asyncio

import pytest

from backhug_host import emul
from backhug_host.emul import world as W
from firmware import boardspec
from firmware.drivers import button as btn
from firmware.drivers.fault import DriverFault

emul.use_fake_machine()
from firmware import hal  # noqa: E402 - after the fake machine is on sys.path

BOARD = boardspec.load("sim")
CFG = BOARD.button
PIN = CFG["pin"]


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


def ms(clock):
    return clock.elapsed_us() // 1000


class Harness:
    """The button on the sim board, its run() task, and a log of (ms, event mask) as the
    consumer sees them through `flag` and take()."""

    def __init__(self, world, clock):
        self.world = world
        self.clock = clock
        self.log = []

    async def start(self):
        emul.attach_board(self.world, BOARD)
        self.hw = hal.build(BOARD)
        self.button = self.hw.button
        self.tasks = [asyncio.create_task(self.button.run()), asyncio.create_task(self._collect())]
        await asyncio.sleep(0.01)

    async def _collect(self):
        while True:
            await self.button.flag.wait()
            self.log.append((ms(self.clock), self.button.take()))

    async def press(self, bounces=3):
        # contact bounce: the line chatters for ~1.5 ms before it stays down
        for _ in range(bounces):
            self.world.pins.drive(PIN, 0)
            await asyncio.sleep(0.0003)
            self.world.pins.drive(PIN, None)
            await asyncio.sleep(0.0002)
        self.world.pins.drive(PIN, 0)
        return ms(self.clock)

    async def release(self, bounces=3):
        for _ in range(bounces):
            self.world.pins.drive(PIN, None)
            await asyncio.sleep(0.0003)
            self.world.pins.drive(PIN, 0)
            await asyncio.sleep(0.0002)
        self.world.pins.drive(PIN, None)
        return ms(self.clock)

    def stop(self):
        for t in self.tasks:
            t.cancel()


def run_scenario(vrun, world, vclock, body):
    # -> (what body returned, the consumer's log of (ms, event mask))
    async def main():
        h = Harness(world, vclock)
        await h.start()
        try:
            return await body(h), h.log
        finally:
            h.stop()

    return vrun(main(), idle_grace_s=0)


def test_short_press_with_bounce(vrun, world, vclock):
    async def body(h):
        t_press = await h.press()
        await asyncio.sleep(0.2)
        await h.release()
        await asyncio.sleep(0.1)
        return t_press

    t_press, log = run_scenario(vrun, world, vclock, body)
    # exactly one press and one short, however much the contacts bounced
    assert [e for _, e in log] == [btn.PRESSED, btn.SHORT]
    assert log[0][0] - t_press <= 20  # the stop acts on PRESSED within two control ticks


def test_glitch_shorter_than_debounce_is_ignored(vrun, world, vclock):
    async def body(h):
        world.pins.drive(PIN, 0)
        await asyncio.sleep((CFG["debounce_ms"] - 2) / 1000)
        world.pins.drive(PIN, None)
        await asyncio.sleep(0.5)
        return h.button.is_pressed()

    pressed, log = run_scenario(vrun, world, vclock, body)
    assert pressed is False
    assert log == []


def test_long_hold_gives_long_and_no_short(vrun, world, vclock):
    async def body(h):
        t0 = await h.press()
        await asyncio.sleep(3.5)
        pressed = h.button.is_pressed()
        await h.release()
        await asyncio.sleep(0.1)
        return t0, pressed

    (t0, pressed_while_held), log = run_scenario(vrun, world, vclock, body)
    assert [e for _, e in log] == [btn.PRESSED, btn.LONG]
    t_long = log[1][0]
    assert CFG["long_ms"] <= t_long - t0 <= CFG["long_ms"] + 20
    assert pressed_while_held is True


def test_very_long_hold(vrun, world, vclock):
    async def body(h):
        t0 = await h.press()
        await asyncio.sleep(11)
        await h.release()
        await asyncio.sleep(0.1)
        return t0, h.button.is_pressed()

    (t0, pressed_after), log = run_scenario(vrun, world, vclock, body)
    assert [e for _, e in log] == [btn.PRESSED, btn.LONG, btn.VERY_LONG]
    assert CFG["very_long_ms"] <= log[2][0] - t0 <= CFG["very_long_ms"] + 20
    assert pressed_after is False


def test_two_presses_two_events_each(vrun, world, vclock):
    async def body(h):
        for _ in range(2):
            await h.press()
            await asyncio.sleep(0.1)
            await h.release()
            await asyncio.sleep(0.1)

    _, log = run_scenario(vrun, world, vclock, body)
    assert [e for _, e in log] == [btn.PRESSED, btn.SHORT, btn.PRESSED, btn.SHORT]


def test_events_pending_until_taken(vrun, world, vclock):
    # A consumer that looks late still gets every event, merged into one mask.
    async def main():
        emul.attach_board(world, BOARD)
        b = hal.build(BOARD).button
        task = asyncio.create_task(b.run())
        await asyncio.sleep(0.01)
        world.pins.drive(PIN, 0)
        await asyncio.sleep(0.1)
        world.pins.drive(PIN, None)
        await asyncio.sleep(0.1)
        task.cancel()
        first = b.take()
        return first, b.take()

    first, second = vrun(main(), idle_grace_s=0)
    assert first == btn.PRESSED | btn.SHORT
    assert second == 0


def test_held_at_start_up_counts_as_a_press(vrun, world, vclock):
    async def main():
        emul.attach_board(world, BOARD)
        world.pins.drive(PIN, 0)
        b = hal.build(BOARD).button
        task = asyncio.create_task(b.run())
        await asyncio.sleep(0.05)
        task.cancel()
        return b.take()

    assert vrun(main(), idle_grace_s=0) == btn.PRESSED


def test_irq_handler_only_sets_the_flag(world):
    # The "ISR" does no event work: without the run() task nothing is reported.
    emul.attach_board(world, BOARD)
    b = hal.build(BOARD).button
    world.pins.drive(PIN, 0)
    world.pins.drive(PIN, None)
    assert world.pins.get(PIN).irq_count == 2
    assert b.take() == 0 and not b.is_pressed()


def test_run_before_init_is_a_fault(vrun, world, vclock):
    emul.attach_board(world, BOARD)
    b = hal.build(BOARD, init=False).button
    with pytest.raises(DriverFault, match="button"):
        vrun(b.run(), idle_grace_s=0)
