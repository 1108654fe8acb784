# A whole control tick on the real MicroPython interpreter: the sim board's drivers on the
# allocation-free fakes of test_drivers.py, a spring "person" behind the force ADCs, and the
# session, supervisor, plausibility checks and controller exactly as the device wires them.
# Used by test_tick.py to check the tick allocates nothing in steady state. BenchRig (below) is
# the same tick on stand-ins of about a C call's cost, for timing: bench_tick.py (tier 2) and
# tools/backhug_host/benches/tick.py (the ESP32-S3 estimate, on the unix port, bench_main()).

import sys
from array import array

import mpytest

if sys.platform == "webassembly":
    mpytest._patch_webassembly_asyncio()  # firmware.runtime needs asyncio.ThreadSafeFlag

from test_drivers import FakeI2C, FakePin  # noqa: E402

from firmware import boardspec, controller, plausibility, safestop, supervisor  # noqa: E402
from firmware import session as ses  # noqa: E402
from firmware.drivers import fingers, forcearray, pca9685  # noqa: E402


class SpringAdc:
    # The force sensor of whichever finger the mux selects: a back at contact_um[f] with
    # stiffness k_cn_mm[f], the finger at its commanded position (an instant actuator).
    def __init__(self, select_pins, adc_index, board, bank, person):
        self.sel = select_pins
        self.bank = bank
        self.person = person
        n = board.finger_count
        self.finger = array("b", [-1] * 16)
        for f in range(n):
            a, ch = board.force["channels"][f]
            if a == adc_index:
                self.finger[ch] = f
        self.offset = array("i", [board.force_cal[f][0] for f in range(n)])
        self.gain = array("i", [board.force_cal[f][1] for f in range(n)])

    def read_u16(self):
        s = self.sel
        f = self.finger[s[0].level | s[1].level << 1 | s[2].level << 2 | s[3].level << 3]
        if f < 0:
            return 0
        p = self.person
        depth = self.bank.targets_um[f] - p.contact_um[f]
        cn = depth * p.k_cn_mm[f] // 1000 if depth > 0 and p.present else 0
        raw = self.offset[f] + (cn << 12) // self.gain[f]
        if raw > 4095:
            raw = 4095
        return raw << 4


class Person:
    def __init__(self, board):
        n = board.finger_count
        self.contact_um = array("i", [12_000 + 300 * (i // board.cols) for i in range(n)])
        self.k_cn_mm = array("i", [500 + 50 * (i % 5) for i in range(n)])
        self.present = True


class LegRestStub:
    def request(self, goal):
        pass

    def settled(self):
        return True


def build(board_id="sim"):
    board = boardspec.load(board_id)
    i2c = FakeI2C(board.pwm["chips"])
    chips = [pca9685.PCA9685(i2c, a) for a in board.pwm["chips"]]
    bank = fingers.FingerBank(chips, board, FakePin(1))
    sel = (FakePin(), FakePin(), FakePin(), FakePin())
    person = Person(board)
    adcs = tuple(
        SpringAdc(sel, a, board, bank, person) for a in range(len(board.force["adc"]))
    )
    forces = forcearray.ForceArray(sel, adcs, board)
    forces._settle_us = 0  # the WebAssembly port's sleep_us is far coarser than the ESP32's
    bank.init()
    forces.init()

    class Hw:
        pass

    hw = Hw()
    hw.fingers = bank
    hw.forces = forces
    stop = safestop.SafeStop()
    session = ses.Session(board, LegRestStub())
    sup = supervisor.Supervisor(board, session, stop)
    ctl = controller.Controller(hw, session, sup)
    ctl.plausibility = plausibility.SensorCheck(board)  # as firmware/app.py wires it
    return ctl, session, person


def run_until(ctl, session, state, now_ms, limit_ticks=20_000):
    for _ in range(limit_ticks):
        if session.state == state:
            return now_ms
        now_ms += 10
        ctl.tick(now_ms)
    raise AssertionError("never reached " + ses.STATE_NAMES[state])


# -- the benchmark rig ------------------------------------------------------------------------
# The same tick, with stand-ins whose own cost is as close to a C call as Python gets, so the
# time measured is the firmware's: on the device pin writes, ADC conversions and I2C transfers
# are C (their wire and settling time is estimated apart, from the bytes and waits counted
# here). The person is computed between ticks (bench_physics), not inside read_u16: the forces
# read in a tick are those of the targets written in the tick before, as with SpringAdc.


class CountingI2C(FakeI2C):
    # FakeI2C while the chips are set up (register files, read-back); then, with counting on,
    # a write only counts its transaction and bytes (register address included) for the wire
    # time; nothing reads the PWM registers back in a tick.
    counting = False

    def writeto_mem(self, addr, reg, buf):
        if self.counting:
            self.transactions += 1
            self.bytes += len(buf) + 1
            return
        FakeI2C.writeto_mem(self, addr, reg, buf)


class MuxPin:
    # One select line: keeps the mux channel in a shared bytearray and counts its writes.
    def __init__(self, mux, bit):
        self.mux = mux
        self.bit = bit
        self.level = 0
        self.writes = 0

    def value(self, v=None):
        if v is None:
            return self.level
        self.writes += 1
        if v:
            self.level = 1
            self.mux[0] |= self.bit
        else:
            self.level = 0
            self.mux[0] &= 0xFF ^ self.bit


class TableAdc:
    # The 16-bit reading of the selected mux channel, from a table bench_physics fills.
    def __init__(self, mux):
        self.mux = mux
        self.table = array("H", bytes(32))

    def read_u16(self):
        return self.table[self.mux[0]]


class BenchRig:
    def __init__(self, board_id="sim"):
        board = boardspec.load(board_id)
        self.board = board
        i2c = CountingI2C(board.pwm["chips"])
        self.i2c = i2c
        chips = [pca9685.PCA9685(i2c, a) for a in board.pwm["chips"]]
        bank = fingers.FingerBank(chips, board, FakePin(1))
        mux = bytearray(1)
        self.sel = (MuxPin(mux, 1), MuxPin(mux, 2), MuxPin(mux, 4), MuxPin(mux, 8))
        self.adcs = tuple(TableAdc(mux) for _ in board.force["adc"])
        forces = forcearray.ForceArray(self.sel, self.adcs, board)
        self.settle_us = forces._settle_us
        forces._settle_us = 0  # counted, not waited: the settling time is estimated apart
        bank.init()
        forces.init()
        i2c.counting = True
        self.bank = bank
        self.person = Person(board)
        n = board.finger_count
        self._adc = bytearray(n)
        self._ch = bytearray(n)
        for f in range(n):
            self._adc[f], self._ch[f] = board.force["channels"][f]
        self._offset = array("i", [board.force_cal[f][0] for f in range(n)])
        self._gain = array("i", [board.force_cal[f][1] for f in range(n)])

        class Hw:
            pass

        hw = Hw()
        hw.fingers = bank
        hw.forces = forces
        stop = safestop.SafeStop()
        self.session = ses.Session(board, LegRestStub())
        sup = supervisor.Supervisor(board, self.session, stop)
        self.ctl = controller.Controller(hw, self.session, sup)
        self.ctl.plausibility = plausibility.SensorCheck(board)
        self.now_ms = 0
        self.physics()

    def physics(self):
        # every sensor's reading for the targets written last (SpringAdc's model)
        p = self.person
        t = self.bank.targets_um
        for f in range(self.board.finger_count):
            depth = t[f] - p.contact_um[f]
            cn = depth * p.k_cn_mm[f] // 1000 if depth > 0 and p.present else 0
            raw = self._offset[f] + (cn << 12) // self._gain[f]
            if raw > 4095:
                raw = 4095
            self.adcs[self._adc[f]].table[self._ch[f]] = raw << 4

    def step(self):
        self.now_ms += 10
        self.ctl.tick(self.now_ms)
        self.physics()

    def run_until(self, state, limit_ticks=20_000):
        for _ in range(limit_ticks):
            if self.session.state == state:
                return
            self.step()
        raise AssertionError("never reached " + ses.STATE_NAMES[state])

    def treating(self, settle_ticks=100):
        # a 20-minute session, into treatment, and settle_ticks more
        self.session.begin(20 * 60_000)
        self.run_until(ses.TREATING)
        for _ in range(settle_ticks):
            self.step()

    def counters(self):
        # (I2C transactions, I2C bytes, select-line writes) so far
        return (self.i2c.transactions, self.i2c.bytes, sum(p.writes for p in self.sel))


def standin_us(rig, n, select_writes):
    # What the stand-ins cost a tick beyond the C calls they stand for: the tick's calls (its
    # select-line writes, one read_u16 per finger, one writeto_mem per chip) made on the
    # stand-ins, less the same number of calls to C methods (set.discard, time.ticks_us,
    # dict.get with two of writeto_mem's three arguments), in the same loop. Best of 5 runs of
    # n ticks' worth, real time.
    from firmware.runtime import ticks_diff, ticks_us

    sel = rig.sel
    adc = rig.adcs[0]
    i2c = rig.i2c
    buf = bytearray(64)
    reads = rig.board.finger_count
    chips = len(rig.board.pwm["chips"])
    c_set = set()
    c_dict = {}

    class C:
        pass

    c_pin = C()
    c_pin.value = c_set.discard
    c_adc = C()
    c_adc.read_u16 = ticks_us
    c_i2c = C()
    c_i2c.writeto_mem = c_dict.get

    def mix(pin, adc, i2c, three):
        t0 = ticks_us()
        for _ in range(n):
            for _ in range(select_writes):
                pin.value(1)
            for _ in range(reads):
                adc.read_u16()
            for _ in range(chips):
                if three:
                    i2c.writeto_mem(0x40, 6, buf)
                else:
                    i2c.writeto_mem(0x40, 6)
        return ticks_diff(ticks_us(), t0)

    counting = i2c.transactions, i2c.bytes, sel[0].writes
    best_rig = min(mix(sel[0], adc, i2c, True) for _ in range(5))
    best_c = min(mix(c_pin, c_adc, c_i2c, False) for _ in range(5))
    i2c.transactions, i2c.bytes, sel[0].writes = counting
    return (best_rig - best_c) / n


def bench_main(what, n):
    # Run by tools/backhug_host/benches/tick.py on the unix port: prints `key value` lines.
    #   tick N      N treating ticks: us per tick (best of 5 runs of N, real time), bytes
    #               allocated per tick (GC off) in warm-up and in treatment, and per tick the
    #               I2C transactions, bytes and select-line writes, the mux settle waits
    #   cpu N       into treatment, then N ticks, each with its person step (timed by CPU
    #               from outside: the process's CPU time)
    #   physics N   the same set-up and N person steps only (the baseline `cpu` is read against)
    import gc

    from firmware.runtime import ticks_diff, ticks_us

    rig = BenchRig()
    if what == "cpu":
        rig.treating()
        for _ in range(n):
            rig.step()
        return
    if what == "physics":
        rig.treating()
        for _ in range(n):
            rig.physics()
        return
    rig.session.begin(20 * 60_000)
    rig.run_until(ses.WARMUP)
    for _ in range(50):
        rig.step()
    worst = 0
    for phase in (ses.WARMUP, ses.TREATING):
        rig.run_until(phase)
        for _ in range(50):
            rig.step()
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        for _ in range(n):
            rig.step()
        grown = gc.mem_alloc() - before
        gc.enable()
        print("alloc_%s %d" % (ses.STATE_NAMES[phase], grown))
        worst = max(worst, grown)
    print("alloc_bytes_per_tick %g" % (worst / n))
    c0 = rig.counters()
    best = None
    for _ in range(5):
        spent = 0
        for _ in range(n):
            rig.now_ms += 10
            t0 = ticks_us()
            rig.ctl.tick(rig.now_ms)
            spent += ticks_diff(ticks_us(), t0)
            rig.physics()
        if best is None or spent < best:
            best = spent
    c1 = rig.counters()
    ticks = 5 * n
    print("standin_us %g" % standin_us(rig, n, (c1[2] - c0[2]) // ticks))
    print("tick_us %g" % (best / n))
    print("i2c_transactions_per_tick %g" % ((c1[0] - c0[0]) / ticks))
    print("i2c_bytes_per_tick %g" % ((c1[1] - c0[1]) / ticks))
    print("select_writes_per_tick %g" % ((c1[2] - c0[2]) / ticks))
    print("mux_settles_per_tick %d" % len(rig.ctl.hw.forces._mux))
    print("settle_us %d" % rig.settle_us)
    print("i2c_freq_hz %d" % rig.board.i2c["freq_hz"])
    print("state %s" % ses.STATE_NAMES[rig.session.state])
    print("faults %d" % rig.ctl.supervisor.fault_count)
