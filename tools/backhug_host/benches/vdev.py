"""The virtual device (tier 4): the unchanged firmware on MicroPython's unix port, its hardware,
radio and time from the simulator (backhug_host.vdev), measured from inside the interpreter.

One provisioned unit (VdevSim, as tests/vdev run it), the virtual device's 2 MB heap:
1. crypto, on the script channel of the provisioned unit before it runs (the firmware from slot
   a): Ed25519 verify of a 1023-byte message signed with the development key (ms) and SHA-512
   (us/KB over 8 KB), with micropython-lib's hashlib-sha512 (the pinned .mpy in the unit's /lib:
   what the device runs) and with the project's fallback (firmware/update/sha512.py's Sha512);
   best of 5, real time. Also there: the heap in use by the interpreter with vboot and the
   bridges alone (vlink, the machine, bluetooth, time and select stand-ins, MicroPython's asyncio
   compiled from source), no firmware loaded.
2. heap after boot: the unit boots (/boot.py, /main.py, every task started) and idles; then
   gc.collect(), gc.mem_alloc(), gc.mem_free() and the largest free block: the largest bytearray
   that can be allocated (binary search, each one freed at once).
3. GC pause: gc.collect() after boot (best of 5), and the collections that end the allocation
   windows below (each frees a window's garbage), in real time.
4. allocation: with a phone paired and connected over BLE and the session treating, windows of
   virtual time in which the GC is off: gc.collect(), gc.disable(), gc.mem_alloc() at the start
   and at the end, then gc.enable(). The bridges allocate far more than the firmware (every
   pin write, ADC read and I2C transfer is a frame on the link: bytes, tuples, repr/eval), so
   vprobe.arm() wraps their entry points first and adds up what they allocate, less what the
   firmware's own IRQ handlers allocate inside them; firmware = in the window - bridge. On the
   device these modules are C and allocate nothing there, so the firmware's share is the figure
   for the goal. The windows are short (the GC is off and the bridge's garbage fills the heap in
   about a second) and run ALLOC_WINDOW_S in all; the wrapped bridge runs slower, so their time
   is left out of 5.
5. speed: the 10-minute session from the start command until the state is idle again (less the
   allocation windows), in simulated minutes per wall minute and per CPU minute: this process
   (the simulator, the emulated chips, Bumble, the bridge's host side) plus the micropython child
   (/proc/<pid>/stat, read while it runs).

The figures come from the running interpreter through VirtualDevice.probe() (vdev/mp/vprobe.py:
an IRQ served while the device idles in asyncio's wait, so none of the firmware runs meanwhile
and virtual time stands still). Times inside the device are real: vprobe imports MicroPython's
built-in time with sys.path empty (the firmware's `time` is the virtual clock); this bench checks
that 20 ms of its clock pass in at least as much host wall time while the virtual clock stays.

Read them with care: the interpreter is the 64-bit unix port (objects and GC blocks, 32 bytes
against 16, are bigger than the ESP32-S3's), the heap is 2 MB, and heap in use includes the
bridges and asyncio's bytecode (frozen in flash on the device); the bridge rows show how much.
Issue 12's goals are for a 32-bit interpreter with a 128 KB heap: they are the targets here, so
a MISS says how far this configuration is from them, not that the device misses them.
"""

import asyncio
import os
import platform
import resource
import tempfile
import time

from backhug_host import bundler, hostrt
from backhug_host.emul import world as W
from backhug_host.vdev.sim import VdevSim
from firmware import runtime

SESSION_MIN = 10
PERSON = {"height_cm": 175.0, "curvature": 1.0, "weight_kg": 75.0,
          "stiff": ("upper_left", "middle_right")}  # fmt: skip
# virtual seconds from power-on until the probes (the unit idles with all its tasks). Not a whole
# number: the firmware re-advertises every second from boot, and a phone whose connection
# request lands in the same virtual instant as that restart is left half-connected by Bumble's
# virtual controllers (the central connected, the device's side without the link: the MTU
# exchange times out)
BOOT_S = 5.5
ALLOC_WINDOW_S = 3  # virtual seconds of allocation windows in all (the wrapped bridge is slow)
GOAL_HEAP = 128 * 1024  # issue 12: the GC heap cap the firmware must fit
_CPYTHON = "cpython-" + platform.python_version()


def _cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_child(pid):
    # utime + stime of a live child (fields 14 and 15 of /proc/<pid>/stat, after the command's
    # parenthesised name)
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _label(info):
    return "micropython-%d.%d.%d unix %s (vdev)" % (*info["version"], info["arch"])


def _signed_message():
    # 1023 bytes, as tier 2's RFC 8032 TEST 1024, signed with the development key
    msg = bytes((i * 7 + 3) & 0xFF for i in range(1023))
    key = bundler.load_private_key(str(bundler.DEV_PRIVATE_KEY))
    return bundler.dev_public_key(), msg, key.sign(msg)


def _scripts(sim):
    # on the provisioned unit's script channel: no firmware running
    pub, msg, sig = _signed_message()
    dev = sim.device
    dev.open_scripts()
    try:
        out = {}
        for key, code in (
            ("info", "import vprobe\nprint(repr(vprobe.info()))"),
            ("bridges", "import gc\ngc.collect()\nprint(gc.mem_alloc())"),
            ("crypto", "import sys\nsys.path.insert(0, '/slots/a')\n"
                       "print(repr(vprobe.crypto(%r, %r, %r, 8, 5)))" % (pub, msg, sig)),
        ):  # fmt: skip
            ok, text = dev.run_script(code)
            if not ok:
                raise RuntimeError("vdev script %s failed: %s" % (key, text))
            out[key] = eval(text)  # noqa: S307 - our own device's literal
        return out
    finally:
        dev.close_scripts()


def _probe(dev, name, *args):
    r = dev.probe(name, *args)
    if r is None:
        raise RuntimeError("vdev probe %s failed (see the console log)" % name)
    return r


class _Meter:
    # simulated time, wall time and CPU (this process, the interpreter) over the segments
    # between start() and stop()
    def __init__(self, dev):
        self.dev = dev
        self.virtual_s = self.wall_s = self.host_cpu_s = self.device_cpu_s = 0.0
        self._at = None

    def _now(self):
        d = self.dev
        return (d.clock.elapsed_us() / 1e6, time.perf_counter(), _cpu_self(),
                _cpu_child(d._proc.pid))  # fmt: skip

    def start(self):
        self._at = self._now()

    def stop(self):
        v, w, c, k = (b - a for a, b in zip(self._at, self._now(), strict=True))
        self.virtual_s += v
        self.wall_s += w
        self.host_cpu_s += c
        self.device_cpu_s += k


async def _alloc_windows(dev, free):
    # Allocation while the session runs, with the bridge's share (vprobe.arm()). The GC is off
    # in each window, so a window may take at most about half the free heap: the first one
    # (2 s) gives the rate, the next ones are sized by it, until ALLOC_WINDOW_S in all.
    if not _probe(dev, "arm"):
        raise RuntimeError("vprobe.arm() did nothing")
    await asyncio.sleep(0.5)  # back in asyncio's (now wrapped) wait
    empty_a = _probe(dev, "alloc_start")
    empty = _probe(dev, "alloc_stop")
    total = bridge = calls = 0
    firmware, lengths = [], []  # each window's firmware bytes and virtual seconds
    windows, window_s, done_s, gc_us = 0, 0.2, 0.0, []
    while done_s < ALLOC_WINDOW_S:
        a = _probe(dev, "alloc_start")
        await asyncio.sleep(window_s)
        b = _probe(dev, "alloc_stop")
        total += b[0] - a
        bridge += b[3]
        firmware.append(b[0] - a - b[3])
        calls += b[4]
        gc_us.append(b[2])
        windows += 1
        lengths.append(window_s)
        done_s += window_s
        rate = (b[0] - a) / window_s
        window_s = max(0.2, min(ALLOC_WINDOW_S - done_s, round(free * 0.4 / rate, 2)))
    _probe(dev, "disarm")
    return {
        "total": total, "bridge": bridge, "calls": calls, "window_s": done_s,
        "windows": windows, "gc_us": gc_us, "firmware": firmware,
        "window_lengths": lengths,
        "empty_total": empty[0] - empty_a, "empty_bridge": empty[3],
    }  # fmt: skip


async def _session(workdir):
    sim = VdevSim(person=PERSON, seed=0, workdir=workdir)
    sim.provision()
    found = {"scripts": _scripts(sim)}
    await sim.start()
    dev = sim.device
    try:
        await asyncio.sleep(BOOT_S)
        wall0 = time.perf_counter()
        clock = _probe(dev, "clock")
        clock["host_us"] = (time.perf_counter() - wall0) * 1e6
        found["clock"] = clock
        found["heap"] = _probe(dev, "heap")
        found["gc_boot"] = _probe(dev, "gc_pause", 5)

        client = await sim.phone()
        await client.set_strength(5)
        meter = _Meter(dev)
        meter.start()
        await client.start(SESSION_MIN, 0)
        await client.wait_state(lambda s: s["state"] == "treating", timeout_s=300)
        await asyncio.sleep(10)
        meter.stop()  # the allocation windows (wrapped bridge, GC off) are not timed
        found["alloc"] = await _alloc_windows(dev, found["heap"]["free"])
        meter.start()
        st = await client.wait_state(lambda s: s["state"] == "idle", timeout_s=SESSION_MIN * 90)
        meter.stop()
        found["speed"] = dict(vars(meter), end=st.get("end"), resets=list(dev.resets))
        del found["speed"]["dev"], found["speed"]["_at"]
    finally:
        await sim.close()
    return found


def run():
    previous_clock = getattr(runtime, "_host", None)
    previous_world = W.install(None)
    try:
        with tempfile.TemporaryDirectory(prefix="backhug-bench-vdev-") as tmp:
            # the idle grace tests/vdev use: the interpreter is a real process
            f = hostrt.run(_session(tmp), virtual=True, idle_grace_s=5.0)
    finally:
        W.install(previous_world)
        runtime.install(previous_clock)
    sp = f["speed"]
    if sp["end"] != "completed" or sp["resets"]:
        why = (sp["end"], sp["resets"])
        raise RuntimeError("benchmark session ended %r after resets %r" % why)
    clock = f["clock"]
    if (
        not clock["builtin"]
        or clock["virtual_us"] != 0
        or not (15_000 <= clock["real_us"] <= clock["host_us"] + 1_000)
    ):
        raise RuntimeError("vprobe's clock is not the real one: %r" % clock)

    interp = _label(f["scripts"]["info"])
    sc = f["scripts"]
    heap = f["heap"]
    total = heap["free"] + heap["alloc"]
    crypto = sc["crypto"]
    if not str(crypto["hashlib"]).startswith("/lib/"):
        raise RuntimeError("hashlib is not /lib's: %r" % crypto["hashlib"])
    gc_boot = f["gc_boot"]
    alloc = f["alloc"]
    fw = alloc["total"] - alloc["bridge"]
    per_window = [x / w for x, w in zip(alloc["firmware"], alloc["window_lengths"], strict=True)]
    gc_us = alloc["gc_us"]
    sim_min = sp["virtual_s"] / 60
    cpu = sp["host_cpu_s"] + sp["device_cpu_s"]
    heap_note = "of a %d KB heap, 64-bit objects" % (total // 1024)
    r = [
        {
            "name": "vdev_session_speed_wall",
            "value": round(sim_min / (sp["wall_s"] / 60), 1),
            "unit": "sim_min/wall_min",
            "better": "higher",
            "note": "%d-minute session with a phone over BLE: %.0f s simulated in %.1f s"
            % (SESSION_MIN, sp["virtual_s"], sp["wall_s"]),
        },
        {
            "name": "vdev_session_speed_cpu",
            "value": round(sim_min / (cpu / 60), 1),
            "unit": "sim_min/cpu_min",
            # issue 12's goal for the simulator: 60x real time by CPU
            "target": 60,
            "better": "higher",
            "note": "CPU of the host process and the micropython child: %.1f s + %.1f s"
            % (sp["host_cpu_s"], sp["device_cpu_s"]),
        },
        {
            "name": "vdev_session_device_cpu",
            "value": round(sp["device_cpu_s"] / sim_min, 2),
            "unit": "cpu_s/sim_min",
            "better": "lower",
            "note": "the micropython child (firmware, aioble, bridges)",
        },
        {
            "name": "vdev_session_host_cpu",
            "value": round(sp["host_cpu_s"] / sim_min, 2),
            "unit": "cpu_s/sim_min",
            "better": "lower",
            "note": "the host process: simulator, emulated chips, Bumble, the bridge's host side",
            "interpreter": _CPYTHON,
        },
        {
            "name": "vdev_heap_in_use_after_boot",
            "value": heap["alloc"],
            "unit": "bytes",
            # issue 12: >= 25 % free of a 128 KB heap, i.e. at most 96 KB in use
            "target": GOAL_HEAP * 3 // 4,
            "note": heap_note + "; bridges and asyncio from source included",
        },
        {
            "name": "vdev_heap_bridges",
            "value": sc["bridges"],
            "unit": "bytes",
            "note": "the interpreter with vboot and the bridges alone (no firmware)",
        },
        {
            "name": "vdev_heap_firmware_after_boot",
            "value": heap["alloc"] - sc["bridges"],
            "unit": "bytes",
            "note": "in use after boot less the bridges: firmware, aioble, cbor2, hashlib",
        },
        {
            "name": "vdev_heap_free_after_boot",
            "value": round(heap["free"] / 1024, 1),
            "unit": "KB",
            "better": "higher",
            "note": heap_note,
        },
        {
            "name": "vdev_largest_free_block_after_boot",
            "value": heap["largest"],
            "unit": "bytes",
            "better": "higher",
            "note": "largest bytearray that can be allocated: %d %% of the free heap, %s"
            % (100 * heap["largest"] // heap["free"], heap_note),
        },
        {
            "name": "vdev_alloc_rate_firmware",
            "value": round(fw / alloc["window_s"], 1),
            "unit": "B/s",
            # issue 12: under 200 B/s over a session with the phone connected
            "target": 200,
            "note": "treating, phone connected: %d bytes in %d windows, %.1f s (per window"
            " %d-%d B/s); all allocation less the bridge's, 32-byte blocks"
            % (fw, alloc["windows"], alloc["window_s"], min(per_window), max(per_window)),
        },
        {
            "name": "vdev_alloc_rate_bridge",
            "value": round(alloc["bridge"] / alloc["window_s"] / 1024, 1),
            "unit": "KB/s",
            "note": "the bridges' own (not on the device): %d calls/s into them; an empty"
            " window: %d bytes, %d of them the bridge's"
            % (alloc["calls"] / alloc["window_s"], alloc["empty_total"], alloc["empty_bridge"]),
        },
        {
            "name": "vdev_gc_pause_after_boot",
            "value": round(min(gc_boot) / 1000, 2),
            "unit": "ms",
            "note": "gc.collect() after boot, best of %d (worst %.2f ms), %s"
            % (len(gc_boot), max(gc_boot) / 1000, heap_note),
        },
        {
            "name": "vdev_gc_pause_session",
            "value": round(sorted(gc_us)[len(gc_us) // 2] / 1000, 2),
            "unit": "ms",
            "note": "median gc.collect() ending an allocation window (a window's garbage to"
            " free, ~%d KB each), worst %.2f ms, %s"
            % (alloc["total"] / alloc["windows"] / 1024, max(gc_us) / 1000, heap_note),
        },
    ]
    for label in ("mplib", "fallback"):
        r.append({
            "name": "vdev_ed25519_verify_%s" % label,
            "value": round(crypto["verify_" + label] / 1000, 1),
            "unit": "ms",
            "note": "1023-byte message, best of 5, SHA-512 of "
            + ("micropython-lib's hashlib-sha512 (/lib)" if label == "mplib" else "sha512.Sha512"),
        })  # fmt: skip
        r.append({
            "name": "vdev_sha512_%s" % label,
            "value": round(crypto["sha512_" + label] / 8, 1),
            "unit": "us/KB",
            "note": "8 KB in one update, best of 5",
        })  # fmt: skip
    for x in r:
        x.setdefault("interpreter", interp)
    return r


if __name__ == "__main__":
    for x in run():
        print(x)
