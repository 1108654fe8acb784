# Fault codes (DESIGN section 5): one small integer per kind of fault, stable across firmware
# versions because the fault log on flash and the BLE fault characteristic carry them. A new kind
# gets a new number; a number is never reused. NAMES gives the human-readable reason.
#
# A fault latches the safe state (fingers home, leg rest stopped) until its condition has cleared
# and the user acknowledges it (button or app). `detail` carried with a fault names the part,
# e.g. the finger index or the chip, as a short string.

from firmware.runtime import const

SENSOR_OPEN = const(1)  # force reading at the high rail: sensor or wire open
SENSOR_SHORT = const(2)  # force reading at the low rail: sensor shorted
SENSOR_STUCK = const(3)  # reading frozen while the finger moves
SENSOR_NOISY = const(4)  # implausible jumps between ticks
FORCE_RETRACTED = const(5)  # force on a finger that is retracted home
OVER_FORCE = const(6)  # a finger over the force cap repeatedly
ACTUATOR_STALL = const(7)  # a finger not following its command
I2C_FAULT = const(8)  # a PWM chip failed after its retry
LEGREST_OBSTRUCTED = const(9)  # motor over-current: obstruction
LEGREST_TIMEOUT = const(10)  # travel-time limit reached
LEGREST_BOTH_LIMITS = const(11)  # both limit switches closed at once
LEGREST_LIMIT_STUCK = const(12)  # a limit switch that never opens
LOOP_OVERRUN = const(13)  # a control tick late by more than one period
TASK_DIED = const(14)  # an asyncio task raised or returned
WATCHDOG_RESET = const(15)  # the previous boot ended in a watchdog reset
SELFTEST_FAILED = const(16)  # the boot self-test found a broken part
SUPPLY = const(17)  # supply voltage out of range (boards with the sensor)
TEMPERATURE = const(18)  # over-temperature (boards with the sensor)

NAMES = {
    SENSOR_OPEN: "force sensor open",
    SENSOR_SHORT: "force sensor short",
    SENSOR_STUCK: "force sensor stuck",
    SENSOR_NOISY: "force sensor noisy",
    FORCE_RETRACTED: "force on a retracted finger",
    OVER_FORCE: "repeated over-force",
    ACTUATOR_STALL: "finger not following its command",
    I2C_FAULT: "PWM chip not answering",
    LEGREST_OBSTRUCTED: "leg rest obstructed",
    LEGREST_TIMEOUT: "leg rest travel timeout",
    LEGREST_BOTH_LIMITS: "leg rest: both limit switches closed",
    LEGREST_LIMIT_STUCK: "leg rest: limit switch stuck closed",
    LOOP_OVERRUN: "control loop overrun",
    TASK_DIED: "task died",
    WATCHDOG_RESET: "watchdog reset",
    SELFTEST_FAILED: "self-test failed",
    SUPPLY: "supply out of range",
    TEMPERATURE: "over-temperature",
}


def name(code):
    return NAMES.get(code, "fault %d" % code)
