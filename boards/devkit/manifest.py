# Frozen-build manifest for the devkit image, in MicroPython's tools/manifestfile.py API.
# Build from ports/esp32 with FROZEN_MANIFEST=<repo>/boards/devkit/manifest.py; paths are
# relative to this file. Frozen modules sit behind the filesystem on sys.path, so an installed
# update bundle still wins.
# ruff: noqa: F821 (include/require/package are the globals manifestfile.py runs this with)

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen set (asyncio, neopixel, ...)
require("aioble")
require("cbor2")
require("hashlib-sha512")  # Ed25519 verification of update bundles (firmware/update/sha512.py)
package("firmware", base_path="../..")
# only this board's data: the image must not be able to boot as another board
package(
    "boards", files=("__init__.py", "devkit/__init__.py", "devkit/board.py"), base_path="../.."
)
