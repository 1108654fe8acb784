# One control tick (100 Hz), synchronous and allocation-free in steady state:
#   read every force -> supervisor checks -> session computes targets -> supervisor clamps
#   -> write both PWM chips (one burst each).
# The asyncio task that paces it lives in firmware/app.py; keeping the tick itself synchronous
# lets tests and the MicroPython heap benchmark drive it tick by tick.

from firmware import faults
from firmware import session as ses
from firmware.drivers.fault import DriverFault
from firmware.runtime import const, micropython, ticks_diff

PERIOD_MS = const(10)
_MAX_STEP_MS = const(50)  # a late tick must not make the control law jump


class Controller:
    def __init__(self, hw, session, supervisor):
        self.hw = hw
        self.session = session
        self.supervisor = supervisor
        self.targets_um = hw.fingers.targets_um
        self.forces_cn = None
        self.ticks = 0
        self.late_ticks = 0  # ticks that came more than one period late
        self.worst_late_ms = 0
        self.plausibility = None  # firmware.plausibility.SensorCheck, when wired
        self.outputs_failed = False  # a PWM chip failed: fingers can no longer be written
        self._last_ms = None

    @micropython.native
    def tick(self, now_ms):
        last = self._last_ms
        dt = PERIOD_MS if last is None else ticks_diff(now_ms, last)
        self._last_ms = now_ms
        sup = self.supervisor
        if dt > 2 * PERIOD_MS:
            self.late_ticks += 1
            if dt - PERIOD_MS > self.worst_late_ms:
                self.worst_late_ms = dt - PERIOD_MS
            if self.session.state != ses.IDLE:
                sup.fault(faults.LOOP_OVERRUN, "%d ms late" % (dt - PERIOD_MS))
        if dt > _MAX_STEP_MS:
            dt = _MAX_STEP_MS
        elif dt < 0:
            dt = 0
        hw = self.hw
        forces = hw.forces.read()
        self.forces_cn = forces
        check = self.plausibility
        if check is not None and not sup.fault_code:
            s = self.session
            if check.check(dt, hw.forces.raw, forces, self.targets_um, s.scan.contact_um,
                           s.occupied and s.state != ses.FINISHING):
                sup.fault(check.code, "finger %d" % check.finger)
        sup.check(dt, forces)
        self.session.tick(dt, forces, self.targets_um)
        sup.clamp(forces, self.targets_um)
        if not self.outputs_failed:
            try:
                hw.fingers.write()
            except DriverFault as e:
                # the chip was retried once inside the driver: it is gone. The safe-stop funnel
                # switches the finger outputs off (output enable) since they can't be commanded.
                self.outputs_failed = True
                sup.fault(faults.I2C_FAULT, e.part)
        self.ticks += 1
