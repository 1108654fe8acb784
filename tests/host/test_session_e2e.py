"""A complete 20-minute treatment session on the simulated device, start to finish.

The unchanged firmware (firmware.app.Device) runs on the emulated chips with a simulated person
whose upper-left and middle-right regions are stiff; the assertions compare what the firmware did
and reported with the physics' ground truth.
"""

import pytest

from backhug_host import hostrt
from backhug_host.simsession import SimRun
from firmware import session as ses
from firmware.treatments import tension

STIFF = ("upper_left", "middle_right")


@pytest.fixture(scope="module")
def finished():
    seen = {"first_target_cn": None, "max_targets_um": 0}

    def watch(run):
        s = run.device.session
        if s.state == ses.WARMUP and seen["first_target_cn"] is None:
            seen["first_target_cn"] = s.ramp.current_cn

    async def go():
        run = SimRun("sim", person={"stiff": STIFF}, seed=3)
        try:
            await run.start()
            result = await run.run_session(
                duration_min=20, strength=7, area="full", flow="wave", on_progress=watch
            )
            truth = {
                "contacts_um": list(run.sim.contacts_um()),
                "max_forces_n": list(run.sim.max_forces_n()),
                "legrest": run.sim.legrest_position(),
                "positions_um": list(run.sim.positions_um()),
                "history": run.history.get(0),  # before close() removes the data folder
            }
            return run, result, truth
        finally:
            await run.close()

    run, result, truth = hostrt.run(go())
    return run, result, truth, seen


def test_session_completes_with_the_booked_time(finished):
    run, result, truth, seen = finished
    assert result["reason"] == ses.END_COMPLETED
    assert result["elapsed_ms"] == 20 * 60_000
    assert run.device.session.state == ses.IDLE


def test_fingers_found_the_back_within_2_mm(finished):
    run, result, truth, seen = finished
    scan = run.device.session.scan
    assert scan.contacts == run.board.finger_count
    for i, true_um in enumerate(truth["contacts_um"]):
        assert abs(scan.contact_um[i] - true_um) <= 2_000, (i, scan.contact_um[i], true_um)


def test_stiff_regions_rank_first(finished):
    run, result, truth, seen = finished
    for key in ("before", "after"):
        values = result[key]
        ranked = sorted(range(6), key=lambda k: values[k], reverse=True)
        top = {tension.REGION_NAMES[k] for k in ranked[:2]}
        assert top == set(STIFF), (key, values)


def test_treatment_eased_the_stiff_regions(finished):
    run, result, truth, seen = finished
    for name in STIFF:
        k = tension.REGION_NAMES.index(name)
        assert result["after"][k] < result["before"][k]


def test_no_finger_ever_exceeded_the_cap(finished):
    run, result, truth, seen = finished
    cap_n = run.board.force_cap_cn / 100
    assert max(truth["max_forces_n"]) < cap_n
    assert run.device.supervisor.overforce_events == 0


def test_session_started_gently(finished):
    run, result, truth, seen = finished
    level3_cn = run.board.strength_cn[2]
    assert seen["first_target_cn"] is not None
    assert seen["first_target_cn"] <= level3_cn


def test_everything_is_down_at_the_end(finished):
    run, result, truth, seen = finished
    assert truth["legrest"] <= 0.01
    assert max(truth["positions_um"]) <= 500  # every finger back home


def test_a_tracked_session_is_in_the_users_history(finished):
    run, result, truth, seen = finished
    assert result["tracked"]
    assert "history_error" not in result
    records = truth["history"]
    assert len(records) == 1
    assert records[0]["before"] == result["before"]
    assert records[0]["after"] == result["after"]


def test_the_report_picture_is_written(finished, tmp_path):
    from backhug_host import report

    run, result, truth, seen = finished
    path = tmp_path / "session.png"
    report.save_png(
        path,
        times_s=run.times_s,
        forces_cn=run.forces_cn,
        rows=run.board.rows,
        cols=run.board.cols,
        before=result["before"],
        after=result["after"],
        title="test",
        cap_cn=run.board.force_cap_cn,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wave_pressed_every_row_of_the_full_area(finished):
    run, result, truth, seen = finished
    # during treatment every finger carried more than the light touch at some moment
    touch = run.device.session.touch_cn
    treating = [f for f, st in zip(run.forces_cn, run.states, strict=True) if st == ses.TREATING]
    assert treating
    for i in range(run.board.finger_count):
        assert max(sample[i] for sample in treating) > 3 * touch, i
