# Update bundles end to end on the host: backhug-bundle builds a real bundle from this repository
# (mpy-cross for the ESP32-S3, the development key), the device's bundle.verify() accepts it and
# unpack() reproduces its files; and the bad-bundle table: every damaged, forged, misdirected or
# lying bundle is refused with its BundleError code, without writing anything. The table is
# also written to build/bad-bundles.md.

import copy
import hashlib
import io
import json
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backhug_host import bundler
from firmware.storage import OsFs
from firmware.update import bundle

BOARD = "backhug_v3"
ABI = 11014  # sys.implementation._mpy on the ESP32-S3 at .mpy v6.3 (bundler.py has the formula)
COUNTER = 3
TABLE = bundler.REPO / "build" / "bad-bundles.md"


class ReadOnlyFs(OsFs):
    # OsFs that records every call that would change the flash: verify() must make none.
    def __init__(self):
        self.writes = []

    def open(self, path, mode):
        if mode not in ("r", "rb"):
            self.writes.append(("open", path, mode))
        return super().open(path, mode)

    def rename(self, old, new):
        self.writes.append(("rename", old, new))
        super().rename(old, new)

    def remove(self, path):
        self.writes.append(("remove", path))
        super().remove(path)

    def mkdir(self, path):
        self.writes.append(("mkdir", path))
        super().mkdir(path)


class MemFs:
    # Bundles in RAM for the table's thousands of variants (no disk I/O); read-only like
    # ReadOnlyFs: any call that would write is recorded.
    def __init__(self):
        self.files = {}
        self.writes = []

    def size(self, path):
        return len(self.files[path])

    def open(self, path, mode):
        if mode != "rb":
            self.writes.append(("open", path, mode))
            raise OSError(30, "read-only")
        return io.BytesIO(self.files[path])

    def rename(self, old, new):
        self.writes.append(("rename", old, new))

    def remove(self, path):
        self.writes.append(("remove", path))

    def mkdir(self, path):
        self.writes.append(("mkdir", path))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real bundle for backhug_v3 (compiled once per module), and its parts."""
    tmp = tmp_path_factory.mktemp("bundle")
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    path, manifest = bundler.build(BOARD, key, counter=COUNTER, out=tmp / "good.bhb")
    blob = path.read_bytes()
    return {"dir": tmp, "path": path, "blob": blob, "manifest": manifest, "key": key}


def split(blob):
    # (manifest length, manifest dict, [(path, bytes)]) of a well-formed bundle
    m = struct.unpack_from("<I", blob, 4)[0]
    manifest = json.loads(blob[8 : 8 + m])
    files, off = [], 72 + m
    for f in manifest["files"]:
        files.append((f["path"], blob[off : off + f["size"]]))
        off += f["size"]
    return m, manifest, files


def resign(manifest, payload, key):
    return bundler.assemble(bundler.encode_manifest(manifest), payload, key)


def verify(path, **kw):
    args = dict(
        public_key=bundler.dev_public_key(),
        board_id=BOARD,
        abi=ABI,
        min_counter=COUNTER,
        capacity=None,
        fs=None,
    )
    args.update(kw)
    return bundle.verify(str(path), **args)


# --- the good bundle ----------------------------------------------------------------------------


def test_built_bundle_is_what_the_contract_says(built):
    man = built["manifest"]
    assert list(man) == ["format", "version", "board", "abi", "counter", "files"]
    assert man["format"] == 1 and man["board"] == BOARD and man["counter"] == COUNTER
    assert man["version"] == bundler.firmware_version() == verify(built["path"])["version"]
    assert man["abi"] == ABI
    paths = [f["path"] for f in man["files"]]
    assert paths == sorted(paths)
    assert all(p.endswith(".mpy") for p in paths)
    # main.py and slots.py import the boot module: the slot carries its own copy (found on the
    # virtual device, where a bundle without it booted into an ImportError)
    assert "firmware/update/boot.mpy" in paths
    assert "firmware/main.mpy" in paths and "firmware/update/bundle.mpy" in paths
    board_files = [p for p in paths if p.startswith("boards/")]
    assert board_files == [
        "boards/__init__.mpy",
        "boards/backhug_v3/__init__.mpy",
        "boards/backhug_v3/board.mpy",
    ]
    # every firmware source is in it, compiled
    sources = {
        p.relative_to(bundler.REPO).with_suffix(".mpy").as_posix()
        for p in (bundler.REPO / "firmware").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert set(paths) - set(board_files) == sources


def test_every_file_is_bytecode_for_this_abi(built):
    _, _, files = split(built["blob"])
    for path, data in files:
        # 'M', .mpy version 6; the feature byte is 0 (bytecode only) or the full ABI's
        assert data[:2] == b"M\x06", path
        assert data[2] in (0, ABI >> 8), path


def test_abi_formula():
    # version 6 | (sub-version 3 | MP_NATIVE_ARCH_XTENSAWIN 10 << 2) << 8
    assert bundler.abi_of_header(b"M\x06\x2b\x1f") == 6 | (3 | 10 << 2) << 8 == ABI
    assert bundler.target_abi() == ABI


def test_good_bundle_verifies_and_unpacks(built, tmp_path):
    fs = ReadOnlyFs()
    man = verify(built["path"], fs=fs, capacity=2 * len(built["blob"]))
    assert fs.writes == []
    assert man == built["manifest"]
    bundle.unpack(str(built["path"]), man, str(tmp_path / "slot"))
    _, _, files = split(built["blob"])
    written = sorted(
        p.relative_to(tmp_path / "slot").as_posix()
        for p in (tmp_path / "slot").rglob("*")
        if p.is_file()
    )
    assert written == [p for p, _ in files]
    for path, data in files:
        assert (tmp_path / "slot" / path).read_bytes() == data


def test_counter_equal_to_the_devices_is_accepted(built):
    assert verify(built["path"], min_counter=COUNTER)["counter"] == COUNTER
    assert verify(built["path"], min_counter=0)["counter"] == COUNTER


def test_unpack_checks_hashes_again(built, tmp_path):
    # The bundle file changes between verify() and unpack(): the damaged file is not kept.
    man = verify(built["path"])
    m, _, files = split(built["blob"])
    damaged = bytearray(built["blob"])
    offset = 72 + m + len(files[0][1]) + 3  # inside the second file
    damaged[offset] ^= 0xFF
    path = tmp_path / "changed.bhb"
    path.write_bytes(damaged)
    with pytest.raises(bundle.BundleError) as err:
        bundle.unpack(str(path), man, str(tmp_path / "slot"))
    assert err.value.code == "hash" and files[1][0] in err.value.message
    assert (tmp_path / "slot" / files[0][0]).is_file()
    assert not (tmp_path / "slot" / files[1][0]).exists()


def test_unpack_never_writes_outside_the_slot(built, tmp_path):
    man = copy.deepcopy(built["manifest"])
    man["files"][0]["path"] = "../escaped.mpy"
    with pytest.raises(bundle.BundleError) as err:
        bundle.unpack(str(built["path"]), man, str(tmp_path / "slot"))
    assert err.value.code == "path"
    assert not (tmp_path / "escaped.mpy").exists() and not (tmp_path / "slot").exists()


def test_read_manifest_and_inspect(built, capsys):
    assert bundle.read_manifest(str(built["path"])) == built["manifest"]
    assert bundler.main(["inspect", str(built["path"])]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "backhug_v3" in out and "NOT VALID" not in out
    other = Ed25519PrivateKey.generate()
    other_hex = bundler.public_bytes(other).hex()
    assert bundler.main(["inspect", str(built["path"]), "--public-key", other_hex]) == 1
    assert "NOT VALID: signature" in capsys.readouterr().out


# --- the bad-bundle table -----------------------------------------------------------------------


def _cases(built):
    """(case, what was done, bundle bytes, verify() overrides, expected code) for every row."""
    blob, key = built["blob"], built["key"]
    m, man, files = split(blob)
    payload = b"".join(d for _, d in files)
    total = len(blob)
    need = len(payload)
    other_key = Ed25519PrivateKey.generate()
    rows = []

    def add(case, what, data, code, **kw):
        rows.append((case, what, data, kw, code))

    def lie(case, what, code, change, data=payload, **kw):
        bad = copy.deepcopy(man)
        change(bad)
        add(case, what + " (re-signed with the trusted key)", resign(bad, data, key), code, **kw)

    # truncated
    for cut, where in [
        (0, "empty file"),
        (3, "inside the magic"),
        (6, "inside the manifest length"),
        (8 + m // 2, "inside the manifest"),
        (8 + m + 10, "inside the signature"),
        (72 + m, "right after the signature: no files"),
        (72 + m + len(files[0][1]) // 2, "inside the first file"),
        (72 + m + need // 2, "in the middle of the files"),
        (total - 1, "last byte missing"),
    ]:
        add("truncated", "cut at byte %d (%s)" % (cut, where), blob[:cut], "truncated")

    # a flipped byte (XOR 0x01) in every region; the sweep below covers the rest
    add("flipped byte", "magic byte 0", _flip(blob, 0), "magic")
    add("flipped byte", "manifest length byte 4 (M+1 or M-1)", _flip(blob, 4), "signature")
    add("flipped byte", "manifest length byte 6 (M > 16384)", _flip(blob, 6), "manifest")
    for off, where in [(8, "first"), (8 + m // 2, "middle"), (8 + m - 1, "last")]:
        add("flipped byte", "%s manifest byte (%d)" % (where, off), _flip(blob, off), "signature")
    for off, where in [(8 + m, "R, first"), (8 + m + 31, "R, last"), (8 + m + 32, "S, first"),
                       (8 + m + 63, "S, last")]:  # fmt: skip
        add("flipped byte", "signature byte %d (%s)" % (off, where), _flip(blob, off), "signature")
    off = 72 + m
    for path, data in files:
        for at in sorted({0, len(data) // 2, len(data) - 1}):
            add("flipped byte", "%s byte %d" % (path, at), _flip(blob, off + at), "hash")
        off += len(data)

    # unsigned, forged
    add("unsigned", "all-zero signature", blob[: 8 + m] + bytes(64) + blob[72 + m :], "signature")
    add(
        "another key",
        "signed with a freshly generated key",
        resign(man, payload, other_key),
        "signature",
    )
    add(
        "another key",
        "good bundle, device holds another update key",
        blob,
        "signature",
        public_key=bundler.public_bytes(other_key),
    )
    add(
        "magic",
        "magic BHB2",
        b"BHB2" + blob[4:],
        "magic",
    )
    add("magic", "a ZIP file", b"PK\x03\x04" + bytes(200), "magic")

    # for another device
    lie("another board", "board devkit", "board", lambda b: b.update(board="devkit"))
    lie("another ABI", "abi 774 (the WebAssembly build)", "abi", lambda b: b.update(abi=774))
    lie("another ABI", "abi 10502 (.mpy v6.1)", "abi", lambda b: b.update(abi=10502))
    lie("old counter", "counter 2, device at 3", "counter", lambda b: b.update(counter=2))
    add(
        "old counter",
        "counter 3, device at 4 (a rollback to a confirmed-then-replaced bundle)",
        blob,
        "counter",
        min_counter=COUNTER + 1,
    )

    # manifests that lie about sizes
    def size(i, delta):
        def change(b):
            b["files"][i]["size"] += delta

        return change

    def sizes(b):
        b["files"][0]["size"] += 1
        b["files"][1]["size"] -= 1

    lie("size lie", "first file's size 1 smaller", "size", size(0, -1))
    lie("size lie", "last file's size 1 larger: the bundle looks cut short", "truncated",
        size(-1, 1))  # fmt: skip
    lie("size lie", "first +1, second -1: the total adds up", "hash", sizes)
    lie("size lie", "every size 0, the files still there", "size",
        lambda b: [f.update(size=0) for f in b["files"]])  # fmt: skip
    add("size lie", "16 bytes appended after the last file", blob + bytes(16), "size")

    # paths
    for bad_path in ["../x.mpy", "/abs.mpy", "a//b.mpy", ".", "..", "firmware/../../x.mpy",
                     "a/./b.mpy", "", "a/", "x" * 97, "bad name.mpy", "caf\u00e9.mpy",
                     "a\\b.mpy", "bundle.bin"]:  # fmt: skip
        lie("path", "files[0].path = %r" % bad_path, "path",
            lambda b, p=bad_path: b["files"][0].update(path=p))  # fmt: skip
    lie(
        "path",
        "duplicate path",
        "path",
        lambda b: b["files"][1].update(path=b["files"][0]["path"]),
    )

    def file_and_dir(b):
        b["files"][0]["path"] = "firmware"  # and firmware/... files follow

    lie("path", "'firmware' both a file and a directory", "path", file_and_dir)

    # capacity
    add(
        "capacity",
        "slot holds 1 byte less than bundle + files (%d)" % (total + need - 1),
        blob,
        "capacity",
        capacity=total + need - 1,
    )
    add("capacity", "slot of 64 KB", blob, "capacity", capacity=65536)

    # the manifest itself
    def raw(case, what, manifest_bytes, code):
        add(case, what + " (signed)", bundler.assemble(manifest_bytes, payload, key), code)

    raw("manifest", "not JSON", b"{not json", "manifest")
    raw("manifest", "a JSON list", b"[1,2,3]", "manifest")
    raw("manifest", "invalid UTF-8", b'{"format":1,"version":"\xff"}', "manifest")
    add("manifest", "manifest length 0", b"BHB1" + bytes(4) + bytes(64), "manifest")
    big = b"BHB1" + struct.pack("<I", 16385) + bytes(16385 + 64)
    add("manifest", "manifest length 16385", big, "manifest")
    lie("manifest", "unknown key 'extra'", "manifest", lambda b: b.update(extra=1))
    lie("manifest", "no 'counter'", "manifest", lambda b: b.pop("counter"))
    lie("manifest", "counter true (a bool)", "manifest", lambda b: b.update(counter=True))
    lie("manifest", "counter 2**31", "manifest", lambda b: b.update(counter=2**31))
    lie("manifest", "counter -1", "manifest", lambda b: b.update(counter=-1))
    lie("manifest", "version '1.2'", "manifest", lambda b: b.update(version="1.2"))
    lie("manifest", "version '1.2.3-rc1'", "manifest", lambda b: b.update(version="1.2.3-rc1"))
    lie("manifest", "abi '11014' (a string)", "manifest", lambda b: b.update(abi=str(ABI)))
    lie("manifest", "files not a list", "manifest", lambda b: b.update(files={}))
    lie("manifest", "SHA-256 in upper case", "manifest",
        lambda b: b["files"][0].update(sha256=b["files"][0]["sha256"].upper()))  # fmt: skip
    lie("manifest", "a file entry with an extra key", "manifest",
        lambda b: b["files"][0].update(mode=0o644))  # fmt: skip
    lie("manifest", "negative size", "manifest", lambda b: b["files"][0].update(size=-1))
    lie("format", "format 2", "format", lambda b: b.update(format=2))
    return rows


def _flip(blob, offset):
    b = bytearray(blob)
    b[offset] ^= 0x01
    return bytes(b)


def _sweep_regions(blob):
    m, man, files = split(blob)
    regions = [("header", 0, 8, None), ("manifest", 8, 8 + m, "signature"),
               ("signature", 8 + m, 72 + m, "signature")]  # fmt: skip
    off = 72 + m
    for path, data in files:
        regions.append((path, off, off + len(data), "hash"))
        off += len(data)
    return regions


def test_bad_bundle_table(built):
    rows = _cases(built)
    results, failures = [], []
    fs = MemFs()
    path = "/slots/upload.part"
    for case, what, data, kw, code in rows:
        fs.files[path] = data
        try:
            verify(path, fs=fs, **kw)
            got, message = "ACCEPTED", ""
        except bundle.BundleError as exc:
            got, message = exc.code, exc.message
            assert str(exc) == "%s: %s" % (exc.code, exc.message) and exc.message
        results.append((case, what, code, got, message))
        if got != code:
            failures.append("%s / %s: expected %s, got %s %s" % (case, what, code, got, message))

    # A flipped byte at every header and signature byte and every 97th byte elsewhere.
    blob = built["blob"]
    region_of = _sweep_regions(blob)
    sweep = {r[0]: [0, set(), r[3]] for r in region_of}
    data = bytearray(blob)
    m = region_of[1][2] - 8
    offsets = set(range(0, 8)) | set(range(8 + m, 72 + m)) | set(range(0, len(blob), 97))
    for offset in sorted(offsets):
        name, _, _, expected = next(r for r in region_of if r[1] <= offset < r[2])
        data[offset] ^= 0x01
        fs.files[path] = bytes(data)
        data[offset] ^= 0x01
        try:
            verify(path, fs=fs)
            got = "ACCEPTED"
        except bundle.BundleError as exc:
            got = exc.code
        sweep[name][0] += 1
        sweep[name][1].add(got)
        if got == "ACCEPTED" or (expected is not None and got != expected):
            failures.append("flip at %d (%s): expected %s, got %s" % (offset, name, expected, got))

    assert fs.writes == [], "verify() changed the flash: %r" % fs.writes[:5]
    _write_table(results, sweep, len(blob))
    assert not failures, "\n".join(failures)
    assert len(results) >= 60


def _write_table(results, sweep, size):
    lines = [
        "# Bad bundles: every one refused",
        "",
        "Generated by `tests/host/test_bundle.py::test_bad_bundle_table` from a real %d-byte "
        "backhug_v3 bundle (mpy-cross, development key). Each row is one `bundle.verify()` on "
        "the device's code; none wrote to the file system, so the running slot is untouched."
        % size,
        "",
        "| case | what was done | expected | got | message |",
        "|---|---|---|---|---|",
    ]
    for case, what, code, got, message in results:
        mark = got if got == code else "**%s**" % got
        lines.append(
            "| %s | %s | %s | %s | %s |" % (case, _cell(what), code, mark, _cell(message))
        )
    lines += [
        "",
        "Flipped byte (XOR 0x01) at every header and signature byte and every 97th byte:",
        "",
        "| region | offsets | codes |",
        "|---|---|---|",
    ]
    files_flips, files_codes = 0, set()
    for name, (count, codes, _) in sweep.items():
        if name in ("header", "manifest", "signature"):
            lines.append("| %s | %d | %s |" % (name, count, ", ".join(sorted(codes))))
        else:
            files_flips += count
            files_codes |= codes
    lines.append(
        "| the %d files | %d | %s |"
        % (len(sweep) - 3, files_flips, ", ".join(sorted(files_codes)))
    )
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(lines) + "\n")


def _cell(text):
    text = str(text).replace("|", "\\|")
    return text if len(text) <= 90 else text[:87] + "..."


# --- keys and the command line ------------------------------------------------------------------


def test_dev_key_files_match():
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    assert bundler.public_bytes(key) == bundler.dev_public_key()
    assert "DEVELOPMENT ONLY" in (bundler.KEYS_DIR / "README.md").read_text()


def test_keygen_writes_a_usable_pair_and_never_overwrites(tmp_path):
    private_path, public_path = bundler.keygen(tmp_path / "k")
    assert os.stat(private_path).st_mode & 0o777 == 0o600
    key = bundler.load_private_key(str(private_path))
    assert bundler.public_bytes(key).hex() == public_path.read_text().strip()
    with pytest.raises(bundler.BuildError, match="refusing to overwrite"):
        bundler.keygen(tmp_path / "k")
    assert bundler.load_private_key(str(private_path)).private_bytes_raw() == (
        key.private_bytes_raw()
    )


@pytest.fixture
def fake_build(monkeypatch):
    """bundler.build replaced by a recorder: the key choice is tested without compiling."""
    calls = []

    def build(board, key, counter=1, out=None, **kw):
        calls.append(bundler.public_bytes(key))
        return Path(__file__), {"board": board, "version": "0.0.0", "abi": ABI,
                                "counter": counter, "files": []}  # fmt: skip

    monkeypatch.setattr(bundler, "build", build)
    monkeypatch.delenv(bundler.KEY_ENV, raising=False)
    return calls


def _run(argv, capsys):
    rc = bundler.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_build_needs_a_key(fake_build, capsys):
    rc, _, err = _run(["build", "--board", BOARD], capsys)
    assert rc == 2 and "no signing key" in err and fake_build == []


def test_dev_key_warns(fake_build, capsys):
    rc, _, err = _run(["build", "--board", BOARD, "--dev"], capsys)
    assert rc == 0 and "DEVELOPMENT key" in err
    assert fake_build == [bundler.dev_public_key()]
    # the dev key given as a file is still the dev key
    rc, _, err = _run(["build", "--board", BOARD, "--key", str(bundler.DEV_PRIVATE_KEY)], capsys)
    assert rc == 0 and "DEVELOPMENT key" in err


def test_production_key_from_file_or_environment(fake_build, capsys, tmp_path, monkeypatch):
    private_path, public_path = bundler.keygen(tmp_path)
    public = bytes.fromhex(public_path.read_text())
    rc, _, err = _run(["build", "--board", BOARD, "--key", str(private_path)], capsys)
    assert rc == 0 and "WARNING" not in err
    monkeypatch.setenv(bundler.KEY_ENV, str(private_path))
    assert _run(["build", "--board", BOARD], capsys)[0] == 0
    monkeypatch.setenv(bundler.KEY_ENV, private_path.read_text())  # the PEM text itself
    assert _run(["build", "--board", BOARD], capsys)[0] == 0
    assert fake_build == [public, public, public]


def test_bad_keys_are_reported(fake_build, capsys, tmp_path):
    rc, _, err = _run(["build", "--board", BOARD, "--key", str(tmp_path / "none.pem")], capsys)
    assert rc == 2 and "no such file" in err
    (tmp_path / "bad.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n"
    )
    rc, _, err = _run(["build", "--board", BOARD, "--key", str(tmp_path / "bad.pem")], capsys)
    assert rc == 2 and "signing key" in err
    rc, _, err = _run(["build", "--board", BOARD, "--dev", "--key", "x"], capsys)
    assert rc == 2 and "not both" in err


def test_unknown_board_is_refused():
    with pytest.raises(bundler.BuildError, match="unknown board"):
        bundler.sources("nonexistent")


def test_sources_hash_matches_compiled(built):
    # the manifest's hashes are of the .mpy bytes in the bundle
    _, man, files = split(built["blob"])
    for entry, (path, data) in zip(man["files"], files, strict=True):
        assert entry["path"] == path and entry["sha256"] == hashlib.sha256(data).hexdigest()
