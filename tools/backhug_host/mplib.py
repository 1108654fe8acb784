"""micropython-lib's packages at the versions the device runs, from a pinned local mip index.

`mplib.json` (next to this file) pins each package the firmware needs (aioble, cbor2,
hashlib-sha512): its version and the full SHA-256 of every file, as `.mpy` (for the device, mpy
format 6) and as `.py` (for host interpreters: CPython's simulator, the MicroPython unix port and
WebAssembly builds). The files themselves are never in this tree: they are read from a mip index
laid out as `mip` reads it (`package/<mpy|py>/<name>/<version>.json`, `file/<h[:2]>/<h>`), by
default the offline copy in `../shared/micropython/mip-index` (BACKHUG_MIP_INDEX overrides), and
every file is checked against the pin before it is used.

    tree("py")   -> build/mplib/py/   (aioble/..., cbor2/..., hashlib/...)
    tree("mpy")  -> build/mplib/mpy/

From the shell: `python -m backhug_host.mplib show` (the pins), `check` (every file of both kinds
read and hashed), `tree py|mpy` (materialise one kind, print its path: tests/mpy/run.mjs uses it).
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = Path(__file__).resolve().with_name("mplib.json")
SHARED = ROOT.parent / "shared" / "micropython"
BUILD = ROOT / "build" / "mplib"
KINDS = ("py", "mpy")


class LockError(Exception):
    """The pinned packages cannot be had: no index, a missing file or a hash that differs."""


def lock():
    with open(LOCK_FILE) as f:
        return json.load(f)


def index_dir():
    return Path(os.environ.get("BACKHUG_MIP_INDEX") or SHARED / "mip-index")


def versions():
    """{package name: pinned version}"""
    return {name: p["version"] for name, p in lock()["packages"].items()}


def pinned(kind):
    """[(package, version, path in the package, sha256 hex)] for kind "py" or "mpy"."""
    if kind not in KINDS:
        raise ValueError("kind is 'py' or 'mpy', not %r" % (kind,))
    out = []
    for name, p in lock()["packages"].items():
        for rel, digest in p[kind].items():
            out.append((name, p["version"], rel, digest))
    return out


def _index_kind(kind, data):
    return "py" if kind == "py" else str(data["mpy"])


def read(kind, index=None):
    """{path: bytes} of every pinned file of `kind`, each checked against its pin."""
    data = lock()
    index = Path(index) if index is not None else index_dir()
    if not (index / "package").is_dir():
        raise LockError(
            "no mip index at %s (../shared/micropython/mip-index, or set BACKHUG_MIP_INDEX)"
            % index
        )
    sub = _index_kind(kind, data)
    out = {}
    for name, version, rel, digest in pinned(kind):
        listing = index / "package" / sub / name / ("%s.json" % version)
        if not listing.is_file():
            raise LockError("%s %s (%s) is not in the index %s" % (name, version, sub, index))
        short = dict(json.loads(listing.read_text())["hashes"]).get(rel)
        if short is None or not digest.startswith(short):
            raise LockError(
                "%s %s: the index lists %s differently from the pin" % (name, version, rel)
            )
        blob = (index / "file" / short[:2] / short).read_bytes()
        if hashlib.sha256(blob).hexdigest() != digest:
            raise LockError("%s %s: %s does not match its pinned SHA-256" % (name, version, rel))
        out[rel] = blob
    return out


def tree(kind="py", dest=None):
    """A folder holding the pinned files of `kind` in their package layout (made once, checked
    again each call: a file changed by hand is replaced)."""
    dest = Path(dest) if dest is not None else BUILD / kind
    files = read(kind)
    stamp = dest / ".pinned"
    want = json.dumps(sorted((rel, hashlib.sha256(b).hexdigest()) for rel, b in files.items()))
    if stamp.is_file() and stamp.read_text() == want and all(
        (dest / rel).is_file() and (dest / rel).read_bytes() == b for rel, b in files.items()
    ):
        return dest
    tmp = dest.with_name(dest.name + ".tmp%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, blob in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    (tmp / ".pinned").write_text(want)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        tmp.replace(dest)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m backhug_host.mplib",
        description="The pinned micropython-lib packages (tools/backhug_host/mplib.json).",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("show", help="the pinned versions and commits")
    sub.add_parser("check", help="read every pinned file (.py and .mpy) and check its SHA-256")
    t = sub.add_parser("tree", help="materialise one kind under build/mplib/ and print the path")
    t.add_argument("kind", choices=KINDS)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "tree":
            print(tree(args.kind))
        elif args.cmd == "check":
            for kind in KINDS:
                n = len(read(kind))
                print("%-3s %2d files match their pins (%s)" % (kind, n, index_dir()))
        else:
            data = lock()
            print("micropython-lib %s (MicroPython %s), .mpy %d" % (
                data["micropython_lib"], data["micropython"], data["mpy"]))  # fmt: skip
            for name, p in data["packages"].items():
                print("%-16s %-8s %d files" % (name, p["version"], len(p["mpy"])))
    except LockError as exc:
        print("mplib: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
