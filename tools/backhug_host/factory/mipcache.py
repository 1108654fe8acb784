"""The micropython-lib packages the device needs, at their pinned versions, for a line without
internet.

What the device installs is fixed by tools/backhug_host/mplib.json: aioble, cbor2 and
hashlib-sha512 at one version each, with the full SHA-256 of every .mpy file. The cache is those
files and nothing else, in the layout of MicroPython's package index (the one `mip` and
`mpremote mip` read):

    <cache>/package/<mpy>/<name>/<version>.json   {"hashes": [[path, short sha256]], "version"}
    <cache>/package/<mpy>/<name>/latest.json      the same (the cache holds one version)
    <cache>/file/<h[:2]>/<h>                       each file, named by its short SHA-256
    <cache>/cache.json                             what it holds: versions, full hashes, source

so `mpremote mip install --index <cache> aioble` installs exactly the pinned files too. It is
prepared from a mip index: by default the offline copy in ../shared/micropython/mip-index (built
from the pinned micropython-lib commit), or an online one at the same versions:

    python -m backhug_host.factory.mipcache prepare build/mipcache
    python -m backhug_host.factory.mipcache prepare build/mipcache --index https://micropython.org/pi/v2
    python -m backhug_host.factory.mipcache show build/mipcache

Every file is checked against its pinned SHA-256 when the cache is prepared and again when it is
loaded; a file that differs (another build of the same version, a damaged download, a cache
prepared for other pins) is refused with the file's name and both hashes. Provisioning
(provision.py) installs the files into /lib from the cache, never from the network.
"""

import argparse
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

from backhug_host import mplib

ONLINE_INDEX = "https://micropython.org/pi/v2"
LIB = "/lib"
MANIFEST = "cache.json"
FORMAT = 2  # cache.json with pinned versions and full hashes (format 1 fetched "latest")


class CacheError(Exception):
    pass


class Packages(list):
    """The files to install, [(device path, bytes, sha256 hex)], and what they are: versions
    {package: version}, micropython_lib (commit), mpy (.mpy version)."""

    def __init__(self, files, versions, micropython_lib, mpy):
        super().__init__(files)
        self.versions = dict(versions)
        self.micropython_lib = micropython_lib
        self.mpy = mpy

    def describe(self):
        return "%s (micropython-lib %s, .mpy %d)" % (
            ", ".join("%s %s" % nv for nv in self.versions.items()),
            self.micropython_lib[:8],
            self.mpy,
        )


def _http_get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _file_rel(short_hash):
    return "file/%s/%s" % (short_hash[:2], short_hash)


def _package_rel(mpy, name, version):
    return "package/%s/%s/%s.json" % (mpy, name, version)


def _reader(index, fetch):
    # rel path -> bytes, from a local index folder or a URL
    index = str(index)
    if fetch is not None or "://" in index:
        get = fetch or _http_get
        return lambda rel: get("%s/%s" % (index.rstrip("/"), rel))
    root = Path(index)
    if not (root / "package").is_dir():
        raise CacheError(
            "no mip index at %s (../shared/micropython/mip-index, BACKHUG_MIP_INDEX, or --index "
            "URL when online)" % root
        )
    return lambda rel: (root / rel).read_bytes()


def _pins(mpy=None):
    data = mplib.lock()
    if mpy is not None and mpy != data["mpy"]:
        raise CacheError(
            "the pinned packages are built for .mpy version %d, not %d (mplib.json)"
            % (data["mpy"], mpy)
        )
    return data


def prepare(dest, index=None, fetch=None):
    """Fill the cache `dest` with the pinned packages from `index` (a local mip index folder,
    default mplib.index_dir(), or a URL; fetch(url) -> bytes overrides the HTTP GET). Every file
    is checked against its pin before anything is written. Returns the cache manifest."""
    data = _pins()
    mpy = data["mpy"]
    index = index if index is not None else mplib.index_dir()
    get = _reader(index, fetch)
    listings = {}
    blobs = {}
    packages = {}
    for name, pin in data["packages"].items():
        version = pin["version"]
        rel = _package_rel(mpy, name, version)
        try:
            raw = get(rel)
        except Exception as exc:  # noqa: BLE001 - OSError, HTTPError, a test's KeyError
            raise CacheError(
                "%s %s is not in the index %s (%s: %s)" % (name, version, index, rel, exc)
            ) from exc
        try:
            pkg = json.loads(raw)
        except ValueError as exc:
            raise CacheError("%s %s: the index's %s is not JSON" % (name, version, rel)) from exc
        if pkg.get("version", version) != version:
            raise CacheError(
                "%s: the index's %s says version %s" % (name, rel, pkg.get("version"))
            )
        if pkg.get("urls") or pkg.get("deps"):
            raise CacheError(
                "%s %s: the index lists files outside the pin (deps, urls): refused"
                % (name, version)
            )
        listed = {path: short for path, short in pkg.get("hashes", ())}
        if set(listed) != set(pin["mpy"]):
            raise CacheError(
                "%s %s: the index lists the files %s, the pin %s: refused"
                % (name, version, sorted(listed), sorted(pin["mpy"]))
            )
        entries = []
        for path, digest in pin["mpy"].items():
            short = listed[path]
            if not digest.startswith(short):
                raise CacheError(
                    "%s %s: the index names %s %s, pinned SHA-256 %s: refused"
                    % (name, version, path, short, digest)
                )
            try:
                blob = get(_file_rel(short))
            except Exception as exc:  # noqa: BLE001
                raise CacheError(
                    "%s %s: cannot read %s from %s (%s)" % (name, version, path, index, exc)
                ) from exc
            got = hashlib.sha256(blob).hexdigest()
            if got != digest:
                raise CacheError(
                    "%s %s: %s from %s has SHA-256 %s, pinned %s: refused"
                    % (name, version, path, index, got, digest)
                )
            blobs[short] = blob
            entries.append({"path": path, "sha256": digest, "size": len(blob)})
        listings[name] = raw
        packages[name] = {"version": version, "files": entries}
    # everything checked: now write
    dest = Path(dest)
    for short, blob in blobs.items():
        out = dest / _file_rel(short)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)
    for name, raw in listings.items():
        version = data["packages"][name]["version"]
        out = dest / _package_rel(mpy, name, version)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(raw)
        (out.parent / "latest.json").write_bytes(raw)
    manifest = {
        "format": FORMAT,
        "index": str(index),
        "micropython_lib": data["micropython_lib"],
        "mpy": mpy,
        "packages": packages,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def load(cache, mpy=None):
    """The pinned files to install, as Packages [(device path, bytes, sha256 hex)], each read
    from the cache and checked against mplib.json. CacheError if the cache is missing, holds
    other versions or files, is damaged, or `mpy` is not the pinned .mpy version."""
    data = _pins(mpy)
    cache = Path(cache)
    mf = cache / MANIFEST
    how = "prepare it with `python -m backhug_host.factory.mipcache prepare %s`" % cache
    if not mf.is_file():
        raise CacheError("no package cache at %s: %s" % (cache, how))
    try:
        manifest = json.loads(mf.read_text())
    except ValueError as exc:
        raise CacheError("%s: damaged (%s)" % (mf, exc)) from exc
    if manifest.get("format") != FORMAT:
        raise CacheError("the package cache at %s predates the pins: %s again" % (cache, how))
    have = manifest.get("packages", {})
    wrong = [
        "%s %s (pinned %s)" % (name, have.get(name, {}).get("version", "missing"), p["version"])
        for name, p in data["packages"].items()
        if have.get(name, {}).get("version") != p["version"]
    ]
    if wrong:
        raise CacheError("the package cache holds %s: %s again" % (", ".join(wrong), how))
    files = []
    for name, p in data["packages"].items():
        for path, digest in p["mpy"].items():
            f = cache / _file_rel(digest[:8])
            if not f.is_file():
                raise CacheError(
                    "%s %s: %s missing from the cache: %s again" % (name, p["version"], path, how)
                )
            blob = f.read_bytes()
            got = hashlib.sha256(blob).hexdigest()
            if got != digest:
                raise CacheError(
                    "%s %s: %s in the cache has SHA-256 %s, pinned %s: refused (%s again)"
                    % (name, p["version"], path, got, digest, how)
                )
            files.append((LIB + "/" + path, blob, digest))
    return Packages(files, mplib.versions(), data["micropython_lib"], data["mpy"])


def _owner(device_path):
    # the pinned package a device path (/lib/<path>) belongs to
    rel = device_path[len(LIB) + 1 :]
    for name, p in mplib.lock()["packages"].items():
        if rel in p["mpy"]:
            return name
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="mipcache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="copy the pinned packages into a cache directory")
    p.add_argument("dest")
    p.add_argument(
        "--index",
        help="mip index folder or URL (default ../shared/micropython/mip-index, offline; "
        "online: %s)" % ONLINE_INDEX,
    )
    s = sub.add_parser("show", help="check a cache against the pins and list it")
    s.add_argument("cache")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            prepare(args.dest, args.index)
        packages = load(args.dest if args.cmd == "prepare" else args.cache)
    except (CacheError, mplib.LockError) as exc:
        print("mipcache: %s" % exc, file=sys.stderr)
        return 2
    for name, version in packages.versions.items():
        n = [b for path, b, _ in packages if path.startswith(LIB + "/") and _owner(path) == name]
        print("%-16s %-8s %d files, %d bytes" % (name, version, len(n), sum(map(len, n))))
    print("all %d files match their pinned SHA-256 (micropython-lib %s, .mpy %d)" % (
        len(packages), packages.micropython_lib[:8], packages.mpy))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
