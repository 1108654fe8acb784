"""A 16:1 analog multiplexer (CD74HC4067-style) whose output feeds one ADC pin.

The select lines S0..S3 are GPIOs of the World; the ADC pin reads source(channel) for the channel
they select at the moment of the conversion. `source` is a callable channel -> 0..65535 or a
sequence indexed by channel. With `settle_us` > 0 the output needs that long after a select line
changes to reach the new channel: a conversion sooner still sees the channel selected before the
change (counted in `early_reads`), so a driver that forgets to wait reads the wrong finger, as it
would on the bench. Several muxes may share the same select lines (the v3 board has two).
"""


class MuxAdc:
    def __init__(self, world, select_pins, adc_pin, source, settle_us=0):
        if len(select_pins) != 4:
            raise ValueError("a 16:1 mux has 4 select lines, got %d" % len(select_pins))
        self.world = world
        self.select_pins = tuple(select_pins)
        self.adc_pin = adc_pin
        self.source = source
        self.settle_us = settle_us
        self.reads = [0] * 16  # conversions per channel
        self.early_reads = 0
        self._selected = self.channel()
        self._shown = self._selected  # what the output shows while it is still settling
        self._changed_us = None
        for gpio in self.select_pins:
            world.pins.watch(gpio, self._select_changed)
        world.adc_source(adc_pin, self._read)

    def channel(self):
        """The channel the select lines choose now."""
        ch = 0
        for bit, gpio in enumerate(self.select_pins):
            ch |= self.world.pins.level(gpio) << bit
        return ch

    def _select_changed(self, gpio, level):
        if self.settle_us:
            now = self.world.now_us()
            if self._changed_us is None or now - self._changed_us >= self.settle_us:
                self._shown = self._selected  # it had settled on the previous selection
            self._changed_us = now
        self._selected = self.channel()

    def _value(self, ch):
        src = self.source
        return src(ch) if callable(src) else src[ch]

    def _read(self):
        ch = self.channel()
        if (
            self._changed_us is not None
            and self.world.now_us() - self._changed_us < self.settle_us
        ):
            self.early_reads += 1
            ch = self._shown
        self.reads[ch] += 1
        return self._value(ch)
