# NXP PCA9685 16-channel 12-bit PWM controller on I2C: drives servo-type finger actuators.
# Registers from the datasheet (rev. 4): MODE1 0x00, MODE2 0x01, LEDn_ON_L/H, LEDn_OFF_L/H from
# 0x06 (4 bytes per channel), ALL_LED_* 0xFA..0xFD, PRE_SCALE 0xFE. Bit 4 of LEDn_ON_H is "full
# on", bit 4 of LEDn_OFF_H "full off" (full off wins).
#
# Channel pulses are written as a burst: LEDn registers of channels 0..n-1 in ONE write from a
# preallocated buffer (auto-increment on), so a full update of a chip is one I2C transaction and
# allocates nothing.

from array import array

from firmware.drivers.fault import DriverFault, not_ready
from firmware.runtime import block_us, const, micropython

_MODE1 = const(0x00)
_MODE2 = const(0x01)
_LED0_ON_L = const(0x06)
_ALL_LED_ON_L = const(0xFA)
_PRESCALE = const(0xFE)

_MODE1_RESTART = const(0x80)
_MODE1_AI = const(0x20)  # register auto-increment
_MODE1_SLEEP = const(0x10)  # oscillator off; PRE_SCALE can only be written while asleep
_MODE2_OUTDRV = const(0x04)  # totem-pole outputs: servo inputs need a driven high level
_FULL = const(0x10)  # bit 4 of LEDn_ON_H / LEDn_OFF_H

_OSC_HZ = const(25_000_000)  # internal oscillator
_OSC_MHZ = const(25)  # one count lasts (prescale + 1) / 25 us
_OSC_START_US = const(500)  # datasheet: oscillator needs 500 us after SLEEP is cleared
_CHANNELS = const(16)
_COUNTS = const(4096)
_FREQ_MIN_HZ = const(24)  # prescale 255
_FREQ_MAX_HZ = const(1526)  # prescale 3, the hardware minimum
# Channel n's pulse starts n * 128 counts into the period, so 16 actuators do not all draw their
# current at the same instant (the widest servo pulse, ~512 counts at 50 Hz, still ends in-period).
_STAGGER = const(128)


class PCA9685:
    def __init__(self, i2c, address):
        self.i2c = i2c
        self.address = address
        self.part = "pca9685@0x%02x" % address
        self.counts = array("H", bytes(2 * _CHANNELS))  # pulse width per channel, 0 = off
        self.prescale = 0  # 0 until init()
        self._div = 0
        self._on = array("H", (ch * _STAGGER for ch in range(_CHANNELS)))
        buf = bytearray(4 * _CHANNELS)
        for ch in range(_CHANNELS):
            buf[4 * ch] = self._on[ch] & 0xFF
            buf[4 * ch + 1] = self._on[ch] >> 8
            buf[4 * ch + 3] = _FULL
        self._buf = buf
        self._mv = memoryview(buf)
        self._burst = None  # memoryview of the first 4 * _burst_n bytes, made once
        self._burst_n = -1
        self._byte = bytearray(1)
        self._all_off = bytes((0, 0, 0, _FULL))

    # -- bus access: one retry, then a fault naming the chip -----------------------------------

    def _write(self, reg, data):
        try:
            self.i2c.writeto_mem(self.address, reg, data)
            return
        except OSError:
            pass
        try:
            self.i2c.writeto_mem(self.address, reg, data)
        except OSError as e:
            raise DriverFault(self.part, "write to 0x%02x failed twice: %r" % (reg, e))

    def _read(self, reg):
        b = self._byte
        try:
            self.i2c.readfrom_mem_into(self.address, reg, b)
            return b[0]
        except OSError:
            pass
        try:
            self.i2c.readfrom_mem_into(self.address, reg, b)
        except OSError as e:
            raise DriverFault(self.part, "read of 0x%02x failed twice: %r" % (reg, e))
        return b[0]

    def _write_byte(self, reg, value):
        self._byte[0] = value
        self._write(reg, self._byte)

    # -- set-up ---------------------------------------------------------------------------------

    def init(self, freq_hz):
        # Leaves every channel fully off at freq_hz. Works on a chip that was already running
        # (a soft reboot of the MCU): sleeping stops its outputs first.
        if not _FREQ_MIN_HZ <= freq_hz <= _FREQ_MAX_HZ:
            raise ValueError("PWM frequency %d Hz outside 24..1526" % freq_hz)
        prescale = (_OSC_HZ + 2048 * freq_hz) // (_COUNTS * freq_hz) - 1  # rounded
        self.prescale = 0
        self._div = 0  # unusable until this init has succeeded
        self._write_byte(_MODE1, _MODE1_SLEEP | _MODE1_AI)
        self._write_byte(_PRESCALE, prescale)
        self._write_byte(_MODE2, _MODE2_OUTDRV)
        self._write(_ALL_LED_ON_L, self._all_off)
        self._write_byte(_MODE1, _MODE1_AI)  # wake
        block_us(_OSC_START_US)
        self._write_byte(_MODE1, _MODE1_RESTART | _MODE1_AI)
        # Read back: another part at this address, or a chip that ignored PRE_SCALE, shows here.
        got = self._read(_PRESCALE)
        if got != prescale:
            raise DriverFault(self.part, "prescale reads %d, wrote %d" % (got, prescale))
        mode1 = self._read(_MODE1)
        if mode1 & (_MODE1_SLEEP | _MODE1_AI) != _MODE1_AI:
            raise DriverFault(self.part, "MODE1 reads 0x%02x after wake" % mode1)
        for ch in range(_CHANNELS):
            self.counts[ch] = 0
        self.prescale = prescale
        self._div = prescale + 1

    def period_us(self):
        if not self._div:
            raise not_ready(self.part)
        return _COUNTS * self._div // _OSC_MHZ

    # -- channels -------------------------------------------------------------------------------

    def us_to_counts(self, us):
        # Nearest count for a pulse of `us` microseconds at the prescale init() set.
        div = self._div
        if not div:
            raise not_ready(self.part)
        n = (us * _OSC_MHZ + (div >> 1)) // div
        if us < 0 or n >= _COUNTS:
            raise ValueError("%s: pulse %d us outside the PWM period" % (self.part, us))
        return n

    def set_counts(self, ch, n):
        if not self._div:
            raise not_ready(self.part)
        if not 0 <= ch < _CHANNELS:
            raise ValueError("%s: no channel %d" % (self.part, ch))
        if not 0 <= n < _COUNTS:
            raise ValueError("%s: %d counts outside 0..4095" % (self.part, n))
        self.counts[ch] = n

    def set_pulse_us(self, ch, us):
        self.set_counts(ch, self.us_to_counts(us))

    @micropython.native
    def write_all(self, n_channels):
        # Channels 0..n_channels-1 in one transaction: 1 + 4 * n bytes on the bus.
        if not self._div:
            raise not_ready(self.part)
        n = n_channels
        if n != self._burst_n:
            if not 1 <= n <= _CHANNELS:
                raise ValueError("%s: cannot burst %d channels" % (self.part, n))
            self._burst = self._mv[: 4 * n]
            self._burst_n = n
        buf = self._buf
        counts = self.counts
        on = self._on
        for ch in range(n):
            c = counts[ch]
            j = 4 * ch + 2
            if c == 0:
                buf[j] = 0
                buf[j + 1] = _FULL
            else:
                off = (on[ch] + c) & 0xFFF
                buf[j] = off & 0xFF
                buf[j + 1] = off >> 8
        self._write(_LED0_ON_L, self._burst)

    def all_off(self):
        # Every channel fully off in one write (ALL_LED_OFF_H full-off bit).
        if not self._div:
            raise not_ready(self.part)
        for ch in range(_CHANNELS):
            self.counts[ch] = 0
        self._write(_ALL_LED_ON_L, self._all_off)
