"""The hardware self-test (firmware/selftest.py) on the simulated device: a healthy device passes,
each broken part is named, the boot-time test never lifts a finger into the person lying there,
and `python -m backhug_host.sim` reports it."""

import asyncio
import json

import pytest

from backhug_host.emul import world as W
from backhug_host.sim.__main__ import main as sim_main
from backhug_host.sim.__main__ import run_selftest
from backhug_host.sim.device import SimDevice
from backhug_host.sim.person import Person
from firmware.drivers.fault import DriverFault


@pytest.fixture(autouse=True)
def restore_world():
    previous = W.install(None)  # what was installed, put back afterwards
    W.install(previous)
    yield
    W.install(previous)


def test_full_self_test_passes_on_a_healthy_device():
    report, dev = run_selftest("sim", "full", seed=1)
    assert report["ok"], report["failed"]
    names = [p["part"] for p in report["parts"]]
    n = dev.board.finger_count
    for i in range(n):
        assert "finger[%d]" % i in names and "force[%d]" % i in names
    for part in ("pca9685@0x40", "pca9685@0x41", "legrest", "legrest.limits", "watchdog"):
        assert part in names
    # it really pressed every finger against the plate, and never hard
    peaks = dev.max_forces_n()
    assert all(5 < f < dev.board.force_cap_cn / 100 for f in peaks)
    finger0 = next(p for p in report["parts"] if p["part"] == "finger[0]")
    assert abs(finger0["values"]["contact_um"] - 20_000) < 500
    legs = next(p for p in report["parts"] if p["part"] == "legrest")["values"]
    assert 5_500 < legs["up_ms"] < 6_500 and 5_500 < legs["down_ms"] < 6_500
    assert dev.legrest_position() == pytest.approx(0.0, abs=0.01)  # left at the bottom
    assert dev.world.wdt_timeout_ms == dev.board.watchdog_ms  # armed, and never expired
    assert not dev.world.watchdog_expired()
    json.dumps(report)  # plain data: loggable and sendable as it is


def test_full_self_test_passes_on_the_devkit_too():
    report, dev = run_selftest("devkit", "full")
    assert report["ok"], report["failed"]
    assert sum(p["part"].startswith("finger[") for p in report["parts"]) == 4


@pytest.mark.parametrize(
    "fault, parts",
    [
        ("swap:3,5", {"finger[3]", "finger[5]"}),
        ("swap-pwm:2,9", {"finger[2]", "finger[9]"}),
        ("open:4", {"force[4]", "finger[4]"}),
        ("short:6", {"force[6]", "finger[6]"}),
        ("noisy:8", {"force[8]", "finger[8]"}),
        ("stuck:7", {"finger[7]"}),
        ("stall:10", {"finger[10]"}),
        ("stick:11", {"finger[11]"}),
        ("nack:0x41", {"pca9685@0x41", "fingers"}),
        ("jam", {"legrest"}),
        ("jam:0.5", {"legrest"}),
        ("limits:both", {"legrest.limits", "legrest"}),
        ("limit:top=open", {"legrest"}),
    ],
)
def test_full_self_test_names_the_broken_part(fault, parts):
    report, _ = run_selftest("sim", "full", faults=[fault])
    assert not report["ok"]
    assert set(report["failed"]) == parts
    for p in report["parts"]:
        if not p["ok"]:
            assert p["detail"]  # says what is wrong, not only that something is


def test_swapped_sensors_are_reported_as_crossed_channels():
    report, _ = run_selftest("sim", "full", faults=["swap:12,13"])
    detail = {p["part"]: p for p in report["parts"]}
    assert detail["finger[12]"]["values"]["responder"] == 13
    assert "swapped" in detail["finger[12]"]["detail"]


def test_full_self_test_without_the_rig_fails_every_finger():
    report, dev = run_selftest("sim", "full", load="nobody")
    assert not report["ok"]
    fingers = {"finger[%d]" % i for i in range(dev.board.finger_count)}
    assert set(report["failed"]) == fingers
    assert max(dev.peak_positions_um()) <= 23_000 + 250  # the search stops above the plate


def boot_under_a_person(vclock, faults=(), extended_um=None):
    # A person lies on the device; optionally the fingers were left extended under them by a
    # reset in the middle of a session.
    dev = SimDevice("sim", person={"height_cm": 168, "weight_kg": 64}, clock=vclock)
    assert isinstance(dev.load, Person)
    contacts = dev.contacts_um()
    if extended_um is not None:
        for i in range(dev.board.finger_count):
            dev.fingers.place_um(i, contacts[i] + extended_um)
    for f in faults:
        dev.inject(f)
    hw = dev.build_hal(init=False)
    try:
        hw.init()
    except DriverFault:
        pass
    return dev, hw, contacts


def run_quick(vrun, dev, hw):
    from firmware import selftest

    async def main():
        host = asyncio.create_task(dev.run())
        try:
            return await selftest.run(hw, dev.board, selftest.QUICK)
        finally:
            host.cancel()

    return vrun(main())


def test_quick_self_test_passes_with_a_person_lying_there_and_lifts_no_finger(vclock, vrun):
    dev, hw, contacts = boot_under_a_person(vclock)
    report = run_quick(vrun, dev, hw)
    assert report["ok"], report["failed"]
    assert report["mode"] == "quick"
    assert not any(p["part"].startswith("finger[") for p in report["parts"])
    # no finger rose beyond home (one PWM count), so none touched the person
    assert max(dev.peak_positions_um()) < 100
    assert max(dev.max_forces_n()) == 0.0


def test_quick_self_test_after_a_reset_mid_session_waits_for_the_fingers_to_retract(vclock, vrun):
    dev, hw, contacts = boot_under_a_person(vclock, extended_um=8_000)
    start = dev.positions_um()
    report = run_quick(vrun, dev, hw)
    assert report["ok"], report["failed"]
    peaks = dev.peak_positions_um()
    assert all(peaks[i] <= start[i] for i in range(len(peaks)))  # only ever down
    # it judged the sensors only once no finger touched the person any more
    end = dev.positions_um()
    assert all(end[i] < contacts[i] for i in range(len(end)))
    assert max(dev.forces_n()) == 0.0
    assert report["elapsed_ms"] < 3_000  # bounded by a full retraction's time


@pytest.mark.parametrize(
    "fault, parts",
    [
        ("open:2", {"force[2]"}),
        ("short:17", {"force[17]"}),
        ("limits:both", {"legrest.limits"}),
        ("nack:0x40", {"pca9685@0x40"}),
    ],
)
def test_quick_self_test_catches_what_it_can_without_moving(vclock, vrun, fault, parts):
    dev, hw, _ = boot_under_a_person(vclock, faults=[fault])
    report = run_quick(vrun, dev, hw)
    failed = set(report["failed"])
    if fault.startswith("nack"):
        # the chip after a dead one may be left unset by the drivers' init: reported, not hidden
        failed.discard("pca9685@0x41")
    assert failed == parts
    assert max(dev.peak_positions_um()) < 100


def test_sim_command_prints_the_table_and_exits_with_the_verdict(capsys):
    assert sim_main(["selftest", "--fault", "jam"]) == 1
    out = capsys.readouterr().out
    assert "legrest" in out and "FAIL" in out and "over-current" in out
    assert sim_main(["selftest", "--mode", "quick", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "force[0..25]" in out
    assert sim_main(["selftest", "--fault", "melt:3"]) == 2
    assert "unknown fault kind" in capsys.readouterr().err
