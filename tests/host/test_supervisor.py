"""The supervisor's stage of the tick: limits that hold whatever the session computes."""

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import boardspec, faults, safestop, supervisor
from firmware import session as ses


class FakeScan:
    def __init__(self, n, contact_um):
        self.contact_um = array("i", [contact_um] * n)
        self.occupied = True


class FakeSession:
    # only what the supervisor reads: state, pressing, occupied, scan contacts, stop()
    def __init__(self, n, state=ses.TREATING, occupied=True, contact_um=10_000):
        self.state = state
        self.scan = FakeScan(n, contact_um)
        self._occupied = occupied
        self.stopped = None

    @property
    def pressing(self):
        return self.state in (ses.WARMUP, ses.TREATING, ses.COOLDOWN)

    @property
    def occupied(self):
        return self._occupied

    def stop(self, reason):
        self.stopped = reason


SIM = boardspec.load("sim")


@pytest.fixture
def board():
    return SIM


def make(board, **kw):
    s = FakeSession(board.finger_count, **kw)
    stop = safestop.SafeStop()
    return supervisor.Supervisor(board, s, stop), s, stop


def test_finger_at_the_cap_retracts_in_the_same_tick(board):
    sup, s, stop = make(board)
    n = board.finger_count
    forces = array("i", [1_000] * n)
    targets = array("i", [15_000] * n)
    sup.clamp(forces, targets)
    forces[4] = board.force_cap_cn
    targets = array("i", [16_000] * n)  # the session asks for more
    sup.clamp(forces, targets)
    assert targets[4] == 15_000 - supervisor.RETRACT_UM
    assert all(targets[i] == 16_000 for i in range(n) if i != 4)
    assert sup.overforce_events == 1


def test_repeated_over_force_latches_the_safe_stop(board):
    sup, s, stop = make(board)
    n = board.finger_count
    over = array("i", [board.force_cap_cn + 100] + [0] * (n - 1))
    calm = array("i", [0] * n)
    for _ in range(5):  # one long spike is one episode
        sup.clamp(over, array("i", [12_000] * n))
    assert not stop.active
    for _ in range(supervisor.OVERFORCE_LATCH - 1):
        sup.clamp(calm, array("i", [12_000] * n))
        sup.clamp(over, array("i", [12_000] * n))
    assert stop.active and "over-force" in stop.reason
    assert sup.fault_code == faults.OVER_FORCE


def test_no_pressing_without_a_person(board):
    sup, s, stop = make(board, state=ses.TREATING, occupied=False)
    n = board.finger_count
    targets = array("i", [20_000] * n)
    sup.clamp(array("i", [0] * n), targets)
    assert max(targets) == 0


def test_a_finger_that_found_no_back_never_presses(board):
    sup, s, stop = make(board)
    n = board.finger_count
    s.scan.contact_um[7] = -1
    targets = array("i", [20_000] * n)
    sup.clamp(array("i", [0] * n), targets)
    assert targets[7] == 0 and targets[6] == 20_000


def test_the_sixty_minute_cap_stops_the_session(board):
    sup, s, stop = make(board)
    forces = array("i", [0] * board.finger_count)
    for _ in range(ses.MAX_SESSION_MS // 1000 - 1):
        sup.check(1000, forces)
    assert s.stopped is None
    sup.check(1000, forces)
    assert s.stopped == ses.END_TIME_CAP


@settings(max_examples=300, deadline=None)
@given(
    forces=st.lists(st.integers(-5_000, 40_000), min_size=26, max_size=26),
    targets=st.lists(st.integers(-100_000, 100_000), min_size=26, max_size=26),
    state=st.sampled_from(range(len(ses.STATE_NAMES))),
    occupied=st.booleans(),
    stopped=st.booleans(),
)
def test_clamped_targets_always_within_limits(forces, targets, state, occupied, stopped):
    board = SIM
    sup, s, stop = make(board, state=state, occupied=occupied)
    if stopped:
        stop.trigger("test")
    t = array("i", targets)
    f = array("i", forces)
    sup.clamp(f, t)
    for i in range(board.finger_count):
        assert 0 <= t[i] <= board.stroke_um
        if stopped or not (occupied or state == ses.SCANNING):
            assert t[i] == 0
        if state != ses.SCANNING and t[i] > 0:
            assert t[i] <= s.scan.contact_um[i] + supervisor.MAX_INDENT_UM
        if f[i] >= board.force_cap_cn:
            assert t[i] == 0  # retracted from the last written position (home, first tick)
