# Flows: per-finger intensity patterns. What a person feels: values stay 0..100, nothing outside
# the chosen area moves, no finger steps from rest to full inside one tick, and each flow has the
# shape its name promises (a wave travels, a pulse is together, alternate sides never press
# together, a hold holds, a walk presses one row at a time).

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import boardspec
from firmware.treatments import areas, flows

SIM = boardspec.load("sim")
DEVKIT = boardspec.load("devkit")
TICK_MS = 10
# 100 % per 200 ms: the most a finger's intensity may change in one 10 ms tick
MAX_STEP_PER_TICK = 5


class _Wide:
    # an older, 28-finger layout (14 rows): nothing may assume 26 fingers
    finger_count = 28
    rows = 14
    cols = 2
    region_rows = {"upper": (0, 4), "middle": (4, 10), "lower": (10, 14)}


WIDE = _Wide()


def _run(board, flow, mask, tempo, ms, dt=TICK_MS):
    p = flows.Pattern(board)
    p.configure(flow, mask, tempo)
    out = bytearray(board.finger_count)
    frames = []
    for t in range(0, ms, dt):
        p.fill(t, out)
        frames.append(bytes(out))
    return frames


def _cycle_ms(tempo):
    # longest base cycle is the wave's 12 s (or a 13-row walk's 28.8 s)
    return 30_000 * 100 // tempo + 2_000


@pytest.mark.parametrize("flow", flows.FLOW_NAMES)
@pytest.mark.parametrize("tempo", [25, 100, 400])
@pytest.mark.parametrize("area", ["upper", "middle", "full"])
def test_every_flow_stays_in_range_in_its_area_and_changes_gradually(flow, tempo, area):
    mask = areas.area_mask(SIM, area)
    frames = _run(SIM, flow, mask, tempo, min(_cycle_ms(tempo), 40_000))
    prev = frames[0]
    for frame in frames:
        for i in range(SIM.finger_count):
            assert 0 <= frame[i] <= 100
            if not mask[i]:
                assert frame[i] == 0
            assert abs(frame[i] - prev[i]) <= MAX_STEP_PER_TICK
        prev = frame
    # and it does press: some finger in the area reaches full intensity
    assert max(max(f) for f in frames) == 100


@pytest.mark.parametrize("flow", flows.FLOW_NAMES)
@pytest.mark.parametrize("rows", [1, 2, 4, 13, 14])
def test_flow_functions_ramp_over_at_least_200ms_even_at_400_percent_tempo(flow, rows):
    # The functions themselves are smooth (Pattern's limiter is only for transitions):
    # at 400 % a 10 ms tick is 40 ms of flow time.
    fn = flows.FLOWS[flow]
    for col in range(2):
        for row in range(rows):
            prev = fn(0, row, col, rows, 2)
            for t in range(40, 60_000, 40):
                v = fn(t, row, col, rows, 2)
                assert 0 <= v <= 100
                assert abs(v - prev) <= MAX_STEP_PER_TICK, (t, row, col)
                prev = v


@settings(max_examples=60, deadline=None)
@given(
    flow=st.sampled_from(flows.FLOW_NAMES),
    tempo=st.integers(25, 400),
    bits=st.integers(0, (1 << 26) - 1),
    ticks=st.lists(st.integers(0, 60), min_size=1, max_size=300),
    start=st.integers(0, 1 << 24),
)
def test_any_mask_tempo_and_tick_jitter_keeps_output_in_the_mask_and_gradual(
    flow, tempo, bits, ticks, start
):
    mask = bytearray((bits >> i) & 1 for i in range(26))
    p = flows.Pattern(SIM)
    p.configure(flow, mask, tempo)
    out = bytearray(26)
    prev = bytes(26)
    t = start
    for dt in ticks:
        t += dt
        p.fill(t, out)
        limit = (min(dt, 1000) * 100 + 199) // 200
        for i in range(26):
            assert 0 <= out[i] <= 100
            if not mask[i]:
                assert out[i] == 0
            assert abs(out[i] - prev[i]) <= limit
        prev = bytes(out)


def test_changing_flow_and_area_mid_run_never_steps_a_finger_up():
    p = flows.Pattern(SIM)
    out = bytearray(26)
    upper = areas.area_mask(SIM, "upper")
    full = areas.area_mask(SIM, "full")
    plan = [
        ("hold", upper, 100),
        ("alternate", full, 400),
        ("pulse", full, 25),
        ("walk", full, 100),
    ]
    t = 0
    prev = bytes(26)
    for flow, mask, tempo in plan:
        p.configure(flow, mask, tempo)
        for _ in range(700):
            p.fill(t, out)
            for i in range(26):
                if out[i] > prev[i]:
                    assert out[i] - prev[i] <= MAX_STEP_PER_TICK
                if not mask[i]:
                    assert out[i] == 0
            prev = bytes(out)
            t += TICK_MS


@pytest.mark.parametrize("board", [SIM, WIDE, DEVKIT], ids=["sim", "wide", "devkit"])
@pytest.mark.parametrize("area", ["upper", "middle", "lower", "full"])
def test_wave_visits_every_row_of_the_area_in_order(board, area):
    start, end = board.region_rows[area] if area != "full" else (0, board.rows)
    if start == end:
        pytest.skip("no such rows on this board")
    mask = areas.area_mask(board, area)
    frames = _run(board, "wave", mask, 100, 12_000)  # one cycle: there and back
    first_pass = frames[: len(frames) // 2]
    peak_at = []
    for row in range(start, end):
        i = row * board.cols
        assert max(f[i] for f in frames) >= 90, "row %d not pressed" % row
        values = [f[i] for f in first_pass]
        peak_at.append(values.index(max(values)))
        # both columns of a row press alike
        assert all(f[i] == f[i + 1] for f in frames)
    assert peak_at == sorted(peak_at)  # the band travels from the top row down
    if end - start > 2:
        # a band, not the whole area: something is pressing and something is resting at once
        mid = frames[len(frames) // 4]
        row_vals = [mid[r * board.cols] for r in range(start, end)]
        assert max(row_vals) >= 50 and min(row_vals) == 0


def test_pulse_presses_and_releases_the_whole_area_together():
    mask = areas.area_mask(SIM, "middle")
    frames = _run(SIM, "pulse", mask, 100, 10_000)
    for f in frames:
        assert len({f[i] for i in range(26) if mask[i]}) == 1
    values = [f[8] for f in frames]
    assert max(values) == 100 and min(values[200:]) == 0  # presses and fully releases


def test_alternate_never_presses_left_and_right_at_full_at_once():
    mask = areas.area_mask(SIM, "full")
    for tempo in (25, 100, 400):
        frames = _run(SIM, "alternate", mask, tempo, _cycle_ms(tempo))
        for f in frames:
            left = max(f[i] for i in range(0, 26, 2))
            right = max(f[i] for i in range(1, 26, 2))
            assert left < 50 or right < 50
        assert max(f[0] for f in frames) == 100
        assert max(f[1] for f in frames) == 100


def test_hold_sustains_the_press_and_releases_slower_than_it_rises():
    mask = areas.area_mask(SIM, "full")
    values = [f[0] for f in _run(SIM, "hold", mask, 100, 14_000)]
    full_ms = sum(TICK_MS for v in values if v == 100)
    assert full_ms >= 5_000
    top = values.index(100)
    rise_ms = (top - max(i for i in range(top) if values[i] == 0)) * TICK_MS
    last_full = len(values) - 1 - values[::-1].index(100)
    fall_ms = (values.index(0, last_full) - last_full) * TICK_MS
    assert fall_ms > rise_ms


def test_walk_presses_one_row_at_a_time_and_reaches_every_row():
    mask = areas.area_mask(SIM, "full")
    frames = _run(SIM, "walk", mask, 100, 30_000)
    for f in frames:
        col0 = [f[r * 2] for r in range(13)]
        assert sum(1 for v in col0 if v > 0) <= 2  # at most the row releasing and the next one
        assert sum(1 for v in col0 if v >= 75) <= 1
    for r in range(13):
        assert max(f[r * 2] for f in frames) == 100


def test_faster_tempo_shortens_the_cycle():
    mask = areas.area_mask(SIM, "full")

    def rises(tempo):
        values = [f[0] for f in _run(SIM, "pulse", mask, tempo, 20_000)]
        return sum(1 for a, b in zip(values, values[1:], strict=False) if a == 0 and b > 0)

    assert rises(200) == 2 * rises(100)
    assert rises(50) * 2 == rises(100)


def test_empty_mask_gives_no_pressure():
    p = flows.Pattern(SIM)
    p.configure("wave", bytearray(26), 100)
    out = bytearray(b"\x07" * 26)
    for t in range(0, 2000, 10):
        p.fill(t, out)
    assert out == bytearray(26)


@pytest.mark.parametrize(
    "flow, tempo, match",
    [
        ("spin", 100, "unknown flow 'spin'"),
        (None, 100, "unknown flow None"),
        ("wave", 24, "tempo"),
        ("wave", 401, "tempo"),
        ("wave", True, "tempo"),
        ("wave", 100.0, "tempo"),
    ],
)
def test_configure_refuses_unknown_flows_and_tempos(flow, tempo, match):
    p = flows.Pattern(SIM)
    with pytest.raises(ValueError, match=match):
        p.configure(flow, areas.area_mask(SIM, "full"), tempo)


def test_configure_refuses_a_mask_for_another_board():
    with pytest.raises(ValueError, match="26"):
        flows.Pattern(SIM).configure("wave", bytearray(4), 100)



@pytest.mark.parametrize("flow", flows.FLOW_NAMES)
@pytest.mark.parametrize("area", ["full", "upper", "middle", "lower", "gappy"])
def test_fill_gives_each_finger_its_own_flow_value(flow, area):
    # fill() computes a value once per (row, side) the flow depends on: every finger must get
    # what calling the flow for that finger gives. Steps of 370 ms: the slew limit (185 a step)
    # never binds, so after the first call (which starts from rest) the values are the flow's.
    if area == "gappy":  # fingers that found no back leave holes in the mask
        mask = bytearray(1 if (i * 7) % 5 else 0 for i in range(SIM.finger_count))
    else:
        mask = areas.area_mask(SIM, area)
    p = flows.Pattern(SIM)
    p.configure(flow, mask, 100)
    out = bytearray(SIM.finger_count)
    fn = flows.FLOWS[flow]
    p.fill(0, out)
    for t in range(370, 30_000, 370):
        p.fill(t, out)
        for i in range(SIM.finger_count):
            want = fn(p._t, p._row[i], p._col[i], p._rows, SIM.cols) if mask[i] else 0
            assert out[i] == want, (t, i)
