"""The command line of backhug_host.mplib (the pinned micropython-lib packages): what tier 2's
run.mjs and the frozen-build manifests rely on, standard library only."""

import hashlib
import os
import subprocess
import sys

from backhug_host import mplib


def test_show_and_check(capsys):
    assert mplib.main(["show"]) == 0
    out = capsys.readouterr().out
    assert "micropython-lib ee4bb8ff139e24c42b739935fbd8ec7c4d061e02" in out
    for line in ("aioble           0.6.2    9 files", "cbor2            1.0.0    3 files",
                 "hashlib-sha512   1.0.0    3 files"):  # fmt: skip
        assert line in out
    assert mplib.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "py  15 files match their pins" in out and "mpy 15 files match their pins" in out


def test_a_missing_index_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("BACKHUG_MIP_INDEX", "/nonexistent/mip-index")
    assert mplib.main(["tree", "py"]) == 2
    assert "no mip index at /nonexistent/mip-index" in capsys.readouterr().err


def test_tree_from_a_fresh_clone_without_the_venv(tmp_path):
    # as run.mjs calls it before `make venv`: -S (no site-packages), tools/ on the path
    env = dict(os.environ, PYTHONPATH=str(mplib.ROOT / "tools"))
    r = subprocess.run(
        [sys.executable, "-S", "-m", "backhug_host.mplib", "tree", "py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    dest = r.stdout.strip().splitlines()[-1]
    assert dest == str(mplib.BUILD / "py")
    for _, _, rel, digest in mplib.pinned("py"):
        with open(os.path.join(dest, rel), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, rel
