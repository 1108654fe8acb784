# Piezo buzzer on one PWM output: a square wave at the tone's frequency, or silence.

from firmware.drivers.fault import not_ready
from firmware.runtime import const

_HALF = const(32768)  # 50 % duty: the loudest square wave
_FREQ_MIN_HZ = const(20)
_FREQ_MAX_HZ = const(20_000)


class Buzzer:
    def __init__(self, pwm):
        self.part = "buzzer"
        self._pwm = pwm
        self.freq_hz = 0  # 0 = silent
        self._ready = False

    def init(self):
        self._ready = True
        self.off()

    def tone(self, freq_hz):
        if not self._ready:
            raise not_ready(self.part)
        if not _FREQ_MIN_HZ <= freq_hz <= _FREQ_MAX_HZ:
            raise ValueError("tone %d Hz outside 20..20000" % freq_hz)
        self._pwm.freq(freq_hz)
        self._pwm.duty_u16(_HALF)
        self.freq_hz = freq_hz

    def off(self):
        if not self._ready:
            raise not_ready(self.part)
        self._pwm.duty_u16(0)
        self.freq_hz = 0
