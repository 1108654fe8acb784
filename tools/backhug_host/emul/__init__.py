"""Emulated hardware behind the fake `machine` module (tools/backhug_host/shims/machine.py).

world: the World (I2C buses, pins, ADC inputs, PWM outputs, watchdog, reset cause) that every
`machine` object routes to; pca9685: the PWM controller at register level; muxadc: a 16:1 analog
mux into an ADC pin. This module adds the two steps every user repeats: putting the fake
`machine` on sys.path, and wiring a board's emulated chips into a World.

Host only (CPython); may import anything. The firmware never imports this package.
"""

import os
import sys

from backhug_host.emul.muxadc import MuxAdc
from backhug_host.emul.pca9685 import PCA9685
from backhug_host.emul.world import World, current, install

SHIMS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shims")

__all__ = [
    "SHIMS_DIR",
    "BoardChips",
    "World",
    "attach_board",
    "current",
    "install",
    "use_fake_machine",
]


def use_fake_machine():
    """Put shims/ first on sys.path (once) and return the fake `machine` module."""
    if SHIMS_DIR not in sys.path:
        sys.path.insert(0, SHIMS_DIR)
    import machine

    if not getattr(machine, "__file__", "").startswith(SHIMS_DIR):
        raise RuntimeError("`machine` was imported from %r, not the host shim" % machine.__file__)
    return machine


class BoardChips:
    """The emulated parts attach_board() wired: `chips` {address: PCA9685}, `muxes` (one MuxAdc
    per force ADC), `force_source`, and the board."""

    def __init__(self, board, chips, muxes):
        self.board = board
        self.chips = chips
        self.muxes = muxes
        self.force_source = None

    def finger_pulse_us(self, i):
        """The pulse width finger i receives now (0.0 when its chip's outputs are off)."""
        addr, ch = self.board.fingers["channels"][i]
        return self.chips[addr].pulse_us(ch)


def attach_board(world, board, force_source=None, settle_us=None):
    """Wire the emulated chips of a validated board into `world`: a PCA9685 per pwm.chips address
    on the board's I2C bus (with the shared OE line), and a 16:1 mux per force ADC whose channel
    c reads force_source(finger) for the finger the board maps there (0 for a free input).

    force_source(i) returns the 16-bit ADC reading of finger i's sensor now; it can be replaced
    later through the returned object's `force_source`. settle_us: the muxes' settling time
    (default the board's force.settle_us)."""
    bus = world.i2c(board.i2c["id"])
    oe = (world.pins, board.pwm["oe_pin"])
    chips = {a: bus.attach(a, PCA9685(world.now_us, oe)) for a in board.pwm["chips"]}
    out = BoardChips(board, chips, [])
    out.force_source = force_source
    # finger on each (ADC, mux channel), None for a free input: one list per ADC
    slots = [[None] * 16 for _ in board.force["adc"]]
    for i, (a, ch) in enumerate(board.force["channels"]):
        slots[a][ch] = i
    settle = board.force["settle_us"] if settle_us is None else settle_us

    def source_for(adc_index):
        fingers = slots[adc_index]

        def read(ch):
            i = fingers[ch]
            if i is None or out.force_source is None:
                return 0
            return out.force_source(i)

        return read

    for a, gpio in enumerate(board.force["adc"]):
        out.muxes.append(MuxAdc(world, board.force["mux_select"], gpio, source_for(a), settle))
    return out
