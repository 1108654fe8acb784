"""The safety invariants hold under any sequence of commands and events (DESIGN section 5).

Hypothesis generates scenarios for the unchanged firmware on the simulated device (SimRun, in
virtual time): a person (or nobody) on the device, then a list of steps - the app's commands
with good and bad arguments, stop-button presses short and long, broken sensors, I2C errors on
the PWM chips, stalled or stuck fingers, a jammed leg rest and bad limit switches, the person
getting up, lying down or tensing under a finger, repairs, and waits of 10 ms to 2 minutes.
After every control tick `invariants.Monitor` checks the invariants listed there. A failure
prints the steps as played, with their virtual times.

Each scenario is cut to SCENARIO_MS of virtual time (a session's first minutes, where the
scan, the leg rest and the strength ramp happen); the 60-minute cap is reached by the "age"
step, which puts the supervisor's pressing clock where a long session would have it.
"""

import asyncio
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from invariants import LIEDOWN_WINDOW_MS, TENSE_GRACE_MS, watch

from backhug_host import hostrt
from backhug_host.sim.actuators import STALL_N
from backhug_host.sim.person import REGION_NAMES
from backhug_host.simsession import SimRun
from firmware import boardspec
from firmware import session as ses
from firmware.treatments.areas import AREAS
from firmware.treatments.flows import FLOW_NAMES

BOARD = "sim"
FINGERS = boardspec.load(BOARD).finger_count
SCENARIO_MS = 150_000
TAIL_MS = 3_000  # after the last step: time for its consequences to show
CHUNK_MS = 500  # waits are slept in chunks, so a violation ends the scenario early
EXAMPLES = int(os.environ.get("BACKHUG_SAFETY_EXAMPLES", "30"))

# -- strategies ----------------------------------------------------------------------------------

finger = st.integers(0, FINGERS - 1)
junk = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.floats(allow_nan=False),
                 st.booleans(), st.just([]))

programme_step = st.fixed_dictionaries(
    {
        "area": st.one_of(st.sampled_from(AREAS), st.text(max_size=6)),
        "flow": st.one_of(st.sampled_from(FLOW_NAMES), st.text(max_size=6)),
        "strength": st.integers(-1, 12),
        "duration_s": st.integers(-10, 900),
    },
    optional={"tempo": st.integers(0, 500), "mask": st.integers(-1, 1 << FINGERS)},
)
programme = st.one_of(
    st.fixed_dictionaries({"steps": st.lists(programme_step, min_size=1, max_size=4)},
                          optional={"name": st.text(max_size=40)}),
    junk,
    st.dictionaries(st.text(max_size=6), junk, max_size=3),
)
duration = st.one_of(st.sampled_from([10, 20, 30, 40, None]), st.integers(-5, 100), junk)

start = st.one_of(
    st.tuples(st.just("start"), duration, st.just(None), st.integers(-1, 6)),
    st.tuples(st.just("start"), st.none(), programme, st.integers(0, 4)),
)
command = st.one_of(
    start,
    st.tuples(st.sampled_from(["pause", "resume", "stop", "acknowledge"])),
    st.tuples(st.just("strength"), st.one_of(st.integers(-3, 14), junk)),
    st.tuples(st.just("area"), st.one_of(st.sampled_from(AREAS), st.text(max_size=8), junk)),
    st.tuples(st.just("flow"), st.one_of(st.sampled_from(FLOW_NAMES), st.text(max_size=8)),
              st.one_of(st.none(), st.integers(-10, 500))),
)
hold_ms = st.one_of(st.integers(20, 800), st.integers(3_000, 4_000), st.integers(10_000, 11_000))
fault = st.one_of(
    st.tuples(st.just("sensor"), st.sampled_from(["open", "short", "stuck", "noisy"]), finger),
    st.tuples(st.just("i2c"), st.sampled_from([0x40, 0x41]), st.sampled_from(["nack", "timeout"]),
              st.sampled_from([1, 2, None])),
    st.tuples(st.just("stall"), finger, st.integers(0, 300)),
    st.tuples(st.just("stick"), finger),
    st.tuples(st.just("jam"), st.one_of(st.none(), st.floats(0, 1))),
    st.tuples(st.just("limits"), st.sampled_from(["both", "top=open", "top=closed",
                                                  "bottom=open", "bottom=closed"])),
)
person = st.one_of(
    st.tuples(st.sampled_from(["getup", "liedown"])),
    # rise: 0 = at once; hold: how long the muscle stays tense
    st.tuples(st.just("tense"), finger, st.sampled_from([1.5, 2.0, 4.0, 40.0]),
              st.sampled_from([0, 100, 300, 1_000]), st.integers(100, 2_000)),
)
wait_ms = st.one_of(st.integers(10, 1_000), st.integers(1_000, 20_000),
                   st.integers(20_000, 120_000))
action = st.one_of(
    command,
    st.tuples(st.just("button"), hold_ms),
    fault,
    person,
    st.tuples(st.just("repair")),
    st.tuples(st.just("age"), st.integers(0, 120_000)),
)
# each step: something happens, then time passes
step = st.tuples(action, wait_ms)
# who lies on the device at first (None: nobody)
lying = st.tuples(st.integers(0, 4), st.fixed_dictionaries({
        "height_cm": st.integers(150, 200),
        "curvature": st.sampled_from([0.5, 1.0, 1.6]),
        "weight_kg": st.integers(45, 130),
        "stiff": st.lists(st.sampled_from(REGION_NAMES), max_size=2, unique=True),
    })).map(lambda t: None if t[0] == 0 else t[1])
# most scenarios begin the way a user does: set a strength and start
opening = st.tuples(st.integers(0, 10), st.integers(10, 100_000)).map(
    lambda t: [] if t[0] == 0 else [(("strength", t[0]), 0), (("start", 10, None, 0), t[1])])

# -- playing a scenario --------------------------------------------------------------------------


def _tense(run, mon, i, factor, rise_ms, hold_ms):
    # the muscle under finger i tenses: its stiffness rises by `factor` over rise_ms, stays,
    # then lets go at once (as spasms() in test_fault_injection.py, with a rise time)
    sim = run.sim
    p = sim.load
    steps = max(1, rise_ms // 10)
    per = factor ** (1.0 / steps)

    def scale(k):
        def go():
            p.base_stiffness = tuple(
                s * k if j == i else s for j, s in enumerate(p.base_stiffness))
            p._k[i] *= k
        return go

    t0 = sim.elapsed_ms()
    for s in range(steps):
        sim.at(t0 + s * rise_ms // steps, scale(per), "tense %d" % i)
    end = t0 + rise_ms + hold_ms
    sim.at(end, scale(1.0 / factor), "relax %d" % i)
    mon.tensed_until[i] = max(mon.tensed_until.get(i, -1), end + TENSE_GRACE_MS)


def _repair(run, mon):
    # a technician fixes whatever was broken (then the user can acknowledge the fault)
    sim = run.sim
    sim.catch_up()
    sim.bus.clear()
    for i in range(FINGERS):
        sim.sensors.inject(i, None)
        sim.fingers.set_stall(i, STALL_N)
        sim.fingers.set_stuck(i, False)
    sim.legrest.clear_jam()
    sim.legrest.set_switch_fault("top", None)
    sim.legrest.set_switch_fault("bottom", None)
    sim._update_switches()
    sim._refresh()
    mon.bad_sensors.clear()


def _do(run, mon, st_):
    d = run.device
    c = d.commands
    sim = run.sim
    kind = st_[0]
    if kind == "start":
        _, dur, prog, user = st_
        kw = {"user": user}
        if dur is not None:
            kw["duration_min"] = dur
        if prog is not None:
            kw["programme_obj"] = prog
        return c.start(**kw)
    if kind in ("pause", "resume", "stop", "acknowledge"):
        return getattr(c, kind)()
    if kind == "strength":
        return c.set_strength(st_[1])
    if kind == "area":
        return c.set_area(st_[1])
    if kind == "flow":
        return c.set_flow(st_[1]) if st_[2] is None else c.set_flow(st_[1], st_[2])
    if kind == "button":
        now = sim.elapsed_ms()
        if now < mon.button_free_ms:
            return "still held: skipped"  # no new press edge while the button is down
        sim.press_button(at_ms=now, hold_ms=st_[1])
        mon.button_free_ms = now + st_[1] + 20
        mon.stop_pressed(now)
        return None
    if kind == "sensor":
        mon.bad_sensors.add(st_[2])
        return sim.inject("%s:%d" % (st_[1], st_[2]))
    if kind == "i2c":
        sim.catch_up()
        sim.bus.inject(st_[1], st_[2], st_[3])
        return None
    if kind == "stall":
        return sim.inject("stall:%d@%d" % (st_[1], st_[2]))
    if kind == "stick":
        return sim.inject("stick:%d" % st_[1])
    if kind == "jam":
        return sim.inject("jam" if st_[1] is None else "jam:%r" % st_[1])
    if kind == "limits":
        return sim.inject("limits:both" if st_[1] == "both" else "limit:" + st_[1])
    if kind == "getup":
        sim.catch_up()
        sim.load.get_up()
        return None
    if kind == "liedown":
        sim.catch_up()
        if not sim.load.present:
            sim.load.lie_down()
            mon.liedown_until = sim.elapsed_ms() + LIEDOWN_WINDOW_MS
        return None
    if kind == "tense":
        return _tense(run, mon, *st_[1:])
    if kind == "repair":
        return _repair(run, mon)
    if kind == "age":
        # the session has been pressing for almost an hour (only while it presses)
        sup = d.supervisor
        if d.session.pressing:
            sup.pressing_ms = max(sup.pressing_ms, ses.MAX_SESSION_MS - st_[1])
        return sup.pressing_ms
    raise AssertionError(kind)


async def _wait(mon, ms):
    while ms > 0 and mon.violation is None:
        chunk = min(ms, CHUNK_MS)
        await asyncio.sleep(chunk / 1000)
        ms -= chunk
        mon.between_ticks()


def play(person_opts, steps, budget_ms=SCENARIO_MS):
    """Run one scenario; returns the monitor (its violation is None when all held). The waits
    are cut to budget_ms of virtual time in all (None: as long as the steps say)."""

    async def go():
        run = SimRun(BOARD, person=person_opts or {}, seed=3)
        with watch(run) as mon:
            if person_opts is None:
                run.sim.load.get_up()  # nobody there (yet): a person may lie down later
            try:
                await run.start()
                budget = budget_ms
                for act, ms in steps:
                    if mon.violation is not None:
                        break
                    mon.note("%r -> %r" % (act, _do(run, mon, act)))
                    if budget is not None:
                        ms = min(ms, budget)
                        budget -= ms
                    await _wait(mon, ms)
                await _wait(mon, TAIL_MS)
            finally:
                await run.close()
            return mon

    return hostrt.run(go())


# -- the hazards that matter, scripted ------------------------------------------------------------
# Random scenarios seldom reach a full treatment before something ends it, so the hazards of
# DESIGN section 5 are also played deliberately. Each script names what it must have exercised,
# so it cannot pass by never getting there.
TREATING = 85_000  # from start: scan, leg rest, one minute of warm-up

SCRIPTS = {
    "the muscle under four fingers tenses hard at level 10": (
        {},
        [(("strength", 10), 0), (("flow", "hold", None), 0), (("start", 10, None, 0), TREATING),
         (("tense", 8, 40.0, 0, 300), 1_500), (("tense", 9, 40.0, 0, 300), 1_500),
         (("tense", 10, 40.0, 100, 300), 1_500), (("tense", 11, 4.0, 300, 1_000), 3_000)],
        lambda m: m.overcap_ticks > 0 and m.fault_checks > 0,
    ),
    "the muscle under three fingers tenses to twice its stiffness at level 10": (
        {},
        [(("strength", 10), 0), (("flow", "hold", None), 0), (("start", 10, None, 0), TREATING),
         (("tense", 8, 2.0, 0, 300), 1_500), (("tense", 9, 2.0, 100, 300), 1_500),
         (("tense", 10, 2.0, 0, 300), 3_000)],
        lambda m: m.overcap_ticks > 0,
    ),
    "a short programme to its end, strength raised during it": (
        {},
        [(("start", None, {"steps": [
            {"area": "full", "flow": "pulse", "strength": 8, "duration_s": 100},
            {"area": "lower", "flow": "walk", "strength": 10, "duration_s": 50}]}, 1), 120_000),
         (("strength", 9), 60_000)],
        lambda m: m.endings == ["completed"] and ses.COOLDOWN in m.states_seen,
    ),
    "stop button mid-treatment, then a new session starts low": (
        {},
        [(("strength", 9), 0), (("start", 10, None, 0), TREATING), (("button", 200), 10_000),
         (("start", 10, None, 0), 40_000)],
        lambda m: m.press_checks > 0 and m.endings == ["stopped"] and m.sessions == 2,
    ),
    "an hour of pressing": (
        {},
        [(("strength", 6), 0), (("start", 40, None, 0), TREATING), (("age", 5_000), 10_000)],
        lambda m: m.endings == ["60-minute limit"],
    ),
    "nobody on the device: the app and the button start sessions": (
        None,
        [(("strength", 10), 0), (("start", 10, None, 0), 15_000), (("button", 100), 15_000)],
        lambda m: m.endings == ["no person detected"] * 2,
    ),
    "someone lies down on fingers raised by a scan that found nobody yet": (
        None,
        [(("start", 10, None, 0), 5_000), (("liedown",), 30_000)],
        lambda m: m.overcap_ticks > 0,
    ),
    "a PWM chip stops answering mid-treatment; repaired, acknowledged, used again": (
        {},
        [(("strength", 7), 0), (("start", 10, None, 0), TREATING),
         (("i2c", 0x41, "nack", None), 12_000), (("acknowledge",), 1_000), (("repair",), 100),
         # FIRMWARE ISSUE (reported): a start right after the acknowledgement scans while the
         # fingers that held their place with the outputs off are still on their way home;
         # the scan takes their force for contact at 0 mm and the session ends in a false
         # "finger not following its command". Hence the 3 s before the new start.
         (("acknowledge",), 3_000), (("start", 10, None, 0), 30_000)],
        lambda m: 8 in m.faults_seen and m.fault_checks > 0 and m.sessions == 2,
    ),
    "the leg rest jams while lowering and backs off": (
        {},
        [(("start", 10, None, 0), 40_000), (("stop",), 1_500), (("jam", None), 10_000)],
        lambda m: m.backoff_up_ticks > 0 and 9 in m.faults_seen,
    ),
    "the person gets up while paused": (
        {},
        [(("start", 10, None, 0), TREATING), (("pause",), 2_000), (("getup",), 10_000)],
        lambda m: m.endings == ["person got up"],
    ),
    # FIRMWARE ISSUE (reported): commands.set_strength accepts 10.0 (10.0 in LEVELS), the next
    # tick's ramp.set() raises, the control task dies and the watchdog resets the device. The
    # invariants hold through it; the script stays once the command refuses the float.
    "a strength of 10.0 (a float) from a buggy app": (
        {},
        [(("strength", 8), 0), (("start", 10, None, 0), TREATING), (("strength", 10.0), 5_000),
         (("start", 10, None, 0), 20_000)],
        lambda m: m.ticks > 0,
    ),
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_safety_invariants_hold_in_the_scripted_hazards(name):
    person_opts, steps, exercised = SCRIPTS[name]
    mon = play(person_opts, steps, budget_ms=None)
    assert mon.violation is None, "%s\nsteps as played:\n%s" % (mon.violation, mon.report())
    assert exercised(mon), "the script did not reach its hazard:\n" + mon.report()


# -- random scenarios ---------------------------------------------------------------------------

# No shrinking unless asked (BACKHUG_SAFETY_SHRINK=1): a scenario takes seconds, shrinking one
# takes many minutes; the failure message lists the steps as played either way. No explain
# phase: it traces every line of the firmware and makes a scenario ten times slower.
PHASES = (Phase.explicit, Phase.generate)
if os.environ.get("BACKHUG_SAFETY_SHRINK") == "1":
    PHASES += (Phase.shrink,)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(person_opts=lying, opening=opening, steps=st.lists(step, min_size=3, max_size=10))
def test_safety_invariants_hold_under_any_sequence(person_opts, opening, steps):
    mon = play(person_opts, opening + steps)
    assert mon.violation is None, "%s\nsteps as played:\n%s" % (mon.violation, mon.report())
    assert mon.ticks > 0
