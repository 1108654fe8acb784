# Strength: levels map to the board's forces; a session starts gently and ramps; a change never
# jumps (DESIGN section 5: injuries come from too much intensity and from sudden changes).

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import boardspec
from firmware.treatments import strength

SIM = boardspec.load("sim")
TABLE = SIM.strength_cn
SPAN = TABLE[-1] - TABLE[0]
TICK_MS = 10


def test_levels_map_to_the_board_table():
    assert [strength.target_cn(SIM, lv) for lv in strength.LEVELS] == list(TABLE)
    assert list(strength.LEVELS) == list(range(1, 11))


@pytest.mark.parametrize("level", [0, 11, -3, True, False, 3.0, "3", None])
def test_levels_outside_1_to_10_are_refused(level):
    with pytest.raises(ValueError, match="1..10"):
        strength.target_cn(SIM, level)
    ramp = strength.Ramp(SIM)
    with pytest.raises(ValueError):
        ramp.start(level)
    with pytest.raises(ValueError):
        ramp.set(level)


@pytest.mark.parametrize("level", strength.LEVELS)
def test_a_session_starts_at_level_3_or_below_and_reaches_the_level_within_the_minute(level):
    ramp = strength.Ramp(SIM)
    ramp.start(level)
    first = ramp.step(TICK_MS)
    assert first <= TABLE[min(level, 3) - 1] + SPAN * TICK_MS // 60_000 + 1
    t = TICK_MS
    cur = first
    while cur != TABLE[level - 1]:
        prev = cur
        cur = ramp.step(TICK_MS)
        t += TICK_MS
        assert prev <= cur <= TABLE[level - 1]
        assert t <= 60_000
    assert ramp.settled


def test_rise_rate_is_one_full_table_span_per_ramp_time():
    ramp = strength.Ramp(SIM, ramp_ms=60_000, start_max_level=1)
    ramp.start(10)
    values = [ramp.step(TICK_MS) for _ in range(6_000)]  # 60 s
    # never faster than the rate in any tick ...
    steps = [b - a for a, b in zip([TABLE[0]] + values, values, strict=False)]
    assert max(steps) <= SPAN * TICK_MS // 60_000 + 1
    # ... and the whole span takes the ramp time (to the tick)
    assert values[-1] == TABLE[-1]
    assert values[-2] < TABLE[-1]


def test_strength_decrease_eases_off_over_about_a_second_and_never_jumps():
    ramp = strength.Ramp(SIM)
    ramp.start(1)
    ramp.set(10)
    for _ in range(7_000):
        ramp.step(TICK_MS)
    assert ramp.current_cn == TABLE[-1]
    ramp.set(1)
    values = [TABLE[-1]]
    while values[-1] != TABLE[0]:
        values.append(ramp.step(TICK_MS))
        assert values[-2] - values[-1] <= SPAN * TICK_MS // 1_000 + 1
    assert (len(values) - 1) * TICK_MS >= 900


@settings(max_examples=80, deadline=None)
@given(
    start=st.sampled_from(strength.LEVELS),
    events=st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.sampled_from(strength.LEVELS)),
            st.tuples(st.just("step"), st.integers(0, 2_000)),
        ),
        max_size=200,
    ),
)
def test_any_sequence_of_changes_moves_at_most_at_the_ramp_rates(start, events):
    ramp = strength.Ramp(SIM)
    ramp.start(start)
    cur = ramp.current_cn
    assert cur <= TABLE[2]
    for kind, value in events:
        if kind == "set":
            ramp.set(value)
            assert ramp.current_cn == cur  # a new goal never moves the force by itself
            continue
        new = ramp.step(value)
        dt = min(value, 1_000)
        assert TABLE[0] <= new <= TABLE[-1]
        assert new - cur <= SPAN * dt // 60_000 + 1
        assert cur - new <= SPAN * dt // 1_000 + 1
        cur = new
    # and it gets there
    for _ in range(70):
        cur = ramp.step(1_000)
    assert cur == ramp.goal_cn == TABLE[ramp.level - 1]


def test_a_late_tick_does_not_jump():
    ramp = strength.Ramp(SIM)
    ramp.start(10)
    before = ramp.current_cn
    after = ramp.step(60_000)  # a stall of a minute counts as one second of ramp
    assert after - before <= SPAN // 60 + 1
