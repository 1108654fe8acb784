# Programme upload validation: a programme the app built is accepted as written or rejected with
# a reason naming the step and the field; nothing is clamped or guessed (DESIGN section 6).

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import boardspec
from firmware.treatments import areas, flows, programme
from firmware.treatments.programme import ProgrammeError

SIM = boardspec.load("sim")
DEVKIT = boardspec.load("devkit")

GOOD = {
    "name": "Desk back",
    "steps": [
        {"area": "upper", "flow": "wave", "strength": 4, "duration_s": 300},
        {"mask": 0b1111, "flow": "hold", "strength": 5, "duration_s": 120, "tempo": 75},
        {"area": "full", "flow": "walk", "strength": 2, "duration_s": 60},
    ],
}


def test_a_valid_programme_is_accepted_as_written():
    p = programme.parse(copy.deepcopy(GOOD), SIM)
    assert p.name == "Desk back"
    assert len(p.steps) == 3
    assert p.total_ms == (300 + 120 + 60) * 1000
    s0, s1, s2 = p.steps
    assert (s0.area, s0.flow, s0.strength, s0.duration_ms, s0.tempo) == (
        "upper",
        "wave",
        4,
        300_000,
        100,
    )
    assert s0.mask == areas.area_mask(SIM, "upper")
    assert s1.area is None and list(s1.mask) == [1, 1, 1, 1] + [0] * 22
    assert s1.tempo == 75
    assert s2.mask == areas.area_mask(SIM, "full")


def test_name_is_optional():
    p = programme.parse({"steps": GOOD["steps"][:1]}, SIM)
    assert p.name == "" and p.total_ms == 300_000


def _with(step_index, **changes):
    obj = copy.deepcopy(GOOD)
    step = obj["steps"][step_index]
    for key, value in changes.items():
        if value is _DROP:
            step.pop(key, None)
        else:
            step[key] = value
    return obj


_DROP = object()

# (programme, step number, field, words the reason must contain)
REJECTED = [
    (_with(2, flow="spin"), 3, "flow", "unknown flow 'spin' (known: wave, pulse, alternate"),
    (_with(0, flow=_DROP), 1, "flow", "missing"),
    (_with(0, flow=7), 1, "flow", "unknown flow 7"),
    (_with(1, area="lumbar", mask=_DROP), 2, "area", "unknown area 'lumbar'"),
    (_with(0, mask=3), 1, "area", "either area or mask"),
    (_with(0, area=_DROP), 1, "area", "missing"),
    (_with(1, mask=0), 2, "mask", "no finger"),
    (_with(1, mask=1 << 26), 2, "mask", "beyond finger 25"),
    (_with(1, mask=-5), 2, "mask", "negative"),
    (_with(1, mask="15"), 2, "mask", "integer"),
    (_with(1, mask=True), 2, "mask", "integer"),
    (_with(0, strength=11), 1, "strength", "1..10"),
    (_with(0, strength=0), 1, "strength", "1..10"),
    (_with(0, strength=True), 1, "strength", "got True"),
    (_with(0, strength=4.0), 1, "strength", "got 4.0"),
    (_with(0, strength="4"), 1, "strength", "1..10"),
    (_with(0, strength=_DROP), 1, "strength", "missing"),
    (_with(2, duration_s=0), 3, "duration_s", "positive"),
    (_with(2, duration_s=-60), 3, "duration_s", "positive"),
    (_with(2, duration_s=60.5), 3, "duration_s", "positive integer"),
    (_with(2, duration_s=False), 3, "duration_s", "positive integer"),
    (_with(2, duration_s=_DROP), 3, "duration_s", "missing"),
    (_with(2, duration_s=4_000), 3, "duration_s", "longer than a session"),
    (_with(1, tempo=24), 2, "tempo", "25..400"),
    (_with(1, tempo=401), 2, "tempo", "25..400"),
    (_with(1, tempo=None), 2, "tempo", "25..400"),
    (_with(1, colour="red"), 2, "colour", "unknown key"),
    (_with(0, Flow="wave"), 1, "Flow", "unknown key"),
]


@pytest.mark.parametrize("obj, step, field, words", REJECTED)
def test_every_rejection_names_the_step_and_the_field(obj, step, field, words):
    with pytest.raises(ProgrammeError) as e:
        programme.parse(obj, SIM)
    msg = str(e.value)
    assert msg.startswith("step %d: %s: " % (step, field)), msg
    assert words in msg
    assert (e.value.step, e.value.field) == (step, field)


def test_the_unknown_flow_message_lists_every_flow():
    with pytest.raises(ProgrammeError) as e:
        programme.parse(_with(2, flow="spin"), SIM)
    assert str(e.value) == (
        "step 3: flow: unknown flow 'spin' (known: %s)" % ", ".join(flows.FLOW_NAMES)
    )


@pytest.mark.parametrize(
    "obj, field, words",
    [
        ([], "programme", "must be an object"),
        ("steps", "programme", "must be an object"),
        ({}, "steps", "missing"),
        ({"steps": []}, "steps", "empty programme"),
        ({"steps": {"0": {}}}, "steps", "must be a list"),
        ({"steps": GOOD["steps"], "owner": "x"}, "owner", "unknown key"),
        ({"steps": GOOD["steps"], "name": 5}, "name", "string"),
        ({"steps": GOOD["steps"], "name": "x" * 33}, "name", "at most 32"),
        ({"steps": [GOOD["steps"][0]] * 33}, "steps", "33 steps, at most 32"),
    ],
)
def test_programme_level_rejections_name_the_field(obj, field, words):
    with pytest.raises(ProgrammeError) as e:
        programme.parse(obj, SIM)
    assert str(e.value).startswith("programme: %s: " % field)
    assert words in str(e.value)


def test_a_step_that_is_not_an_object_is_named():
    with pytest.raises(ProgrammeError, match=r"^step 2: step: must be an object"):
        programme.parse({"steps": [GOOD["steps"][0], "wave"]}, SIM)


def test_the_limits_themselves_are_accepted():
    step = {"area": "full", "flow": "pulse", "strength": 10, "duration_s": 60, "tempo": 400}
    p = programme.parse({"steps": [step] * programme.MAX_STEPS}, SIM)
    assert len(p.steps) == 32
    hour = {"steps": [dict(step, duration_s=1_800), dict(step, duration_s=1_800, tempo=25)]}
    assert programme.parse(hour, SIM).total_ms == programme.MAX_TOTAL_MS


def test_total_over_an_hour_names_the_step_that_crosses_it():
    steps = [
        {"area": "full", "flow": "pulse", "strength": 3, "duration_s": 1_500},
        {"area": "full", "flow": "pulse", "strength": 3, "duration_s": 1_500},
        {"area": "full", "flow": "pulse", "strength": 3, "duration_s": 601},
    ]
    with pytest.raises(ProgrammeError) as e:
        programme.parse({"steps": steps}, SIM)
    assert str(e.value).startswith("step 3: duration_s: ")
    assert "60-minute limit" in str(e.value)


def test_the_board_decides_which_areas_and_fingers_exist():
    lower = {"steps": [{"area": "lower", "flow": "wave", "strength": 3, "duration_s": 60}]}
    assert programme.parse(lower, SIM).steps[0].mask == areas.area_mask(SIM, "lower")
    with pytest.raises(ProgrammeError, match=r"^step 1: area: .*'lower' has no fingers"):
        programme.parse(lower, DEVKIT)
    wide_mask = {"steps": [{"mask": 0b11111, "flow": "wave", "strength": 3, "duration_s": 60}]}
    with pytest.raises(ProgrammeError, match=r"^step 1: mask: .*beyond finger 3"):
        programme.parse(wide_mask, DEVKIT)


# -- property tests -------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(["area", "mask", "flow", "strength", "duration_s", "tempo", "x"])
_step_like = st.dictionaries(
    _keys,
    st.one_of(
        _json,
        st.sampled_from(areas.AREAS + flows.FLOW_NAMES),
        st.integers(-5, 5000),
    ),
    max_size=6,
)
_programme_like = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"steps": st.lists(st.one_of(_step_like, _json), max_size=40)},
        optional={"name": _json},
    ),
)


@settings(max_examples=400, deadline=None)
@given(_programme_like)
def test_any_decoded_json_is_either_a_valid_programme_or_a_programme_error(obj):
    try:
        p = programme.parse(obj, SIM)
    except ProgrammeError as e:
        msg = str(e)
        assert msg.startswith("step %d: " % e.step if e.step else "programme: ")
        assert len(msg) <= 160  # fits a BLE error reply
        return
    assert 1 <= len(p.steps) <= programme.MAX_STEPS
    assert p.total_ms == sum(s.duration_ms for s in p.steps) <= programme.MAX_TOTAL_MS
    for s in p.steps:
        assert any(s.mask) and len(s.mask) == SIM.finger_count
        assert s.flow in flows.FLOWS and 1 <= s.strength <= 10 and 25 <= s.tempo <= 400


_valid_step = st.builds(
    lambda where, flow, level, dur, tempo: dict(
        where, flow=flow, strength=level, duration_s=dur, **({"tempo": tempo} if tempo else {})
    ),
    st.one_of(
        st.sampled_from(areas.AREAS).map(lambda a: {"area": a}),
        st.integers(1, (1 << 26) - 1).map(lambda b: {"mask": b}),
    ),
    st.sampled_from(flows.FLOW_NAMES),
    st.integers(1, 10),
    st.integers(1, 110),
    st.one_of(st.none(), st.integers(25, 400)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_valid_step, min_size=1, max_size=32))
def test_valid_programmes_parse_to_exactly_what_was_sent(steps):
    p = programme.parse({"steps": steps}, SIM)
    assert len(p.steps) == len(steps)
    for got, sent in zip(p.steps, steps, strict=True):
        assert got.flow == sent["flow"] and got.strength == sent["strength"]
        assert got.duration_ms == sent["duration_s"] * 1000
        assert got.tempo == sent.get("tempo", 100)
        if "area" in sent:
            assert got.mask == areas.area_mask(SIM, sent["area"])
        else:
            assert got.mask == areas.mask_from_bits(SIM, sent["mask"])
