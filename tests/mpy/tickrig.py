# A whole control tick on the real MicroPython interpreter: the sim board's drivers on the
# allocation-free fakes of test_drivers.py, a spring "person" behind the force ADCs, and the
# session, supervisor, plausibility checks and controller exactly as the device wires them.
# Used by test_tick.py and bench_tick.py to check the tick allocates nothing in steady state
# and to time it.

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
