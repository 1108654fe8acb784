# Frozen-build manifest for the sim board, in MicroPython's tools/manifestfile.py API. The
# simulator itself runs on CPython; this lists the same file set for a MicroPython unix-port
# build that runs the firmware's pure modules against the sim board. Paths are relative to this
# file.
# ruff: noqa: F821 (include/package are the globals manifestfile.py runs this with)

# micropython-lib's aioble, cbor2 and hashlib-sha512 (Ed25519 for update bundles) at the versions
# pinned in tools/backhug_host/mplib.json, not require()'s whatever lib/micropython-lib holds
include("../../tools/backhug_host/mplib_manifest.py")
package("firmware", base_path="../..")
package("boards", files=("__init__.py", "sim/__init__.py", "sim/board.py"), base_path="../..")
