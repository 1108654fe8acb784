"""Bus cost of the control tick's driver work on the sim board, counted on the emulated hardware.

Per full 26-finger update (FingerBank.write) and per full force read (ForceArray.read): I2C
transactions and bytes (register address included), the time those bytes take on the wire at
the board's I2C clock, and ADC conversions. Plus the host's own time per driver call, which
bounds how fast the simulator can run the real drivers.
"""

import time

from backhug_host import emul, hostrt
from backhug_host.emul import world as W
from firmware import boardspec, runtime

N = 200


def _wire_us(transactions, data_bytes, freq_hz):
    # each byte is 9 clocks (8 data + ACK); each transaction adds its address byte and about
    # 2 clocks for start/stop
    clocks = (data_bytes + transactions) * 9 + transactions * 2
    return clocks * 1_000_000 / freq_hz


def run():
    emul.use_fake_machine()
    from firmware import hal

    board = boardspec.load("sim")
    previous_clock = getattr(runtime, "_host", None)
    clock = hostrt.install_virtual()
    world = W.World(clock)
    previous_world = W.install(world)
    try:
        emul.attach_board(world, board, force_source=lambda i: (100 + 10 * i) << 4)
        hw = hal.build(board)
        bus = world.i2c(board.i2c["id"])
        targets = hw.fingers.targets_um

        bus.reset_counters()
        conv0 = world.adc_conversions
        t0 = time.perf_counter()
        for k in range(N):
            for i in range(board.finger_count):
                targets[i] = (k * 997 + i * 1531) % (board.stroke_um + 1)
            hw.fingers.write()
        t1 = time.perf_counter()
        w_tr, w_bytes = bus.transactions / N, bus.bytes / N
        w_conv = (world.adc_conversions - conv0) / N

        bus.reset_counters()
        conv0 = world.adc_conversions
        t2 = time.perf_counter()
        for _ in range(N):
            hw.forces.read()
        t3 = time.perf_counter()
        r_tr, r_bytes = bus.transactions / N, bus.bytes / N
        r_conv = (world.adc_conversions - conv0) / N
    finally:
        W.install(previous_world)
        runtime.install(previous_clock)

    n_chips = len(board.pwm["chips"])
    return [
        # one burst per PCA9685 is the design (DESIGN section 3)
        {"name": "finger_update_i2c_transactions", "value": w_tr, "unit": "transactions",
         "target": n_chips, "better": "lower"},
        {"name": "finger_update_i2c_bytes", "value": w_bytes, "unit": "bytes"},
        # a third of the 10 ms tick at most for the finger writes
        {"name": "finger_update_i2c_wire_time", "value": round(_wire_us(w_tr, w_bytes,
         board.i2c["freq_hz"])), "unit": "us", "target": 3300},
        {"name": "finger_update_adc_conversions", "value": w_conv, "unit": "conversions",
         "better": "lower"},
        {"name": "force_read_i2c_transactions", "value": r_tr, "unit": "transactions",
         "better": "lower"},
        {"name": "force_read_i2c_bytes", "value": r_bytes, "unit": "bytes"},
        {"name": "force_read_adc_conversions", "value": r_conv, "unit": "conversions",
         "target": board.finger_count, "better": "lower"},
        {"name": "host_finger_write", "value": round((t1 - t0) / N * 1e6, 1), "unit": "us"},
        {"name": "host_force_read", "value": round((t3 - t2) / N * 1e6, 1), "unit": "us"},
    ]  # fmt: skip
