# Ed25519 verification for update bundles (firmware/update/ed25519.py) on CPython: RFC 8032's
# test vectors, and signatures made by the cryptography package (what backhug-bundle signs
# with) must verify, while any altered byte of key, message or signature must not.

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from firmware.update import ed25519

L = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19

# RFC 8032 section 7.1: (name, secret key, public key, message, signature), hex.
_T1024_MSG = "".join(
    (
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
)
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701c"
        "f9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0"
        "f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f76098"
        "4dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        _T1024_MSG,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c4"
        "36d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
]


def _public(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@pytest.mark.parametrize("name,secret,public,message,signature", RFC8032, ids=lambda v: v)
def test_rfc8032_vectors(name, secret, public, message, signature):
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    # The vectors as copied are the RFC's: Ed25519 signing is deterministic, so cryptography
    # reproduces key and signature from the secret exactly.
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert _public(key) == pk and key.sign(msg) == sig
    assert ed25519.verify(pk, msg, sig)
    assert not ed25519.verify(pk, msg + b"\x00", sig)


def test_rfc_1024_message_is_1023_bytes():
    assert len(bytes.fromhex(_T1024_MSG)) == 1023


@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_cryptography_signatures_verify(seed, message):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert ed25519.verify(_public(key), message, key.sign(message))


@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(min_size=1, max_size=100),
    where=st.sampled_from(["key", "message", "signature"]),
    index=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_altered_byte_fails(seed, message, where, index, mask):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    parts = {"key": _public(key), "message": message, "signature": key.sign(message)}
    bad = bytearray(parts[where])
    bad[index % len(bad)] ^= mask
    parts[where] = bytes(bad)
    assert not ed25519.verify(parts["key"], parts["message"], parts["signature"])


@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=50))
def test_non_canonical_s_is_rejected(seed, message):
    # S + L is the same scalar mod L, so [S+L]B = [S]B and the equation alone would accept it:
    # only the S < L check (RFC 8032 5.1.7) stops this second signature for the same message.
    key = Ed25519PrivateKey.from_private_bytes(seed)
    sig = key.sign(message)
    s = int.from_bytes(sig[32:], "little")
    forged = sig[:32] + (s + L).to_bytes(32, "little")  # s < L < 2**253: always fits
    assert not ed25519.verify(_public(key), message, forged)


def test_wrong_lengths_fail():
    _, _, pk, msg, sig = RFC8032[1]
    pk, msg, sig = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
    assert not ed25519.verify(pk[:31], msg, sig)
    assert not ed25519.verify(pk + b"\x00", msg, sig)
    assert not ed25519.verify(pk, msg, sig[:63])
    assert not ed25519.verify(pk, msg, sig + b"\x00")


def _not_on_curve_y():
    # The smallest y for which x^2 = (y^2 - 1) / (d y^2 + 1) has no square root mod p.
    for y in range(2, 100):
        u, v = (y * y - 1) % P, (ed25519._D * y * y + 1) % P
        x2 = u * pow(v, P - 2, P) % P
        if pow(x2, (P - 1) // 2, P) == P - 1:
            return y
    raise AssertionError("no such y below 100")


@pytest.mark.parametrize(
    "encoding",
    [
        P.to_bytes(32, "little"),  # y = p: not reduced
        (P + 1).to_bytes(32, "little"),  # y = p + 1 would alias y = 1
        (1 | 1 << 255).to_bytes(32, "little"),  # y = 1 gives x = 0: a sign bit is "-0"
        "off-curve",
    ],
    ids=["y=p", "y=p+1", "negative-zero", "off-curve"],
)
def test_invalid_point_encodings_are_refused(encoding):
    if encoding == "off-curve":
        encoding = _not_on_curve_y().to_bytes(32, "little")
    assert ed25519._decode(encoding) is None
    # as a public key, and as R, with an otherwise well-formed signature
    _, _, pk, msg, sig = RFC8032[2]
    pk, msg, sig = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
    assert not ed25519.verify(encoding, msg, sig)
    assert not ed25519.verify(pk, msg, encoding + sig[32:])


def test_decode_finds_both_signs():
    # The base point's encoding (y = 4/5, x even) and its negation decode to x and p - x.
    b = bytes([0x58]) + bytes([0x66]) * 31
    x, y = ed25519._decode(b)
    assert x % 2 == 0 and y == 4 * pow(5, P - 2, P) % P
    neg = bytearray(b)
    neg[31] |= 0x80
    assert ed25519._decode(bytes(neg)) == (P - x, y)
