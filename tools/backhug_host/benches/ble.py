"""The BLE protocol's timing and throughput, through the real host stack (Bumble) in virtual time.

A phone (the reference client) bonded to the simulated device runs a session; during treatment:
- command-to-actuation latency: control ticks (10 ms) from the strength write reaching the
  firmware until the strength ramp heads to the new level; the phone-to-firmware part in ms;
  and from the phone's write to the first telemetry notification that shows it, in ms.
  Bumble's virtual link delivers packets at once: a real link adds up to one connection
  interval (7.5-50 ms) each way.
- telemetry delivered: notifications and complete frames per second at ATT MTU 23 and 247;
- bytes per telemetry notification at MTU 23 and 247.
"""

import asyncio

from backhug_host import hostrt
from backhug_host.blesim import BleSim
from firmware.ble import proto

WINDOW_S = 20
TRIALS = 5


async def _treating(mtu):
    sim = await BleSim(person={"stiff": ("upper_left",)}).start()
    client = await sim.phone(mtu=mtu)
    await client.start(10, 0)
    await client.wait_state(lambda s: s["state"] == "treating", timeout_s=200)
    return sim, client


async def _latency():
    sim, client = await _treating(247)
    loop = asyncio.get_running_loop()
    ramp = sim.device.session.ramp
    ticks, tele_ms, air_ms = [], [], []
    # when the write reaches the firmware (its command handler), to split the latency
    cmds = sim.device.commands
    arrived = []
    real_set = cmds.set_strength
    cmds.set_strength = lambda lv: (arrived.append(loop.time()), real_set(lv))[1]
    try:
        for k in range(TRIALS):
            level = 4 + k % 2 * 3  # 4, 7, 4, ...
            seen = []
            client.on_packet = lambda p, lv=level, seen=seen: (
                seen.append(loop.time()) if p["level"] == lv and not seen else None
            )
            t0 = loop.time()
            write = asyncio.ensure_future(client.set_strength(level))
            # count the control ticks that ran until the ramp heads to the new level
            ctl = sim.device.controller
            last, n = ctl._last_ms, 0
            while ramp.level != level:
                await asyncio.sleep(0.0005)
                if ctl._last_ms != last:
                    last, n = ctl._last_ms, n + 1
            ticks.append(n)
            air_ms.append((arrived[-1] - t0) * 1000)
            await write
            while not seen:
                await asyncio.sleep(0.001)
            tele_ms.append((seen[0] - t0) * 1000)
            await asyncio.sleep(1.5)
    finally:
        await sim.close()
    return max(ticks), max(tele_ms), max(air_ms)


async def _throughput(mtu):
    sim, client = await _treating(mtu)
    sizes = []
    try:
        client.on_packet = lambda p: sizes.append(
            proto.TELEMETRY_HEADER + proto.TELEMETRY_FINGER * len(p["forces_cn"])
        )
        frames0 = client.frames
        await asyncio.sleep(WINDOW_S)
        frames = client.frames - frames0
        got_mtu = client.link.mtu
    finally:
        await sim.close()
    return len(sizes) / WINDOW_S, frames / WINDOW_S, max(sizes), got_mtu


def run():
    ticks, tele_ms, air_ms = hostrt.run(_latency())
    results = [
        {
            "name": "ble_strength_to_actuation",
            "value": ticks,
            "unit": "ticks",
            "target": 1,
            "better": "lower",
            "note": "the write reaching the firmware to the tick applying it (worst of %d)"
            % TRIALS,
        },
        {
            "name": "ble_write_to_firmware",
            "value": round(air_ms, 2),
            "unit": "ms",
            "note": "phone's write call to the firmware's handler (Bumble stacks, virtual link)",
        },
        {
            "name": "ble_strength_to_telemetry",
            "value": round(tele_ms, 1),
            "unit": "ms",
            "target": 110,
            "note": "write to the first telemetry notification with the new level (virtual link)",
        },
    ]
    for mtu in (23, 247):
        per_s, frames_s, size, got_mtu = hostrt.run(_throughput(mtu))
        assert got_mtu == mtu, got_mtu
        results += [
            {
                "name": "ble_telemetry_notifications_mtu%d" % mtu,
                "value": round(per_s, 2),
                "unit": "1/s",
                "target": 4.0,
                "note": "at most 5 a second by design",
            },
            {
                "name": "ble_telemetry_frames_mtu%d" % mtu,
                "value": round(frames_s, 2),
                "unit": "1/s",
            },
            {"name": "ble_telemetry_bytes_mtu%d" % mtu, "value": size, "unit": "bytes"},
        ]
    return results


if __name__ == "__main__":
    for r in run():
        print(r)
