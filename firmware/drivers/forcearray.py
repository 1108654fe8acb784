# The fingertip force sensors: one or more 16:1 analog multiplexers with shared select lines
# (S0..S3), each into its own ADC pin. read() visits every mux channel in use, waits for the mux
# output to settle, reads every ADC that has a finger on that channel, then converts the 12-bit
# raw readings to centinewtons with each finger's calibration:
#     cn = (raw - offset) * gain_q12 >> 12
# (negative when a sensor reads below its zero: kept, it is a plausibility signal, not noise to
# clip). Allocation-free after construction.

from array import array

from firmware.drivers.fault import not_ready
from firmware.runtime import block_us, const

_NONE = const(0xFF)  # no finger on this (mux channel, ADC) slot
_RAW_MAX = const(4095)
_GAIN_Q12_MAX = const(200_000)  # keeps (raw - offset) * gain below 2**30


class ForceArray:
    def __init__(self, select_pins, adcs, board):
        self.part = "forces"
        n = board.finger_count
        self.count = n
        self.raw = array("H", bytes(2 * n))
        self.cn = array("i", bytes(4 * n))
        self._sel = tuple(select_pins)
        if len(self._sel) != 4:
            raise ValueError("a 16:1 mux needs 4 select pins, got %d" % len(self._sel))
        self._adcs = tuple(adcs)
        self._settle_us = board.force["settle_us"]
        chans = board.force["channels"]
        used = sorted(set(ch for _, ch in chans))
        self._mux = bytes(used)  # mux channels to visit, in order
        n_adc = len(self._adcs)
        slot = bytearray(len(used) * n_adc)
        for k in range(len(slot)):
            slot[k] = _NONE
        for i, (a, ch) in enumerate(chans):
            if not 0 <= a < n_adc:
                raise ValueError("finger %d: no ADC %d" % (i, a))
            slot[used.index(ch) * n_adc + a] = i
        self._slot = slot
        self._off = array("i", bytes(4 * n))
        self._gain = array("i", bytes(4 * n))
        for i, (off, gain) in enumerate(board.force_cal):
            self._off[i] = off
            self._gain[i] = gain
        self._ready = False

    def init(self):
        for p in self._sel:
            p.value(0)
        self._ready = True

    def set_cal(self, i, offset, gain_q12):
        # Factory calibration of one sensor; takes effect at the next read().
        if not 0 <= i < self.count:
            raise ValueError("no finger %d (board has %d)" % (i, self.count))
        if not 0 <= offset < _RAW_MAX:
            raise ValueError("finger %d: offset %d outside 0..4094" % (i, offset))
        if not 1 <= gain_q12 <= _GAIN_Q12_MAX:
            raise ValueError("finger %d: gain_q12 %d outside 1..200000" % (i, gain_q12))
        self._off[i] = offset
        self._gain[i] = gain_q12

    def read(self):
        if not self._ready:
            raise not_ready(self.part)
        s0, s1, s2, s3 = self._sel
        adcs = self._adcs
        n_adc = len(adcs)
        mux = self._mux
        slot = self._slot
        raw = self.raw
        settle = self._settle_us
        for k in range(len(mux)):
            ch = mux[k]
            s0.value(ch & 1)
            s1.value((ch >> 1) & 1)
            s2.value((ch >> 2) & 1)
            s3.value(ch >> 3)
            block_us(settle)  # bounded: a few microseconds from the board data
            base = k * n_adc
            for a in range(n_adc):
                f = slot[base + a]
                if f != _NONE:
                    raw[f] = adcs[a].read_u16() >> 4  # 16-bit scaled reading -> 12 bits
        cn = self.cn
        off = self._off
        gain = self._gain
        for i in range(self.count):
            cn[i] = (raw[i] - off[i]) * gain[i] >> 12
        return cn
