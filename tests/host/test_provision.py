"""Provisioning (backhug-provision) against the scripted raw-REPL stand-in: a fresh unit, the
idempotent re-run, repair, a provisioning cut short and resumed, and every bad input refused with
a clear message, a non-zero exit and nothing written."""

import hashlib
import json

import pytest

from backhug_host import bundler
from backhug_host.factory import mipcache, provision
from backhug_host.factory.standin import ABI_1_22, ABI_1_29, MemFs, StandIn
from firmware import storage

BOARD = "backhug_v3"
KEY = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
KEY_HEX = bundler.dev_public_key().hex()
USER_DATA = {
    "/data/bonds": b"bond-store-bytes",
    "/data/tension0": b"history-bytes",
    "/data/faultlog": b"fault-log-bytes",
}


def make_bundle(tmp_path, version="1.0.0", counter=1, board=BOARD, abi=ABI_1_29, name=None):
    files = [
        ("firmware/__init__.mpy", b"M\x06" + version.encode()),
        ("firmware/app.mpy", b"M\x06" + hashlib.sha256(version.encode()).digest() * 40),
        ("boards/%s/board.mpy" % board, b"M\x06board"),
    ]
    blob = bundler.pack(bundler.make_manifest(files, version, board, abi, counter), files, KEY)
    path = tmp_path / (name or "b-%s-%s.bhb" % (board, version))
    path.write_bytes(blob)
    return path


def fake_index():
    # a tiny package index in micropython.org/pi/v2's layout
    files = {
        "aioble/__init__.mpy": b"aioble",
        "aioble/core.mpy": b"core",
        "cbor2/__init__.mpy": b"cbor",
        "hashlib/_sha512.mpy": b"sha512",
    }
    short = {p: hashlib.sha256(d).hexdigest()[:8] for p, d in files.items()}
    idx = {}
    pk = {
        "aioble": (["aioble/__init__.mpy"], [["aioble-core", "latest"]]),
        "aioble-core": (["aioble/core.mpy"], []),
        "cbor2": (["cbor2/__init__.mpy"], []),
        "hashlib-sha512": (["hashlib/_sha512.mpy"], []),
    }
    for name, (paths, deps) in pk.items():
        idx["I/package/6/%s/latest.json" % name] = json.dumps(
            {"version": "1.0", "hashes": [[p, short[p]] for p in paths], "deps": deps}
        ).encode()
    for p, d in files.items():
        idx["I/file/%s/%s" % (short[p][:2], short[p])] = d
    return idx


@pytest.fixture
def cache(tmp_path):
    idx = fake_index()
    mipcache.prepare(tmp_path / "cache", index="I", fetch=lambda url: idx[url])
    return tmp_path / "cache"


@pytest.fixture
def bundle(tmp_path):
    return make_bundle(tmp_path)


def fresh_fs():
    return MemFs(USER_DATA)


def run(fs, argv, logs=None, **standin):
    made = []

    def factory(port):
        made.append(StandIn(fs, hardware=standin.pop("hardware", BOARD), **standin))
        return made[-1]

    out = logs if logs is not None else []
    rc = provision.main(argv, transport_factory=factory, log=out.append)
    return rc, (made[0] if made else None), out


def args(bundle, cache, *extra, serial="BH3-000123"):
    a = [
        "--port",
        "/dev/ttyACM0",
        "--board",
        BOARD,
        "--bundle",
        str(bundle),
        "--dev",
        "--packages",
        str(cache),
        "--hardware",
        "v3.1",
    ]
    if serial:
        a += ["--serial", serial]
    return a + list(extra)


def assert_user_data_kept(fs):
    for p, d in USER_DATA.items():
        assert fs.get(p) == d, p


def assert_no_writes(dev):
    if dev is None:
        return
    assert dev.writes == [] and dev.renames == [] and dev.removes == []


def ident(fs):
    obj, why = storage.decode(fs.get("/data/identity"))
    assert why is None
    return obj


def test_fresh_unit_is_provisioned_and_boots_the_bundle(bundle, cache):
    fs = fresh_fs()
    rc, dev, logs = run(fs, args(bundle, cache))
    assert rc == 0, logs
    blob = bundle.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    assert json.loads(fs.get("/slots/state")) == {
        "active": "a",
        "confirmed": True,
        "pending": None,
        "previous": None,
        "counter": 1,
        "hashes": {"a": sha},
    }
    assert fs.get("/slots/a/bundle.bin") == blob
    assert fs.get("/slots/a/firmware/__init__.mpy") == b"M\x061.0.0"
    assert fs.get("/boot.py") == provision.BOOT_PY.read_bytes()
    assert b"main.start()" in fs.get("/main.py")
    assert fs.get("/lib/aioble/core.mpy") == b"core" and fs.get("/lib/cbor2/__init__.mpy")
    assert fs.get("/lib/hashlib/_sha512.mpy") == b"sha512"
    assert ident(fs) == {
        "board": BOARD,
        "serial": "BH3-000123",
        "hardware": "v3.1",
        "update_key": KEY_HEX,
    }
    # the state is the last thing committed, and every file arrived through tmp + rename
    assert dev.renames[-1] == ("/slots/state.tmp", "/slots/state")
    assert {n for _, n in dev.renames} >= {"/slots/a/bundle.bin", "/data/identity", "/boot.py"}
    assert not [p for p in fs.files if p.endswith(".tmp")]
    assert dev.events[-1] == "reset"
    # after the reset the boot selector runs slot a
    assert StandIn(fs).slot_dir == "/slots/a"
    assert_user_data_kept(fs)
    assert any("provisioned BH3-000123" in m for m in logs)


def test_rerun_checks_and_changes_nothing_and_keeps_calibration(bundle, cache):
    fs = fresh_fs()
    assert run(fs, args(bundle, cache))[0] == 0
    # the end-of-line test stored a calibration meanwhile
    obj = ident(fs)
    obj["calibration"] = {"force": [[41, 24000]] * 26}
    fs.put("/data/identity", storage.encode(obj))
    before = fs.snapshot()
    rc, dev, logs = run(fs, args(bundle, cache, serial=None))  # serial read from the unit
    assert rc == 0, logs
    assert_no_writes(dev)
    assert fs.snapshot() == before
    assert ident(fs)["calibration"] == {"force": [[41, 24000]] * 26}
    assert "0 files written" in logs[-1]


def test_rerun_repairs_a_damaged_file_only(bundle, cache):
    fs = fresh_fs()
    assert run(fs, args(bundle, cache))[0] == 0
    fs.put("/slots/a/firmware/app.mpy", b"bit rot")
    fs.files.pop("/lib/cbor2/__init__.mpy")
    rc, dev, logs = run(fs, args(bundle, cache))
    assert rc == 0, logs
    assert sorted(p for p, _ in dev.writes) == [
        "/lib/cbor2/__init__.mpy.tmp",
        "/slots/a/firmware/app.mpy.tmp",
    ]
    assert fs.get("/lib/cbor2/__init__.mpy") == b"cbor"
    assert_user_data_kept(fs)


def test_a_newer_bundle_replaces_the_slot_without_touching_user_data(bundle, cache, tmp_path):
    fs = fresh_fs()
    assert run(fs, args(bundle, cache))[0] == 0
    newer = make_bundle(tmp_path, "1.1.0", counter=2)
    rc, dev, logs = run(fs, args(newer, cache))
    assert rc == 0, logs
    st = json.loads(fs.get("/slots/state"))
    assert (
        st["counter"] == 2 and st["hashes"]["a"] == hashlib.sha256(newer.read_bytes()).hexdigest()
    )
    assert_user_data_kept(fs)


@pytest.mark.parametrize("cut_after", [6, 20, 47, 55, 70, 100, 118, 124])
def test_cut_short_provisioning_is_recognised_and_resumed(bundle, cache, cut_after):
    fs = fresh_fs()
    rc, dev, logs = run(fs, args(bundle, cache), cut_after=cut_after)
    assert rc == 3 and "run the same command again" in logs[-1], logs
    assert dev.events[-1] == "lost"
    # meanwhile the unit boots nothing half-written: no slot, or (cut at the very last rename:
    # boot promotes the complete state.tmp) the whole new bundle
    if StandIn(fs).slot_dir is not None:
        assert fs.get("/slots/a/bundle.bin") == bundle.read_bytes()
        assert fs.get("/slots/a/firmware/app.mpy") is not None
    # the re-run finishes it
    rc, dev, logs = run(fs, args(bundle, cache))
    assert rc == 0, logs
    assert (
        json.loads(fs.get("/slots/state"))["hashes"]["a"]
        == hashlib.sha256(bundle.read_bytes()).hexdigest()
    )
    assert ident(fs)["serial"] == "BH3-000123"
    assert_user_data_kept(fs)


def test_resume_is_announced(bundle, cache):
    fs = fresh_fs()
    run(fs, args(bundle, cache), cut_after=100)
    rc, dev, logs = run(fs, args(bundle, cache))
    assert rc == 0 and any("did not finish" in m and "resuming" in m for m in logs), logs


# --- bad input: a clear message, a non-zero exit, nothing written ---------------------------


def refused(fs, argv, expect, **standin):
    before = fs.snapshot()
    rc, dev, logs = run(fs, argv, **standin)
    assert rc == 2, logs
    assert expect in logs[-1], logs[-1]
    assert_no_writes(dev)
    assert fs.snapshot() == before
    return dev


def test_no_device_on_the_port(bundle, cache):
    refused(fresh_fs(), args(bundle, cache), "no device on /dev/ttyACM0", absent=True)


def test_bundle_for_another_board_is_refused_before_connecting(tmp_path, cache):
    other = make_bundle(tmp_path, board="devkit")
    dev = refused(fresh_fs(), args(other, cache), "built for board 'devkit', not 'backhug_v3'")
    assert dev is None  # not even connected


def test_wrong_hardware_for_the_board(bundle, cache):
    refused(
        fresh_fs(),
        args(bundle, cache),
        "not a backhug_v3: its I2C bus answers at 0x40",
        hardware="devkit",
    )


def test_older_micropython(bundle, cache):
    refused(
        fresh_fs(),
        args(bundle, cache),
        "runs MicroPython 1.22.0 (.mpy ABI 10502)",
        micropython=((1, 22, 0), ABI_1_22),
    )


def test_unknown_firmware(bundle, cache):
    refused(
        fresh_fs(),
        args(bundle, cache),
        "does not answer as a MicroPython raw REPL",
        micropython=None,
    )


def test_unit_provisioned_with_another_serial(bundle, cache):
    fs = fresh_fs()
    assert run(fs, args(bundle, cache))[0] == 0
    refused(fs, args(bundle, cache, serial="BH3-999999"), "different serial")
    rc, _, logs = run(fs, args(bundle, cache, "--update-identity", serial="BH3-999999"))
    assert rc == 0 and ident(fs)["serial"] == "BH3-999999"


def test_unit_provisioned_as_another_board(bundle, cache):
    fs = fresh_fs()
    fs.put(
        "/data/identity",
        storage.encode({"board": "sim", "serial": "S1", "hardware": "h", "update_key": KEY_HEX}),
    )
    refused(fs, args(bundle, cache), "provisioned as board 'sim'")


def test_damaged_identity_is_not_overwritten(bundle, cache):
    fs = fresh_fs()
    fs.put("/data/identity", b"BHst\x01garbage")
    refused(fs, args(bundle, cache), "identity file on the device is damaged")


def test_downgrade_below_the_security_counter(tmp_path, cache):
    fs = fresh_fs()
    assert run(fs, args(make_bundle(tmp_path, "2.0.0", counter=5), cache))[0] == 0
    refused(fs, args(make_bundle(tmp_path, "1.0.0", counter=1), cache), "security counter 5")


def test_missing_package_cache(bundle, tmp_path):
    refused(fresh_fs(), args(bundle, tmp_path / "nothing"), "no package cache")


def test_bundle_signed_with_another_key(bundle, cache):
    a = args(bundle, cache)
    a[a.index("--dev")] = "--public-key=" + "11" * 32
    refused(fresh_fs(), a, "does not verify: signature")


def test_mipcache_follows_deps_and_checks_hashes(tmp_path):
    idx = fake_index()
    m = mipcache.prepare(tmp_path / "c", index="I", fetch=lambda url: idx[url])
    assert set(m["packages"]) == {"aioble", "aioble-core", "cbor2", "hashlib-sha512"}
    files = mipcache.load(tmp_path / "c", mpy=6)
    assert [p for p, _, _ in files] == [
        "/lib/aioble/__init__.mpy",
        "/lib/aioble/core.mpy",
        "/lib/cbor2/__init__.mpy",
        "/lib/hashlib/_sha512.mpy",
    ]
    with pytest.raises(mipcache.CacheError, match="mpy version 6"):
        mipcache.load(tmp_path / "c", mpy=5)
    bad = dict(idx)
    key = next(k for k in bad if "/file/" in k)
    bad[key] = b"tampered"
    with pytest.raises(mipcache.CacheError, match="does not match its hash"):
        mipcache.prepare(tmp_path / "d", index="I", fetch=lambda url: bad[url])
