# Frozen-build manifest for the sim board, in MicroPython's tools/manifestfile.py API. The
# simulator itself runs on CPython; this lists the same file set for a MicroPython unix-port
# build that runs the firmware's pure modules against the sim board. Paths are relative to this
# file.
# ruff: noqa: F821 (require/package are the globals manifestfile.py runs this with)

require("aioble")
require("cbor2")
require("hashlib-sha512")  # Ed25519 verification of update bundles (firmware/update/sha512.py)
package("firmware", base_path="../..")
package("boards", files=("__init__.py", "sim/__init__.py", "sim/board.py"), base_path="../..")
