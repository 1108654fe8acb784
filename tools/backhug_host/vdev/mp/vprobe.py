# The virtual device's measuring points (benchmarks: tools/backhug_host/benches/vdev.py). The
# host calls them on a running device with VirtualDevice.probe(name, *args): an IRQ on the
# reserved handler id HID, served while the device idles (asyncio waits), so nothing of the
# firmware runs meanwhile. The script channel (repl mode) can call them directly too.
#
# Times are REAL: the device's `time` is the host's virtual clock (time.py here), so `rt` is
# MicroPython's built-in time, imported with sys.path empty (the "extensible built-in" rule:
# an empty sys.path skips both the file system and the sys.modules entry of the shadow, and the
# import leaves sys.modules alone, so the firmware keeps the virtual `time`).
import gc
import sys

import vlink

_p = sys.path
sys.path = []
import time as rt  # noqa: E402 - MicroPython's own, with the host's real clock

sys.path = _p
del _p

HID = 0  # reserved: other handler ids are id() of a function object, never 0
_ARCH = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
         "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")  # fmt: skip


def info():
    # what runs: version, port, the native architecture (of sys.implementation._mpy), word size
    impl = sys.implementation
    arch = getattr(impl, "_mpy", 0) >> 10
    return {
        "version": tuple(impl.version[:3]),
        "release": impl.version[3] if len(impl.version) > 3 else "",
        "platform": sys.platform,
        "arch": _ARCH[arch] if arch < len(_ARCH) else str(arch),
        "bits": 64 if sys.maxsize > 1 << 32 else 32,
        "build": getattr(impl, "_build", ""),
    }


def clock():
    # Is rt the real clock? (the shadow stays in sys.modules; 20 ms of real time pass here while
    # the virtual clock stands still)
    shadow = sys.modules.get("time")
    v0 = shadow.ticks_us()
    t0 = rt.ticks_us()
    while rt.ticks_diff(rt.ticks_us(), t0) < 20_000:
        pass
    return {
        "builtin": rt is not shadow and not hasattr(rt, "__file__"),
        "shadow_file": getattr(shadow, "__file__", None),
        "real_us": rt.ticks_diff(rt.ticks_us(), t0),
        "virtual_us": shadow.ticks_diff(shadow.ticks_us(), v0),
    }


def _fits(n):
    try:
        b = bytearray(n)
    except MemoryError:
        return False
    del b
    return True


def largest_block():
    # the largest bytearray the heap can give now (binary search; each try freed at once)
    gc.collect()
    lo, hi = 0, gc.mem_free()
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(mid):
            lo = mid
        else:
            hi = mid - 1
        gc.collect()
    return lo


def heap():
    gc.collect()
    free, alloc = gc.mem_free(), gc.mem_alloc()
    return {"free": free, "alloc": alloc, "largest": largest_block()}


def gc_pause(n=5):
    # real microseconds of each of n gc.collect() calls
    out = []
    for _ in range(n):
        t0 = rt.ticks_us()
        gc.collect()
        out.append(rt.ticks_diff(rt.ticks_us(), t0))
    return out


def alloc_start():
    # Start of a window in which every allocation stays counted: collected, then no automatic
    # collection until alloc_stop (the firmware never calls gc itself). Armed (see arm()), the
    # bridge's share starts from here too: the probe runs inside the wrapped select.poll wait
    # of asyncio (the device idles), an interval of the bridge that goes on after it.
    gc.collect()
    gc.disable()
    now = gc.mem_alloc()
    ns = _ns
    if ns is not None:
        if not ns["_depth"]:
            gc.enable()
            raise RuntimeError("vprobe: armed, but not inside the bridge")
        ns["_m0"] = now
        ns["_bridge"] = ns["_handler"] = ns["_calls"] = 0
    return now


def mem_alloc():
    return gc.mem_alloc()


def alloc_stop():
    # (bytes in use now, free, real us of the collection that ends the window, the bridge's
    # share or None, bridge calls): the interval the probe runs in is counted up to here
    alloc, free = gc.mem_alloc(), gc.mem_free()
    ns = _ns
    bridge = calls = None
    if ns is not None and ns["_depth"]:
        bridge = ns["_bridge"] + (alloc - ns["_m0"]) - ns["_handler"]
        calls = ns["_calls"]
    gc.enable()
    t0 = rt.ticks_us()
    gc.collect()
    us = rt.ticks_diff(rt.ticks_us(), t0)
    if ns is not None:
        ns["_m0"] = gc.mem_alloc()
    return alloc, free, us, bridge, calls


# -- the bridge's share of the allocations ----------------------------------------------------
# On the device machine, bluetooth, time and select are C and allocate (almost) nothing; here
# they are Python and frame every access (bytes, tuples, repr/eval), which swamps what the
# firmware itself allocates. arm() wraps their entry points the firmware calls so that what they
# allocate is added up, less what the firmware's own IRQ handlers allocate inside them: the
# bridge's share (alloc_stop), and firmware = everything - that. The wrappers have fixed
# arities, as MicroPython allocates nothing to call such a function (a *args tuple or **kwargs
# dict it would);
# functions the firmware captured (from time import sleep_us) are swapped in every module too.
# A buffer the device's C would hand back as well (gatts_read, readfrom_mem) stays firmware's.
#
# (module, class or "", function, required parameters, optional positional ones, keyword-only
# ones with their defaults, returns a new buffer)
_BRIDGE = (
    ("machine", "Pin", "value", "self", ("x",), "", False),
    ("machine", "Pin", "__call__", "self", ("x",), "", False),
    ("machine", "Pin", "on", "self", (), "", False),
    ("machine", "Pin", "off", "self", (), "", False),
    ("machine", "ADC", "read_u16", "self", (), "", False),
    ("machine", "ADC", "read", "self", (), "", False),
    ("machine", "I2C", "writeto_mem", "self, addr, memaddr, buf", (), "addrsize=8", False),
    ("machine", "I2C", "readfrom_mem", "self, addr, memaddr, nbytes", (), "addrsize=8", True),
    ("machine", "I2C", "readfrom_mem_into", "self, addr, memaddr, buf", (), "addrsize=8", False),
    ("machine", "I2C", "writeto", "self, addr, buf", ("stop",), "", False),
    ("machine", "I2C", "readfrom", "self, addr, nbytes", ("stop",), "", True),
    ("machine", "I2C", "readfrom_into", "self, addr, buf", ("stop",), "", False),
    ("machine", "PWM", "duty_u16", "self", ("value",), "", False),
    ("machine", "PWM", "duty", "self", ("value",), "", False),
    ("machine", "PWM", "freq", "self", ("value",), "", False),
    ("machine", "WDT", "feed", "self", (), "", False),
    ("time", "", "sleep_us", "us", (), "", False),
    ("time", "", "sleep_ms", "ms", (), "", False),
    ("time", "", "sleep", "s", (), "", False),
    ("select", "_Poll", "ipoll", "self", ("timeout", "flags"), "", False),
    ("select", "_Poll", "poll", "self", ("timeout", "flags"), "", False),
    ("select", "_Poll", "register", "self, obj", ("flags",), "", False),
    ("select", "_Poll", "modify", "self, obj, flags", (), "", False),
    ("select", "_Poll", "unregister", "self, obj", (), "", False),
    ("bluetooth", "BLE", "active", "self", ("a",), "", False),
    ("bluetooth", "BLE", "gap_advertise", "self, interval_us",
     ("adv_data", "resp_data", "connectable"), "", False),
    ("bluetooth", "BLE", "gap_disconnect", "self, conn_handle", (), "", False),
    ("bluetooth", "BLE", "gatts_read", "self, value_handle", (), "", True),
    ("bluetooth", "BLE", "gatts_write", "self, value_handle, data", ("send_update",), "", False),
    ("bluetooth", "BLE", "gatts_notify", "self, conn_handle, value_handle", ("data",), "", False),
    ("bluetooth", "BLE", "gatts_indicate", "self, conn_handle, value_handle", ("data",), "",
     False),
)  # fmt: skip

_HANDLER_SRC = """
def hwrap(fn):
    def h(*a):
        global _depth, _m0, _handler
        d = _depth
        m0 = _m0
        _depth = 0
        m = gc.mem_alloc()
        try:
            return fn(*a)
        finally:
            if d:
                _handler += gc.mem_alloc() - m
            _depth = d
            _m0 = m0
    return h
"""


def _wrapper_src(req, opt, kw, owned):
    # def wrap(fn) -> w: calls fn with exactly the arguments w was given; at depth 0 it adds
    # what fn allocated to _bridge
    kwargs = "".join(", %s=%s" % (k, k) for k in [k.split("=")[0] for k in kw.split(", ") if k])
    calls = []  # (condition or None, call), the most arguments first
    for i in range(len(opt), -1, -1):
        args = req + "".join(", " + o for o in opt[:i]) + kwargs
        calls.append((("%s is not _N" % opt[i - 1]) if i else None, "fn(%s)" % args))
    params = req + "".join(", %s=_N" % o for o in opt) + (", *, " + kw if kw else "")
    src = [
        "def wrap(fn):",
        "    def w(%s):" % params,
        "        global _depth, _m0, _bridge, _calls",
        "        if _depth:",
    ]
    for cond, call in calls:
        src.append("            %sreturn %s" % ("if %s: " % cond if cond else "", call))
    src += [
        "        _depth = 1",
        "        _calls += 1",
        "        _m0 = gc.mem_alloc()",
        "        try:",
    ]
    if len(calls) == 1:
        src.append("            r = " + calls[0][1])
    else:
        for j, (cond, call) in enumerate(calls):
            src.append(
                "            " + ("%s %s:" % ("elif" if j else "if", cond) if cond else "else:")
            )
            src.append("                r = " + call)
    src += [
        "        finally:",
        "            _bridge += gc.mem_alloc() - _m0",
        "            _depth = 0",
    ]
    if owned:
        src.append("        _bridge -= _owned(r)")
    src += ["        return r", "    return w"]
    return "\n".join(src) + "\n"


def _owned(r):
    # what a fresh bytes costs on this heap: its object and its data (+ NUL), in 32-byte blocks
    if not isinstance(r, (bytes, bytearray)):
        return 0
    return 32 + (len(r) + 1 + 31) // 32 * 32


_ns = None  # the wrappers' namespace: counters and what arm() replaced


def arm():
    global _ns
    if _ns is not None:
        return False
    ns = {"gc": gc, "_N": object(), "_owned": _owned, "_depth": 0, "_m0": 0, "_bridge": 0,
          "_handler": 0, "_calls": 0, "undo": []}  # fmt: skip
    exec(_HANDLER_SRC, ns)
    swaps = {}  # original -> wrapper
    for mod, cls, name, req, opt, kw, owned in _BRIDGE:
        target = sys.modules[mod]
        if cls:
            target = getattr(target, cls)
        orig = getattr(target, name)
        exec(_wrapper_src(req, opt, kw, owned), ns)
        w = ns["wrap"](orig)
        setattr(target, name, w)
        ns["undo"].append((target, name, orig))
        if not cls:
            swaps[id(orig)] = (orig, w)
    for m in list(sys.modules.values()):  # captured module functions
        if m is None:
            continue
        for n in dir(m):
            v = getattr(m, n, None)
            hit = swaps.get(id(v))
            if hit is not None and hit[0] is v and v is not hit[1]:
                try:
                    setattr(m, n, hit[1])
                    ns["undo"].append((m, n, v))
                except (AttributeError, TypeError):
                    pass
    ns["handlers"] = {}
    for hid, fn in list(vlink.handlers.items()):
        if hid != HID:
            h = ns["hwrap"](fn)
            vlink.handlers[hid] = h
            ns["handlers"][hid] = (fn, h)
    _ns = ns
    return len(ns["undo"])


def disarm():
    global _ns
    ns = _ns
    if ns is None:
        return False
    for target, name, orig in ns["undo"]:
        setattr(target, name, orig)
    for hid, (fn, h) in ns["handlers"].items():
        if vlink.handlers.get(hid) is h:
            vlink.handlers[hid] = fn
    _ns = None
    return True


def _best_us(fn, n):
    best = None
    for _ in range(n):
        gc.collect()
        t0 = rt.ticks_us()
        fn()
        t = rt.ticks_diff(rt.ticks_us(), t0)
        best = t if best is None or t < best else best
    return best


def crypto(key, msg, sig, kb=8, n=3):
    # Ed25519 verify (ms) and SHA-512 (us/KB), best of n, with each SHA-512 the firmware can get
    # from firmware/update/sha512.py: micropython-lib's (the device's /lib) and the fallback.
    # Needs the firmware on sys.path (a slot).
    import hashlib

    from firmware.update import ed25519, sha512

    assert sha512._native is hashlib.sha512, "sha512 is not micropython-lib's"
    data = bytes(kb * 1024)
    out = {"hashlib": getattr(hashlib, "__file__", None)}
    impls = (("mplib", hashlib.sha512), ("fallback", sha512.Sha512))
    try:
        for label, impl in impls:
            sha512._native = impl
            assert sha512.new(b"abc").digest() == hashlib.sha512(b"abc").digest()
            assert ed25519.verify(key, msg, sig)  # the first builds B's table (once)
            out["verify_" + label] = _best_us(lambda: ed25519.verify(key, msg, sig), n)
            out["sha512_" + label] = _best_us(lambda: sha512.new(data).digest(), n)
    finally:
        sha512._native = hashlib.sha512
    return out


_PROBES = {
    "info": info,
    "clock": clock,
    "heap": heap,
    "gc_pause": gc_pause,
    "alloc_start": alloc_start,
    "mem_alloc": mem_alloc,
    "alloc_stop": alloc_stop,
    "arm": arm,
    "disarm": disarm,
}


def call(name, *args):
    return _PROBES[name](*args)


vlink.handlers[HID] = call
