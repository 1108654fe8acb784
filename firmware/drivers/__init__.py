# The hardware layer: one class per chip or part (PCA9685 PWM controller, finger bank, mux+ADC
# force array, H-bridge leg rest, button, status LED, buzzer, watchdog) plus DriverFault.
#
# Drivers receive buses, pins, ADCs and PWMs already constructed (firmware/hal.py builds them from
# the board with `machine`); they never construct hardware and never import `machine`. They may
# import firmware.runtime and each other, nothing else. No policy here: a driver does what it is
# told, refuses what is out of range (ValueError, never a silent clamp), bounds every wait, and
# reports a failing part as DriverFault. The hot-path calls (FingerBank.write, ForceArray.read)
# allocate nothing after init().
