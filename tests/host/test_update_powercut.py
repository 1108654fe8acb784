# Power-cut proof of the update (DESIGN section 8, docs/updates.md "Slots"): the power goes at
# every file-system step of a full update (upload in 244-byte chunks, verify and unpack, mark
# for test, trial boot, confirm) and of a failed one (the trial never confirms and the next boot
# reverts). After each cut the device boots a slot whose bundle verifies in full (signature and
# every file's hash, checked independently of the state file), and the same update, repeated
# without cuts, succeeds and runs the new version.
#
# The cut model (fsfaults.CutFs, torn=True): unflushed data is lost, a flush cut midway
# writes half its bytes, a rename is atomic. The numbers go to build/powercut.md.

import hashlib
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from fsfaults import CutFs, PowerCut
from test_slots import ABI, BOARD, CHUNK, PUBLIC_KEY, factory, make_bundle, new_slots

from firmware.update import boot, bundle
from firmware.update.slots import UpdateError

OLD, NEW = "1.0.0", "1.1.0"
REPORT = Path(__file__).resolve().parents[2] / "build" / "powercut.md"
_results = {}


def full_update(root, fs, data):
    s = new_slots(root, fs)
    s.upload_begin(len(data), hashlib.sha256(data).digest())
    off = s.upload_offset()
    while off < len(data):
        off = s.upload_write(off, data[off : off + CHUNK])
    s.upload_complete()
    s.mark_test(hashlib.sha256(data).digest())
    boot.select(root, fs)  # reset into the trial
    s = new_slots(root, fs)  # the new firmware starts, self-test passes, BLE is up
    s.confirm()
    boot.select(root, fs)  # and the next boot keeps it


def failed_update(root, fs, data):
    s = new_slots(root, fs)
    s.upload_begin(len(data), hashlib.sha256(data).digest())
    off = s.upload_offset()
    while off < len(data):
        off = s.upload_write(off, data[off : off + CHUNK])
    s.upload_complete()
    s.mark_test(hashlib.sha256(data).digest())
    boot.select(root, fs)  # the trial
    new_slots(root, fs)  # the new firmware starts but never confirms
    boot.select(root, fs)  # the watchdog resets it: revert


def verified_slot(root):
    # Boot (no cut) and check what it chose on its own merits: None if it is not a complete
    # bundle that verifies, else its version. Also the state must record that bundle's hash.
    d = boot.select(root)
    if d is None:
        return None
    bin_path = Path(d, "bundle.bin")
    try:
        m = bundle.verify(str(bin_path), PUBLIC_KEY, BOARD, ABI, 0, None)
    except (bundle.BundleError, OSError):
        return None
    for entry in m["files"]:
        p = Path(d, entry["path"])
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
            return None
    st = boot.load_state(root)
    name = d.rsplit("/", 1)[1]
    if st is None or st["hashes"].get(name) != hashlib.sha256(bin_path.read_bytes()).hexdigest():
        return None
    return m["version"]


def make_template(tmp_path, used):
    # A provisioned device running OLD in slot a; `used`: slot b still holds a verified
    # earlier bundle (as after an update that was reverted), so the update must first take
    # b's record away and clear its files.
    root, s = factory(tmp_path, OLD, counter=1, root=tmp_path / "template")
    if used:
        earlier = make_bundle("0.9.0", 1)
        s.upload_begin(len(earlier), hashlib.sha256(earlier).digest())
        s.upload_write(0, earlier)
        s.upload_complete()
    return root


def settle(root, confirm):
    # The firmware that booted starts: a running trial confirms itself (confirm) or fails and
    # the device resets, and then it must be back on OLD.
    s = new_slots(root)
    if s.state()["confirmed"]:
        return True
    if confirm:
        s.confirm()
        return True
    return verified_slot(root) == OLD


@pytest.fixture
def work_dir(tmp_path):
    # Hundreds of small directory trees are made and removed: on tmpfs where there is one
    # (a disk's metadata writes made the sweep I/O-bound), else under tmp_path.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="powercut-", dir="/dev/shm"))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def sweep(tmp_path, scenario, confirm_after_cut, used):
    template = make_template(tmp_path, used)
    data = make_bundle(NEW, 2)
    tried = booted = repeated = probed = 0
    seen = set()
    failures = []
    for k in itertools.count():
        root = str(tmp_path / ("k%d" % k))
        shutil.copytree(template, root)
        fs = CutFs(k, torn=True)
        try:
            scenario(root, fs, data)
        except PowerCut:
            pass
        else:
            shutil.rmtree(root)
            break  # k is past the last step: every cut point was tried
        tried += 1
        version = verified_slot(root)
        if version in (OLD, NEW):
            booted += 1
            seen.add(version)
        else:
            failures.append((k, "boot", fs.log[-1]))
            continue
        # The firmware that booted starts (a trial confirms in the full update, resets into
        # the revert in the failed one). Then a client that saw the upload finish before the
        # cut goes straight to testing it: refused, or the trial it starts is a verified bundle.
        if not settle(root, confirm_after_cut):
            failures.append((k, "revert", fs.log[-1]))
            continue
        try:
            new_slots(root).mark_test(hashlib.sha256(data).digest())
        except UpdateError:
            pass
        else:
            if verified_slot(root) != NEW or not settle(root, confirm_after_cut):
                failures.append((k, "test after the cut", fs.log[-1]))
                continue
            probed += 1
        try:
            full_update(root, None, data)
            ok = verified_slot(root) == NEW and new_slots(root).state()["confirmed"]
        except Exception as e:  # report every failing cut point, not just the first
            ok = False
            failures.append((k, "repeat: %r" % (e,), fs.log[-1]))
        if ok:
            repeated += 1
        elif not failures or failures[-1][0] != k:
            failures.append((k, "repeat", fs.log[-1]))
        shutil.rmtree(root)
    result = {"tried": tried, "booted": booted, "repeated": repeated, "seen": seen}
    result["tested after the cut"] = probed
    return result, failures


def _record(name, result):
    _results[name] = result
    lines = [
        "# Update power-cut sweep",
        "",
        "tests/host/test_update_powercut.py: the power goes at every file-system step (open for",
        "writing, write, flush, close, rename, remove, mkdir, rmdir; unflushed data lost, a cut",
        "flush writes half). After each cut the device boots; the chosen slot must hold a bundle",
        "whose signature and file hashes verify; then the update is repeated without cuts.",
        "",
        "A client that saw the upload finish before the cut may mark it for test at once: the",
        "last column counts the cuts after which that was accepted (it then had to trial-boot a",
        "verified bundle too); elsewhere it was refused.",
        "",
        "| sequence | cut points tried | booted a verified bundle | repeated update succeeded |"
        " test at once accepted |",
        "|---|---|---|---|---|",
    ]
    for n in sorted(_results):
        r = _results[n]
        lines.append(
            "| %s | %d | %d | %d | %d |"
            % (n, r["tried"], r["booted"], r["repeated"], r["tested after the cut"])
        )
    total = [sum(r[k] for r in _results.values()) for k in ("tried", "booted", "repeated")]
    lines.append("| **all** | %d | %d | %d | |" % tuple(total))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")


N_CHUNKS = -(-len(make_bundle(NEW, 2)) // CHUNK)
# upload chunks (open, write, close each) and four state saves (tmp: open, write, flush,
# close; rename): a lower bound on the cut points, so a sweep that stopped early fails
MIN_STEPS = 3 * N_CHUNKS + 4 * 5


@pytest.mark.parametrize("used", [False, True], ids=["slot-b-empty", "slot-b-used"])
def test_power_cut_at_every_step_of_a_full_update(work_dir, used):
    result, failures = sweep(work_dir, full_update, True, used)
    _record("full update, slot b %s" % ("used" if used else "empty"), result)
    print("full update:", result)
    assert failures == []
    assert result["booted"] == result["tried"] == result["repeated"]
    assert result["tried"] >= MIN_STEPS
    assert result["seen"] == {OLD, NEW}  # cuts before and after the switch were both hit


@pytest.mark.parametrize("used", [False, True], ids=["slot-b-empty", "slot-b-used"])
def test_power_cut_at_every_step_of_a_failed_trial_and_its_revert(work_dir, used):
    result, failures = sweep(work_dir, failed_update, False, used)
    _record("failed trial and revert, slot b %s" % ("used" if used else "empty"), result)
    print("failed update:", result)
    assert failures == []
    assert result["booted"] == result["tried"] == result["repeated"]
    assert result["tried"] >= MIN_STEPS
    assert result["seen"] == {OLD, NEW}
