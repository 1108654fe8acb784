"""A local copy of the micropython-lib packages the device needs, for a line without internet.

The cache is a mirror of the part of MicroPython's package index (https://micropython.org/pi/v2,
the index `mip` and `mpremote mip` read) that the packages need, in the index's own layout:

    <cache>/package/<mpy>/<name>/latest.json   {"hashes": [[path, short sha256]], "deps": [...],
                                                "version": ...} as the index serves it
    <cache>/file/<h[:2]>/<h>                   each file, named by its short SHA-256
    <cache>/cache.json                         what was fetched: packages, files, mpy version

so `mpremote mip install --index <cache> aioble` works from it too (mpremote opens a local index
path as files). Prepare it once, online, with the .mpy version of the firmware's MicroPython
(6 for MicroPython 1.22..1.29):

    python -m backhug_host.factory.mipcache prepare build/mipcache            (aioble, cbor2,
    python -m backhug_host.factory.mipcache prepare build/mipcache --mpy 6     hashlib-sha512)
    python -m backhug_host.factory.mipcache show build/mipcache

`prepare` follows each package's deps and checks every file against its hash; provisioning
(provision.py) then installs the files into /lib from the cache, never from the network.
"""

import argparse
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

INDEX = "https://micropython.org/pi/v2"
PACKAGES = ("aioble", "cbor2", "hashlib-sha512")
MPY_VERSION = 6  # sys.implementation._mpy & 0xFF for MicroPython 1.22 .. 1.29
LIB = "/lib"
MANIFEST = "cache.json"


class CacheError(Exception):
    pass


def _http_get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _file_rel(short_hash):
    return "file/%s/%s" % (short_hash[:2], short_hash)


def _package_rel(mpy, name, version="latest"):
    return "package/%s/%s/%s.json" % (mpy, name, version)


def prepare(dest, packages=PACKAGES, mpy=MPY_VERSION, index=INDEX, fetch=None):
    """Fetch `packages` (and their deps) from `index` into `dest`; returns the cache manifest.

    fetch(url) -> bytes defaults to an HTTP GET; tests pass their own index."""
    fetch = fetch or _http_get
    dest = Path(dest)
    done = {}
    files = {}
    todo = [(p, "latest") for p in packages]
    while todo:
        name, version = todo.pop(0)
        if name in done:
            continue
        if "://" in name or name.endswith((".py", ".mpy", ".json")):
            raise CacheError("%s: only index packages can be cached" % name)
        rel = _package_rel(mpy, name, version or "latest")
        try:
            raw = fetch("%s/%s" % (index, rel))
        except Exception as exc:
            raise CacheError("%s: cannot fetch %s/%s (%s)" % (name, index, rel, exc)) from exc
        try:
            pkg = json.loads(raw)
        except ValueError as exc:
            raise CacheError("%s: the index answered something that is not JSON" % name) from exc
        if pkg.get("urls"):
            raise CacheError("%s: has files outside the index (urls), not cacheable" % name)
        entries = []
        for path, short in pkg.get("hashes", ()):
            data = fetch("%s/%s" % (index, _file_rel(short)))
            if not hashlib.sha256(data).hexdigest().startswith(short):
                raise CacheError("%s: %s does not match its hash %s" % (name, path, short))
            out = dest / _file_rel(short)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            entries.append({"path": path, "hash": short, "size": len(data)})
            files[path] = short
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(raw)
        done[name] = {"version": pkg.get("version", ""), "files": entries}
        for dep, dep_version in pkg.get("deps", ()):
            todo.append((dep, dep_version))
    manifest = {"index": index, "mpy": mpy, "requested": list(packages), "packages": done}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def load(cache, packages=PACKAGES, mpy=None):
    """The cache's files to install: [(device path, bytes, sha256 hex)], checked against their
    hashes. CacheError if the cache is missing, incomplete, damaged or for another .mpy version."""
    cache = Path(cache)
    mf = cache / MANIFEST
    if not mf.is_file():
        raise CacheError(
            "no package cache at %s: prepare it online with "
            "`python -m backhug_host.factory.mipcache prepare %s`" % (cache, cache)
        )
    try:
        manifest = json.loads(mf.read_text())
    except ValueError as exc:
        raise CacheError("%s: damaged (%s)" % (mf, exc)) from exc
    if mpy is not None and manifest.get("mpy") != mpy:
        raise CacheError(
            "the cache holds .mpy version %s, the firmware's MicroPython needs %s: prepare it "
            "again with --mpy %s" % (manifest.get("mpy"), mpy, mpy)
        )
    have = manifest.get("packages", {})
    missing = [p for p in packages if p not in have]
    if missing:
        raise CacheError("the package cache lacks %s: prepare it again" % ", ".join(missing))
    out = {}
    for name in sorted(have):
        for e in have[name]["files"]:
            f = cache / _file_rel(e["hash"])
            if not f.is_file():
                raise CacheError("%s: %s missing from the cache" % (name, e["path"]))
            data = f.read_bytes()
            if not hashlib.sha256(data).hexdigest().startswith(e["hash"]):
                raise CacheError("%s: %s in the cache is damaged" % (name, e["path"]))
            out[LIB + "/" + e["path"]] = (data, hashlib.sha256(data).hexdigest())
    return [(p, d, h) for p, (d, h) in sorted(out.items())]


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="mipcache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fetch the packages (online) into a cache directory")
    p.add_argument("dest")
    p.add_argument("--mpy", type=int, default=MPY_VERSION)
    p.add_argument("--index", default=INDEX)
    p.add_argument("packages", nargs="*", default=list(PACKAGES))
    s = sub.add_parser("show", help="list what a cache holds")
    s.add_argument("cache")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            m = prepare(args.dest, args.packages, args.mpy, args.index)
        else:
            load(args.cache, packages=())
            m = json.loads((Path(args.cache) / MANIFEST).read_text())
    except CacheError as exc:
        print("mipcache: %s" % exc, file=sys.stderr)
        return 2
    for name, pkg in sorted(m["packages"].items()):
        print("%-16s %-8s %d files" % (name, pkg["version"], len(pkg["files"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
