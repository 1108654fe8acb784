"""The 16:1 mux + ADC emulator: the ADC reads the source of the channel the select pins choose,
and reads taken before the output settles still see the old channel."""

import pytest

from backhug_host import emul
from backhug_host.emul import world as W
from backhug_host.emul.muxadc import MuxAdc

machine = emul.use_fake_machine()
SEL = (4, 5, 6, 7)


@pytest.fixture
def world(vclock):
    w = W.World(vclock)
    previous = W.install(w)
    yield w
    W.install(previous)


def select(pins, ch):
    for bit, p in enumerate(pins):
        p.value((ch >> bit) & 1)


def test_adc_reads_the_selected_channel(world):
    mux = MuxAdc(world, SEL, 1, [1000 * ch for ch in range(16)])
    pins = [machine.Pin(n, machine.Pin.OUT, value=0) for n in SEL]
    adc = machine.ADC(machine.Pin(1))
    for ch in (0, 1, 9, 15, 6):
        select(pins, ch)
        assert mux.channel() == ch
        assert adc.read_u16() == 1000 * ch
    assert mux.reads[9] == 1


def test_two_muxes_share_select_lines(world):
    MuxAdc(world, SEL, 1, lambda ch: ch)
    MuxAdc(world, SEL, 2, lambda ch: 100 + ch)
    pins = [machine.Pin(n, machine.Pin.OUT, value=0) for n in SEL]
    a, b = machine.ADC(machine.Pin(1)), machine.ADC(machine.Pin(2))
    select(pins, 12)
    assert (a.read_u16(), b.read_u16()) == (12, 112)


def test_reading_before_settling_sees_the_previous_channel(world, vclock):
    mux = MuxAdc(world, SEL, 1, lambda ch: ch, settle_us=10)
    pins = [machine.Pin(n, machine.Pin.OUT, value=0) for n in SEL]
    adc = machine.ADC(machine.Pin(1))
    vclock.advance_us(100)
    select(pins, 5)  # two lines change at the same instant
    assert adc.read_u16() == 0
    vclock.advance_us(9)
    assert adc.read_u16() == 0
    vclock.advance_us(1)
    assert adc.read_u16() == 5
    assert mux.early_reads == 2
    select(pins, 3)
    vclock.advance_us(10)
    assert adc.read_u16() == 3


def test_needs_four_select_lines(world):
    with pytest.raises(ValueError):
        MuxAdc(world, (4, 5, 6), 1, [0] * 16)
