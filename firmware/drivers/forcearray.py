# The fingertip force sensors: one or more 16:1 analog multiplexers with shared select lines
# (S0..S3), each into its own ADC pin. read() visits every mux channel in use, waits for the mux
# output to settle, reads every ADC that has a finger on that channel and converts each 12-bit
# raw reading to centinewtons with the finger's calibration:
#     cn = (raw - offset) * gain_q12 >> 12
# (negative when a sensor reads below its zero: kept, it is a plausibility signal, not noise to
# clip). Allocation-free after construction.
# The channels are visited in Gray-code order and only the select lines that change are written:
# one pin write per channel (16 a read on a full mux) instead of four.

from array import array

from firmware.drivers.fault import not_ready
from firmware.runtime import block_us, const, micropython

_NONE = const(0xFF)  # no finger on this (mux channel, ADC) slot
_RAW_MAX = const(4095)
_GAIN_Q12_MAX = const(200_000)  # keeps (raw - offset) * gain below 2**30
_LINES_UNKNOWN = const(0xFF)  # XOR with any channel sets every line bit: all four get written


def _gray_rank(ch):
    # position of ch in the 4-bit Gray sequence k ^ (k >> 1)
    k = 0
    while ch:
        k ^= ch
        ch >>= 1
    return k


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
        # mux channels to visit, in Gray-code order: consecutive ones differ in one select line
        used = sorted(set(ch for _, ch in chans), key=_gray_rank)
        self._mux = bytes(used)
        self._lines = _LINES_UNKNOWN  # the channel the select lines are set to
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
        self._lines = 0
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

    @micropython.native
    def read(self):
        if not self._ready:
            raise not_ready(self.part)
        s0, s1, s2, s3 = self._sel
        adcs = self._adcs
        n_adc = len(adcs)
        mux = self._mux
        slot = self._slot
        raw = self.raw
        cn = self.cn
        off = self._off
        gain = self._gain
        settle = self._settle_us
        lines = self._lines
        # Until this read completes the lines are unknown (an exception part-way through must
        # not leave the next read skipping a line it believes set).
        self._lines = _LINES_UNKNOWN
        for k in range(len(mux)):
            ch = mux[k]
            d = lines ^ ch
            if d & 1:
                s0.value(ch & 1)
            if d & 2:
                s1.value((ch >> 1) & 1)
            if d & 4:
                s2.value((ch >> 2) & 1)
            if d & 8:
                s3.value((ch >> 3) & 1)
            lines = ch
            block_us(settle)  # bounded: a few microseconds from the board data
            base = k * n_adc
            for a in range(n_adc):
                f = slot[base + a]
                if f != _NONE:
                    r = adcs[a].read_u16() >> 4  # 16-bit scaled reading -> 12 bits
                    raw[f] = r
                    cn[f] = (r - off[f]) * gain[f] >> 12
        self._lines = lines
        return cn
