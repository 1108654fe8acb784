"""Benchmarks: each module here exposes run() -> list of {"name", "value", "unit"[, "target"]}.

`make bench` (python -m backhug_host.bench) runs every module, plus the MicroPython (tier 2)
benchmarks in tests/mpy/bench_*.py, writes build/bench.json and prints a table.
"""
