"""Fault injection: what can break on a simulated device, written "kind:target".

Targets: a finger index (0-based, as the firmware counts), a chip address, or what the kind says.

    open:N          force sensor N reads the high rail (broken wire, open input)
    short:N         force sensor N reads the low rail (shorted to ground)
    stuck:N         force sensor N keeps the value it has now, whatever the force
    noisy:N         force sensor N jumps to random values about a third of the time
    swap:N,M        force sensors N and M are wired to each other's mux inputs
    swap-pwm:N,M    fingers N and M are wired to each other's PWM channels
    stall:N[@F]     finger N's actuator stalls at F newtons (default 1 N: as soon as it touches)
    stick:N         finger N's actuator does not move at all
    nack:0xAA       the PWM chip at address 0xAA stops acknowledging (OSError ENODEV)
    timeout:0xAA    the I2C bus hangs on every transaction to 0xAA (OSError ETIMEDOUT)
    jam[:P]         the leg rest seizes where it is, or at P (0..1 of its travel) when given
    limits:both     both leg-rest limit switches read closed
    limit:top|bottom=open|closed   one limit switch is stuck open or closed
    button:T[+H]    the button is pressed at T ms after start and held H ms (default 150)
    getup:T         the person gets up at T ms after start (liedown:T lies down again)

`python -m backhug_host.sim --fault KIND:TARGET` applies one at start (the option repeats).
"""

KINDS = (
    "open",
    "short",
    "stuck",
    "noisy",
    "swap",
    "swap-pwm",
    "stall",
    "stick",
    "nack",
    "timeout",
    "jam",
    "limits",
    "limit",
    "button",
    "getup",
    "liedown",
)
STALL_DEFAULT_N = 1.0


class FaultError(ValueError):
    pass


class Fault:
    """A parsed fault: kind, target, extra argument, and the text it came from."""

    def __init__(self, spec, kind, target=None, arg=None):
        self.spec = spec
        self.kind = kind
        self.target = target
        self.arg = arg

    def __repr__(self):
        return "Fault(%r)" % self.spec

    def apply(self, dev):
        k = self.kind
        if k in ("open", "short", "stuck", "noisy"):
            if k == "stuck":
                # freeze at what the sensor reads now
                dev.sensors.raw12(self.target, dev.fingers.force_n(self.target), dev.t_ms)
            dev.sensors.inject(self.target, k)
        elif k == "swap":
            a, b = self.target
            dev.sensor_of[a], dev.sensor_of[b] = dev.sensor_of[b], dev.sensor_of[a]
        elif k == "swap-pwm":
            a, b = self.target
            dev.actuator_of[a], dev.actuator_of[b] = dev.actuator_of[b], dev.actuator_of[a]
        elif k == "stall":
            dev.fingers.set_stall(self.target, self.arg)
        elif k == "stick":
            dev.fingers.set_stuck(self.target)
        elif k in ("nack", "timeout"):
            dev.bus.inject(self.target, k, None)
        elif k == "jam":
            dev.legrest.jam(self.arg)
        elif k == "limits":
            dev.legrest.set_switch_fault("top", "closed")
            dev.legrest.set_switch_fault("bottom", "closed")
            dev._update_switches()
        elif k == "limit":
            dev.legrest.set_switch_fault(self.target, self.arg)
            dev._update_switches()
        elif k == "button":
            dev.press_button(self.target, self.arg)
        elif k == "getup":
            dev.at(self.target, dev.load.get_up, "person gets up")
        elif k == "liedown":
            dev.at(self.target, dev.load.lie_down, "person lies down")
        else:  # pragma: no cover - parse() admits only KINDS
            raise FaultError(self.spec)


def _finger(text, board, spec):
    try:
        i = int(text, 0)
    except ValueError:
        raise FaultError("%s: %r is not a finger index" % (spec, text)) from None
    if not 0 <= i < board.finger_count:
        raise FaultError("%s: no finger %d (0..%d)" % (spec, i, board.finger_count - 1))
    return i


def _ms(text, spec):
    try:
        v = int(text)
    except ValueError:
        raise FaultError("%s: %r is not a time in ms" % (spec, text)) from None
    if v < 0:
        raise FaultError("%s: time must be >= 0" % spec)
    return v


def parse(spec, board):
    """A Fault from "kind:target" for this board; FaultError (a ValueError) says what is wrong."""
    kind, _, target = spec.strip().partition(":")
    kind = kind.strip().lower()
    target = target.strip()
    if kind not in KINDS:
        raise FaultError("%s: unknown fault kind %r (one of %s)" % (spec, kind, ", ".join(KINDS)))
    if kind in ("open", "short", "stuck", "noisy", "stick"):
        return Fault(spec, kind, _finger(target, board, spec))
    if kind in ("swap", "swap-pwm"):
        parts = target.split(",")
        if len(parts) != 2:
            raise FaultError("%s: needs two fingers, N,M" % spec)
        a, b = (_finger(p.strip(), board, spec) for p in parts)
        if a == b:
            raise FaultError("%s: a finger cannot swap with itself" % spec)
        return Fault(spec, kind, (a, b))
    if kind == "stall":
        finger, _, force = target.partition("@")
        f = STALL_DEFAULT_N
        if force:
            try:
                f = float(force)
            except ValueError:
                raise FaultError("%s: %r is not a force in N" % (spec, force)) from None
            if f < 0:
                raise FaultError("%s: stall force must be >= 0" % spec)
        return Fault(spec, kind, _finger(finger, board, spec), f)
    if kind in ("nack", "timeout"):
        try:
            addr = int(target, 0)
        except ValueError:
            raise FaultError("%s: %r is not a chip address (e.g. 0x41)" % (spec, target)) from None
        if addr not in board.pwm["chips"]:
            chips = ", ".join("0x%02x" % a for a in board.pwm["chips"])
            raise FaultError("%s: no chip at 0x%02x on this board (%s)" % (spec, addr, chips))
        return Fault(spec, kind, addr)
    if kind == "jam":
        if target in ("", "legrest", "here"):
            return Fault(spec, kind, "legrest", None)
        try:
            at = float(target)
        except ValueError:
            raise FaultError("%s: %r is not a position 0..1" % (spec, target)) from None
        if not 0.0 <= at <= 1.0:
            raise FaultError("%s: position must be within 0..1" % spec)
        return Fault(spec, kind, "legrest", at)
    if kind == "limits":
        if target != "both":
            raise FaultError("%s: only limits:both" % spec)
        return Fault(spec, kind, "both")
    if kind == "limit":
        which, _, state = target.partition("=")
        if which not in ("top", "bottom") or state not in ("open", "closed"):
            raise FaultError("%s: limit:top|bottom=open|closed" % spec)
        return Fault(spec, kind, which, state)
    if kind == "button":
        at, _, hold = target.partition("+")
        return Fault(spec, kind, _ms(at, spec), _ms(hold, spec) if hold else 150)
    # getup / liedown
    return Fault(spec, kind, _ms(target, spec))
