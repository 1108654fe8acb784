# firmware/plausibility.py on the real MicroPython interpreter: its checks fire as on CPython
# (integer arithmetic, array types), and check() allocates nothing per tick, in steady state and
# while it reports faults. The full behaviour is tested on the host (tests/host/)...

import gc
from array import array

import mpytest  # noqa: F401 - the harness (its main() runs these tests)

from firmware import boardspec, faults
from firmware.plausibility import SensorCheck

SIM = boardspec.load("sim")
N = SIM.finger_count
TICK_MS = 10
OFFSET, GAIN_Q12 = SIM.force_cal[0]


class _Bench:
    # Fingers at their commanded positions on a spring back (7 N/mm past 10 mm), read by
    # sensors with a deterministic count or two of noise. Allocation-free per step.
    def __init__(self):
        self.chk = SensorCheck(SIM)
        self.raw = array("H", bytes(2 * N))
        self.cn = array("i", bytes(4 * N))
        self.targets = array("i", [13_000] * N)
        self.contact = array("l", [10_000] * N)
        self.k = array("i", [700] * N)
        self.fixed = array("i", [-1] * N)  # >= 0: the finger's sensor reads this raw value
        self.seed = 12345

    def step(self, dt_ms=TICK_MS):
        for i in range(N):
            self.seed = (self.seed * 1103 + 12345) & 0xFFFF  # stays a small int
            d = self.targets[i] - self.contact[i]
            cn = d * self.k[i] // 1000 if d > 0 else 0
            raw = OFFSET + (cn << 12) // GAIN_Q12 + (self.seed >> 8) % 5 - 2
            if self.fixed[i] >= 0:
                raw = self.fixed[i]
            self.raw[i] = raw
            self.cn[i] = (raw - OFFSET) * GAIN_Q12 >> 12
        return self.chk.check(dt_ms, self.raw, self.cn, self.targets, self.contact, True)

    def run(self, ticks):
        code = 0
        for _ in range(ticks):
            code = self.step()
        return code


def test_a_working_device_is_plausible():
    b = _Bench()
    for t in range(600):
        for i in range(N):
            b.targets[i] = 11_000 + (t * 40 + i * 700) % 8_000  # a sawtooth of presses
        assert b.step() == 0


def test_rails_fire_at_once_and_name_the_finger():
    b = _Bench()
    b.run(20)
    b.fixed[5] = 4095
    assert b.step() == faults.SENSOR_OPEN and b.chk.finger == 5
    b.fixed[5] = -1
    b.fixed[9] = 0
    assert b.step() == faults.SENSOR_SHORT and b.chk.finger == 9


def test_stall_fires_after_a_second():
    b = _Bench()
    b.run(20)
    b.targets[3] = 30_000
    b.k[3] = 0  # feels nothing 20 mm into the back
    codes = 0
    for _ in range(99):
        codes |= b.step()
    assert codes == 0
    assert b.step() == faults.ACTUATOR_STALL and b.chk.finger == 3


def test_force_on_a_retracted_finger_fires_once_it_had_time_to_get_home():
    b = _Bench()
    b.run(20)
    for i in range(N):
        b.targets[i] = 0
    b.fixed[8] = OFFSET + 500  # ~30 N
    # home_ms to get there, then 0.2 s of force; the tick that completes the first starts the
    # second
    ticks = (b.chk.home_ms + 200) // TICK_MS - 1
    for _ in range(ticks - 1):
        assert b.step() == 0
    assert b.step() == faults.FORCE_RETRACTED and b.chk.finger == 8


def _alloc(b, ticks, busy):
    gc.collect()
    before = gc.mem_alloc()
    for t in range(ticks):
        if busy:
            b.targets[2] = 12_000 + (t % 20) * 120  # moves under a frozen sensor
            b.fixed[11] = OFFSET + 100 + (t & 1) * 800  # jumps by 49 N every tick
        b.step()
    return gc.mem_alloc() - before


def test_check_allocates_nothing_per_tick():
    b = _Bench()
    b.run(50)  # warm-up: whatever is made lazily is made now
    grown = _alloc(b, 200, False)
    assert grown == 0, "%d bytes allocated in 200 plausible ticks" % grown
    assert b.chk.code == 0
    # every check busy at once: a rail, a frozen sensor on a moving finger, a jumping one,
    # force at home, a stall
    b.fixed[0] = 4095
    b.fixed[2] = OFFSET + 300
    b.targets[6] = 0
    b.fixed[6] = OFFSET + 500
    b.targets[7] = 30_000
    b.k[7] = 0
    b.run(50)
    grown = _alloc(b, 300, True)
    assert grown == 0, "%d bytes allocated in 300 ticks reporting faults" % grown
    assert b.chk.code == faults.SENSOR_OPEN and b.chk.finger == 0
    # the measured ticks went through every check's counting
    c = b.chk
    assert c._frozen_ms[2] >= 500 and c._jumps[11] > 0 and c._force_ms[6] > 0
    assert c._stall_ms[7] > 0
