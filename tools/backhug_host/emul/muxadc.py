"""A 16:1 analog multiplexer (CD74HC4067-style) whose output feeds one ADC pin.

The select lines S0..S3 are GPIOs of the World; the ADC pin reads source(channel) for the channel
they select at the moment of the conversion. `source` is a callable channel -> 0..65535 or a
sequence indexed by channel. With `settle_us` > 0 the output needs that long after a select line
changes to reach the new channel: a conversion sooner still sees the channel selected before the
change (counted in `early_reads`), so a driver that forgets to wait reads the wrong finger, as it
would on the bench. Several muxes may share the same select lines (the v3 board has two).
"""


class _SelectLines:
    # The select lines S0..S3 as the muxes on them see them: the channel they choose, and while
    # a change is settling the channel chosen before it. One per set of lines and settling
    # time, however many muxes hang on them (one pin watcher instead of one per mux: the select
    # lines change a few dozen times per force read).

    def __init__(self, world, select_pins, settle_us):
        # A GPIO keeps its PinState for the World's life: reading `level` directly is what
        # World.pins.level() gives, without the lookups.
        self.lines = tuple(world.pins.get(gpio) for gpio in select_pins)
        self.now_us = world.now_us
        self.settle_us = settle_us
        self.selected = self.channel()
        self.shown = self.selected  # what the output shows while it is still settling
        self.changed_us = None
        for gpio in select_pins:
            world.pins.watch(gpio, self._changed)

    def channel(self):
        s0, s1, s2, s3 = self.lines
        return s0.level | s1.level << 1 | s2.level << 2 | s3.level << 3

    def _changed(self, gpio, level):
        settle = self.settle_us
        if settle:
            now = self.now_us()
            changed = self.changed_us
            if changed is None or now - changed >= settle:
                self.shown = self.selected  # it had settled on the previous selection
            self.changed_us = now
        s0, s1, s2, s3 = self.lines
        self.selected = s0.level | s1.level << 1 | s2.level << 2 | s3.level << 3


class MuxAdc:
    def __init__(self, world, select_pins, adc_pin, source, settle_us=0):
        if len(select_pins) != 4:
            raise ValueError("a 16:1 mux has 4 select lines, got %d" % len(select_pins))
        self.world = world
        self.select_pins = tuple(select_pins)
        self.adc_pin = adc_pin
        self.source = source
        self.reads = [0] * 16  # conversions per channel
        self.early_reads = 0
        # muxes on the same lines with the same settling time share one _SelectLines
        key = ("mux select lines", self.select_pins, settle_us)
        sel = world.shared.get(key)
        if sel is None:
            sel = world.shared[key] = _SelectLines(world, self.select_pins, settle_us)
        self._sel = sel
        world.adc_source(adc_pin, self._read)

    @property
    def settle_us(self):
        return self._sel.settle_us

    @property
    def source(self):
        return self._source

    @source.setter
    def source(self, src):
        self._source = src
        self._fn = src if callable(src) else src.__getitem__  # what a conversion calls

    def channel(self):
        """The channel the select lines choose now."""
        return self._sel.channel()

    def _read(self):
        sel = self._sel
        changed = sel.changed_us
        if changed is not None and sel.now_us() - changed < sel.settle_us:
            self.early_reads += 1
            ch = sel.shown
        else:
            s0, s1, s2, s3 = sel.lines
            ch = s0.level | s1.level << 1 | s2.level << 2 | s3.level << 3
        self.reads[ch] += 1
        return self._fn(ch)
