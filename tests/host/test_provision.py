"""Provisioning (backhug-provision) against the scripted raw-REPL stand-in: a fresh unit, the
idempotent re-run, repair, a provisioning cut short and resumed, and every bad input refused with
a clear message, a non-zero exit and nothing written."""

import hashlib
import json
import shutil

import pytest

from backhug_host import bundler, mplib
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


# The pinned micropython-lib files (tools/backhug_host/mplib.json), read from the offline mip
# index in ../shared: the cache below is prepared from it as the line prepares its own.
PINNED = {"/lib/" + rel: blob for rel, blob in mplib.read("mpy").items()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("mipcache")
    mipcache.prepare(path)
    return path


@pytest.fixture
def cache(prepared, tmp_path):
    # a copy per test: some tests damage it
    shutil.copytree(prepared, tmp_path / "cache")
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
    assert {p: fs.get(p) for p in PINNED} == PINNED  # every pinned file, byte for byte
    assert sorted(fs.tree("/lib")) == sorted(PINNED)  # and nothing else
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
    versions = "aioble 0.6.2, cbor2 1.0.0, hashlib-sha512 1.0.0"
    assert any(m.startswith("libraries: " + versions) and "15 written" in m for m in logs), logs
    assert versions in logs[-1]


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
    assert fs.get("/lib/cbor2/__init__.mpy") == PINNED["/lib/cbor2/__init__.mpy"]
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


# REPL commands before the cable is pulled: in the libraries (20, 100), listing them for strays
# (183), /boot.py (207, 215), /main.py (230), slot a's files (260), its bundle.bin rename (278),
# the state's rename, the last one (284)
@pytest.mark.parametrize("cut_after", [6, 20, 100, 183, 207, 215, 230, 260, 278, 284])
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
    run(fs, args(bundle, cache), cut_after=260)
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


def test_missing_or_outdated_package_cache_is_refused(bundle, cache):
    data = json.loads((cache / "cache.json").read_text())
    data["packages"]["aioble"]["version"] = "0.6.1"
    (cache / "cache.json").write_text(json.dumps(data))
    refused(fresh_fs(), args(bundle, cache), "holds aioble 0.6.1 (pinned 0.6.2)")


def test_a_damaged_package_file_is_refused_before_any_write(bundle, cache):
    short = mplib.lock()["packages"]["cbor2"]["mpy"]["cbor2/_decoder.mpy"][:8]
    (cache / "file" / short[:2] / short).write_bytes(b"M\x06 not the pinned decoder")
    refused(fresh_fs(), args(bundle, cache), "cbor2/_decoder.mpy in the cache has SHA-256")


def test_stray_and_outdated_library_files_are_replaced_or_removed(bundle, cache):
    fs = fresh_fs()
    fs.put("/lib/aioble/core.mpy", b"M\x06 aioble-core 0.3.0")  # an older version's file
    fs.put("/lib/aioble/core.py", b"# a source copy: would win over core.mpy")
    fs.put("/lib/aioble/old/extra.mpy", b"M\x06")
    fs.put("/lib/hashlib/_sha256.mpy", b"M\x06 hashlib-sha256")
    fs.put("/lib/other/keep.mpy", b"M\x06 not ours")
    rc, dev, logs = run(fs, args(bundle, cache))
    assert rc == 0, logs
    assert {p: fs.get(p) for p in PINNED} == PINNED
    strays = ["/lib/aioble/core.py", "/lib/aioble/old/extra.mpy", "/lib/hashlib/_sha256.mpy"]
    assert sorted(dev.removes) == strays
    assert "/lib/aioble/core.mpy.tmp" in [p for p, _ in dev.writes]
    assert fs.get("/lib/other/keep.mpy") == b"M\x06 not ours"  # not a pinned package's folder
    assert any("3 stray removed" in m for m in logs), logs
    # a re-run finds nothing to do
    rc, dev, logs = run(fs, args(bundle, cache))
    assert rc == 0 and dev.writes == [] and dev.removes == [], logs


# --- the package cache (mipcache) ------------------------------------------------------------


def test_mipcache_holds_exactly_the_pinned_files(prepared):
    m = json.loads((prepared / "cache.json").read_text())
    assert {n: p["version"] for n, p in m["packages"].items()} == mplib.versions()
    assert m["micropython_lib"] == mplib.lock()["micropython_lib"] and m["mpy"] == 6
    pk = mipcache.load(prepared, mpy=6)
    assert {p: blob for p, blob, _ in pk} == PINNED
    assert all(hashlib.sha256(blob).hexdigest() == sha for _, blob, sha in pk)
    assert pk.versions == mplib.versions()
    assert pk.describe() == (
        "aioble 0.6.2, cbor2 1.0.0, hashlib-sha512 1.0.0 (micropython-lib ee4bb8ff, .mpy 6)"
    )
    # only the pinned files, in the mip index layout (mpremote mip --index reads it; so does
    # mplib)
    files = sorted(p.name for p in (prepared / "file").rglob("*") if p.is_file())
    assert files == sorted(sha[:8] for _, _, sha in pk)
    assert mplib.read("mpy", index=prepared) == mplib.read("mpy")
    latest = json.loads((prepared / "package/6/aioble/latest.json").read_text())
    assert latest["version"] == "0.6.2"
    with pytest.raises(mipcache.CacheError, match="built for .mpy version 6, not 5"):
        mipcache.load(prepared, mpy=5)


def _index_copy(tmp_path):
    src = mplib.index_dir()
    dst = tmp_path / "index"
    shutil.copytree(src, dst)
    return dst


def test_mipcache_refuses_an_index_whose_file_differs_from_the_pin(tmp_path):
    idx = _index_copy(tmp_path)
    short = mplib.lock()["packages"]["hashlib-sha512"]["mpy"]["hashlib/_sha512.mpy"][:8]
    f = idx / "file" / short[:2] / short
    f.chmod(0o644)
    f.write_bytes(f.read_bytes() + b"\0")  # same name, other bytes: another build
    with pytest.raises(mipcache.CacheError) as e:
        mipcache.prepare(tmp_path / "c", idx)
    assert "hashlib-sha512 1.0.0: hashlib/_sha512.mpy" in str(e.value)
    assert "pinned a145e394" in str(e.value) and "refused" in str(e.value)
    assert not (tmp_path / "c").exists()  # nothing written


@pytest.mark.parametrize(
    "change, expect",
    [
        (lambda j: j["hashes"].pop(), "the index lists the files"),
        (lambda j: j.__setitem__("deps", [["aioble-core", "latest"]]), "outside the pin"),
        (lambda j: j.__setitem__("version", "0.7.0"), "says version 0.7.0"),
        (lambda j: j["hashes"][0].__setitem__(1, "00000000"), "pinned SHA-256"),
    ],
)
def test_mipcache_refuses_a_listing_that_differs_from_the_pin(tmp_path, change, expect):
    idx = _index_copy(tmp_path)
    listing = idx / "package/6/aioble/0.6.2.json"
    j = json.loads(listing.read_text())
    change(j)
    listing.chmod(0o644)
    listing.write_text(json.dumps(j))
    with pytest.raises(mipcache.CacheError, match=expect):
        mipcache.prepare(tmp_path / "c", idx)


def test_mipcache_online_asks_for_the_pinned_versions(tmp_path):
    # an online index (fetch stands in for HTTP), served from the offline copy
    idx = mplib.index_dir()
    asked = []

    def fetch(url):
        asked.append(url)
        return (idx / url.split("/pi/v2/", 1)[1]).read_bytes()

    mipcache.prepare(tmp_path / "c", "https://micropython.org/pi/v2", fetch=fetch)
    pkgs = sorted(u.split("/v2/")[1] for u in asked if "/package/" in u)
    assert pkgs == [
        "package/6/aioble/0.6.2.json",
        "package/6/cbor2/1.0.0.json",
        "package/6/hashlib-sha512/1.0.0.json",
    ]
    assert {p: b for p, b, _ in mipcache.load(tmp_path / "c")} == PINNED
    with pytest.raises(mipcache.CacheError, match="is not in the index"):
        mipcache.prepare(tmp_path / "d", "https://example.invalid/pi", fetch=lambda url: 1 / 0)


def test_mipcache_refuses_a_cache_of_the_old_latest_kind(tmp_path, prepared):
    old = tmp_path / "old"
    shutil.copytree(prepared, old)
    m = json.loads((old / "cache.json").read_text())
    del m["format"]
    (old / "cache.json").write_text(json.dumps(m))
    with pytest.raises(mipcache.CacheError, match="predates the pins"):
        mipcache.load(old)
    with pytest.raises(mipcache.CacheError, match="no package cache"):
        mipcache.load(tmp_path / "none")


def test_mipcache_command_line(tmp_path, capsys):
    assert mipcache.main(["prepare", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "aioble           0.6.2    9 files" in out
    assert "all 15 files match their pinned SHA-256 (micropython-lib ee4bb8ff, .mpy 6)" in out
    assert mipcache.main(["show", str(tmp_path / "c")]) == 0
    assert mipcache.main(["show", str(tmp_path / "nothing")]) == 2
    assert "no package cache" in capsys.readouterr().err
