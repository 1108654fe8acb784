# Frozen-build manifest for the backhug_v3 image, in MicroPython's tools/manifestfile.py API.
# Build from ports/esp32 with FROZEN_MANIFEST=<repo>/boards/backhug_v3/manifest.py; paths are
# relative to this file. Frozen modules sit behind the filesystem on sys.path, so an installed
# update bundle still wins.
# ruff: noqa: F821 (include/package are the globals manifestfile.py runs this with)

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen set (asyncio, neopixel, ...)
# micropython-lib's aioble, cbor2 and hashlib-sha512 (Ed25519 for update bundles) at the versions
# pinned in tools/backhug_host/mplib.json, not require()'s whatever lib/micropython-lib holds
include("../../tools/backhug_host/mplib_manifest.py")
package("firmware", base_path="../..")
# only this board's data: the image must not be able to boot as another board
package(
    "boards",
    files=("__init__.py", "backhug_v3/__init__.py", "backhug_v3/board.py"),
    base_path="../..",
)
