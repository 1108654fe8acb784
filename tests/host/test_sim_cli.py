"""`make sim` (python -m backhug_host.sim): bad input gets a clear message and exit status 2."""

import io
import json

from backhug_host.sim.__main__ import main as sim_main


def run_cli(argv, capsys):
    out = io.StringIO()
    from backhug_host import simsession

    rc = simsession.main(argv, out=out)
    return rc, out.getvalue(), capsys.readouterr().err


def test_programme_with_an_unknown_flow_is_refused_naming_step_and_field(tmp_path, capsys):
    prog = tmp_path / "p.json"
    prog.write_text(json.dumps({"steps": [
        {"area": "full", "flow": "wave", "strength": 3, "duration_s": 120},
        {"area": "upper", "flow": "spin", "strength": 3, "duration_s": 120},
    ]}))
    rc, out, err = run_cli(["--programme", str(prog)], capsys)
    assert rc == 2
    assert "step 2" in err and "flow" in err and "spin" in err


def test_programme_that_is_not_json_is_refused(tmp_path, capsys):
    prog = tmp_path / "p.json"
    prog.write_text("{steps: nope")
    rc, out, err = run_cli(["--programme", str(prog)], capsys)
    assert rc == 2 and "cannot read" in err


def test_unknown_stiff_region_is_refused(capsys):
    rc, out, err = run_cli(["--stiff", "neck"], capsys)
    assert rc == 2 and "neck" in err


def test_bad_duration_is_refused(capsys):
    rc, out, err = run_cli(["--duration", "25"], capsys)
    assert rc == 2 and "duration" in err


def test_nobody_lying_down_reports_no_session(capsys, tmp_path):
    out = io.StringIO()
    from backhug_host import simsession

    rc = simsession.main(["--nobody", "--png", str(tmp_path / "x.png")], out=out)
    assert rc == 1
    assert "no person detected" in out.getvalue()
    assert not (tmp_path / "x.png").exists()


def test_selftest_command_still_available(capsys):
    rc = sim_main(["selftest", "--mode", "quick"])
    assert rc == 0
    assert "PASS" in capsys.readouterr().out
