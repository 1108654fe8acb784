# Ed25519 signature verification (RFC 8032 section 5.1.7) for update bundles, in plain integer
# arithmetic: MicroPython's ints are arbitrary-precision, so this runs unchanged on the device
# and on CPython. Verification only; signing happens on the host (the cryptography package).
#
#   verify(public_key, message, signature) -> bool
#   verify_steps(public_key, message, signature): the same as a generator (below)
#   run_steps(gen) -> what the generator returned, run to the end without a pause
#
# Steps: on the device a verification takes most of a second, far longer than the 10 ms control
# period, so it runs inside the asyncio task that asked for it as a generator that yields (None)
# after every small piece of work: one SHA-512 block of the message, one point decoding (one
# modular exponentiation), or STEP_BITS bits of the scalar multiplication. Whoever drives it
# lets the other tasks run at each yield (firmware/update/smp.py: `await sleep_ms(0)`); what it
# returns is the result. bundle.py and slots.py build their long operations the same way, with
# `yield from`, and keep a plain function that is run_steps() of the generator (tests, host
# tools, provisioning).
#
# Checks, as RFC 8032 asks: the signature is 64 bytes and the key 32; S < L (a non-canonical S
# would make signatures malleable); R and the public key decode to curve points (y < p, x
# exists, no "negative zero"); then the cofactorless equation [S]B = R + [k]A with
# k = SHA-512(R || A || message) mod L, computed as [S]B + [k](-A) and compared with R in
# projective coordinates (no inversion).
#
# Speed: points in extended coordinates (X:Y:Z:T, x = X/Z, y = Y/Z, xy = T/Z; RFC 8032 5.1.4),
# the two scalar multiplications interleaved (one chain of ~253 doublings) with signed sliding
# windows (wNAF): odd multiples of B up to 31B are computed once and kept (~3 KB), those of -A
# up to 15A per call. Secret-independent timing is not needed: everything here is public.

from firmware.update import sha512

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point B
_D = -121665 * pow(121666, P - 2, P) % P  # the curve's d = -121665/121666
_D2 = 2 * _D % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)  # a square root of -1 mod p
_W_B = 6  # window widths: B's table is built once, A's on every call
_W_A = 5
# Work per step: STEP_BITS bits of the scalar multiplication (each one doubling and at most two
# additions), or STEP_BITS additions building a table of multiples. tests/mpy/bench_ed25519.py
# measures the longest step on MicroPython (docs/updates.md).
STEP_BITS = 8
_HASH_STEP = 128  # the message goes into SHA-512 one block per step

_b_table = None  # (positive, negative) odd multiples of B in cached form, built on first use


def _decode(s):
    # RFC 8032 5.1.3: 32 bytes -> (x, y), or None if they are not a valid point encoding.
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    yy = y * y % P
    u = (yy - 1) % P
    v = (_D * yy + 1) % P
    # x = u/v ^ (1/2) as u v^3 (u v^7)^((p-5)/8): one exponentiation, no inversion.
    v3 = v * v % P * v % P
    x = u * v3 % P * pow(u * v3 % P * v3 % P * v % P, (P - 5) // 8, P) % P
    vxx = v * x % P * x % P
    if vxx != u:
        if vxx != P - u:
            return None  # x^2 = u/v has no solution: not on the curve
        x = x * _SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y


def _double(p):
    # 2P for a = -1 ("dbl-2008-hwcd"); T of the input is not needed.
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    s = x1 + y1
    e = h - s * s % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _add(p, q):
    # P + Q, P extended (X, Y, Z, T), Q cached (Y+X, Y-X, Z, 2dT) ("add-2008-hwcd-3").
    x1, y1, z1, t1 = p
    a = (y1 - x1) * q[1] % P
    b = (y1 + x1) * q[0] % P
    c = t1 * q[3] % P
    d = 2 * z1 * q[2] % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _cached(p):
    x, y, z, t = p
    return ((y + x) % P, (y - x) % P, z, t * _D2 % P)


def _neg_cached(c):
    # -(x, y) = (-x, y): Y+X and Y-X swap, T changes sign.
    return (c[1], c[0], c[2], (P - c[3]) % P)


def run_steps(gen):
    # Runs a step generator to its end at once; returns what it returned.
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value  # MicroPython has .value too (args[0] of any exception)


def _odd_multiples(p, w):
    # [1P, 3P, 5P, ..., (2^(w-1) - 1)P] and their negatives, in cached form; a step generator.
    p2 = _cached(_double(p))
    pos = [_cached(p)]
    cur = p
    for i in range((1 << (w - 2)) - 1):
        cur = _add(cur, p2)
        pos.append(_cached(cur))
        if i % STEP_BITS == STEP_BITS - 1:
            yield
    return pos, [_neg_cached(c) for c in pos]


def _wnaf(n, w):
    # Signed digits of n, least significant first: each 0 or odd with |d| < 2^(w-1), and any
    # non-zero digit followed by at least w-1 zeros, so about one addition per w+1 bits.
    digits = []
    full = 1 << w
    half = 1 << (w - 1)
    while n:
        if n & 1:
            d = n & (full - 1)
            if d >= half:
                d -= full
            n -= d
        else:
            d = 0
        digits.append(d)
        n >>= 1
    return digits


def _base_table():
    # A step generator (the first verification builds the table).
    global _b_table
    if _b_table is None:
        x, y = _decode(bytes([0x58]) + bytes([0x66]) * 31)  # B: y = 4/5, x even (RFC 8032 5.1)
        yield
        _b_table = yield from _odd_multiples((x, y, 1, x * y % P), _W_B)
    return _b_table


def _s_b_plus_k_a(s, k, a_tables):
    # [s]B + [k]A' in extended coordinates, A' given by its tables; a step generator.
    b_pos, b_neg = yield from _base_table()
    a_pos, a_neg = a_tables
    ds = _wnaf(s, _W_B)
    dk = _wnaf(k, _W_A)
    ns = len(ds)
    nk = len(dk)
    q = (0, 1, 1, 0)  # the neutral element
    for i in range(max(ns, nk) - 1, -1, -1):
        q = _double(q)
        d = ds[i] if i < ns else 0
        if d > 0:
            q = _add(q, b_pos[d >> 1])
        elif d < 0:
            q = _add(q, b_neg[(-d) >> 1])
        d = dk[i] if i < nk else 0
        if d > 0:
            q = _add(q, a_pos[d >> 1])
        elif d < 0:
            q = _add(q, a_neg[(-d) >> 1])
        if i % STEP_BITS == 0:
            yield
    return q


def verify(public_key, message, signature):
    # True only for a valid Ed25519 signature of message (bytes-like) by public_key (32 bytes).
    return run_steps(verify_steps(public_key, message, signature))


def verify_steps(public_key, message, signature):
    # verify() as a step generator: yields between pieces of work, returns the bool.
    if len(public_key) != 32 or len(signature) != 64:
        return False
    s = int.from_bytes(bytes(signature[32:]), "little")
    if s >= L:
        return False
    a = _decode(bytes(public_key))
    yield
    r_bytes = bytes(signature[:32])
    r = _decode(r_bytes)
    if a is None or r is None:
        return False
    yield
    h = sha512.new(r_bytes)
    h.update(bytes(public_key))
    mv = memoryview(message)
    for i in range(0, len(mv), _HASH_STEP):
        h.update(mv[i : i + _HASH_STEP])
        yield
    k = int.from_bytes(h.digest(), "little") % L
    yield
    neg_a = (P - a[0]) % P, a[1]
    tables = yield from _odd_multiples((neg_a[0], neg_a[1], 1, neg_a[0] * neg_a[1] % P), _W_A)
    x, y, z, _ = yield from _s_b_plus_k_a(s, k, tables)
    # [S]B - [k]A == R, compared projectively: X = x_R Z and Y = y_R Z.
    return (x - r[0] * z) % P == 0 and (y - r[1] * z) % P == 0
