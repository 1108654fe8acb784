# The simulated board: the v3 electronics (two PCA9685, two muxes, H-bridge leg rest) on emulated
# chips, so the host runs the same drivers the device does. Plain data; see docs/boards.md.

_ROWS = 13
_COLS = 2

BOARD = {
    "id": "sim",
    "name": "BackHug simulator (v3 electronics, emulated)",
    "mcu": "host",
    "cpu_freq_hz": 240_000_000,  # set at boot: the tick budget assumes 240 MHz
    # 400 kHz (Fast mode), not the PCA9685's 1 MHz Fast-mode Plus: ESP-IDF's I2C master on the
    # ESP32-S3 supports Standard and Fast mode only ("SCL in master mode should not be larger
    # than 400 kHz"), so a tick's two bursts take 2.44 ms of wire time.
    "i2c": {"id": 0, "sda": 8, "scl": 9, "freq_hz": 400_000},
    "pwm": {"chips": (0x40, 0x41), "freq_hz": 50, "oe_pin": 21},
    "fingers": {
        "count": _ROWS * _COLS,
        "rows": _ROWS,
        "cols": _COLS,
        "regions": {"upper": (0, 4), "middle": (4, 9), "lower": (9, 13)},
        "channels": tuple((0x40, ch) for ch in range(16)) + tuple((0x41, ch) for ch in range(10)),
        "stroke_um": 40_000,
        "max_speed_um_s": 20_000,
        "pulse_us": (1000, 2000),
    },
    "force": {
        "mux_select": (4, 5, 6, 7),
        "adc": (1, 2),
        "settle_us": 10,
        "channels": tuple((0, ch) for ch in range(16)) + tuple((1, ch) for ch in range(10)),
        "offset": 40,
        "gain_q12": 25_000,
    },
    "legrest": {
        "in1": 10,
        "in2": 11,
        "pwm_freq_hz": 20_000,
        "duty_pct": 80,
        "limit_top": 12,
        "limit_bottom": 13,
        "limit_active_low": True,
        "current_adc": 3,
        "current_full_scale_ma": 5_000,
        "current_limit_ma": 2_500,
        "travel_ms": 8_000,
    },
    "button": {
        "pin": 14,
        "active_low": True,
        "debounce_ms": 5,
        "long_ms": 3_000,
        "very_long_ms": 10_000,
    },
    "led": {"r": 15, "g": 16, "b": 17},
    "buzzer": {"pin": 18},
    "watchdog_ms": 1_000,
    "limits": {"force_cap_cn": 15_000, "contact_threshold_cn": 300, "min_contacts": 8},
    "strength_cn": (2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000, 10_000, 11_000),
}
