# Hardware self-test, on the device (and on the simulator, unchanged).
#
#   quick  at boot. A person may already be lying on the device, so no finger is extended: the
#          fingers stay at home (hal's init put them there). Checks: every PWM chip answers and
#          kept its set-up, every force sensor reads a plausible unloaded value (not at a rail,
#          steady, near zero), the leg-rest limit switches are not both closed, the motor draws
#          nothing at rest, the watchdog is armed.
#   full   at the factory, with the test rig's plate clamped over the fingers at a known height
#          (plate_um). The quick checks, then each finger in turn rises until its own sensor
#          responds, which must happen near the plate height, presses a little further (the force
#          must grow) and retracts; no other sensor may respond meanwhile (that catches swapped
#          channels). Then the leg rest travels up and down between its limits within the
#          travel-time limit with a plausible motor current.
#
# Every wait is bounded, and the watchdog (armed first) is fed in every wait. run() returns plain
# data, ready to log or send:
#   {"mode": "quick"|"full", "ok": bool, "failed": [part, ...], "elapsed_ms": int,
#    "parts": [{"part": str, "ok": bool, "detail": str, "values": {...}}, ...]}
# Parts are named as the fault log names them: "pca9685@0x41", "force[3]", "finger[3]",
# "fingers", "forces", "legrest", "legrest.limits", "legrest.current", "watchdog".
# Uses only the drivers firmware/hal.py built (hw); allocates freely (it is not the control loop).

from firmware.drivers import legrest as lrd
from firmware.drivers.fault import DriverFault
from firmware.runtime import const, sleep_ms, ticks_diff, ticks_ms

QUICK = "quick"
FULL = "full"
RIG_PLATE_UM = 20_000  # the factory rig's plate height above the retracted finger tips

_MODE1 = const(0x00)
_PRESCALE = const(0xFE)
_MODE1_SLEEP = const(0x10)

_RAW_MAX = const(4095)
_RAIL_COUNTS = const(4)  # a raw reading this close to 0 or 4095 is a rail, not a force
_REST_SAMPLES = const(8)
_REST_SAMPLE_MS = const(5)
_REST_SPREAD_MAX = const(40)  # raw counts; a steady sensor at rest moves a few
_UNLOAD_EXTRA_MS = const(500)  # after a full retraction's worth of time, loads must be gone

_POLL_MS = const(10)
_APPROACH_MARGIN_UM = const(3_000)  # rise quickly to this far below the plate ...
_SEARCH_MARGIN_UM = const(3_000)  # ... then slowly, up to this far above it
_RAMP_STEP_UM = const(50)  # per _POLL_MS: 5 mm/s, slow enough that the finger keeps up
_CONTACT_TOL_UM = const(1_500)  # response must come this close to the plate height
_PRESS_UM = const(500)
_PRESS_MS = const(100)
_RETRACT_MS = const(1_000)

_LEG_POLL_MS = const(20)
_LEG_MIN_MA = const(50)  # a motor that moves draws at least this: less is an open circuit
_LEG_EXTRA_MS = const(1_000)  # our own bound on a move, beyond the driver's travel limit


class _Test:
    def __init__(self, hw, board, plate_um):
        self.hw = hw
        self.board = board
        self.plate_um = plate_um
        self.parts = []
        self.fingers_ok = True  # finger bank and force array usable
        self.forces_ok = True
        self.bad_sensors = []  # failed at rest: ignored while other fingers move

    def add(self, part, ok, detail, values=None):
        self.parts.append({"part": part, "ok": bool(ok), "detail": detail, "values": values or {}})
        return ok

    async def pause(self, ms):
        wd = self.hw.watchdog
        if wd.armed:
            wd.feed()
        await sleep_ms(ms)
        if wd.armed:
            wd.feed()

    # -- checks that move nothing --------------------------------------------------------------

    def init_faults(self):
        for e in getattr(self.hw, "faults", ()):
            self.add(e.part, False, "init: " + e.detail)
            if e.part == "fingers" or e.part.startswith("pca9685"):
                self.fingers_ok = False
            if e.part == "forces":
                self.forces_ok = False

    def watchdog(self):
        wd = self.hw.watchdog
        try:
            wd.arm()
            wd.feed()
        except DriverFault as e:
            return self.add("watchdog", False, e.detail)
        except Exception as e:  # machine.WDT refusing to start is a failed part too
            return self.add("watchdog", False, "cannot arm: %r" % (e,))
        return self.add(
            "watchdog",
            wd.armed,
            "armed, %d ms" % wd.timeout_ms if wd.armed else "not armed",
            {"timeout_ms": wd.timeout_ms},
        )

    def _read_reg(self, address, reg):
        try:
            return self.hw.i2c.readfrom_mem(address, reg, 1)[0]
        except OSError:
            pass
        return self.hw.i2c.readfrom_mem(address, reg, 1)[0]  # one retry, as the drivers do

    def chips(self):
        for chip in self.hw.chips:
            if any(p["part"] == chip.part for p in self.parts):
                self.fingers_ok = False  # its init already failed and was reported
                continue
            try:
                mode1 = self._read_reg(chip.address, _MODE1)
                prescale = self._read_reg(chip.address, _PRESCALE)
            except OSError as e:
                self.fingers_ok = False
                self.add(chip.part, False, "does not answer: %r" % (e,))
                continue
            values = {"mode1": mode1, "prescale": prescale}
            if not chip.prescale:
                self.fingers_ok = False
                self.add(chip.part, False, "answers, but init stopped at an earlier fault", values)
            elif prescale != chip.prescale:
                self.fingers_ok = False
                self.add(
                    chip.part,
                    False,
                    "prescale reads %d, set %d: chip reset, or another part at 0x%02x"
                    % (prescale, chip.prescale, chip.address),
                    values,
                )
            elif mode1 & _MODE1_SLEEP:
                self.fingers_ok = False
                self.add(chip.part, False, "asleep: outputs off", values)
            else:
                self.add(
                    chip.part,
                    True,
                    "answers, %d Hz set-up kept" % self.board.pwm["freq_hz"],
                    values,
                )

    def _read_forces(self):
        try:
            return self.hw.forces.read()
        except DriverFault as e:
            if self.forces_ok:
                self.add("forces", False, e.detail)
            self.forces_ok = False
            return None

    async def sensors_at_rest(self):
        hw = self.hw
        board = self.board
        thr = board.contact_threshold_cn
        n = board.finger_count
        # Fingers were just sent home; after a reset mid-session they may still be on their way
        # down from under a person. Wait (bounded) until nothing reads as loaded.
        limit_ms = board.stroke_um * 1000 // board.max_speed_um_s + _UNLOAD_EXTRA_MS
        t0 = ticks_ms()
        while True:
            cn = self._read_forces()
            if cn is None:
                return
            if max(cn) < thr or ticks_diff(ticks_ms(), t0) >= limit_ms:
                break
            await self.pause(50)
        lo = [_RAW_MAX] * n
        hi = [0] * n
        for k in range(_REST_SAMPLES):
            if k:
                await self.pause(_REST_SAMPLE_MS)
            cn = self._read_forces()
            if cn is None:
                return
            raw = hw.forces.raw
            for i in range(n):
                r = raw[i]
                if r < lo[i]:
                    lo[i] = r
                if r > hi[i]:
                    hi[i] = r
        for i in range(n):
            values = {"raw": hw.forces.raw[i], "cn": cn[i], "spread": hi[i] - lo[i]}
            part = "force[%d]" % i
            if not self._sensor_at_rest(part, lo[i], hi[i], cn[i], values):
                self.bad_sensors.append(i)

    def _sensor_at_rest(self, part, lo, hi, cn, values):
        thr = self.board.contact_threshold_cn
        if hi >= _RAW_MAX - _RAIL_COUNTS:
            return self.add(part, False, "reads the high rail (%d): sensor open?" % hi, values)
        if lo <= _RAIL_COUNTS:
            return self.add(part, False, "reads the low rail (%d): sensor shorted?" % lo, values)
        if hi - lo > _REST_SPREAD_MAX:
            return self.add(
                part, False, "unsteady at rest: raw %d..%d (loose wire?)" % (lo, hi), values
            )
        if not -thr < cn < thr:
            return self.add(part, False, "reads %d cN with the finger retracted" % cn, values)
        return self.add(part, True, "unloaded, %d cN" % cn, values)

    def legrest_at_rest(self):
        lr = self.hw.legrest
        cfg = self.board.legrest
        try:
            top = lr.at_top()
            bottom = lr.at_bottom()
            ma = lr.current_ma()
        except DriverFault as e:
            self.add("legrest", False, e.detail)
            return
        if top and bottom:
            self.add(
                "legrest.limits",
                False,
                "both limit switches closed: switch or wiring fault",
                {"top": 1, "bottom": 1},
            )
        else:
            where = "top" if top else "bottom" if bottom else "between the limits"
            self.add(
                "legrest.limits", True, "at " + where, {"top": int(top), "bottom": int(bottom)}
            )
        rest_max = cfg["current_limit_ma"] // 10
        self.add(
            "legrest.current",
            ma <= rest_max,
            "%d mA at rest%s" % (ma, "" if ma <= rest_max else ", expected <= %d" % rest_max),
            {"ma": ma},
        )

    # -- full mode: fingers --------------------------------------------------------------------

    def _responder(self, cn, own):
        # A finger other than `own` whose sensor reads contact (the largest), else own if it
        # does, else -1.
        thr = self.board.contact_threshold_cn
        bad = self.bad_sensors
        best = -1
        best_cn = thr - 1
        for j in range(len(cn)):
            if j != own and cn[j] > best_cn and j not in bad:
                best = j
                best_cn = cn[j]
        if best >= 0:
            return best
        return own if cn[own] >= thr else -1

    async def finger(self, i):
        hw = self.hw
        board = self.board
        fb = hw.fingers
        part = "finger[%d]" % i
        plate = self.plate_um
        approach = max(0, plate - _APPROACH_MARGIN_UM)
        limit = min(board.stroke_um, plate + _SEARCH_MARGIN_UM)
        try:
            # quickly to just below the plate, watching every sensor on the way
            fb.set_um(i, approach)
            fb.write()
            wait_ms = approach * 1000 // board.max_speed_um_s + 5 * _POLL_MS
            t0 = ticks_ms()
            while ticks_diff(ticks_ms(), t0) < wait_ms:
                await self.pause(_POLL_MS)
                cn = self._read_forces()
                if cn is None:
                    return False
                j = self._responder(cn, i)
                if j == i:
                    return self.add(
                        part,
                        False,
                        "sensor responds below %d um, the plate is at %d um" % (approach, plate),
                        {"cn": cn[i]},
                    )
                if j >= 0:
                    return self._crossed(part, i, j, cn)
            # then slowly until its own sensor responds
            target = approach
            contact = -1
            while target < limit:
                target = min(limit, target + _RAMP_STEP_UM)
                fb.set_um(i, target)
                fb.write()
                await self.pause(_POLL_MS)
                cn = self._read_forces()
                if cn is None:
                    return False
                j = self._responder(cn, i)
                if j == i:
                    contact = target
                    break
                if j >= 0:
                    return self._crossed(part, i, j, cn)
            if contact < 0:
                return self.add(
                    part,
                    False,
                    "no response up to %d um (plate at %d um): finger stalled or stuck, or "
                    "its sensor dead" % (limit, plate),
                    {"max_um": limit},
                )
            # a little further: the force must grow, still on this finger only
            fb.set_um(i, min(board.stroke_um, contact + _PRESS_UM))
            fb.write()
            await self.pause(_PRESS_MS)
            cn = self._read_forces()
            if cn is None:
                return False
            j = self._responder(cn, i)
            if j >= 0 and j != i:
                return self._crossed(part, i, j, cn)
            values = {"contact_um": contact, "plate_um": plate, "press_cn": cn[i]}
            if abs(contact - plate) > _CONTACT_TOL_UM:
                return self.add(
                    part,
                    False,
                    "responds at %d um, the plate is at %d um" % (contact, plate),
                    values,
                )
            if cn[i] < 2 * board.contact_threshold_cn:
                return self.add(
                    part,
                    False,
                    "force does not grow when pressing further: %d cN" % cn[i],
                    values,
                )
            return self.add(
                part, True, "contact at %d um, %d cN 0.5 mm further" % (contact, cn[i]), values
            )
        except DriverFault as e:
            self.fingers_ok = False
            return self.add("fingers", False, "%s: %s" % (e.part, e.detail))
        finally:
            await self._retract(i)

    def _loaded(self, cn):
        # any sensor that passed the rest check reads contact
        thr = self.board.contact_threshold_cn
        bad = self.bad_sensors
        for j in range(len(cn)):
            if cn[j] >= thr and j not in bad:
                return True
        return False

    def _crossed(self, part, i, j, cn):
        return self.add(
            part,
            False,
            "moving finger %d made sensor %d respond (%d cN): swapped channels?" % (i, j, cn[j]),
            {"responder": j, "cn": cn[j]},
        )

    async def _retract(self, i):
        fb = self.hw.fingers
        try:
            fb.set_um(i, 0)
            fb.write()
        except DriverFault:
            return
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < _RETRACT_MS:
            await self.pause(_POLL_MS)
            cn = self._read_forces()
            if cn is None or not self._loaded(cn):
                return

    async def fingers(self):
        if not self.fingers_ok:
            self.add("fingers", False, "not tested: the PWM chips are not working")
            return
        if not self.forces_ok:
            self.add("fingers", False, "not tested: the force sensors cannot be read")
            return
        for i in range(self.board.finger_count):
            if i in self.bad_sensors:
                self.add("finger[%d]" % i, False, "not tested: its force sensor failed at rest")
                continue
            await self.finger(i)
            if not self.fingers_ok or not self.forces_ok:
                return  # reported once; the rest would fail the same way

    # -- full mode: leg rest -------------------------------------------------------------------

    async def _travel(self, d):
        # Move the leg rest one way until the driver stops it; (status, ms, mean_ma, max_ma).
        lr = self.hw.legrest
        cfg = self.board.legrest
        bound = cfg["travel_ms"] + _LEG_EXTRA_MS
        started = lr.up() if d > 0 else lr.down()
        if not started:
            return lr.status, 0, 0, 0
        t0 = ticks_ms()
        total = 0
        count = 0
        peak = 0
        moving = lrd.MOVING_UP if d > 0 else lrd.MOVING_DOWN
        while True:
            await self.pause(_LEG_POLL_MS)
            st = lr.poll()
            elapsed = ticks_diff(ticks_ms(), t0)
            if st == moving and elapsed >= cfg["inrush_ms"]:
                total += lr.last_ma
                count += 1
                if lr.last_ma > peak:
                    peak = lr.last_ma
            if st != moving:
                if st == lrd.OVERCURRENT and lr.last_ma > peak:
                    peak = lr.last_ma
                return st, elapsed, total // count if count else 0, peak
            if elapsed > bound:
                lr.brake()
                return lrd.TIMEOUT, elapsed, total // count if count else 0, peak

    async def legrest(self):
        lr = self.hw.legrest
        cfg = self.board.legrest
        try:
            if lr.at_top() and lr.at_bottom():
                self.add("legrest", False, "not tested: both limit switches closed")
                return
            values = {}
            # from the bottom (a first move down to get there is not measured), up, down
            legs = ((lrd.REACHED_TOP, "up", 1, True), (lrd.REACHED_BOTTOM, "down", -1, True))
            if not lr.at_bottom():
                legs = ((lrd.REACHED_BOTTOM, "down", -1, False),) + legs
            for want, name, d, measured in legs:
                st, ms, mean_ma, peak = await self._travel(d)
                if measured:
                    values[name + "_ms"] = ms
                    values[name + "_ma"] = mean_ma
                    values[name + "_peak_ma"] = peak
                if st != want:
                    if st == lrd.OVERCURRENT:
                        why = (
                            "over-current (%d mA) after %d ms: jammed, obstructed, or the "
                            "limit switch ahead never closed" % (peak, ms)
                        )
                    elif st == lrd.TIMEOUT:
                        why = "no limit switch within %d ms" % cfg["travel_ms"]
                    else:
                        why = lrd.STATUS_NAMES[st]
                    lr.brake()
                    self.add("legrest", False, "moving %s: %s" % (name, why), values)
                    return
                if mean_ma < _LEG_MIN_MA:
                    lr.brake()
                    self.add(
                        "legrest",
                        False,
                        "moving %s: only %d mA, motor or current sense disconnected?"
                        % (name, mean_ma),
                        values,
                    )
                    return
            lr.brake()
            self.add(
                "legrest",
                True,
                "up %d ms, down %d ms, %d/%d mA"
                % (values["up_ms"], values["down_ms"], values["up_ma"], values["down_ma"]),
                values,
            )
        except DriverFault as e:
            self.add("legrest", False, e.detail)


async def run(hw, board, mode=QUICK, plate_um=RIG_PLATE_UM):
    """Self-test the hardware hw (firmware.hal.build(board), after init(): the failures init()
    met, kept in hw.faults, are reported as failed parts). mode QUICK (boot, nothing moves out)
    or FULL (factory, the test rig's plate at plate_um over the fingers)."""
    if mode not in (QUICK, FULL):
        raise ValueError("self-test mode %r: quick or full" % (mode,))
    if mode == FULL and not 0 < plate_um < board.stroke_um:
        raise ValueError("plate_um %d outside the stroke" % plate_um)
    t = _Test(hw, board, plate_um)
    t0 = ticks_ms()
    t.watchdog()
    t.init_faults()
    t.chips()
    await t.sensors_at_rest()
    t.legrest_at_rest()
    if mode == FULL:
        await t.fingers()
        await t.legrest()
    failed = [p["part"] for p in t.parts if not p["ok"]]
    return {
        "mode": mode,
        "ok": not failed,
        "failed": failed,
        "elapsed_ms": ticks_diff(ticks_ms(), t0),
        "parts": t.parts,
    }
