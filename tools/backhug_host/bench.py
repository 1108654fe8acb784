"""Benchmark runner: `make bench`
(python -m backhug_host.bench [--no-mpy] [--out FILE] [NAME ...]).

Runs every module in backhug_host.benches (each exposes run() -> list of results) and the
MicroPython benchmarks (tests/mpy/bench_*.py, through `node tests/mpy/run.mjs --bench`), writes
all results to build/bench.json and prints a table. NAMEs select modules of backhug_host.benches
(e.g. `vdev`; "mpy" for the tier-2 scripts): only those run.

A result is {"name", "value", "unit"} with optional "target", "better" ("higher"/"lower") and
"interpreter" (what ran it: "micropython-1.29.0 wasm" from run.mjs; a Python bench's default is
this CPython, "cpython-3.x.y").
Without "better", units of size or time (bytes, ms, us/tick, ...) count as lower-is-better and
everything else (rates, speed-ups) as higher-is-better. A missed target is reported, not fatal:
timing goals live here, not in the tests. A benchmark that crashes makes the run fail.
"""

import argparse
import importlib
import json
import pkgutil
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from backhug_host import benches

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "build" / "bench.json"
_LOWER_IS_BETTER_UNITS = ("bytes", "b", "kb", "ms", "us", "ns", "s", "allocs", "writes")
_CPYTHON = "cpython-" + platform.python_version()


def lower_is_better(result):
    better = result.get("better")
    if better is not None:
        return better == "lower"
    head = result["unit"].split("/")[0].lower()
    return head in _LOWER_IS_BETTER_UNITS


def verdict(result):
    target = result.get("target")
    if target is None:
        return ""
    if lower_is_better(result):
        return "ok" if result["value"] <= target else "MISS"
    return "ok" if result["value"] >= target else "MISS"


def bench_modules():
    return sorted(m.name for m in pkgutil.iter_modules(benches.__path__))


def run_python_benches(only=None):
    results, errors = [], []
    for name in bench_modules():
        if only is not None and name not in only:
            continue
        module_name = "backhug_host.benches." + name
        try:
            module = importlib.import_module(module_name)
            for r in module.run():
                results.append(dict({"interpreter": _CPYTHON}, **dict(r, source=name)))
        except Exception:
            errors.append("%s failed:\n%s" % (module_name, traceback.format_exc()))
    return results, errors


def run_mpy_benches():
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules").is_dir():
        return [], ["tier-2 benchmarks skipped: node or node_modules missing (make node_modules)"]
    proc = subprocess.run(
        [node, str(REPO / "tests" / "mpy" / "run.mjs"), "--bench"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    errors = []
    if proc.returncode != 0:
        errors.append("tests/mpy/run.mjs --bench failed:\n" + proc.stderr.strip())
    try:
        results = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [], errors + ["tests/mpy/run.mjs --bench printed no JSON:\n" + proc.stdout]
    for r in results:
        r["source"] = "mpy:" + r.get("source", "?")
    return results, errors


def format_table(results):
    rows = [("benchmark", "value", "unit", "target", "", "source", "interpreter")]
    for r in results:
        target = r.get("target")
        rows.append((
            r["name"],
            "%g" % r["value"],
            r["unit"],
            "" if target is None else ("<= %g" if lower_is_better(r) else ">= %g") % target,
            verdict(r),
            r.get("source", ""),
            r.get("interpreter", ""),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.rjust(w) if j == 1 else c.ljust(w) for j, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m backhug_host.bench")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON report (build/bench.json)")
    parser.add_argument("--no-mpy", action="store_true", help="skip the MicroPython benchmarks")
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="run only these modules of backhug_host.benches (%s; mpy: the tier-2 scripts)"
        % ", ".join(bench_modules()),
    )
    args = parser.parse_args(argv)
    only = set(args.names) or None
    unknown = (only or set()) - set(bench_modules()) - {"mpy"}
    if unknown:
        parser.error("no such benchmark: " + ", ".join(sorted(unknown)))

    results, errors = run_python_benches(only)
    if not args.no_mpy and (only is None or "mpy" in only):
        more, more_errors = run_mpy_benches()
        results += more
        errors += more_errors

    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"python": sys.version.split()[0], "machine": platform.machine(),
                 "platform": platform.platform()},
        "results": results,
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")

    print(format_table(results))
    missed = [r["name"] for r in results if verdict(r) == "MISS"]
    if missed:
        print("targets missed: " + ", ".join(missed))
    for e in errors:
        print(e, file=sys.stderr)
    print("wrote %s (%d results)" % (out, len(results)))
    crashed = [e for e in errors if "skipped" not in e]
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
