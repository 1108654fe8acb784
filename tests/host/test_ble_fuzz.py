"""Bad input over BLE: arbitrary bytes on every characteristic of the simulated BackHug, through
a real BLE host stack (Bumble), in every session state; from strangers; with the link dropped in
the middle of writes and of a programme upload.

Each hypothesis example boots one simulated device (with the per-tick safety monitor of
invariants.py), bonds a phone and walks the session through its states with valid commands
(virtual time); in each state it plays a burst of generated actions. After every action
blefuzz_helpers.FuzzPhone checks the answer against the protocol, that a refused write changed
nothing, and that the device is healthy and within its safety limits.
"""

import asyncio
import json
import random
import zlib

import pytest
from blefuzz_helpers import (
    EXAMPLE_PROGRAMME,
    PARAM_BYTES,
    UP_ABORT,
    UP_COMMIT,
    FuzzPhone,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from invariants import watch

from backhug_host import hostrt
from backhug_host.blesim import BleSim
from firmware.ble import proto

FUZZ = settings(
    max_examples=2,
    derandomize=True,
    deadline=None,
    # no shrinking: one example is a long session and the failure names the actions played
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STAGES = (
    "idle",
    "scanning",
    "legrest_rising",
    "warmup",
    "treating",
    "paused",
    "finishing",
    "programme",
)

# -- what a phone might write ------------------------------------------------------------------


def _blob(lo, hi):
    # long random bytes from a seed: cheap for hypothesis, any length up to past the buffers
    return st.tuples(st.integers(lo, hi), st.integers(0, 2**32 - 1)).map(
        lambda t: random.Random(t[1]).randbytes(t[0])
    )


any_bytes = st.one_of(st.binary(max_size=6), _blob(0, 260), _blob(236, 260))
byte = st.integers(0, 255)
edgy = st.sampled_from([0, 1, 2, 3, 4, 5, 9, 10, 11, 20, 24, 25, 30, 40, 41, 100, 200, 255])

settings_write = st.one_of(
    st.tuples(st.just("strength"), st.one_of(any_bytes, byte.map(lambda v: bytes((v,))))),
    st.tuples(st.just("area"), st.one_of(any_bytes, edgy.map(lambda v: bytes((v,))))),
    st.tuples(
        st.just("flow"),
        st.one_of(any_bytes, st.tuples(st.integers(0, 6), edgy).map(bytes)),
    ),
)
command = (
    st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 0x10, 0x80, 0xFF])
    .flatmap(
        # the right number of parameter bytes for the opcode about half the time
        lambda op: st.tuples(
            st.just(op),
            byte,
            st.one_of(
                st.lists(edgy, min_size=PARAM_BYTES.get(op, 0), max_size=PARAM_BYTES.get(op, 0)),
                st.lists(edgy, max_size=3),
            ),
        )
    )
    .map(lambda t: bytes([t[0], t[1]] + t[2]))
)
control_write = st.tuples(st.just("control"), st.one_of(any_bytes, command))
upload_bytes = st.one_of(
    any_bytes,
    st.tuples(st.sampled_from([0, 1, 2, 3, 4, 5, 0xFF]), any_bytes).map(
        lambda t: bytes((t[0],)) + t[1]
    ),
    st.tuples(st.sampled_from([0, 1, 420, 4096, 4097, 65535]), st.integers(0, 2**32 - 1)).map(
        lambda t: proto.pack_up_begin(*t)
    ),
    st.tuples(st.integers(0, 65535), _blob(0, 250)).map(lambda t: proto.pack_up_data(*t)),
    st.sampled_from([bytes((UP_COMMIT,)), bytes((UP_ABORT,)), b"\x03\x00", b"\x04\x04"]),
)
upload_write = st.tuples(st.just("programme"), upload_bytes)
any_write = st.one_of(settings_write, control_write, upload_write)

# programme JSON: well-formed programmes with values in and out of range, and mangled text
json_value = st.one_of(
    edgy,
    st.sampled_from(
        ["full", "upper", "wave", "hold", "sideways", "", None, True, -1, 1e308, [], {}, 3601]
    ),
)
step = st.dictionaries(
    st.sampled_from(["area", "mask", "flow", "strength", "duration_s", "tempo", "colour"]),
    json_value,
    max_size=6,
)
good_step = st.fixed_dictionaries(
    {
        "area": st.sampled_from(["full", "upper", "middle", "lower"]),
        "flow": st.sampled_from(["wave", "pulse", "alternate", "hold", "walk"]),
        "strength": st.integers(1, 10),
        "duration_s": st.integers(1, 900),
    }
)
programme_json = st.fixed_dictionaries(
    {"steps": st.lists(st.one_of(good_step, step), max_size=4)},
    optional={"name": st.text(max_size=40), "extra": json_value},
).map(lambda o: json.dumps(o).encode())


def _mangle(t):
    start, length, junk = t
    data = EXAMPLE_PROGRAMME
    return data[:start] + junk + data[start + length :]


mangled = st.tuples(st.integers(0, 420), st.integers(0, 40), st.binary(max_size=8)).map(_mangle)
# nesting from shallow to past any parser's recursion limit (2000 deep fills the 4096 bytes)
nested = st.one_of(st.integers(1, 40), st.integers(1000, 2048)).map(lambda d: b"[" * d + b"]" * d)
programme_blob = st.one_of(programme_json, mangled, nested, _blob(1, 300))

delay_ms = st.sampled_from([0, 1, 5, 20, 40, 60])
ACTIONS = {
    "write": st.tuples(st.just("write"), any_write),
    "setting": st.tuples(st.just("write"), settings_write),
    "control": st.tuples(st.just("write"), control_write),
    "upload": st.tuples(st.just("write"), upload_write),
    "next": st.tuples(st.just("next"), _blob(0, 250)),
    "blob": st.tuples(st.just("blob"), programme_blob),
    "read": st.tuples(st.just("read")),
    "cut": st.tuples(st.just("cut"), any_write, delay_ms),
    "upcut": st.tuples(st.just("upcut"), st.integers(0, 3), delay_ms),
    "stranger": st.tuples(
        st.just("stranger"), st.lists(any_write, min_size=1, max_size=4), st.booleans()
    ),
}
# mostly single writes; a link drop or a stranger's visit now and then
WEIGHTS = {"write": 6, "setting": 4, "control": 4, "upload": 3, "next": 2, "blob": 1}
WEIGHTS.update({"read": 1, "cut": 1, "upcut": 1, "stranger": 1})
action = st.sampled_from([k for k, n in WEIGHTS.items() for _ in range(n)]).flatmap(
    ACTIONS.__getitem__
)
burst = st.lists(action, min_size=15, max_size=60)


async def perform(phone, a):
    kind = a[0]
    if kind == "write":
        await phone.write(*a[1])
    elif kind == "next":
        # a data chunk at the offset the device expects (or anywhere, when no upload is open)
        offset = phone.up.next if phone.up is not None else len(a[1])
        await phone.write("programme", proto.pack_up_data(offset & 0xFFFF, a[1]))
    elif kind == "blob":
        await upload_blob(phone, a[1])
    elif kind == "read":
        await phone.read_all()
    elif kind == "cut":
        await phone.cut(a[1][0], a[1][1], a[2])
    elif kind == "upcut":
        await phone.upload_cut(a[1], a[2])
    elif kind == "stranger":
        await phone.stranger(a[1], a[2])
    else:
        raise ValueError(kind)


async def upload_blob(phone, data):
    """A correctly framed upload of arbitrary JSON: begin, chunks, commit, each checked."""
    crc = zlib.crc32(data) & 0xFFFFFFFF
    if await phone.write("programme", proto.pack_up_begin(len(data) & 0xFFFF, crc)) != 0:
        return
    room = proto.up_chunk_room(phone.client.link.mtu)
    while phone.up is not None and phone.up.next < len(data):
        off = phone.up.next
        if await phone.write("programme", proto.pack_up_data(off, data[off : off + room])) != 0:
            return
    await phone.write("programme", bytes((UP_COMMIT,)))


async def close(sim):
    await sim.close()


async def fuzz(mtu, person, stages, bursts):
    sim = BleSim(person=person)
    with watch(sim.run) as monitor:
        await sim.start()
        phone = FuzzPhone(sim, person, monitor)
        try:
            await phone.pair(mtu)
            for stage, actions in zip(stages, bursts, strict=True):
                await phone.drive(stage)
                for a in actions:
                    await perform(phone, a)
                await phone.read_all()
            # every example reaches a stranger, both kinds of cut and a finished upload
            await phone.stranger([("strength", b"\x05"), ("control", b"\x05\x01")], True)
            await phone.cut("strength", b"\x00", 1)
            await phone.drive("idle")
            await phone.upload_cut(1, 1)
        finally:
            await close(sim)
    assert monitor.ticks > 0
    return phone.counts


@pytest.mark.parametrize("mtu", [247, None], ids=["mtu247", "mtu23"])
@FUZZ
@given(bursts=st.tuples(*[burst] * len(STAGES)))
def test_fuzzed_writes_in_every_session_state(mtu, bursts):
    counts = hostrt.run(fuzz(mtu, None, STAGES, bursts), virtual=True)
    assert counts["writes"] > 50 and counts["refused"] > 0


@FUZZ
@given(bursts=st.tuples(burst, burst, burst))
def test_fuzzed_writes_with_nobody_on_the_device(bursts):
    # a start is accepted, the scan finds nobody: no finger presses, the leg rest never rises
    counts = hostrt.run(fuzz(247, "nobody", ("idle", "scanning", "idle"), bursts), virtual=True)
    assert counts["writes"] > 10


# -- bugs the fuzzing found (fixed), kept as regression tests ------------------------------------


def test_a_deeply_nested_programme_is_refused_not_fatal():
    async def main():
        sim = BleSim()
        await sim.start()
        phone = FuzzPhone(sim)
        try:
            await phone.pair(247)
            await upload_blob(phone, b"[" * 2000 + b"]" * 2000)  # 4000 bytes, a valid frame
        finally:
            await close(sim)

    hostrt.run(main(), virtual=True)


def test_a_refused_setting_reads_back_as_the_value_in_force():
    async def main():
        sim = await BleSim().start()
        try:
            client = await sim.phone()
            answers = []
            await client.link.subscribe(proto.CONTROL_UUID, answers.append)
            for value in (b"\x00", b"\x0b", b"\xff", b"\x00\x00"):
                answers.clear()
                await client.link.write(proto.STRENGTH_UUID, value)
                while not answers:
                    await asyncio.sleep(0.001)
                assert answers[0][3] != proto.OK
                # docs/ble-protocol.md: "After the answer the characteristic holds the value in
                # force ... so a refused write snaps back."
                read = await client.link.read(proto.STRENGTH_UUID)
                assert read == bytes((sim.device.session.strength,)), (value, read)
        finally:
            await close(sim)

    hostrt.run(main(), virtual=True)
