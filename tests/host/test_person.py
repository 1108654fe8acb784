"""The simulated person (and the test rig) that load the fingers: plausible backs, stiffness that
relaxes under treatment, nobody means no force."""

import pytest

from backhug_host.sim.person import REGION_NAMES, Nobody, Person
from backhug_host.sim.rig import Rig
from firmware import boardspec


@pytest.fixture(scope="module")
def board():
    return boardspec.load("sim")


def column(person, board, col):
    return [person.contact_um(r * board.cols + col) for r in range(board.rows)]


def test_contact_heights_lie_within_the_stroke_with_room_to_press(board):
    for height in (150, 175, 200):
        for curvature in (0.5, 1.0, 1.6):
            p = Person(board, height_cm=height, curvature=curvature)
            for i in range(board.finger_count):
                c = p.contact_um(i)
                # a finger must be able to reach the back and still indent it by a few mm
                assert 0 < c <= board.stroke_um - 4_000, (height, curvature, i, c)


def test_back_profile_is_a_smooth_kyphosis_over_lordosis(board):
    p = Person(board)
    for col in range(board.cols):
        h = column(p, board, col)
        steps = [abs(b - a) for a, b in zip(h, h[1:], strict=False)]
        assert max(steps) < 7_000, steps  # no cliffs between neighbouring rows
        lowest = h.index(min(h))
        highest = h.index(max(h))
        # the thoracic curve bulges towards the device under the upper-middle rows, the lumbar
        # curve arches away low on the back, and the back is well curved, not flat
        assert 1 <= lowest <= board.rows // 2, h
        assert highest >= board.rows * 2 // 3, h
        assert max(h) - min(h) > 10_000, h
        # one dip, one hump: the slope changes sign once between them
        rising = h[lowest : highest + 1]
        assert all(b >= a for a, b in zip(rising, rising[1:], strict=False)), h


def test_left_and_right_differ_slightly(board):
    p = Person(board)
    diffs = [
        abs(p.contact_um(r * board.cols) - p.contact_um(r * board.cols + 1))
        for r in range(board.rows)
    ]
    assert max(diffs) > 100
    assert max(diffs) < 2_000


def test_curvature_and_height_change_the_profile(board):
    flat = Person(board, curvature=0.5)
    curved = Person(board, curvature=1.5)

    def span(p):
        h = column(p, board, 0)
        return max(h) - min(h)

    assert span(curved) > span(flat) * 2
    # a short person's lowest rows reach past the lumbar curve to the sacrum; a tall person's
    # lowest rows are still on it
    short = column(Person(board, height_cm=150), board, 0)
    tall = column(Person(board, height_cm=200), board, 0)
    assert short[-1] < tall[-1] - 3_000
    assert short.index(max(short)) < tall.index(max(tall))


def test_raising_the_leg_rest_flattens_the_lower_back(board):
    p = Person(board)
    low_row = max(range(board.rows), key=lambda r: p.contact_um(r * board.cols))
    before = p.contact_um(low_row * board.cols)
    top_before = p.contact_um(0)
    p.set_legrest(1.0)
    assert p.contact_um(low_row * board.cols) < before - 2_000
    assert abs(p.contact_um(0) - top_before) < 500


def test_stiffness_is_in_range_and_stiff_regions_are_clearly_stiffer(board):
    relaxed = Person(board)
    tense = Person(board, stiff=("upper_left", "lower_right"))
    for i in range(board.finger_count):
        k = relaxed.stiffness_n_mm(i)
        assert 4.0 <= k <= 10.0, (i, k)
        region = relaxed.regions[i]
        assert region in REGION_NAMES
        if region in ("upper_left", "lower_right"):
            assert tense.stiffness_n_mm(i) >= k * 1.5
        else:
            assert tense.stiffness_n_mm(i) == k
    custom = Person(board, stiff={"middle_right": 12.0})
    i = board.region_rows["middle"][0] * board.cols + 1
    assert custom.stiffness_n_mm(i) == pytest.approx(relaxed.stiffness_n_mm(i) + 12.0)


def test_bad_options_are_refused(board):
    with pytest.raises(ValueError, match="stiff"):
        Person(board, stiff=("upper_middle",))
    with pytest.raises(ValueError, match="height_cm"):
        Person(board, height_cm=90)
    with pytest.raises(ValueError, match="plate_um"):
        Rig(board, plate_um=board.stroke_um + 1)


def test_force_grows_with_indentation_and_is_zero_before_contact(board):
    p = Person(board)
    c = p.contact_um(5)
    k = p.stiffness_n_mm(5)
    assert p.force_n(5, c - 1_000) == 0.0
    f5 = p.force_n(5, c + 5_000)
    f10 = p.force_n(5, c + 10_000)
    assert f5 == pytest.approx(5 * k, rel=0.25)  # about stiffness x indentation ...
    assert 2.0 * f5 < f10 < 2.6 * f5  # ... mildly stiffening
    assert p.limit_um(5, f10) == pytest.approx(c + 10_000)


def press_cycles(person, index, depth_um, minutes, period_s=4):
    # the finger rises from contact to depth and back, once per period
    c = person.contact_um(index)
    for _ in range(int(minutes * 60 / period_s)):
        person.press(index, c, c + depth_um)
        person.relax()


def test_pressing_relaxes_the_tissue_by_a_few_to_twenty_percent(board):
    gentle = Person(board)
    strong = Person(board)
    idle = Person(board)
    press_cycles(gentle, 10, 2_500, 20)  # ~15 N presses for 20 minutes
    press_cycles(strong, 10, 9_000, 20)  # ~70 N presses
    assert 0.02 <= gentle.relaxation(10) <= 0.08
    assert 0.10 <= strong.relaxation(10) <= 0.20
    assert idle.relaxation(10) == 0.0
    # an untreated finger keeps its stiffness
    assert strong.relaxation(11) == 0.0
    # relaxation is slow: one press changes next to nothing
    one = Person(board)
    press_cycles(one, 10, 9_000, 4 / 60)
    assert 0 < one.relaxation(10) < 0.005


def test_stiff_regions_have_more_to_release(board):
    p = Person(board, stiff=("upper_left",))
    for i in (0, 1):  # row 0: upper left, upper right
        press_cycles(p, i, 9_000, 60)
    assert p.relaxation(0) > p.relaxation(1)
    assert p.relaxation(0) <= 0.25


def test_nobody_or_a_person_who_got_up_gives_no_force(board):
    p = Person(board)
    assert p.force_n(3, board.stroke_um) > 0
    assert p.leg_load_n() > 50
    p.get_up()
    assert p.force_n(3, board.stroke_um) == 0.0
    assert p.contact_um(3) is None
    assert p.leg_load_n() == 0.0
    p.lie_down()
    assert p.force_n(3, board.stroke_um) > 0
    empty = Nobody(board)
    assert all(empty.force_n(i, board.stroke_um) == 0.0 for i in range(board.finger_count))
    assert empty.leg_load_n() == 0.0


def test_heavier_people_load_the_leg_rest_more(board):
    assert Person(board, weight_kg=110).leg_load_n() > Person(board, weight_kg=60).leg_load_n()


def test_rig_is_a_flat_stiff_plate(board):
    rig = Rig(board, plate_um=20_000)
    assert {rig.contact_um(i) for i in range(board.finger_count)} == {20_000}
    assert rig.force_n(0, 19_000) == 0.0
    assert rig.force_n(0, 21_000) == pytest.approx(50.0)
    rig.press(0, 20_000, 30_000)
    rig.relax()
    assert rig.force_n(0, 21_000) == pytest.approx(50.0)  # steel does not relax
