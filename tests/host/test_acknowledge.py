"""A latched fault stays until its condition has cleared and the user acknowledges it."""

import asyncio

from backhug_host import hostrt
from backhug_host.simsession import SimRun
from firmware import commands as cmd
from firmware import faults
from firmware import session as ses


async def until(cond, limit_s, step_s=0.01):
    waited = 0.0
    while not cond():
        await asyncio.sleep(step_s)
        waited += step_s
        if waited > limit_s:
            raise AssertionError(f"not within {limit_s} s")


def scenario(body):
    async def go():
        run = SimRun("sim", person={}, seed=4)
        try:
            await run.start()
            return await body(run)
        finally:
            await run.close()

    return hostrt.run(go())


def test_open_sensor_fault_needs_the_repair_and_an_acknowledgement():
    async def body(run):
        c = run.device.commands
        sup = run.device.supervisor
        assert c.start(duration_min=10)[0] == cmd.OK
        await until(lambda: run.device.session.state == ses.TREATING, 120)
        run.sim.inject("open:7")
        await until(lambda: sup.fault_code == faults.SENSOR_OPEN, 1)
        assert sup.fault_detail == "finger 7"
        await until(lambda: run.device.session.state == ses.IDLE, 60)
        # still broken: the acknowledgement is refused, nothing can start
        code, why = c.acknowledge()
        assert code == cmd.E_FAULT and "still present" in why
        assert c.start(duration_min=10)[0] == cmd.E_FAULT
        # repaired: acknowledged, and a session starts again
        run.sim.sensors.inject(7, None)
        await asyncio.sleep(0.1)
        assert c.acknowledge()[0] == cmd.OK
        assert not run.device.safestop.active and sup.fault_code == 0
        assert c.acknowledge()[0] == cmd.E_STATE  # nothing left to acknowledge
        assert c.start(duration_min=10)[0] == cmd.OK
        await until(lambda: run.device.session.state == ses.WARMUP, 60)
        return True

    assert scenario(body)


def test_a_short_button_press_at_idle_acknowledges_a_cleared_fault():
    async def body(run):
        sup = run.device.supervisor
        assert run.device.commands.start(duration_min=10)[0] == cmd.OK
        await until(lambda: run.device.session.state == ses.TREATING, 120)
        run.sim.inject("limits:both")
        await until(lambda: sup.fault_code == faults.LEGREST_BOTH_LIMITS, 1)
        await until(lambda: run.device.session.state == ses.IDLE, 60)
        run.sim.press_button(hold_ms=200)
        await asyncio.sleep(1)
        assert sup.fault_code == faults.LEGREST_BOTH_LIMITS  # both switches still closed
        run.sim.legrest.set_switch_fault("top", None)
        run.sim.legrest.set_switch_fault("bottom", None)
        run.sim.catch_up()
        await asyncio.sleep(0.5)
        run.sim.press_button(hold_ms=200)
        await until(lambda: sup.fault_code == 0, 2)
        assert not run.device.safestop.active
        # the leg rest stayed where the fault caught it: a leg-rest fault never lowers it
        return True

    assert scenario(body)
