# The pure treatment modules on the real MicroPython interpreter: a representative subset of the
# host tests (tests/host/test_treatments_*.py), and the check that one control tick's treatment
# work (Ramp.step, Pattern.fill, ForceControl.step, Tension.observe) allocates nothing once warm.

import gc
from array import array

import mpytest

from firmware import boardspec
from firmware.treatments import areas, contour, control, flows, programme, strength, tension

SIM = boardspec.load("sim")
DEVKIT = boardspec.load("devkit")
N = SIM.finger_count
TICK_MS = 10


class _Back:
    # a spring back in integers: finger i meets it at contact[i] um (-1: nothing there) and then
    # carries k_cn_mm[i] cN per mm; the fingers reach their targets within the tick
    def __init__(self, contact, k_cn_mm):
        self.contact = array("l", contact)
        self.k = array("l", k_cn_mm)

    def read(self, targets, forces):
        for i in range(len(targets)):
            c = self.contact[i]
            d = targets[i] - c
            forces[i] = d * self.k[i] // 1000 if c >= 0 and d > 0 else 0


def _back():
    contact = [8_000 + (i * 3_700) % 12_000 for i in range(N)]
    k = [300 + (i * 173) % 1_500 for i in range(N)]
    return _Back(contact, k)


def test_areas_cover_the_board_regions():
    for name, (start, end) in SIM.region_rows.items():
        mask = areas.area_mask(SIM, name)
        assert [i for i in range(N) if mask[i]] == list(range(start * 2, end * 2))
    assert sum(areas.area_mask(SIM, "full")) == N
    with mpytest.raises(ValueError) as e:
        areas.area_mask(DEVKIT, "lower")
    assert "no fingers" in str(e.value)
    assert list(areas.mask_from_bits(DEVKIT, 0b0101)) == [1, 0, 1, 0]
    with mpytest.raises(ValueError):
        areas.mask_from_bits(SIM, 1 << N)


def test_flows_stay_in_range_in_the_mask_and_gradual():
    mask = areas.area_mask(SIM, "middle")
    out = bytearray(N)
    for name in flows.FLOW_NAMES:
        for tempo in (100, 400):
            p = flows.Pattern(SIM)
            p.configure(name, mask, tempo)
            prev = bytearray(N)
            top = 0
            for t in range(0, 8_000, TICK_MS):
                p.fill(t, out)
                for i in range(N):
                    v = out[i]
                    assert v <= 100
                    assert mask[i] or v == 0
                    assert -5 <= v - prev[i] <= 5
                    if v > top:
                        top = v
                prev[:] = out
            assert top == 100, name


def test_alternate_sides_never_press_together():
    p = flows.Pattern(SIM)
    p.configure("alternate", areas.area_mask(SIM, "full"), 100)
    out = bytearray(N)
    for t in range(0, 12_000, TICK_MS):
        p.fill(t, out)
        assert out[0] < 50 or out[1] < 50


def test_ramp_starts_low_and_keeps_its_rate():
    r = strength.Ramp(SIM)
    r.start(10)
    cur = r.current_cn
    assert cur == SIM.strength_cn[2]
    span = SIM.strength_cn[9] - SIM.strength_cn[0]
    for _ in range(7_000):
        new = r.step(TICK_MS)
        assert 0 <= new - cur <= span * TICK_MS // 60_000 + 1
        cur = new
    assert cur == SIM.strength_cn[9]
    with mpytest.raises(ValueError):
        r.set(True)


def test_scan_finds_contacts_and_control_tracks_and_respects_the_cap():
    back = _back()
    back.contact[5] = -1
    targets = array("l", [0] * N)
    forces = array("l", [0] * N)
    scan = contour.ContourScan(SIM)
    for _ in range(3_000):
        back.read(targets, forces)
        if scan.step(TICK_MS, forces, targets):
            break
    assert scan.occupied and scan.contacts == N - 1 and scan.contact_um[5] == -1
    for i in range(N):
        if i != 5:
            assert abs(scan.contact_um[i] - back.contact[i]) <= 2_000
    ctl = control.ForceControl(SIM)
    ctl.set_contact(scan.contact_um)
    demand = array("l", [5_000] * N)
    for _ in range(300):
        back.read(targets, forces)
        ctl.step(TICK_MS, forces, demand, targets)
    back.read(targets, forces)
    for i in range(N):
        if i == 5:
            assert targets[i] == 0
        else:
            assert abs(forces[i] - 5_000) <= 150
    before = targets[0]
    forces[0] = SIM.force_cap_cn
    ctl.step(TICK_MS, forces, demand, targets)
    assert targets[0] < before


def test_tension_ranks_stiffer_fingers_higher():
    back = _back()
    est = tension.Tension(SIM)
    targets = array("l", [0] * N)
    forces = array("l", [0] * N)
    # triangular presses 0..6 mm into the back
    for tick in range(2_000):
        depth = tick % 120
        depth = (depth if depth < 60 else 120 - depth) * 100
        for i in range(N):
            targets[i] = back.contact[i] + depth
        est.observe(forces, targets, back.contact)
        back.read(targets, forces)  # measured at these targets, seen next tick
    k = est.finger_stiffness()
    for i in range(N):
        assert abs(k[i] - back.k[i]) <= back.k[i] // 20 + 5, (i, k[i], back.k[i])
    regions = est.regions()
    assert len(regions) == 6 and min(regions) > 0
    assert tension.grade(1_000, 800) == "major" and tension.grade(1_000, 1_000) == "no change"


def test_programme_rejections_name_step_and_field():
    steps = [
        {"area": "upper", "flow": "wave", "strength": 4, "duration_s": 300},
        {"mask": 15, "flow": "spin", "strength": 4, "duration_s": 300},
    ]
    with mpytest.raises(programme.ProgrammeError) as e:
        programme.parse({"steps": steps}, SIM)
    assert str(e.value) == (
        "step 2: flow: unknown flow 'spin' (known: wave, pulse, alternate, hold, walk)"
    )
    steps[1]["flow"] = "hold"
    steps[1]["strength"] = True
    with mpytest.raises(programme.ProgrammeError) as e:
        programme.parse({"steps": steps}, SIM)
    assert str(e.value).startswith("step 2: strength: ")
    steps[1]["strength"] = 2
    p = programme.parse({"steps": steps, "name": "x"}, SIM)
    assert p.total_ms == 600_000 and p.steps[1].mask[3] == 1 and p.steps[1].mask[4] == 0


class _Pipeline:
    # one session tick's treatment work, as firmware/session.py does it
    def __init__(self):
        self.back = _back()
        self.targets = array("l", [0] * N)
        self.forces = array("l", [0] * N)
        self.scan = contour.ContourScan(SIM)
        self.ctl = control.ForceControl(SIM)
        self.pattern = flows.Pattern(SIM)
        self.ramp = strength.Ramp(SIM)
        self.est = tension.Tension(SIM)
        self.intensity = bytearray(N)
        self.demand = array("l", [0] * N)
        self.touch = 2 * SIM.contact_threshold_cn
        self.t = 0
        while not self.scan.step(TICK_MS, self.forces, self.targets):
            self.back.read(self.targets, self.forces)
        self.ctl.set_contact(self.scan.contact_um)
        self.pattern.configure("wave", areas.area_mask(SIM, "full"), 150)
        self.ramp.start(8)

    def tick(self):
        self.back.read(self.targets, self.forces)
        self.t += TICK_MS
        level = self.ramp.step(TICK_MS)
        self.pattern.fill(self.t, self.intensity)
        span = level - self.touch
        for i in range(N):
            self.demand[i] = self.touch + span * self.intensity[i] // 100
        self.ctl.step(TICK_MS, self.forces, self.demand, self.targets)
        self.est.observe(self.forces, self.targets, self.scan.contact_um)


def test_a_treatment_tick_allocates_nothing_once_warm():
    p = _Pipeline()
    ticks = range(100)
    for _ in range(500):  # warm-up: every code path has run once
        p.tick()
    gc.collect()
    before = gc.mem_alloc()
    for _ in ticks:
        p.tick()
    grown = gc.mem_alloc() - before
    assert grown == 0, "%d bytes allocated in 100 ticks" % grown
