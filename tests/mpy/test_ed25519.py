# Ed25519 verification, the SHA-512 it needs, and bundle verification on the real MicroPython
# interpreter (the WebAssembly build under Node), with the device's SHA-512.
#
# That build's hashlib has sha256 only. As on the device, micropython-lib's hashlib-sha512 (the
# pinned .py files, which run.mjs puts in /lib) adds hashlib.sha512, so firmware/update/sha512.py
# uses it: these tests run micropython-lib's SHA-512 and the big-integer curve arithmetic on
# MicroPython's ints. test_sha512_fallback.py runs the same vectors on the project's own
# fallback (sha512.Sha512, for interpreters without hashlib.sha512); test_mplib.py checks the
# pinned packages themselves.

import os
from binascii import unhexlify

import mpytest

from firmware.update import bundle, ed25519, sha512

# RFC 8032 section 7.1, TEST 1, 2, 3 and 1024: (public key, message, signature), hex.
_RFC8032 = (
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701c"
        "f9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0"
        "f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f76098"
        "4dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
)
_T1024_KEY = "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e"
_T1024_MSG = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)
_T1024_SIG = (
    "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c4"
    "36d94b5e8fcd4f681e30a6ac00a9704a188a03"
)
_L = 2**252 + 27742317777372353535851937790883648493


def _vectors():
    out = [(unhexlify(k), unhexlify(m), unhexlify(s)) for k, m, s in _RFC8032]
    out.append((unhexlify(_T1024_KEY), unhexlify("".join(_T1024_MSG)), unhexlify(_T1024_SIG)))
    return out


def test_the_device_sha512_is_what_runs_here():
    # micropython-lib's, from /lib, not the port's (it has none) nor the fallback
    import hashlib

    assert hashlib.__file__ == "/lib/hashlib/__init__.py"
    assert sha512._native is hashlib.sha512
    assert not isinstance(sha512.new(), sha512.Sha512)
    assert sha512.new().digest_size == 64


def test_sha512_known_digests():
    # FIPS 180-2 example "abc", and a message across two blocks (padding spills over).
    assert sha512.new(b"abc").digest() == unhexlify(
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    )
    one = sha512.new(b"x" * 200).digest()
    h = sha512.new()
    for _ in range(8):
        h.update(b"x" * 25)
    assert h.digest() == one


def test_rfc8032_vectors_verify():
    for key, msg, sig in _vectors():
        assert ed25519.verify(key, msg, sig), len(msg)


def test_any_changed_byte_fails():
    key, msg, sig = _vectors()[2]
    for i in (0, 17, 31, 32, 50, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not ed25519.verify(key, msg, bytes(bad)), i
    assert not ed25519.verify(key, msg + b"\x00", sig)
    assert not ed25519.verify(key, b"\xaf\x83", sig)
    bad_key = bytearray(key)
    bad_key[5] ^= 0x40
    assert not ed25519.verify(bytes(bad_key), msg, sig)


def test_non_canonical_s_is_refused():
    key, msg, sig = _vectors()[1]
    s = int.from_bytes(sig[32:], "little")
    assert not ed25519.verify(key, msg, sig[:32] + (s + _L).to_bytes(32, "little"))


def test_wrong_lengths_are_refused():
    key, msg, sig = _vectors()[0]
    assert not ed25519.verify(key[:31], msg, sig)
    assert not ed25519.verify(key, msg, sig[:63])


# A tiny bundle signed on the host with the development key (bundler.pack): board "mpytest",
# abi 11014 (the ESP32-S3), counter 5, files app/hello.txt and data.bin (1280 bytes: two
# chunks). Its header, manifest and signature are pinned here with the key that signed them.
_BUNDLE_KEY = "6a12fe3fdbbc649dc25be354d200e73d1815ff28f4e81dd5dfb5c097e3f05d1b"
_BUNDLE_HEAD = (
    "424842312d0100007b22666f726d6174223a312c2276657273696f6e223a22312e322e33222c22626f617264"
    "223a226d707974657374222c22616269223a31313031342c22636f756e746572223a352c2266696c6573223a"
    "5b7b2270617468223a226170702f68656c6c6f2e747874222c2273697a65223a32322c22736861323536223a"
    "2232346134393931613564363061666633643230663062623464356534376136666163646532396233656435"
    "636162343139616330646534396333353336393334227d2c7b2270617468223a22646174612e62696e222c22"
    "73697a65223a313238302c22736861323536223a226434313462303835383236656230363737383438336261"
    "3335353634646338343965363433333539663639656439373437383738626136653534393835626564227d5d"
    "7dcc8feea49b15d977dff4db30e707e23e88b661dd6fac3b95413fa6cce4272f57aa5eb755827c408f6f121f"
    "905ebda5566fc094722b3827136baf35f83cb22c01"
)
_HELLO = b"hello from the bundle\n"
_DATA = bytes(range(256)) * 5
_DIR = "/tmp/bh_bundle"


def _write_bundle(name, flip=None):
    try:
        os.mkdir(_DIR)
    except OSError:
        pass
    blob = bytearray(unhexlify("".join(_BUNDLE_HEAD)) + _HELLO + _DATA)
    if flip is not None:
        blob[flip] ^= 0x01
    path = _DIR + "/" + name
    with open(path, "wb") as f:
        f.write(blob)
    return path, len(blob)


def _verify(path, **kw):
    args = {"board_id": "mpytest", "abi": 11014, "min_counter": 0, "capacity": None}
    args.update(kw)
    return bundle.verify(
        path,
        unhexlify(_BUNDLE_KEY),
        args["board_id"],
        args["abi"],
        args["min_counter"],
        args["capacity"],
    )


def test_bundle_verifies_and_unpacks():
    path, size = _write_bundle("good.bhb")
    man = _verify(path)
    assert man["version"] == "1.2.3" and man["counter"] == 5
    assert [f["path"] for f in man["files"]] == ["app/hello.txt", "data.bin"]
    bundle.unpack(path, man, _DIR + "/slot")
    with open(_DIR + "/slot/app/hello.txt", "rb") as f:
        assert f.read() == _HELLO
    with open(_DIR + "/slot/data.bin", "rb") as f:
        assert f.read() == _DATA


def test_bundle_refusals():
    path, size = _write_bundle("good.bhb")
    cases = (
        ({"board_id": "backhug_v3"}, "board"),
        ({"abi": bundle.device_abi()}, "abi"),  # this interpreter is not an ESP32-S3
        ({"min_counter": 6}, "counter"),
        ({"capacity": 1000}, "capacity"),
    )
    for kw, code in cases:
        with mpytest.raises(bundle.BundleError) as err:
            _verify(path, **kw)
        assert err.value.code == code, (code, str(err.value))
    for offset, code in ((0, "magic"), (20, "signature"), (400, "hash"), (size - 1, "hash")):
        bad, _ = _write_bundle("bad.bhb", flip=offset)
        with mpytest.raises(bundle.BundleError) as err:
            _verify(bad)
        assert err.value.code == code, (offset, str(err.value))
        assert str(err.value).startswith(code + ": ")


def test_device_abi_is_this_interpreters():
    import sys

    assert bundle.device_abi() == sys.implementation._mpy
