"""`make sim ARGS="--vdev"`: the options that cannot go with it, and the interpreter build it
announces, without running the interpreter (tests/vdev/test_vdev_sim_cli.py runs it)."""

import io

import pytest

from backhug_host import simsession
from backhug_host.vdev import build
from backhug_host.vdev import session as vsession


def run_cli(argv, capsys):
    out = io.StringIO()
    rc = simsession.main(argv, out=out)
    return rc, out.getvalue(), capsys.readouterr().err


@pytest.fixture
def no_build(monkeypatch):
    # fail loudly if anything tried to build or start the interpreter
    def refuse(*_a, **_k):
        raise AssertionError("the interpreter was asked for")

    monkeypatch.setattr(vsession, "ensure_interpreter", refuse)


def test_vdev_with_direct_is_refused_clearly(capsys, no_build):
    rc, out, err = run_cli(["--vdev", "--direct"], capsys)
    assert rc == 2 and "--direct" in err and "MicroPython" in err


def test_vdev_on_another_board_is_refused(capsys, no_build):
    rc, out, err = run_cli(["--vdev", "--board", "devkit"], capsys)
    assert rc == 2 and "sim board" in err and "devkit" in err


def test_vdev_reports_an_interpreter_that_cannot_be_built(capsys, monkeypatch):
    def fail(_out):
        raise build.BuildError("no micropython source: x.tar.gz is missing")

    monkeypatch.setattr(vsession, "ensure_interpreter", fail)
    rc, out, err = run_cli(["--vdev"], capsys)
    assert rc == 2 and "cannot build the interpreter" in err and "x.tar.gz" in err


def test_the_first_build_is_announced_and_later_runs_are_quiet(tmp_path, monkeypatch):
    binary = tmp_path / "micropython"

    def fake_interpreter():
        binary.write_bytes(b"")
        return binary

    monkeypatch.setattr(build, "BUILD", tmp_path)
    monkeypatch.setattr(build, "interpreter", fake_interpreter)
    out = io.StringIO()
    assert vsession.ensure_interpreter(out) == binary
    assert "building MicroPython's unix port" in out.getvalue()
    assert "about a minute" in out.getvalue()
    out = io.StringIO()
    assert vsession.ensure_interpreter(out) == binary
    assert out.getvalue() == ""
