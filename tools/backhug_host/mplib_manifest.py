# Frozen-build manifest fragment: micropython-lib's aioble, cbor2 and hashlib-sha512 at the
# versions pinned in mplib.json, for boards/<id>/manifest.py to include() (docs/frozen-build.md).
#
# MicroPython's tools/manifestfile.py runs this with its API as globals and this folder as the
# working directory. Instead of require("aioble") - the package at whatever version the
# MicroPython checkout's lib/micropython-lib holds - it freezes the pinned .py sources, which
# mplib.py materialises (hash-checked) under build/mplib/py from the offline mip index in
# ../shared/micropython/mip-index (or BACKHUG_MIP_INDEX). mplib.py is loaded by path: it needs
# only the standard library, so the ESP-IDF's Python runs it without the project's venv.
# ruff: noqa: F821 (package is a global manifestfile.py runs this with)

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("_backhug_mplib", os.path.abspath("mplib.py"))
_mplib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mplib)

_tree = str(_mplib.tree("py"))
_files = {}  # top-level package -> its pinned files, relative to the package
for _name, _version, _rel, _digest in _mplib.pinned("py"):
    _top, _sub = _rel.split("/", 1)
    _files.setdefault(_top, []).append(_sub)
for _top in sorted(_files):  # aioble, cbor2, hashlib
    package(_top, files=sorted(_files[_top]), base_path=_tree)
