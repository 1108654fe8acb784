"""The end-of-line test (backhug-eol) against the stand-in: the full self-test and the force
calibration really run (firmware.selftest on the emulated unit, the rig in virtual time), a
failing sensor fails the unit with its reason, and every bad input is refused with nothing
written and no report."""

import json
import os
import subprocess

import pytest
from test_provision import KEY_HEX, USER_DATA, make_bundle

from backhug_host import bundler, mpycheck
from backhug_host.factory import devlink, eol, provision
from backhug_host.factory.standin import ABI_1_22, MemFs, StandIn
from firmware import storage

SAMPLE = bundler.REPO / "docs" / "examples" / "eol-report.json"


def provisioned(tmp_path, board="devkit", serial="DK-0007"):
    fs = MemFs(USER_DATA)
    b = make_bundle(tmp_path, board=board)
    link = devlink.DevLink(StandIn(fs, hardware=board))
    provision.provision(
        link, board, b, bundler.dev_public_key(), serial, "devkit-c1", (), log=lambda m: None
    )
    return fs


def run(fs, argv, hardware="devkit", **standin):
    made = []

    def factory(port):
        made.append(StandIn(fs, hardware=hardware, **standin))
        return made[-1]

    logs = []
    rig = eol.SimRig(None)

    class LateRig:  # reads the stand-in made by the factory
        source = "sim"
        plate_um = rig.plate_um

        def reference_n(self, i):
            return eol.SimRig(made[-1]).reference_n(i)

    rc = eol.main(argv, transport_factory=factory, rig=LateRig(), log=logs.append)
    return rc, (made[0] if made else None), logs


def ident(fs):
    return storage.decode(fs.get("/data/identity"))[0]


def test_a_good_unit_passes_and_its_calibration_is_stored(tmp_path):
    fs = provisioned(tmp_path)
    out = tmp_path / "reports"
    rc, dev, logs = run(fs, ["--port", "p", "--serial", "DK-0007", "--out", str(out)])
    assert rc == 0, logs
    report = json.loads((out / "DK-0007.json").read_text())
    assert report["result"] == "PASS" and report["failed"] == []
    assert report["selftest"]["ok"] and report["serial"] == "DK-0007"
    # the measured calibration is the sensors' true one (offset within 1 count, gain 1 %)
    true_cal = dev.dev.sensors.force_cal
    for (off, gain), (t_off, t_gain) in zip(report["calibration"]["force"], true_cal, strict=True):
        assert abs(off - t_off) <= 1 and abs(gain - t_gain) <= t_gain / 100
    assert ident(fs)["calibration"]["force"] == report["calibration"]["force"]
    assert ident(fs)["serial"] == "DK-0007" and ident(fs)["update_key"] == KEY_HEX
    for p, d in USER_DATA.items():
        assert fs.get(p) == d
    assert list((out / "history").iterdir())
    # provisioning again keeps the calibration
    assert run_provision_again(fs, tmp_path) == 0
    assert ident(fs)["calibration"]["force"] == report["calibration"]["force"]


def run_provision_again(fs, tmp_path):
    link = devlink.DevLink(StandIn(fs, hardware="devkit"))
    b = make_bundle(tmp_path, board="devkit")
    s = provision.provision(link, "devkit", b, bundler.dev_public_key(), log=lambda m: None)
    return len(s["written"])


@pytest.mark.parametrize(
    "fault, parts",
    [
        ("open:2", {"force[2]", "finger[2]", "cal[2]"}),
        ("stick:1", {"finger[1]", "cal[1]"}),
        ("nack:0x40", {"pca9685@0x40", "fingers", "cal[0]", "cal[1]", "cal[2]", "cal[3]"}),
    ],
)
def test_a_failing_part_fails_the_unit_with_its_reason(tmp_path, fault, parts):
    fs = provisioned(tmp_path)
    before = ident(fs)
    out = tmp_path / "reports"
    rc, dev, logs = run(fs, ["--port", "p", "--out", str(out)], faults=[fault])
    assert rc == 1, logs
    report = json.loads((out / "DK-0007.json").read_text())
    assert report["result"] == "FAIL"
    assert {f["part"] for f in report["failed"]} == parts
    assert all(f["reason"] for f in report["failed"])
    assert report["calibration"]["force"] is None and not report["calibration"]["stored"]
    assert ident(fs) == before  # nothing stored for a failed unit
    assert "FAIL" in logs[-1]


def test_a_sensor_far_off_its_nominal_gain_fails_calibration(tmp_path):
    fs = provisioned(tmp_path)
    rc, dev, logs = run(
        fs,
        ["--port", "p", "--out", str(tmp_path / "r")],
        sensor_cal=[(40, 25000), (40, 25000), (40, 36000), (40, 25000)],
    )
    assert rc == 1
    report = json.loads((tmp_path / "r" / "DK-0007.json").read_text())
    assert [f["part"] for f in report["failed"]] == ["cal[2]"]
    assert "from nominal" in report["failed"][0]["reason"]


# --- bad input: refused, nothing written, no report --------------------------------------------


def refused(fs, tmp_path, argv, expect, **standin):
    before = fs.snapshot()
    out = tmp_path / "reports"
    rc, dev, logs = run(fs, argv + ["--out", str(out)], **standin)
    assert rc == 2, logs
    assert expect in logs[-1], logs[-1]
    assert fs.snapshot() == before
    if dev is not None:
        assert dev.writes == [] and dev.renames == [] and dev.removes == []
    assert not out.exists()


def test_no_device(tmp_path):
    refused(MemFs(), tmp_path, ["--port", "p"], "no device on p", absent=True)


def test_unprovisioned_unit(tmp_path):
    refused(MemFs(USER_DATA), tmp_path, ["--port", "p"], "not provisioned")


def test_half_finished_provisioning(tmp_path):
    fs = MemFs(USER_DATA)
    b = make_bundle(tmp_path, board="devkit")
    link = devlink.DevLink(StandIn(fs, hardware="devkit", cut_after=40))
    with pytest.raises(provision.Failed):
        provision.provision(
            link, "devkit", b, bundler.dev_public_key(), "DK-1", "h", (), log=lambda m: None
        )
    refused(fs, tmp_path, ["--port", "p"], "provisioning did not finish")


def test_another_unit_than_expected(tmp_path):
    refused(provisioned(tmp_path), tmp_path, ["--port", "p", "--serial", "DK-9"], "serial DK-0007")


def test_wrong_board_hardware(tmp_path):
    # identity and firmware say devkit, the hardware on the port is a v3 main board
    refused(
        provisioned(tmp_path), tmp_path, ["--port", "p"], "not a devkit", hardware="backhug_v3"
    )


def test_older_micropython(tmp_path):
    refused(
        provisioned(tmp_path),
        tmp_path,
        ["--port", "p"],
        "MicroPython 1.22.0",
        micropython=((1, 22, 0), ABI_1_22),
    )


def test_older_firmware_than_the_line_tests(tmp_path):
    refused(
        provisioned(tmp_path),
        tmp_path,
        ["--port", "p", "--expect-version", "1.1.0"],
        "runs firmware 1.0.0, this line tests 1.1.0",
    )


def test_unknown_firmware(tmp_path):
    refused(provisioned(tmp_path), tmp_path, ["--port", "p"], "does not answer", micropython=None)


def test_the_device_helper_compiles_for_micropython(tmp_path):
    src = tmp_path / "eol_helper.py"
    src.write_text(eol.DEVICE_HELPER % {"leash": devlink.LEASH_MS})
    assert mpycheck.compile_file(src, tmp_path / "eol_helper.mpy", "eol_helper.py") is None


def test_sample_report_comes_from_the_emulated_device(tmp_path):
    # `backhug-eol --sim --serial BH3-SAMPLE-0001 --station sample --out docs/examples` made it;
    # BACKHUG_UPDATE_DOCS=1 regenerates it
    out = tmp_path / "sample"
    rc = eol.main(
        ["--sim", "--serial", "BH3-SAMPLE-0001", "--station", "sample", "--out", str(out)],
        log=lambda m: None,
    )
    assert rc == 0
    fresh = json.loads((out / "BH3-SAMPLE-0001.json").read_text())
    if os.environ.get("BACKHUG_UPDATE_DOCS"):
        SAMPLE.parent.mkdir(parents=True, exist_ok=True)
        SAMPLE.write_text(json.dumps(fresh, indent=1) + "\n")
    sample = json.loads(SAMPLE.read_text())
    # the same shape (values move with the firmware version and the self-test's details)
    stale = "docs/examples/eol-report.json is stale: regenerate with BACKHUG_UPDATE_DOCS=1"
    assert sorted(fresh) == sorted(sample), stale
    assert [p["part"] for p in fresh["parts"]] == [p["part"] for p in sample["parts"]], stale
    assert sorted(fresh["calibration"]) == sorted(sample["calibration"]), stale
    assert sample["result"] == "PASS" and len(sample["calibration"]["force"]) == 26


def test_console_script_is_declared():
    text = (bundler.REPO / "pyproject.toml").read_text()
    assert 'backhug-eol = "backhug_host.factory.eol:main"' in text
    assert 'backhug-provision = "backhug_host.factory.provision:main"' in text
    r = subprocess.run(
        [str(bundler.REPO / ".venv" / "bin" / "python"), "-m", "backhug_host.factory.eol", "-h"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert r.returncode == 0 and "--rig" in r.stdout
