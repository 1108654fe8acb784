"""The session under the app's commands and the person's actions, on the simulated device.

Each scenario reads like a script: a board, a person, commands and events, and the safe outcome
expected (STYLE 14). Sessions here are cut short by the event under test, so they run quickly.
"""

import asyncio

import pytest

from backhug_host import hostrt
from backhug_host.simsession import SimRun
from firmware import commands as cmd
from firmware import session as ses


async def until(cond, limit_s, step_s=0.01):
    waited = 0.0
    while not cond():
        await asyncio.sleep(step_s)
        waited += step_s
        if waited > limit_s:
            raise AssertionError(f"not within {limit_s} s")
    return waited


def scenario(body, person=None, board="sim"):
    async def go():
        run = SimRun(board, person={} if person is None else person, seed=1)
        try:
            await run.start()
            return await body(run)
        finally:
            await run.close()

    return hostrt.run(go())


def finger_pulses_at_home(run):
    chips = run.sim.chips
    return all(
        abs(chips.finger_pulse_us(i) - run.board.pulse_cal[i][0]) <= 5
        for i in range(run.board.finger_count)
    )


def test_commands_in_the_wrong_state_are_refused_and_change_nothing():
    async def body(run):
        c = run.device.commands
        s = run.device.session
        for call in (c.pause, c.resume, c.stop):
            code, why = call()
            assert code == cmd.E_STATE and why
            assert s.state == ses.IDLE
        assert c.start(duration_min=20)[0] == cmd.OK
        await until(lambda: s.state == ses.WARMUP, 30)
        code, why = c.start(duration_min=10)
        assert code == cmd.E_STATE and "already" in why
        assert s.total_ms == 20 * 60_000
        assert c.resume()[0] == cmd.E_STATE
        assert s.state == ses.WARMUP
        return True

    assert scenario(body)


@pytest.mark.parametrize(
    "call, args, field",
    [
        ("start", {"duration_min": 15}, "duration"),
        ("start", {"duration_min": 0}, "duration"),
        ("start", {"user": 7}, "user"),
        ("set_strength", (0,), "strength"),
        ("set_strength", (11,), "strength"),
        ("set_strength", (True,), "strength"),
        ("set_strength", (10.0,), "strength"),
        ("start", {"duration_min": 10.0}, "duration"),
        ("set_area", ("neck",), "area"),
        ("set_flow", ("spin",), "flow"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(call, args, field):
    async def body(run):
        c = run.device.commands
        s = run.device.session
        before = (s.strength, s.area, s.flow, s.state)
        fn = getattr(c, call)
        code, why = fn(**args) if isinstance(args, dict) else fn(*args)
        assert code == cmd.E_VALUE
        assert why.startswith(field)
        assert (s.strength, s.area, s.flow, s.state) == before
        return True

    assert scenario(body)


def test_a_bad_programme_is_refused_naming_step_and_field():
    async def body(run):
        c = run.device.commands
        bad = {"steps": [{"area": "full", "flow": "wave", "strength": 4, "duration_s": 60},
                         {"area": "full", "flow": "spin", "strength": 4, "duration_s": 60}]}
        code, why = c.start(programme_obj=bad)
        assert code == cmd.E_VALUE
        assert "step 2" in why and "flow" in why
        assert run.device.session.state == ses.IDLE
        return True

    assert scenario(body)


def test_nobody_lying_there_means_no_session_and_no_leg_rest():
    async def body(run):
        s = run.device.session
        assert run.device.commands.start(duration_min=10)[0] == cmd.OK
        await until(lambda: s.state == ses.IDLE, 60)
        assert s.result["reason"] == ses.END_NO_PERSON
        assert run.sim.legrest_position() <= 0.01
        assert finger_pulses_at_home(run)
        return True

    assert scenario(body, person="nobody")


def test_stop_button_retracts_every_finger_within_two_ticks():
    async def body(run):
        s = run.device.session
        assert run.device.commands.set_strength(6)[0] == cmd.OK
        assert run.device.commands.start(duration_min=10)[0] == cmd.OK
        await until(lambda: s.state == ses.TREATING, 120)
        await asyncio.sleep(5)
        assert not finger_pulses_at_home(run)
        run.sim.press_button(hold_ms=300)
        waited = await until(lambda: finger_pulses_at_home(run), 1.0, step_s=0.001)
        assert waited <= 0.020  # two 10 ms control ticks
        await until(lambda: s.state == ses.IDLE, 30)
        assert s.result["reason"] == ses.END_STOPPED
        assert run.sim.legrest_position() <= 0.01
        # the release of that press must not start a new session
        await asyncio.sleep(1)
        assert s.state == ses.IDLE
        return True

    assert scenario(body)


def test_a_person_who_gets_up_ends_the_session():
    async def body(run):
        s = run.device.session
        assert run.device.commands.start(duration_min=10)[0] == cmd.OK
        await until(lambda: s.state == ses.TREATING, 120)
        run.sim.load.get_up()
        waited = await until(lambda: s.state != ses.TREATING, 5)
        assert 1.5 <= waited <= 3.0  # contact lost for 2 s
        await until(lambda: s.state == ses.IDLE, 30)
        assert s.result["reason"] == ses.END_PERSON_LEFT
        assert finger_pulses_at_home(run)
        return True

    assert scenario(body)


def test_pause_freezes_the_clock_and_resume_continues():
    async def body(run):
        s = run.device.session
        c = run.device.commands
        assert c.start(duration_min=10)[0] == cmd.OK
        await until(lambda: s.state == ses.TREATING, 120)
        assert c.pause()[0] == cmd.OK
        paused_at = s.elapsed_ms
        await asyncio.sleep(20)
        assert s.state == ses.PAUSED and s.elapsed_ms == paused_at
        forces = run.device.controller.forces_cn
        assert max(forces) < 3 * s.touch_cn  # paused: only a light touch
        assert c.resume()[0] == cmd.OK
        await asyncio.sleep(1)
        assert s.state == ses.TREATING and s.elapsed_ms > paused_at
        return True

    assert scenario(body)


def test_strength_change_takes_effect_in_the_next_tick_and_ramps():
    async def body(run):
        s = run.device.session
        c = run.device.commands
        assert c.set_strength(3)[0] == cmd.OK
        assert c.start(duration_min=10)[0] == cmd.OK
        await until(lambda: s.state == ses.TREATING, 120)
        await asyncio.sleep(2)
        low = s.ramp.current_cn
        ticks = run.device.controller.ticks
        assert c.set_strength(9)[0] == cmd.OK
        await until(lambda: run.device.controller.ticks > ticks, 0.1, step_s=0.001)
        assert s.ramp.goal_cn == run.board.strength_cn[8]
        assert s.ramp.current_cn < run.board.strength_cn[8]  # a ramp, not a jump
        assert s.ramp.current_cn - low <= 100  # one tick's worth of ramp (1.5 cN/ms)
        return True

    assert scenario(body)


def test_a_programme_runs_its_steps_in_order():
    prog = {
        "name": "short",
        "steps": [
            {"area": "upper", "flow": "pulse", "strength": 4, "duration_s": 90},
            {"area": "lower", "flow": "walk", "strength": 5, "duration_s": 90},
            {"area": "full", "flow": "wave", "strength": 4, "duration_s": 60},
        ],
    }

    async def body(run):
        s = run.device.session
        seen = []
        assert run.device.commands.start(programme_obj=prog)[0] == cmd.OK
        while s.state != ses.IDLE or s.result is None:
            await asyncio.sleep(0.5)
            if s.state == ses.TREATING and (not seen or seen[-1] != s.step_index):
                seen.append(s.step_index)
        assert s.result["reason"] == ses.END_COMPLETED
        assert s.result["elapsed_ms"] == 240_000
        assert seen == [0, 1]  # step 3 falls in the cool-down minute
        return True

    assert scenario(body)


def test_a_task_that_dies_ends_in_the_safe_state_and_the_watchdog_resets_the_device():
    async def body(run):
        s = run.device.session
        assert run.device.commands.start(duration_min=10)[0] == cmd.OK
        await until(lambda: s.state == ses.TREATING, 120)
        first = run.device

        def broken(*a):
            raise RuntimeError("bug")

        first.session.tick = broken
        await until(lambda: first.safestop.active, 0.1, step_s=0.001)
        assert "control" in first.safestop.reason
        assert finger_pulses_at_home(run)
        # nothing feeds the watchdog any more: it resets the device, which boots safe
        await until(lambda: run.boots == 2, 5)
        assert "watchdog" in run.resets[0][1]
        from firmware import hal

        assert hal.reset_cause() == "watchdog"
        await until(lambda: run.device.controller.ticks > 10, 5)
        assert run.device.session.state == ses.IDLE
        assert not run.device.safestop.active
        assert finger_pulses_at_home(run)
        # and it works again: a new session can start
        assert run.device.commands.start(duration_min=10)[0] == cmd.OK
        await until(lambda: run.device.session.state == ses.WARMUP, 60)
        return True

    assert scenario(body)
