# The hardware watchdog. Nothing is armed until arm(): an ESP32 watchdog cannot be stopped once
# started, so arming is the system's decision (once the control loop runs). `make_wdt(timeout_ms)`
# builds the machine.WDT (firmware/hal.py passes it in; tests pass a fake). Feeding an unarmed
# watchdog is a wiring mistake and raises DriverFault.

from firmware.drivers.fault import DriverFault


class Watchdog:
    def __init__(self, make_wdt, timeout_ms):
        if timeout_ms <= 0:
            raise ValueError("watchdog timeout must be positive")
        self.part = "watchdog"
        self.timeout_ms = timeout_ms
        self._make = make_wdt
        self._wdt = None
        self.armed = False

    def arm(self):
        # Idempotent: a second arm() keeps the running watchdog.
        if self._wdt is None:
            self._wdt = self._make(self.timeout_ms)
            self.armed = True

    def feed(self):
        wdt = self._wdt
        if wdt is None:
            raise DriverFault(self.part, "fed before arm()")
        wdt.feed()
