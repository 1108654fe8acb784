"""Frozen-build manifests (boards/<id>/manifest.py, docs/frozen-build.md), run by MicroPython's
own tools/manifestfile.py from the pinned MicroPython source in ../shared: what each image would
freeze is the firmware, only that board's data, and micropython-lib's packages as exactly the
pinned .py files (tools/backhug_host/mplib.json), whatever lib/micropython-lib holds."""

import hashlib
import importlib.util
import os
import re
import tarfile

import pytest

from backhug_host import mplib

ROOT = mplib.ROOT
BOARDS = ("backhug_v3", "devkit", "sim")
PINNED_PY = {rel: digest for _, _, rel, digest in mplib.pinned("py")}


@pytest.fixture(scope="module")
def manifestfile(tmp_path_factory):
    # tools/manifestfile.py of the MicroPython commit mplib.json names, read from its archive
    commit = mplib.lock()["micropython"]
    archive = mplib.SHARED / ("micropython-%s.tar.gz" % commit[:8])
    tmp = tmp_path_factory.mktemp("manifestfile")
    with tarfile.open(archive) as tar:
        src = tar.extractfile("micropython/tools/manifestfile.py").read()
    path = tmp / "manifestfile.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("manifestfile", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # a stand-in port: its boards/manifest.py freezes one marker module
    port = tmp / "port"
    (port / "boards").mkdir(parents=True)
    (port / "boards" / "portmarker.py").write_text("")
    (port / "boards" / "manifest.py").write_text('module("portmarker.py")\n')
    # no micropython-lib: a require() of anything would fail
    empty_lib = tmp / "no-micropython-lib"
    empty_lib.mkdir()
    return mod, {"PORT_DIR": str(port), "MPY_LIB_DIR": str(empty_lib), "BOARD_DIR": str(tmp)}


def frozen(manifestfile, board_id):
    mod, path_vars = manifestfile
    m = mod.ManifestFile(mod.MODE_FREEZE, path_vars)
    m.add_library("micropython-lib", path_vars["MPY_LIB_DIR"])
    cwd = os.getcwd()
    m.execute(os.path.join(ROOT, "boards", board_id, "manifest.py"))
    assert os.getcwd() == cwd
    return {f.target_path: f for f in m.files()}


@pytest.mark.parametrize("board_id", BOARDS)
def test_manifest_freezes_firmware_board_and_the_pinned_libraries(manifestfile, board_id):
    files = frozen(manifestfile, board_id)
    by_top = {}
    for target in files:
        by_top.setdefault(target.split("/")[0], set()).add(target)
    # the port's own frozen set on the device boards; the sim build has none
    expect = {"firmware", "boards", "aioble", "cbor2", "hashlib"}
    if board_id != "sim":
        expect.add("portmarker.py")
    assert set(by_top) == expect
    # every .py of firmware/, from the tree
    fw = {
        os.path.relpath(os.path.join(d, n), ROOT).replace(os.sep, "/")
        for d, _, names in os.walk(os.path.join(ROOT, "firmware"))
        for n in names
        if n.endswith(".py")
    }
    assert by_top["firmware"] == fw
    # only this board's data: the image cannot boot as another board
    assert "boards/%s/board.py" % board_id in by_top["boards"]
    for target in by_top["boards"]:
        assert re.match(r"boards/(__init__\.py|%s/)" % board_id, target), target
    # micropython-lib: exactly the pinned files, each the pinned bytes, compiled by the build
    libs = {t: f for t, f in files.items() if t.split("/")[0] in ("aioble", "cbor2", "hashlib")}
    assert set(libs) == set(PINNED_PY)
    for target, f in libs.items():
        with open(f.full_path, "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == PINNED_PY[target], target
        assert f.kind == manifestfile[0].KIND_FREEZE_AS_MPY
    assert all(f.metadata.version is None for f in libs.values())  # no require() involved


def test_the_board_manifests_require_nothing_from_micropython_lib():
    for board_id in BOARDS:
        with open(os.path.join(ROOT, "boards", board_id, "manifest.py")) as f:
            code = f.read()
        assert not re.search(r"^\s*require\(", code, re.M), board_id
        assert 'include("../../tools/backhug_host/mplib_manifest.py")' in code, board_id
