# The device's fallback SHA-512 (firmware/update/sha512.py, used where neither the port nor
# micropython-lib provides hashlib.sha512) must give CPython's hashlib digests for any input,
# however it is split into update() calls.

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.update import sha512


def _fallback(chunks):
    h = sha512.Sha512()
    for c in chunks:
        h.update(c)
    return h.digest()


@pytest.mark.parametrize(
    "n", [0, 1, 55, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 1023, 1024]
)
def test_block_and_padding_boundaries(n):
    # 111/112 bytes: the length field still fits / spills into another block; 128: exact block.
    data = bytes((i * 31 + 7) & 0xFF for i in range(n))
    assert sha512.Sha512(data).digest() == hashlib.sha512(data).digest()
    assert _fallback([data[i : i + 1] for i in range(n)]) == hashlib.sha512(data).digest()


def test_fips_180_example():
    assert sha512.Sha512(b"abc").digest().hex().startswith("ddaf35a193617abacc417349ae204131")


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_inputs_any_split(chunks):
    assert _fallback(chunks) == hashlib.sha512(b"".join(chunks)).digest()


@given(st.binary(max_size=400))
def test_bytes_like_inputs(data):
    # verify() hands the manifest over as a bytearray; memoryviews work too.
    want = hashlib.sha512(data).digest()
    assert sha512.Sha512(bytearray(data)).digest() == want
    assert _fallback([memoryview(data)]) == want


def test_digest_does_not_end_the_hash():
    h = sha512.Sha512(b"first part, ")
    early = h.digest()
    h.update(b"second part")
    assert early == hashlib.sha512(b"first part, ").digest()
    assert h.digest() == hashlib.sha512(b"first part, second part").digest()


def test_new_prefers_the_ports_sha512():
    # CPython has hashlib.sha512, as the device has it once hashlib-sha512 is installed.
    assert sha512._native is hashlib.sha512
    assert sha512.new(b"x").digest() == hashlib.sha512(b"x").digest()
