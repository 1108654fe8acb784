# Hardware assembly: the one firmware module that imports `machine`. build(board) makes the pins,
# buses, ADCs and PWMs the board data describes, hands them to the drivers, and initialises every
# driver so that all outputs are in their safe state before anything else runs:
#   - every output pin and PWM is created at its off level (finger outputs disabled by OE high,
#     motor PWMs at 0) before any bus traffic;
#   - the leg rest is braked, the fingers are written to their home (retracted) pulse and only
#     then enabled, the LED and buzzer are off;
#   - the watchdog is built but not armed (the system arms it once its loop runs);
#   - before all of that, the CPU clock is set to the board's cpu_freq_hz.
# On the host the simulator puts a fake `machine` (tools/backhug_host/shims/machine.py) first on
# sys.path, so this same code runs against emulated chips.

import machine
from machine import ADC, I2C, PWM, Pin

from firmware.drivers.button import Button
from firmware.drivers.buzzer import Buzzer
from firmware.drivers.fault import DriverFault
from firmware.drivers.fingers import FingerBank
from firmware.drivers.forcearray import ForceArray
from firmware.drivers.led import StatusLed
from firmware.drivers.legrest import LegRest
from firmware.drivers.pca9685 import PCA9685
from firmware.drivers.watchdog import Watchdog

LED_PWM_HZ = 1000
BUZZER_IDLE_HZ = 2000

RESET_CAUSES = {
    machine.PWRON_RESET: "power-on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deep-sleep",
    machine.SOFT_RESET: "soft",
}


class Hardware:
    # Every driver of the board, built and (after init()) in its safe state.

    def __init__(self, board):
        self.board = board
        self.faults = []  # DriverFaults met by the last init(), in order

    def init(self):
        # Safe state, motor first; every part is tried even if an earlier one fails, then the
        # first fault is raised.
        self.faults = []
        for d in (self.legrest, self.fingers, self.forces, self.button, self.led, self.buzzer):
            try:
                d.init()
            except DriverFault as e:
                self.faults.append(e)
        if self.faults:
            raise self.faults[0]


def _pwm(pin, freq_hz):
    return PWM(Pin(pin), freq=freq_hz, duty_u16=0)


def _adc(pin):
    return ADC(Pin(pin), atten=ADC.ATTN_11DB)  # 0..~3.1 V input range


def _input(pin, active_low):
    return Pin(pin, Pin.IN, Pin.PULL_UP if active_low else Pin.PULL_DOWN)


def _make_wdt(timeout_ms):
    return machine.WDT(timeout=timeout_ms)


def build(board, init=True):
    # The Hardware for a validated board (firmware.boardspec.Board). init=False leaves the
    # drivers uninitialised (outputs still created at their off levels) for tests that step
    # through the start-up themselves.
    hw = Hardware(board)
    # The CPU clock first: the control tick's time budget assumes the board's (240 MHz on the
    # ESP32-S3), and a stock MicroPython build may boot at 160 MHz.
    machine.freq(board.cpu_freq_hz)
    # Outputs first, at their off levels.
    oe = Pin(board.pwm["oe_pin"], Pin.OUT, value=1)
    lr = board.legrest
    in1 = _pwm(lr["in1"], lr["pwm_freq_hz"])
    in2 = _pwm(lr["in2"], lr["pwm_freq_hz"])
    select = tuple(Pin(p, Pin.OUT, value=0) for p in board.force["mux_select"])
    led = board.led
    hw.led = StatusLed(
        _pwm(led["r"], LED_PWM_HZ), _pwm(led["g"], LED_PWM_HZ), _pwm(led["b"], LED_PWM_HZ)
    )
    hw.buzzer = Buzzer(_pwm(board.buzzer["pin"], BUZZER_IDLE_HZ))

    i2c = board.i2c
    hw.i2c = I2C(i2c["id"], scl=Pin(i2c["scl"]), sda=Pin(i2c["sda"]), freq=i2c["freq_hz"])
    hw.chips = tuple(PCA9685(hw.i2c, a) for a in board.pwm["chips"])
    hw.fingers = FingerBank(hw.chips, board, oe)
    hw.forces = ForceArray(select, tuple(_adc(p) for p in board.force["adc"]), board)
    hw.legrest = LegRest(
        in1,
        in2,
        _input(lr["limit_top"], lr["limit_active_low"]),
        _input(lr["limit_bottom"], lr["limit_active_low"]),
        _adc(lr["current_adc"]),
        lr,
    )
    b = board.button
    hw.button = Button(_input(b["pin"], b["active_low"]), b)
    hw.watchdog = Watchdog(_make_wdt, board.watchdog_ms)
    if init:
        hw.init()
    return hw


def reset_cause():
    # Why this boot happened: "power-on", "hard", "watchdog", "deep-sleep" or "soft".
    return RESET_CAUSES.get(machine.reset_cause(), "unknown")


def unique_id():
    return machine.unique_id()


def reset():
    machine.reset()
