# The virtual device's power-on: what the ESP32 port's C start-up and _boot.py do, then the
# device's own /boot.py and /main.py from its flash.
#
#   micropython -X heapsize=N vboot.py FD_IN FD_OUT ASYNCIO_DIR FLASH_IMAGE BLOCKS MODE
#
# 1. The link to the host (vlink) and the bridge modules (time, select, machine, bluetooth:
#    files next to this one that stand for MicroPython's built-in ones).
# 2. asyncio: MicroPython's own, from its source at the pinned commit (ASYNCIO_DIR is its
#    extmod/), in pure Python. The unix port's C `_asyncio` reads the host's real clock, so it
#    is kept out; the Python TaskQueue reads the virtual one through time.ticks_ms.
# 3. The flash: littlefs v2 on a block device backed by FLASH_IMAGE (BLOCKS x 4096 bytes), made
#    on first use, mounted at / in place of the host's file system, as on the ESP32.
# 4. MODE "run": /boot.py as __main__, then /main.py. MODE "repl": run the scripts the host
#    sends (the factory's provisioning and tests, as over a raw REPL) until it says stop.
import sys

import vlink

fd_in, fd_out, asyncio_dir, image, blocks, mode = sys.argv[1:7]
vlink.open_link(int(fd_in), int(fd_out))
vlink.config = vlink.request(vlink.HELLO, repr({"mode": mode}).encode())
vlink.now_us = vlink.config["now_us"]  # the virtual clock from the first instruction on

sys.modules["_asyncio"] = None  # see 2. above
sys.path.insert(1, asyncio_dir)
import asyncio  # noqa: E402
import asyncio.core  # noqa: E402,F401
import asyncio.event  # noqa: E402,F401
import asyncio.funcs  # noqa: E402,F401
import asyncio.lock  # noqa: E402,F401
import asyncio.stream  # noqa: E402,F401
import bluetooth  # noqa: E402,F401
import machine  # noqa: E402,F401
import select  # noqa: E402,F401
import time  # noqa: E402,F401
import vfs  # noqa: E402

import vprobe  # noqa: E402,F401 - measuring points for benchmarks (registers itself)

BLOCK = 4096


class FlashImage:
    # vfs block device (extended interface) on a file: erase fills a block with 0xff.
    def __init__(self, path, count):
        self.count = count
        self.f = open(path, "r+b")  # made erased (all 0xff) by the host
        self._erased = b"\xff" * BLOCK

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * BLOCK + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * BLOCK + off)
        self.f.write(buf)
        self.f.flush()

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            self.f.seek(arg * BLOCK)
            self.f.write(self._erased)
            return 0
        return 0


bdev = FlashImage(image, int(blocks))
vfs.umount("/")
try:
    vfs.mount(vfs.VfsLfs2(bdev), "/")
except OSError:
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), "/")
sys.path[:] = ["", ".frozen", "/lib"]  # the ESP32 port's sys.path
del fd_in, fd_out, asyncio_dir, image, blocks


def _debug_exec(code, expr=None):
    # The host's debugger (VirtualDevice.debug_exec): run code inside the running firmware, as
    # a test's fault injection or inspection would through a JTAG probe; returns the value of
    # expr afterwards (None without one). Only the bridge has it.
    g = {"__name__": "__debug__"}
    exec(code, g)
    return eval(expr, g) if expr else None


vlink.handlers["exec"] = _debug_exec


def _run_file(path):
    try:
        with open(path) as f:
            code = f.read()
    except OSError:
        return
    exec(code, {"__name__": "__main__"})


def _repl():
    # Each script runs with print() captured; the answer is b"0" + output, or b"1" + output
    # and the error's text.
    answer = b""
    g = {"__name__": "__main__"}  # one namespace for all scripts, as at a REPL
    while True:
        code = vlink.request(vlink.REPL, answer)
        if not code:
            return
        out = []

        def cap(*args, sep=" ", end="\n", out=out):
            out.append(sep.join(str(a) for a in args) + end)

        g["print"] = cap
        try:
            exec(str(code, "utf-8"), g)
            answer = b"0" + "".join(out).encode()
        except BaseException as e:  # noqa: BLE001 - reported to the host, as the REPL would
            answer = b"1" + "".join(out).encode() + ("%s: %s" % (type(e).__name__, e)).encode()


if mode == "repl":
    _repl()
else:
    _run_file("/boot.py")
    _run_file("/main.py")
