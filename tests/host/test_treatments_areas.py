# Treatment areas: the area names cover exactly the rows the board data gives their regions, and
# explicit bit masks select exactly the fingers whose bits are set.

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware import boardspec
from firmware.treatments import areas

SIM = boardspec.load("sim")
DEVKIT = boardspec.load("devkit")


def _rows_of(board, mask):
    return sorted({i // board.cols for i in range(board.finger_count) if mask[i]})


@pytest.mark.parametrize("board", [SIM, DEVKIT], ids=["sim", "devkit"])
def test_each_region_area_covers_exactly_its_rows_and_both_columns(board):
    for name, (start, end) in board.region_rows.items():
        if start == end:
            continue
        mask = areas.area_mask(board, name)
        assert len(mask) == board.finger_count
        assert set(mask) <= {0, 1}
        assert _rows_of(board, mask) == list(range(start, end))
        # every finger of those rows, left and right of the spine
        assert sum(mask) == (end - start) * board.cols


def test_full_area_is_every_finger_and_the_regions_partition_it():
    full = areas.area_mask(SIM, "full")
    assert list(full) == [1] * SIM.finger_count
    covered = [0] * SIM.finger_count
    for name in ("upper", "middle", "lower"):
        for i, v in enumerate(areas.area_mask(SIM, name)):
            covered[i] += v
    assert covered == [1] * SIM.finger_count  # no finger in two regions, none left out


def test_upper_area_is_under_the_shoulder_blades():
    # row 0 is under the shoulder blades: the upper area starts there, lower ends at the last row
    assert _rows_of(SIM, areas.area_mask(SIM, "upper"))[0] == 0
    assert _rows_of(SIM, areas.area_mask(SIM, "lower"))[-1] == SIM.rows - 1


@pytest.mark.parametrize("name", ["spine", "", "Upper", None, 3, ("upper",)])
def test_unknown_area_is_refused_naming_it(name):
    with pytest.raises(ValueError) as e:
        areas.area_mask(SIM, name)
    assert repr(name) in str(e.value)
    assert "upper, middle, lower, full" in str(e.value)


def test_area_without_fingers_on_this_board_is_refused():
    # the bench devkit has two rows: no lower region
    with pytest.raises(ValueError, match="'lower' has no fingers"):
        areas.area_mask(DEVKIT, "lower")


@given(st.integers(min_value=1, max_value=(1 << 26) - 1))
def test_bit_mask_selects_exactly_the_fingers_whose_bits_are_set(bits):
    mask = areas.mask_from_bits(SIM, bits)
    assert len(mask) == SIM.finger_count
    assert [i for i in range(26) if mask[i]] == [i for i in range(26) if bits >> i & 1]


@pytest.mark.parametrize(
    "bits, match",
    [
        (0, "no finger"),
        (-1, "negative"),
        (1 << 26, "beyond finger 25"),
        ((1 << 27) - 1, "beyond finger 25"),
        (True, "integer"),
        (3.0, "integer"),
        ("3", "integer"),
    ],
)
def test_bad_bit_masks_are_refused(bits, match):
    with pytest.raises(ValueError, match=match):
        areas.mask_from_bits(SIM, bits)


def test_bit_mask_limit_follows_the_board_finger_count():
    assert list(areas.mask_from_bits(DEVKIT, 0b1111)) == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        areas.mask_from_bits(DEVKIT, 0b10000)
