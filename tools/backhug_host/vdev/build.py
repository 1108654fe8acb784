"""The virtual device's interpreter: MicroPython's unix port, built from the pinned source.

    python -m backhug_host.vdev.build          # build (once) and print the binary's path

The source is the archives in ../shared/micropython/ (MicroPython and micropython-lib at the
commits tools/backhug_host/mplib.json names; BACKHUG_MICROPYTHON_SRC may point at an unpacked
checkout with its submodules instead). They are unpacked into
build/vdev/src/ and built there with the switches ../shared/micropython/README.md gives (no
FFI, no btree, no TLS: none of them is on the device), then kept: about a minute on 2 cores
the first time, nothing afterwards. Needs a C compiler and make.
"""

import fcntl
import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from backhug_host import mplib

ROOT = mplib.ROOT
BUILD = ROOT / "build" / "vdev"
SRC = BUILD / "src"
VARIANT = "standard"
MAKE_FLAGS = (
    "MICROPY_PY_FFI=0",
    "MICROPY_PY_BTREE=0",
    "MICROPY_PY_SSL=0",
    "MICROPY_SSL_AXTLS=0",
    "MICROPY_SSL_MBEDTLS=0",
)


class BuildError(Exception):
    pass


def _archive(name, commit):
    path = mplib.SHARED / ("%s-%s.tar.gz" % (name, commit[:8]))
    if not path.is_file():
        raise BuildError("no %s source: %s is missing (../shared/micropython)" % (name, path))
    return path


def source_dir():
    """The MicroPython source tree (unpacked on first use)."""
    given = os.environ.get("BACKHUG_MICROPYTHON_SRC")
    if given:
        return Path(given)
    pins = mplib.lock()
    # MicroPython, and micropython-lib where its submodule goes (the unix port's frozen
    # manifest requires packages from it)
    archives = (
        (_archive("micropython", pins["micropython"]), SRC),
        (_archive("micropython-lib", pins["micropython_lib"]), SRC / "micropython" / "lib"),
    )
    tree = SRC / "micropython"
    stamp = SRC / ".unpacked"
    digest = hashlib.sha256(b"".join(a.read_bytes() for a, _ in archives)).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return tree
    for archive, dest in archives:
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    stamp.write_text(digest)
    return tree


def asyncio_dir():
    """The folder holding MicroPython's own asyncio package (extmod/asyncio), task.py included."""
    return source_dir() / "extmod"


def _run(cmd, log):
    res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if res.returncode:
        raise BuildError("%s failed (log: %s)" % (" ".join(cmd), log.name))


def interpreter():
    """Path of the built micropython binary (built now if it is not there)."""
    out = BUILD / "micropython"
    if out.is_file():
        return out
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes build it once
        if out.is_file():
            return out
        src = source_dir()
        jobs = "-j%d" % (os.cpu_count() or 2)
        with open(BUILD / "build.log", "w") as log:
            _run(["make", "-C", str(src / "mpy-cross"), jobs], log)
            _run(["make", "-C", str(src / "ports" / "unix"), jobs, "VARIANT=" + VARIANT,
                  *MAKE_FLAGS], log)  # fmt: skip
        built = src / "ports" / "unix" / ("build-" + VARIANT) / "micropython"
        tmp = out.with_name("micropython.tmp")
        tmp.write_bytes(built.read_bytes())
        tmp.chmod(0o755)
        tmp.replace(out)
    return out


def main():
    try:
        print(interpreter())
    except BuildError as e:
        print("vdev build:", e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
