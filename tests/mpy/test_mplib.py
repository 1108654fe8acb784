# micropython-lib's packages as the device runs them, on the real MicroPython interpreter.
#
# run.mjs puts the pinned .py files of tools/backhug_host/mplib.json into /lib (the device's
# library folder, on MicroPython's default sys.path) and the pin file itself at /app/mplib.json.
# Here: /lib holds exactly those files; hashlib-sha512's SHA-512 gives the known answers; cbor2
# encodes and decodes as RFC 8949 says; and the firmware's SMP server (firmware/update/smp.py)
# takes a signed bundle through an upload with that cbor2 and that SHA-512, as on the device.
# (aioble needs the `bluetooth` module, which this port does not have.)

import hashlib
import json
import os
from binascii import hexlify, unhexlify

import cbor2
import mpytest

from firmware import session as ses
from firmware.update import sha512, slots, smp

_S_IFDIR = 0x4000


def _pins():
    with open("/app/mplib.json") as f:
        return json.load(f)


def _walk(root, rel=""):
    out = []
    for name in os.listdir(root + ("/" + rel if rel else "")):
        r = rel + "/" + name if rel else name
        if os.stat(root + "/" + r)[0] & _S_IFDIR:
            out += _walk(root, r)
        else:
            out.append(r)
    return out


def _sha256_hex(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return hexlify(h.digest()).decode()


# --- what is installed ---------------------------------------------------------------------


def test_lib_holds_exactly_the_pinned_files():
    want = {}
    for p in _pins()["packages"].values():
        want.update(p["py"])
    have = _walk("/lib")
    assert sorted(have) == sorted(want), have
    for rel, digest in want.items():
        assert _sha256_hex("/lib/" + rel) == digest, rel


def test_the_firmware_imports_them_from_lib():
    assert hashlib.__file__ == "/lib/hashlib/__init__.py"
    assert cbor2.__file__ == "/lib/cbor2/__init__.py"
    assert sha512._native is hashlib.sha512  # firmware/update/sha512.py takes micropython-lib's
    with mpytest.raises(ImportError):
        import aioble  # noqa: F401 - present, but it imports `bluetooth`
    assert "aioble/server.py" in _walk("/lib")


# --- hashlib-sha512 ------------------------------------------------------------------------

# FIPS 180-2 appendix C (one block, two blocks), the empty message, and 1000 'a's, hex.
_SHA512_KAT = (
    (
        b"",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    (
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
        "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
        b"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
    ),
    (
        b"a" * 1000,
        "67ba5535a46e3f86dbfbed8cbbaf0125c76ed549ff8b0b9e03e0c88cf90fa634"
        "fa7b12b47d77b694de488ace8d9a65967dc96df599727d3292a8d9d447709c97",
    ),
)


def test_sha512_known_answers():
    for msg, digest in _SHA512_KAT:
        h = hashlib.sha512(msg)
        assert h.digest() == unhexlify(digest), len(msg)
        assert h.hexdigest() == digest
        assert hashlib.new("sha512", msg).digest() == unhexlify(digest)
    assert hashlib.sha512().digest_size == 64 and hashlib.sha512().block_size == 128


def test_sha512_in_pieces_copies_and_buffer_types():
    msg, digest = _SHA512_KAT[4]  # 1000 bytes: 7 blocks and a tail
    for step in (1, 7, 111, 112, 127, 128, 129, 300):
        h = hashlib.sha512()
        for i in range(0, len(msg), step):
            h.update(msg[i : i + step])
        assert h.hexdigest() == digest, step
    h = hashlib.sha512(b"ab")
    early = h.copy()
    h.update(bytearray(b"c"))
    assert h.digest() == unhexlify(_SHA512_KAT[1][1])
    assert h.digest() == h.digest()  # digest() does not end the hash
    early.update(memoryview(b"c"))
    assert early.hexdigest() == _SHA512_KAT[1][1]


def test_the_builtin_hashes_are_still_there():
    # the package re-exports the port's own hashlib (sha256 for bundles and uploads)
    assert hexlify(hashlib.sha256(b"abc").digest()) == (
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    with mpytest.raises(ValueError):
        hashlib.new("md4")


# --- cbor2 ---------------------------------------------------------------------------------

# RFC 8949 appendix A: (value, encoding hex) for the kinds SMP uses
_CBOR = (
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (-1, "20"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"),
    ({"a": [2, 3]}, "a16161820203"),
)


def test_cbor2_rfc8949_examples():
    for value, enc in _CBOR:
        assert hexlify(cbor2.dumps(value)).decode() == enc, value
        back = cbor2.loads(unhexlify(enc))
        assert back == value and type(back) is type(value), enc


def test_cbor2_maps_and_long_byte_strings():
    # several keys: MicroPython's dicts have no fixed order, so compare decoded
    assert cbor2.loads(unhexlify("a201020304")) == {1: 2, 3: 4}
    assert cbor2.loads(unhexlify("a26161016162820203")) == {"a": 1, "b": [2, 3]}
    chunk = bytes(range(256)) * 8  # an SMP upload chunk's size class
    body = {"off": 4096, "data": chunk, "len": 100000, "sha": bytes(32)}
    enc = cbor2.dumps(body)
    assert cbor2.loads(enc) == body
    assert b"\x59\x08\x00" + chunk in enc  # 2-byte length form
    # indefinite-length strings and arrays (other clients send them)
    assert cbor2.loads(unhexlify("5f42010243030405ff")) == b"\x01\x02\x03\x04\x05"
    assert cbor2.loads(unhexlify("9f018202039f0405ffff")) == [1, [2, 3], [4, 5]]


# --- the SMP server with micropython-lib's cbor2 and SHA-512 ---------------------------------


class _Device:
    # the part of app.Device the SMP server reads
    def __init__(self):
        self.update_in_progress = False
        self.session = self
        self.state = ses.IDLE


def _request(op, group, cmd, body, seq):
    data = cbor2.dumps(body)
    return smp.pack_header(op, smp.V2, len(data), group, seq, cmd) + data


def _answer(server, op, group, cmd, body, seq=0):
    rsp = server.handle(_request(op, group, cmd, body, seq))
    assert rsp[0] & 7 == op + 1 and rsp[6] == seq and rsp[7] == cmd
    assert smp.packet_length(rsp) == len(rsp)
    return cbor2.loads(rsp[smp.HEADER_SIZE :])


def test_smp_upload_of_a_signed_bundle():
    # test_ed25519's bundle (board "mpytest", the ESP32-S3's ABI), uploaded in 3 chunks
    from test_ed25519 import _BUNDLE_HEAD, _BUNDLE_KEY, _DATA, _HELLO

    blob = unhexlify("".join(_BUNDLE_HEAD)) + _HELLO + _DATA
    root = "/tmp/bh_mplib_slots"
    try:
        os.mkdir(root)
    except OSError:
        pass
    store = slots.Slots(root, "mpytest", 11014, unhexlify(_BUNDLE_KEY))
    dev = _Device()
    server = smp.SmpServer(store, dev)
    assert _answer(server, smp.OP_WRITE, smp.GROUP_OS, smp.OS_ECHO, {"d": "hi"}) == {"r": "hi"}
    params = _answer(server, smp.OP_READ, smp.GROUP_OS, smp.OS_PARAMS, {})
    assert params == {"buf_size": smp.BUF_SIZE, "buf_count": 1}
    sha = hashlib.sha256(blob).digest()
    off = 0
    seq = 1
    while off < len(blob):
        body = {"off": off, "data": blob[off : off + 700]}
        if off == 0:
            body.update({"len": len(blob), "sha": sha, "image": 0})
        r = _answer(server, smp.OP_WRITE, smp.GROUP_IMAGE, smp.IMG_UPLOAD, body, seq)
        assert "rc" not in r and "err" not in r, r
        off = r["off"]
        seq += 1
    # the last chunk verified the bundle: SHA-256, Ed25519 with hashlib-sha512, board, ABI
    assert r == {"off": len(blob), "match": True}
    assert not dev.update_in_progress
    images = _answer(server, smp.OP_READ, smp.GROUP_IMAGE, smp.IMG_STATE, {})["images"]
    new = [i for i in images if i["hash"] == hashlib.sha256(blob).digest()]
    assert len(new) == 1 and new[0]["version"] == "1.2.3" and not new[0]["active"], images


def test_smp_refuses_what_is_not_cbor_or_not_a_map():
    server = smp.SmpServer(None, _Device())
    for body in (b"\xff\xff", cbor2.dumps([1, 2])):
        pkt = smp.pack_header(smp.OP_WRITE, smp.V2, len(body), smp.GROUP_OS, 7, smp.OS_ECHO) + body
        r = cbor2.loads(server.handle(pkt)[smp.HEADER_SIZE :])
        assert r["rc"] == smp.EINVAL and r["rsn"].startswith("body: not"), r
