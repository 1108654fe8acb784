# The two update slots and the boot selector (docs/updates.md "Slots"): upload into the
# inactive slot, verification before anything can point at it, trial boot, confirm, revert,
# anti-rollback, and the image list an MCUmgr client reads.

import ast
import hashlib
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backhug_host import bundler
from firmware.update import boot, bundle, slots
from firmware.update.slots import UpdateError

BOARD = "backhug_v3"
ABI = 0x0A06  # any int: the slot logic only compares it
CHUNK = 244  # an SMP upload chunk at a 247-byte ATT MTU
# the repository's development key, as the simulator trusts it
_KEY = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
PUBLIC_KEY = bundler.dev_public_key()
_OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else").digest())


def fake_files(version, kb=2):
    # A few small "firmware" files whose content depends on the version: the slot logic does
    # not care whether they are real .mpy files.
    filler = hashlib.sha256(version.encode()).digest() * (kb * 32)
    return [
        ("firmware/__init__.py", b""),
        ("firmware/version.py", b"VERSION = %r\n" % version),
        ("firmware/app.mpy", b"M\x06" + filler),
        ("firmware/update/blob.bin", filler[::-1][: 700 * kb]),
    ]


def make_bundle(version, counter=1, files=None, board=BOARD, abi=ABI, key=_KEY):
    # A signed format-1 bundle, built by the project's bundler.
    files = fake_files(version) if files is None else files
    return bundler.pack(bundler.make_manifest(files, version, board, abi, counter), files, key)


def new_slots(root, fs=None):
    return slots.Slots(str(root), BOARD, ABI, PUBLIC_KEY, fs=fs)


def upload(s, data, chunk=CHUNK, sha=None):
    s.upload_begin(len(data), hashlib.sha256(data).digest() if sha is None else sha)
    off = s.upload_offset()
    while off < len(data):
        off = s.upload_write(off, data[off : off + chunk])
    return s.upload_complete()


def factory(tmp_path, version="1.0.0", counter=1, root=None):
    # A provisioned device: `version` in slot a, active and confirmed. Returns (root, Slots).
    root = str(root or tmp_path / "slots")
    src = tmp_path / ("factory-%s.bin" % version)
    src.write_bytes(make_bundle(version, counter))
    s = new_slots(root)
    s.install_factory(str(src))
    return root, s


def sha(data):
    return hashlib.sha256(data).digest()


def slot_tree(root, name):
    # {relative path: bytes} of everything in a slot directory.
    base = Path(root) / name
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


def assert_runs(root, version):
    # The slot boot chose holds `version`, verifies in full, and its files are the bundle's.
    d = boot.select(root)
    assert d is not None
    m = bundle.verify(d + "/bundle.bin", PUBLIC_KEY, BOARD, ABI, 0, None)
    assert m["version"] == version
    for entry in m["files"]:
        data = Path(d, entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    return d


def flags(s):
    # images() as {version: (slot, active, confirmed, pending)}.
    return {
        i["version"]: (i["slot"], i["active"], i["confirmed"], i["pending"]) for i in s.images()
    }


# -- upload --


def test_upload_in_order_verifies_and_unpacks_into_the_inactive_slot(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    m = upload(s, data)
    assert m["version"] == "1.1.0"
    st = s.state()
    assert st["active"] == "a" and st["confirmed"] and st["pending"] is None
    assert st["hashes"]["b"] == hashlib.sha256(data).hexdigest()
    tree = slot_tree(root, "b")
    assert tree.pop("bundle.bin") == data
    assert tree == dict(fake_files("1.1.0"))
    assert not os.path.exists(os.path.join(root, slots.UPLOAD_PART))
    # not running yet: boot still picks a
    assert_runs(root, "1.0.0")
    assert flags(s) == {"1.0.0": (0, True, True, False), "1.1.0": (1, False, False, False)}


def test_a_gap_or_a_repeated_chunk_is_refused_with_the_expected_offset(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    s.upload_begin(len(data), sha(data))
    assert s.upload_write(0, data[:CHUNK]) == CHUNK
    assert s.upload_write(CHUNK, data[CHUNK : 2 * CHUNK]) == 2 * CHUNK
    for off in (3 * CHUNK, CHUNK):  # a gap, then a chunk already written
        with pytest.raises(UpdateError) as e:
            s.upload_write(off, data[off : off + CHUNK])
        assert e.value.args[0] == slots.EINVAL
        assert e.value.expected == 2 * CHUNK
        assert "expected %d" % (2 * CHUNK) in e.value.args[1]
    assert s.upload_offset() == 2 * CHUNK
    with pytest.raises(UpdateError) as e:  # more than announced
        s.upload_write(2 * CHUNK, data[2 * CHUNK :] + b"x")
    assert e.value.args[0] == slots.EINVAL
    off = 2 * CHUNK
    while off < len(data):
        off = s.upload_write(off, data[off : off + CHUNK])
    assert s.upload_complete()["version"] == "1.1.0"


def test_a_different_upload_starts_over_the_same_one_resumes(tmp_path):
    root, s = factory(tmp_path)
    old = make_bundle("1.1.0", 2)
    new = make_bundle("1.2.0", 2)
    s.upload_begin(len(old), sha(old))
    s.upload_write(0, old[:1000])
    s.upload_begin(len(old), sha(old))  # the same upload announced again: resume
    assert s.upload_offset() == 1000
    assert s.upload_write(0, old[:CHUNK]) == 1000  # offset 0 of a resumed upload: go on at 1000
    s.upload_begin(len(new), sha(new))  # another bundle: the old bytes are gone
    assert s.upload_offset() == 0
    assert upload(s, new)["version"] == "1.2.0"


def test_an_upload_resumes_after_a_reboot(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    s.upload_begin(len(data), sha(data))
    half = (len(data) // 2 // CHUNK) * CHUNK
    off = 0
    while off < half:
        off = s.upload_write(off, data[off : off + CHUNK])
    boot.select(root)  # reboot
    s2 = new_slots(root)
    assert s2.upload_offset() == half
    s2.upload_begin(len(data), sha(data))
    off = s2.upload_write(0, data[:CHUNK])
    assert off == half
    while off < len(data):
        off = s2.upload_write(off, data[off : off + CHUNK])
    assert s2.upload_complete()["version"] == "1.1.0"
    assert s2.state()["hashes"]["b"] == hashlib.sha256(data).hexdigest()


def test_writes_and_completion_need_an_upload(tmp_path):
    root, s = factory(tmp_path)
    for call in (lambda: s.upload_write(0, b"x"), s.upload_complete):
        with pytest.raises(UpdateError) as e:
            call()
        assert e.value.args[0] == slots.EBADSTATE
    data = make_bundle("1.1.0", 2)
    s.upload_begin(len(data), sha(data))
    s.upload_write(0, data[:100])
    with pytest.raises(UpdateError) as e:
        s.upload_complete()
    assert e.value.args[0] == slots.EBADSTATE and "100 of" in e.value.args[1]


def test_a_bundle_larger_than_a_slot_is_refused_before_any_byte(tmp_path):
    root, s = factory(tmp_path)
    with pytest.raises(UpdateError) as e:
        s.upload_begin(slots.SLOT_CAPACITY + 1, bytes(32))
    assert e.value.args[0] == slots.EMSGSIZE
    with pytest.raises(UpdateError) as e:
        s.upload_begin(100, b"short")
    assert e.value.args[0] == slots.EINVAL


def test_sha256_different_from_the_announced_one_is_refused(tmp_path):
    root, s = factory(tmp_path)
    before = s.state()
    data = make_bundle("1.1.0", 2)
    with pytest.raises(UpdateError) as e:
        upload(s, data, sha=sha(data + b"x"))
    assert e.value.args[0] == slots.ECORRUPT and "sha256" in e.value.args[1]
    assert s.state() == before
    assert s.upload_offset() == 0
    assert_runs(root, "1.0.0")


def _tampered(data):
    b = bytearray(data)
    b[-5] ^= 1  # a byte of the last file
    return bytes(b)


@pytest.mark.parametrize(
    "why, data",
    [
        ("signature", make_bundle("1.1.0", 2, key=_OTHER_KEY)),
        ("board", make_bundle("1.1.0", 2, board="backhug_v9")),
        ("abi", make_bundle("1.1.0", 2, abi=ABI + 1)),
        ("hash", _tampered(make_bundle("1.1.0", 2))),
        ("truncated", make_bundle("1.1.0", 2)[:-10]),
    ],
)
def test_a_rejected_bundle_leaves_both_slots_as_they_were(tmp_path, why, data):
    root, s = factory(tmp_path)
    good = make_bundle("1.0.5", 1)
    upload(s, good)  # slot b already holds a verified bundle
    before, tree_a, tree_b = s.state(), slot_tree(root, "a"), slot_tree(root, "b")
    with pytest.raises(UpdateError) as e:
        upload(s, data)
    assert e.value.args[0] == slots.ECORRUPT
    assert e.value.args[1].startswith(why + ":"), e.value.args[1]
    assert s.state() == before
    assert slot_tree(root, "a") == tree_a and slot_tree(root, "b") == tree_b
    assert s.upload_offset() == 0
    assert_runs(root, "1.0.0")
    s.mark_test(sha(good))  # the earlier verified bundle can still be tested
    assert_runs(root, "1.0.5")


# -- test, trial boot, confirm, revert --


def test_only_a_verified_inactive_bundle_can_be_marked_for_test(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    s.upload_begin(len(data), sha(data))
    s.upload_write(0, data[:CHUNK])
    with pytest.raises(UpdateError) as e:  # announced, not received
        s.mark_test(sha(data))
    assert e.value.args[0] == slots.ENOENT
    with pytest.raises(UpdateError) as e:  # the running one
        s.mark_test(s.images()[0]["hash"])
    assert e.value.args[0] == slots.EBADSTATE
    assert s.state()["pending"] is None
    upload(s, data)
    s.mark_test(sha(data))
    assert s.state()["pending"] == "b"


def test_a_slot_damaged_after_verification_cannot_be_marked(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    upload(s, data)
    p = Path(root, "b", "firmware", "app.mpy")
    p.write_bytes(b"N" + p.read_bytes()[1:])
    with pytest.raises(UpdateError) as e:
        s.mark_test(sha(data))
    assert e.value.args[0] == slots.ECORRUPT and "app.mpy" in e.value.args[1]
    assert "b" not in s.state()["hashes"]
    assert_runs(root, "1.0.0")


def test_trial_boot_then_confirm(tmp_path):
    root, s = factory(tmp_path, counter=1)
    data = make_bundle("1.1.0", 3)
    upload(s, data)
    s.mark_test(sha(data))
    assert flags(s) == {"1.0.0": (0, True, True, False), "1.1.0": (1, False, False, True)}
    assert_runs(root, "1.1.0")  # the trial boot
    s = new_slots(root)
    st = s.state()
    trial = (st["active"], st["confirmed"], st["previous"], st["pending"])
    assert trial == ("b", False, "a", None)
    assert st["counter"] == 1  # not raised before the trial passed
    # as MCUmgr shows a test swap awaiting confirmation: the old image is what a reset restores
    assert flags(s) == {"1.1.0": (0, True, False, False), "1.0.0": (1, False, True, False)}
    assert s.running()["version"] == "1.1.0"
    s.confirm()
    st = s.state()
    assert st["confirmed"] and st["counter"] == 3
    assert flags(s) == {"1.1.0": (0, True, True, False), "1.0.0": (1, False, False, False)}
    assert_runs(root, "1.1.0")
    assert_runs(root, "1.1.0")  # and stays


def test_confirm_over_smp_with_the_running_hash_only(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    upload(s, data)
    s.mark_test(sha(data))
    boot.select(root)
    s = new_slots(root)
    with pytest.raises(UpdateError) as e:
        s.confirm(bytes(32))
    assert e.value.args[0] == slots.ENOENT
    with pytest.raises(UpdateError) as e:
        s.confirm(s.images()[1]["hash"])  # the previous bundle
    assert e.value.args[0] == slots.ENOTSUP
    assert not s.state()["confirmed"]
    s.confirm(sha(data))
    assert s.state()["confirmed"]


def test_a_trial_that_does_not_confirm_reverts_at_the_next_boot(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    upload(s, data)
    s.mark_test(sha(data))
    assert_runs(root, "1.1.0")
    s = new_slots(root)
    # during the trial nothing may replace the slot it would go back to
    for call in (lambda: s.upload_begin(len(data), sha(data)), s.erase):
        with pytest.raises(UpdateError) as e:
            call()
        assert e.value.args[0] == slots.EBADSTATE
    # the self-test failed: no confirm, the device resets
    assert_runs(root, "1.0.0")
    s = new_slots(root)
    st = s.state()
    assert (st["active"], st["confirmed"], st["pending"]) == ("a", True, None)
    assert st["counter"] == 1
    assert flags(s) == {"1.0.0": (0, True, True, False), "1.1.0": (1, False, False, False)}
    assert_runs(root, "1.0.0")


def test_a_trial_that_crashes_reverts(tmp_path, monkeypatch):
    # The trial's firmware raises on import (as a broken bundle would); the watchdog or the
    # user resets the device; the next boot runs the previous bundle again.
    root, s = factory(tmp_path)
    files = fake_files("1.1.0") + [("bhcrash_probe.py", b"raise RuntimeError('broken')\n")]
    data = make_bundle("1.1.0", 2, files=files)
    upload(s, data)
    s.mark_test(sha(data))
    monkeypatch.setattr(sys, "path", list(sys.path))
    d = boot.main(root)
    assert sys.path[0] == d == root + "/b"
    with pytest.raises(RuntimeError):
        __import__("bhcrash_probe")
    sys.modules.pop("bhcrash_probe", None)
    assert boot.main(root) == root + "/a"
    assert new_slots(root).state()["confirmed"]


def test_counter_raised_by_a_confirmed_bundle_refuses_older_ones(tmp_path):
    root, s = factory(tmp_path, counter=1)
    v2 = make_bundle("2.0.0", 5)
    upload(s, v2)
    s.mark_test(sha(v2))
    boot.select(root)
    s = new_slots(root)
    s.confirm()
    assert s.state()["counter"] == 5
    with pytest.raises(UpdateError) as e:
        upload(s, make_bundle("1.9.0", 4))
    assert e.value.args[0] == slots.ECORRUPT and e.value.args[1].startswith("counter:")
    assert s.state()["hashes"]["a"]  # the refused upload did not touch slot a
    v3 = make_bundle("2.0.1", 5)
    upload(s, v3)  # the same counter is fine
    assert s.state()["hashes"]["a"] == hashlib.sha256(v3).hexdigest()


def test_old_bundle_still_in_the_other_slot_cannot_be_tested_after_a_raise(tmp_path):
    root, s = factory(tmp_path, counter=1)
    v2 = make_bundle("2.0.0", 5)
    upload(s, v2)
    s.mark_test(sha(v2))
    boot.select(root)
    s = new_slots(root)
    s.confirm()
    old = [i for i in s.images() if i["version"] == "1.0.0"][0]
    with pytest.raises(UpdateError) as e:
        s.mark_test(old["hash"])
    assert e.value.args[0] == slots.EACCESSDENIED
    assert_runs(root, "2.0.0")


def test_a_reverted_trial_does_not_raise_the_counter(tmp_path):
    root, s = factory(tmp_path, counter=1)
    v2 = make_bundle("2.0.0", 5)
    upload(s, v2)
    s.mark_test(sha(v2))
    boot.select(root)
    boot.select(root)  # reverted
    s = new_slots(root)
    assert s.state()["counter"] == 1
    assert upload(s, make_bundle("1.0.1", 1))["version"] == "1.0.1"


def test_erase_clears_the_inactive_slot_unless_it_is_pending(tmp_path):
    root, s = factory(tmp_path)
    data = make_bundle("1.1.0", 2)
    upload(s, data)
    s.mark_test(sha(data))
    with pytest.raises(UpdateError) as e:
        s.erase()
    assert e.value.args[0] == slots.EBADSTATE
    boot.select(root)
    boot.select(root)  # back on a; b verified, not pending
    s = new_slots(root)
    s.erase()
    assert "b" not in s.state()["hashes"]
    assert slot_tree(root, "b") == {}
    assert [i["version"] for i in s.images()] == ["1.0.0"]


# -- boot when things are not as they should be --


def test_boot_imports_nothing_but_os_sys_json():
    tree = ast.parse(Path(boot.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    assert names == {"os", "sys", "json"}


def test_nothing_installed_boots_nothing(tmp_path):
    assert boot.select(str(tmp_path / "slots")) is None
    s = new_slots(tmp_path / "slots")
    assert s.images() == [] and s.running() is None


def test_a_corrupt_state_falls_back_to_a_complete_slot_and_is_rebuilt(tmp_path):
    root, s = factory(tmp_path, counter=4)
    data = make_bundle("1.1.0", 4)
    upload(s, data)
    s.mark_test(sha(data))
    boot.select(root)
    new_slots(root).confirm()  # 1.1.0 in b, active
    Path(root, "state").write_bytes(b'{"active": "b", "confi')
    shutil_rm(Path(root, "a"))  # and slot a is gone
    assert_runs(root, "1.1.0")
    s = new_slots(root)  # the firmware re-verifies what runs and writes a new state
    st = s.state()
    assert (st["active"], st["confirmed"], st["counter"]) == ("b", True, 4)
    assert list(st["hashes"]) == ["b"]
    assert_runs(root, "1.1.0")


def shutil_rm(path):
    import shutil

    shutil.rmtree(path)


def test_a_garbage_slot_is_never_chosen_without_a_state(tmp_path):
    root, s = factory(tmp_path)
    Path(root, "state").unlink()
    Path(root, "b").mkdir(exist_ok=True)
    Path(root, "b", "bundle.bin").write_bytes(os.urandom(500))
    assert boot.select(root) == root + "/a"
    # a slot whose bundle.bin says files are there that are not
    partial = make_bundle("1.1.0", 2, files=fake_files("1.1.0") + [("firmware/extra.py", b"x")])
    Path(root, "a", "bundle.bin").write_bytes(partial)
    Path(root, "b", "bundle.bin").write_bytes(partial)
    assert boot.select(root) is None


def test_a_damaged_active_slot_gives_way_to_the_verified_other_one(tmp_path):
    root, s = factory(tmp_path)
    upload(s, make_bundle("1.1.0", 2))
    Path(root, "a", "firmware", "app.mpy").write_bytes(b"")  # lost its content
    assert_runs(root, "1.1.0")
    st = new_slots(root).state()
    assert (st["active"], st["confirmed"]) == ("b", True)
