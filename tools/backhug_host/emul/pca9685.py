"""Register-level PCA9685 (NXP, 16-channel 12-bit PWM, datasheet rev. 4) behind an I2C address.

Modelled: the 256-byte register file with its power-on values; MODE1 SLEEP (oscillator off,
outputs off), AI (register pointer auto-increments after each byte, 0x45 rolls over to 0x00 and
0xFF to 0x00), RESTART (set when the chip is put to sleep with PWM running, cleared by writing 1
after waking); PRE_SCALE writable only while asleep and never below 3; LEDn_ON/OFF with the
full-on and full-off bits (full off wins); ALL_LED_* writes that set every channel and read back
as 0; the shared active-low OE input when a pin is given.

The firmware cannot crash it: a write the chip would ignore (PRE_SCALE while awake, reserved or
test registers, RESTART before the oscillator has run 500 us) is ignored and recorded in
`errors`. `pulse_us(ch)` and `freq_hz()` give what a scope on the outputs would show.
"""

import struct

MODE1 = 0x00
MODE2 = 0x01
SUBADR1 = 0x02
ALLCALLADR = 0x05
LED0_ON_L = 0x06
LED15_OFF_H = 0x45
ALL_LED_ON_L = 0xFA
ALL_LED_OFF_H = 0xFD
PRESCALE = 0xFE
TESTMODE = 0xFF

RESTART = 0x80
EXTCLK = 0x40
AI = 0x20
SLEEP = 0x10
ALLCALL = 0x01
FULL = 0x10  # bit 4 of LEDn_ON_H / LEDn_OFF_H

OSC_HZ = 25_000_000
OSC_START_US = 500
PRESCALE_MIN = 3
COUNTS = 4096

_FULL_BIT = FULL << 8  # the full-on/full-off bit in a 16-bit LEDn_ON / LEDn_OFF word
_LED_WORDS = struct.Struct("<32H")  # LED0_ON .. LED15_OFF as little-endian 16-bit words

_POWER_ON = {MODE1: 0x11, MODE2: 0x04, 0x02: 0xE2, 0x03: 0xE4, 0x04: 0xE8, ALLCALLADR: 0xE0}


class PCA9685:
    def __init__(self, now_us=None, oe=None):
        """now_us: a callable giving the time (World.now_us) for the oscillator start-up check;
        oe: (pins, gpio) of the active-low output-enable line, or None if tied low."""
        self._now_us = now_us
        self._oe = oe
        self._oe_line = None  # the OE pin's PinState, looked up at first use
        self._table_k = None  # prescale + 1 that _table was made for (pulses_us)
        self._table = None
        self.errors = []
        self.writes = 0  # write transactions received
        self.power_on()

    def power_on(self):
        self.regs = bytearray(256)
        for reg, value in _POWER_ON.items():
            self.regs[reg] = value
        for ch in range(16):
            self.regs[LED0_ON_L + 4 * ch + 3] = FULL  # LEDn_OFF_H resets to full off
        self.regs[PRESCALE] = 0x1E  # 200 Hz
        self.pointer = 0
        self._woke_us = None
        self._was_running = False

    # -- I2C device protocol (see emul/world.py I2CBus) --------------------------------------

    def i2c_write(self, data):
        if not data:
            return True
        self.writes += 1
        p = data[0]
        n = len(data) - 1
        regs = self.regs
        if n and regs[MODE1] & AI and 1 <= p and p + n - 1 <= LED15_OFF_H:
            # The common case, a burst into the plain registers 0x01..0x45 (MODE1 untouched, so
            # auto-increment stays on throughout): the byte-by-byte loop below, in one copy.
            regs[p : p + n] = memoryview(data)[1:]
            self.pointer = 0 if p + n - 1 == LED15_OFF_H else p + n
            return True
        self.pointer = p
        for b in data[1:]:
            self._store(self.pointer, b)
            self._advance()
        return True

    def i2c_read(self, n):
        out = bytearray()
        for _ in range(n):
            reg = self.pointer
            out.append(0 if ALL_LED_ON_L <= reg <= ALL_LED_OFF_H else self.regs[reg])
            self._advance()
        return bytes(out)

    def _advance(self):
        if not self.regs[MODE1] & AI:
            return
        p = self.pointer
        self.pointer = 0 if p in (LED15_OFF_H, 0xFF) else p + 1

    def _store(self, reg, value):
        if reg == MODE1:
            self._write_mode1(value)
        elif reg == PRESCALE:
            if not self.regs[MODE1] & SLEEP:
                self.errors.append("PRE_SCALE write 0x%02x ignored: chip is awake" % value)
            else:
                self.regs[PRESCALE] = max(PRESCALE_MIN, value)
        elif ALL_LED_ON_L <= reg <= ALL_LED_OFF_H:
            offset = reg - ALL_LED_ON_L
            for ch in range(16):
                self.regs[LED0_ON_L + 4 * ch + offset] = value
        elif reg <= LED15_OFF_H:
            self.regs[reg] = value
        elif reg == TESTMODE:
            self.errors.append("write 0x%02x to the test-mode register ignored" % value)
        else:
            self.errors.append("write 0x%02x to reserved register 0x%02x ignored" % (value, reg))

    def _write_mode1(self, value):
        old = self.regs[MODE1]
        was_asleep = bool(old & SLEEP)
        asleep = bool(value & SLEEP)
        new = value & ~RESTART
        restart_bit = old & RESTART
        if value & EXTCLK and not old & EXTCLK:
            self.errors.append("MODE1 EXTCLK set: no external clock on this board, ignored")
            new &= ~EXTCLK
        if not was_asleep and asleep:
            # Sleeping with PWM running sets RESTART (datasheet 7.3.1.1).
            if self._any_output():
                restart_bit = RESTART
            self._was_running = False
        if was_asleep and not asleep:
            self._woke_us = self._time()
        if value & RESTART and restart_bit and not asleep:
            woke = self._woke_us
            now = self._time()
            if woke is not None and now is not None and now - woke < OSC_START_US:
                self.errors.append(
                    "RESTART %d us after wake ignored: oscillator needs 500 us" % (now - woke)
                )
            else:
                restart_bit = 0  # writing 1 clears it and restarts the channels
        self.regs[MODE1] = new | restart_bit

    def _time(self):
        return None if self._now_us is None else self._now_us()

    def _any_output(self):
        return any(self.counts(ch) for ch in range(16))

    # -- what the outputs do ----------------------------------------------------------------

    @property
    def asleep(self):
        return bool(self.regs[MODE1] & SLEEP)

    @property
    def auto_increment(self):
        return bool(self.regs[MODE1] & AI)

    @property
    def prescale(self):
        return self.regs[PRESCALE]

    def outputs_enabled(self):
        if self.asleep:
            return False
        if self._oe is not None:
            line = self._oe_line
            if line is None:
                pins, gpio = self._oe
                line = self._oe_line = pins.get(gpio)
            return line.level == 0
        return True

    def freq_hz(self):
        return OSC_HZ / (COUNTS * (self.prescale + 1))

    def on_off(self, ch):
        """(ON, OFF) register values of channel ch, flag bits included (13 bits each)."""
        base = LED0_ON_L + 4 * ch
        r = self.regs
        return (r[base] | r[base + 1] << 8, r[base + 2] | r[base + 3] << 8)

    def counts(self, ch):
        """High time of channel ch in counts per period, by its registers (0..4096)."""
        on, off = self.on_off(ch)
        if off & (FULL << 8):
            return 0
        if on & (FULL << 8):
            return COUNTS
        return ((off & 0xFFF) - (on & 0xFFF)) % COUNTS

    def pulse_us(self, ch):
        """The pulse width channel ch puts out now, in microseconds (0 when asleep/disabled)."""
        if not 0 <= ch < 16:
            raise ValueError("no channel %d" % ch)
        if not self.outputs_enabled():
            return 0.0
        return self.counts(ch) * (self.prescale + 1) * 1e6 / OSC_HZ

    def pulses_us(self, channels):
        """pulse_us() of each channel in `channels`, as a list (one call for a chip's fingers)."""
        r = self.regs
        if r[MODE1] & SLEEP or (self._oe is not None and not self.outputs_enabled()):
            return [0.0] * len(channels)
        k = r[PRESCALE] + 1
        if k != self._table_k:
            # pulse_us() of every count at this prescale, the same float expression
            self._table = [c * k * 1e6 / OSC_HZ for c in range(COUNTS + 1)]
            self._table_k = k
        table = self._table
        words = _LED_WORDS.unpack_from(r, LED0_ON_L)  # ON, OFF of each channel
        out = []
        for ch in channels:
            if not 0 <= ch < 16:
                raise ValueError("no channel %d" % ch)
            on = words[2 * ch]
            off = words[2 * ch + 1]
            if off & _FULL_BIT:
                out.append(0.0)
            elif on & _FULL_BIT:
                out.append(table[COUNTS])
            else:
                # counts(): ((OFF & 0xFFF) - (ON & 0xFFF)) % 4096, which is (OFF - ON) & 0xFFF
                out.append(table[(off - on) & 0xFFF])
        return out
