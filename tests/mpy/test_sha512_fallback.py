# The project's own SHA-512 (firmware/update/sha512.py Sha512) on the real MicroPython
# interpreter: the fallback for an interpreter whose hashlib has no sha512 and no
# micropython-lib hashlib-sha512 installed.
#
# Everywhere else in tier 2, as on the device, micropython-lib's hashlib.sha512 (from /lib) is
# what sha512.new() returns. This file has its own interpreter, so it points sha512.new() at the
# fallback and runs test_ed25519.py's Ed25519 and bundle tests again on it, then checks the
# fallback against micropython-lib's at every length where the padding changes shape.

import hashlib

from firmware.update import sha512

_DEVICE_SHA512 = sha512._native
sha512._native = None  # sha512.new() reads it at each call

from test_ed25519 import (  # noqa: E402, F401 - collected and run here, on the fallback
    test_any_changed_byte_fails,
    test_bundle_refusals,
    test_bundle_verifies_and_unpacks,
    test_non_canonical_s_is_refused,
    test_rfc8032_vectors_verify,
    test_sha512_known_digests,
    test_wrong_lengths_are_refused,
)


def test_the_fallback_is_what_runs_here():
    assert _DEVICE_SHA512 is hashlib.sha512  # the device's is installed, but not used here
    assert isinstance(sha512.new(), sha512.Sha512)


def test_fallback_and_micropython_lib_agree_at_the_padding_boundaries():
    # 111/112 bytes: the length still fits in the last block or spills into another; 127/128/129:
    # a block exactly full; the same one and two blocks on
    data = bytes(range(256)) * 2
    for n in (0, 1, 55, 56, 111, 112, 113, 127, 128, 129, 239, 240, 241, 255, 256, 257, 384, 512):
        assert sha512.Sha512(data[:n]).digest() == _DEVICE_SHA512(data[:n]).digest(), n
