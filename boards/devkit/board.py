# Bench devkit: ESP32-S3 DevKitC, 4 fingers on one PCA9685, 4 force sensors on one mux, a leg-rest
# motor. Plain data; see docs/boards.md.

BOARD = {
    "id": "devkit",
    "name": "ESP32-S3 DevKitC bench rig",
    "mcu": "esp32s3",
    "cpu_freq_hz": 240_000_000,  # set at boot: the tick budget assumes 240 MHz
    "i2c": {"id": 0, "sda": 8, "scl": 9, "freq_hz": 400_000},
    "pwm": {"chips": (0x40,), "freq_hz": 50, "oe_pin": 21},
    "fingers": {
        "count": 4,
        "rows": 2,
        "cols": 2,
        # two rows only: the bench has no lower region
        "regions": {"upper": (0, 1), "middle": (1, 2), "lower": (2, 2)},
        "channels": ((0x40, 0), (0x40, 1), (0x40, 2), (0x40, 3)),
        "stroke_um": 40_000,
        "max_speed_um_s": 20_000,
        "pulse_us": (1000, 2000),
    },
    "force": {
        "mux_select": (4, 5, 6, 7),
        "adc": (1,),
        "settle_us": 10,
        "channels": ((0, 0), (0, 1), (0, 2), (0, 3)),
        "offset": 40,
        "gain_q12": 25_000,
    },
    "legrest": {
        "in1": 10,
        "in2": 11,
        "pwm_freq_hz": 20_000,
        "duty_pct": 60,
        "limit_top": 12,
        "limit_bottom": 13,
        "limit_active_low": True,
        "current_adc": 3,
        "current_full_scale_ma": 5_000,
        "current_limit_ma": 2_000,
        "travel_ms": 8_000,
    },
    "button": {
        "pin": 0,  # the DevKitC's BOOT button
        "active_low": True,
        "debounce_ms": 5,
        "long_ms": 3_000,
        "very_long_ms": 10_000,
    },
    "led": {"r": 15, "g": 16, "b": 17},
    "buzzer": {"pin": 18},
    "watchdog_ms": 1_000,
    "limits": {"force_cap_cn": 15_000, "contact_threshold_cn": 300, "min_contacts": 2},
    "strength_cn": (2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000, 9_000, 10_000, 11_000),
}
