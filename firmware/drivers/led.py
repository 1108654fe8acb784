# RGB status LED on three PWM outputs (one per colour, active high). Levels 0..255 per colour.
# set() is called every status period: it writes only on a change and allocates nothing.

from firmware.drivers.fault import not_ready


class StatusLed:
    def __init__(self, r, g, b):
        self.part = "led"
        self._pwms = (r, g, b)
        self.rgb = bytearray(3)  # the levels shown now
        self._ready = False

    def init(self):
        self._ready = True
        self._write(0, 0, 0)

    def set(self, r, g, b):
        if not self._ready:
            raise not_ready(self.part)
        if not (0 <= r <= 255 and 0 <= g <= 255 and 0 <= b <= 255):
            raise ValueError("LED level outside 0..255: %r" % ((r, g, b),))
        rgb = self.rgb
        if rgb[0] != r or rgb[1] != g or rgb[2] != b:
            self._write(r, g, b)

    def _write(self, r, g, b):
        pr, pg, pb = self._pwms
        pr.duty_u16(r * 257)  # 255 * 257 = 65535: full scale
        pg.duty_u16(g * 257)
        pb.duty_u16(b * 257)
        rgb = self.rgb
        rgb[0] = r
        rgb[1] = g
        rgb[2] = b

    def off(self):
        self.set(0, 0, 0)
