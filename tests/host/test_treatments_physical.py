# Contour scan, force control and tension estimation against a spring model of a back: each
# finger meets the back at a contact height and then carries stiffness x indentation; the
# fingers follow their targets at up to the board's speed (optionally with a first-order lag);
# forces are read at the start of each 10 ms tick, as on the device.

import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import boardspec
from firmware.treatments import areas, contour, control, flows, strength, tension

SIM = boardspec.load("sim")
DEVKIT = boardspec.load("devkit")
TICK_MS = 10
N = SIM.finger_count


class Back:
    # contact_um[i]: where finger i meets the back (None: nothing above it); k_n_mm[i] stiffness
    def __init__(self, contact_um, k_n_mm):
        self.contact_um = list(contact_um)
        self.k_n_mm = list(k_n_mm)

    def force_cn(self, i, pos_um):
        c = self.contact_um[i]
        if c is None or pos_um <= c:
            return 0.0
        return self.k_n_mm[i] * (pos_um - c) / 10.0  # N/mm * um = mN; cN = mN / 10


class Rig:
    # the fingers and their force sensors
    def __init__(self, board, back, lag_ms=0, noise_cn=0, seed=0):
        self.board = board
        self.back = back
        self.lag_ms = lag_ms
        self.noise_cn = noise_cn
        self.rng = random.Random(seed)
        self.pos = [0.0] * board.finger_count
        self.targets = array("l", [0] * board.finger_count)
        self.max_force_cn = 0

    def forces(self):
        out = array("l", [0] * self.board.finger_count)
        for i, p in enumerate(self.pos):
            f = self.back.force_cn(i, p)
            self.max_force_cn = max(self.max_force_cn, f)
            if self.noise_cn:
                f += self.rng.gauss(0, self.noise_cn)
            out[i] = max(0, int(f))
        return out

    def move(self, dt_ms=TICK_MS):
        vmax = self.board.max_speed_um_s / 1000.0  # um per ms
        for _ in range(dt_ms):
            for i, p in enumerate(self.pos):
                err = self.targets[i] - p
                v = err / self.lag_ms if self.lag_ms else err
                self.pos[i] = p + max(-vmax, min(vmax, v))


def _scan(rig, scan, max_ticks=3_000):
    for tick in range(max_ticks):
        done = scan.step(TICK_MS, rig.forces(), rig.targets)
        rig.move()
        if done:
            return tick
    raise AssertionError("scan did not finish")


# -- contour scan ---------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    heights=st.lists(st.one_of(st.none(), st.integers(3_000, 32_000)), min_size=N, max_size=N),
    stiffness=st.lists(st.floats(1.0, 30.0), min_size=N, max_size=N),
    lag_ms=st.sampled_from([0, 20]),
    noise=st.sampled_from([0, 15]),
)
def test_scan_finds_each_contact_within_2mm_and_leaves_out_fingers_with_no_back(
    heights, stiffness, lag_ms, noise
):
    rig = Rig(SIM, Back(heights, stiffness), lag_ms=lag_ms, noise_cn=noise)
    scan = contour.ContourScan(SIM)
    _scan(rig, scan)
    for i in range(N):
        if heights[i] is None:
            assert scan.contact_um[i] == -1 and scan.mask[i] == 0
        else:
            assert scan.mask[i] == 1
            assert abs(scan.contact_um[i] - heights[i]) <= 2_000, (i, stiffness[i])
    found = sum(h is not None for h in heights)
    assert scan.contacts == found
    assert scan.occupied == (found >= SIM.min_contacts)
    # contacted fingers rest on the back lightly: well below strength level 1
    assert max(rig.forces()) < SIM.strength_cn[0]


def test_empty_device_is_not_occupied_and_the_fingers_go_home():
    rig = Rig(SIM, Back([None] * N, [10.0] * N))
    scan = contour.ContourScan(SIM)
    ticks = _scan(rig, scan)
    # a finger rises the full stroke at 5 mm/s, then the scan ends
    assert ticks * TICK_MS <= SIM.stroke_um * 1000 // 5_000 + 500
    assert scan.contacts == 0 and not scan.occupied
    assert list(scan.contact_um) == [-1] * N and not any(scan.mask)
    for _ in range(300):
        scan.step(TICK_MS, rig.forces(), rig.targets)
        rig.move()
    assert list(rig.targets) == [0] * N


def test_scan_rises_slowly_and_never_above_the_stroke():
    rig = Rig(SIM, Back([None] * N, [10.0] * N))
    scan = contour.ContourScan(SIM, speed_um_s=5_000)
    prev = list(rig.targets)
    for _ in range(1_000):
        scan.step(TICK_MS, rig.forces(), rig.targets)
        for i in range(N):
            assert rig.targets[i] - prev[i] <= 5_000 * TICK_MS // 1000
            assert 0 <= rig.targets[i] <= SIM.stroke_um
        prev = list(rig.targets)
        rig.move()


def test_one_noisy_sample_does_not_end_a_fingers_scan():
    rig = Rig(SIM, Back([20_000] * N, [10.0] * N))
    scan = contour.ContourScan(SIM)
    for tick in range(2_000):
        forces = rig.forces()
        if tick == 100:  # at 5 mm in the air, finger 0 reads a glitch above the threshold
            forces[0] = 5 * SIM.contact_threshold_cn
        if scan.step(TICK_MS, forces, rig.targets):
            break
        rig.move()
    assert abs(scan.contact_um[0] - 20_000) <= 2_000


def test_too_few_contacts_is_not_occupied():
    heights = [None] * N
    for i in range(SIM.min_contacts - 1):
        heights[i] = 10_000
    scan = contour.ContourScan(SIM)
    _scan(Rig(SIM, Back(heights, [10.0] * N)), scan)
    assert scan.contacts == SIM.min_contacts - 1 and not scan.occupied
    heights[SIM.min_contacts] = 10_000
    scan.reset()
    _scan(Rig(SIM, Back(heights, [10.0] * N)), scan)
    assert scan.occupied


def test_devkit_scan_uses_its_own_finger_count_and_minimum():
    rig = Rig(DEVKIT, Back([8_000, None, 12_000, None], [5.0] * 4))
    scan = contour.ContourScan(DEVKIT)
    _scan(rig, scan)
    assert list(scan.mask) == [1, 0, 1, 0]
    assert scan.occupied  # the bench needs two


# -- force control --------------------------------------------------------------------------


def _controlled(back, demand_fn, ticks, lag_ms=0, noise=0, contact_err_um=0, board=SIM):
    # scan, then force control with demand_fn(tick, finger) -> cN; returns per-tick force frames
    rig = Rig(board, back, lag_ms=lag_ms, noise_cn=noise)
    scan = contour.ContourScan(board)
    _scan(rig, scan)
    contact = array("l", scan.contact_um)
    for i in range(board.finger_count):
        if contact[i] >= 0:
            contact[i] += contact_err_um
    ctl = control.ForceControl(board)
    ctl.set_contact(contact)
    demand = array("l", [0] * board.finger_count)
    frames = []
    for tick in range(ticks):
        forces = rig.forces()
        for i in range(board.finger_count):
            demand[i] = demand_fn(tick, i)
        prev = list(rig.targets)
        ctl.step(TICK_MS, forces, demand, rig.targets)
        for i in range(board.finger_count):
            assert 0 <= rig.targets[i] <= board.stroke_um
            assert abs(rig.targets[i] - prev[i]) <= board.max_speed_um_s * TICK_MS // 1000
        frames.append((list(forces), list(demand), list(rig.targets)))
        rig.move()
    return frames, rig


@pytest.mark.parametrize("k", [1.0, 3.0, 10.0, 30.0])
@pytest.mark.parametrize("lag_ms", [0, 20])
@pytest.mark.parametrize("contact_err_um", [-2_000, 0, 2_000])
def test_force_tracks_a_steady_demand_within_3_percent(k, lag_ms, contact_err_um):
    back = Back([10_000] * N, [k] * N)
    # the most this tissue can give over the rest of the stroke, and a demand below it
    demand = int(min(6_000, 0.8 * k * (SIM.stroke_um - 10_000) / 10))
    frames, _ = _controlled(back, lambda t, i: demand, 400, lag_ms, 10, contact_err_um)
    for forces, _, _ in frames[300:]:  # after 3 s
        for f in forces:
            assert abs(f - demand) <= 0.03 * demand + 30


@pytest.mark.parametrize("k", [3.0, 10.0, 30.0])
def test_force_follows_a_pulse_flow_within_5_percent_while_it_holds(k):
    back = Back([12_000] * N, [k] * N)
    pattern = flows.Pattern(SIM)
    pattern.configure("pulse", areas.area_mask(SIM, "full"), 100)
    level = strength.target_cn(SIM, 5)
    intensity = bytearray(N)
    touch = 2 * SIM.contact_threshold_cn

    def demand(tick, i):
        if i == 0:
            pattern.fill(tick * TICK_MS, intensity)
        return touch + (level - touch) * intensity[i] // 100

    frames, _ = _controlled(back, demand, 1_500, lag_ms=20, noise=10)
    checked = 0
    for tick, (forces, dem, _) in enumerate(frames[500:], start=500):
        phase = tick * TICK_MS % 5_000
        if 1_300 <= phase < 2_500 or phase >= 3_800:  # the held top and the rest
            checked += 1
            for f, d in zip(forces, dem, strict=True):
                assert abs(f - d) <= 0.05 * d + 30
    assert checked > 400


def test_force_never_reaches_the_cap_even_when_asked_for_more():
    back = Back([5_000] * N, [30.0] * N)
    frames, rig = _controlled(back, lambda t, i: 3 * SIM.force_cap_cn, 600, lag_ms=20)
    assert rig.max_force_cn < SIM.force_cap_cn


@settings(max_examples=200, deadline=None)
@given(
    contact=st.lists(st.one_of(st.just(-1), st.integers(0, 40_000)), min_size=N, max_size=N),
    start=st.lists(st.integers(0, 40_000), min_size=N, max_size=N),
    forces=st.lists(st.integers(0, 25_000), min_size=N, max_size=N),
    demand=st.lists(st.integers(0, 25_000), min_size=N, max_size=N),
    dt=st.integers(0, 200),
)
def test_every_step_stays_in_the_stroke_the_speed_and_retracts_over_the_cap(
    contact, start, forces, demand, dt
):
    ctl = control.ForceControl(SIM)
    ctl.set_contact(array("l", contact))
    targets = array("l", start)
    ctl.step(dt, array("l", forces), array("l", demand), targets)
    max_step = SIM.max_speed_um_s * max(min(dt, 50), TICK_MS) // 1000
    for i in range(N):
        assert 0 <= targets[i] <= SIM.stroke_um
        assert abs(targets[i] - start[i]) <= max_step
        if forces[i] >= SIM.force_cap_cn and start[i] > 0:
            assert targets[i] < start[i]  # retracted in this same step
        if contact[i] < 0:
            assert targets[i] <= start[i]  # no back above it: only ever towards home


def test_a_retract_by_the_supervisor_is_not_undone_by_a_jump_back():
    # the safety supervisor clamps the targets in place after the step (e.g. backs an over-force
    # finger off 5 mm); the next step continues from there at the rate limit
    back = Back([10_000] * N, [10.0] * N)
    rig = Rig(SIM, back)
    scan = contour.ContourScan(SIM)
    _scan(rig, scan)
    ctl = control.ForceControl(SIM)
    ctl.set_contact(scan.contact_um)
    demand = array("l", [8_000] * N)
    for _ in range(200):
        ctl.step(TICK_MS, rig.forces(), demand, rig.targets)
        rig.move()
    clamped = rig.targets[0] - 5_000
    rig.targets[0] = clamped
    for tick in range(1, 30):
        rig.move()
        ctl.step(TICK_MS, rig.forces(), demand, rig.targets)
        assert rig.targets[0] <= clamped + tick * SIM.max_speed_um_s * TICK_MS // 1000


def test_zero_demand_returns_to_just_below_the_contact_and_no_contact_goes_home():
    heights = [15_000] * N
    heights[3] = None
    back = Back(heights, [10.0] * N)
    frames, rig = _controlled(back, lambda t, i: 0 if t > 100 else 4_000, 300)
    assert rig.targets[3] == 0
    for i in range(N):
        if i != 3:
            assert abs(rig.targets[i] - (15_000 - control.CLEARANCE_UM)) <= 500
    assert max(frames[-1][0]) == 0  # nothing presses


# -- tension --------------------------------------------------------------------------------


def _treat(back, seconds, pauses=False, seed=1, level=5):
    # the session pipeline: pulse flow x strength -> demand -> force control -> tension
    rig = Rig(SIM, back, lag_ms=10, noise_cn=15, seed=seed)
    scan = contour.ContourScan(SIM)
    _scan(rig, scan)
    ctl = control.ForceControl(SIM)
    ctl.set_contact(scan.contact_um)
    pattern = flows.Pattern(SIM)
    full = areas.area_mask(SIM, "full")
    pattern.configure("pulse", full, 100)
    ramp = strength.Ramp(SIM)
    ramp.start(level)
    est = tension.Tension(SIM)
    intensity = bytearray(N)
    demand = array("l", [0] * N)
    touch = 2 * SIM.contact_threshold_cn
    for tick in range(seconds * 100):
        t = tick * TICK_MS
        paused = pauses and (t // 10_000) % 2 == 1  # every other 10 s
        if pauses and (t // 10_000) % 4 == 2 and pattern.flow != "hold":
            pattern.configure("hold", full, 100)
        elif pauses and (t // 10_000) % 4 != 2 and pattern.flow != "pulse":
            pattern.configure("pulse", full, 100)
        forces = rig.forces()
        cn = ramp.step(TICK_MS)
        pattern.fill(t, intensity)
        for i in range(N):
            if paused or not scan.mask[i]:
                demand[i] = 0
            else:
                demand[i] = touch + (cn - touch) * intensity[i] // 100
        ctl.step(TICK_MS, forces, demand, rig.targets)
        est.observe(forces, rig.targets, scan.contact_um)
        rig.move()
    return est


def _back(seed, stiff_fingers=()):
    rng = random.Random(seed)
    heights = [rng.randint(8_000, 20_000) for _ in range(N)]
    k = [rng.uniform(4.0, 12.0) for _ in range(N)]
    for i in stiff_fingers:
        k[i] *= 2.0
    return Back(heights, k)


def test_stiffness_estimate_matches_the_tissue_and_ranks_stiffer_fingers_higher():
    back = _back(3)
    k = list(tension.Tension.finger_stiffness(_treat(back, 60)))
    for i in range(N):
        assert abs(k[i] - back.k_n_mm[i] * 100) <= 0.05 * back.k_n_mm[i] * 100, i
    pairs = [(i, j) for i in range(N) for j in range(N) if back.k_n_mm[i] > 1.1 * back.k_n_mm[j]]
    assert all(k[i] > k[j] for i, j in pairs)


def test_stiffer_region_reports_highest():
    lower_right = [r * 2 + 1 for r in range(*SIM.region_rows["lower"])]
    regions = list(_treat(_back(5, stiff_fingers=lower_right), 60).regions())
    assert len(regions) == 6 and all(v > 0 for v in regions)
    assert regions.index(max(regions)) == tension.REGION_NAMES.index("lower_right")


def test_pauses_and_holds_do_not_change_the_estimate():
    back = _back(7)
    plain = list(_treat(back, 60).finger_stiffness())
    paused = list(_treat(back, 120, pauses=True, seed=2).finger_stiffness())
    for a, b in zip(plain, paused, strict=True):
        assert abs(a - b) <= 0.05 * a


def test_relaxed_tissue_grades_as_eased_and_unchanged_tissue_does_not():
    back = _back(9)
    before = list(_treat(back, 60).regions())
    same = list(_treat(back, 60, seed=4).regions())
    relaxed = Back(back.contact_um, [k * 0.8 for k in back.k_n_mm])
    after = list(_treat(relaxed, 60, seed=5).regions())
    assert tension.grades(before, same) == ["no change"] * 6
    assert tension.grades(before, after) == ["major"] * 6


def test_fingers_without_a_back_and_empty_regions_report_zero():
    heights = [12_000] * N
    for r in range(*SIM.region_rows["upper"]):
        heights[r * 2] = None  # nothing above the upper left fingers
    est = _treat(Back(heights, [8.0] * N), 30)
    k = est.finger_stiffness()
    assert all(k[r * 2] == 0 for r in range(*SIM.region_rows["upper"]))
    regions = list(est.regions())
    assert regions[0] == 0 and all(v > 0 for v in regions[1:])
    assert list(tension.Tension(SIM).regions()) == [0] * 6  # nothing observed yet


@pytest.mark.parametrize(
    "before, after, grade",
    [
        (1000, 800, "major"),
        (1000, 850, "major"),
        (1000, 851, "moderate"),
        (1000, 920, "moderate"),
        (1000, 921, "minor"),
        (1000, 970, "minor"),
        (1000, 980, "no change"),
        (1000, 1020, "no change"),
        (1000, 1100, "tighter"),
        (0, 900, "not measured"),
        (900, 0, "not measured"),
    ],
)
def test_grade_thresholds(before, after, grade):
    assert tension.grade(before, after) == grade
