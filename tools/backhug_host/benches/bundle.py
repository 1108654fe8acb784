"""The signed update bundle for backhug_v3: its size (what an update sends over BLE and what a
slot holds twice: bundle.bin plus the unpacked files), how long `backhug-bundle build` takes
(mpy-cross for every file, signing), and the device's bundle.verify() on CPython (signature,
manifest and every file's SHA-256; the Ed25519 verify time on MicroPython is
tests/mpy/bench_ed25519.py's).
"""

import tempfile
import time
from pathlib import Path

from backhug_host import bundler
from firmware.update import bundle, ed25519

BOARD = "backhug_v3"
_N = 20


def run():
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path, manifest = bundler.build(BOARD, key, out=Path(tmp) / "b.bhb")
        build_s = time.perf_counter() - t0
        size = path.stat().st_size
        payload = sum(f["size"] for f in manifest["files"])
        public = bundler.dev_public_key()
        t0 = time.perf_counter()
        for _ in range(_N):
            bundle.verify(str(path), public, BOARD, manifest["abi"], 0, None)
        verify_ms = (time.perf_counter() - t0) / _N * 1000
        with open(path, "rb") as f:
            signed = f.read(8 + bundle.read_header(f))
            f.seek(len(signed))
            signature = f.read(64)
    t0 = time.perf_counter()
    for _ in range(_N):
        ed25519.verify(public, signed, signature)
    ed_ms = (time.perf_counter() - t0) / _N * 1000
    return [
        {"name": "bundle_size_%s" % BOARD, "value": size, "unit": "bytes"},
        {"name": "bundle_files_%s" % BOARD, "value": payload, "unit": "bytes"},
        {"name": "bundle_manifest_%s" % BOARD, "value": len(signed) - 8, "unit": "bytes"},
        {"name": "bundle_build_time", "value": round(build_s, 2), "unit": "s"},
        {"name": "bundle_verify_cpython", "value": round(verify_ms, 2), "unit": "ms"},
        {"name": "ed25519_verify_cpython", "value": round(ed_ms, 2), "unit": "ms"},
    ]
