# What the app (over BLE), the button and the host tools may ask of the device. Each command is
# validated against the current state and answered with (code, reason); a refused command changes
# nothing. Commands only change the session's requests: the next control tick applies them, so no
# handler here touches hardware.

from firmware import session as ses
from firmware.treatments import flows, programme, strength

OK = 0
E_STATE = 1  # not allowed in the current state
E_VALUE = 2  # a value out of range or unknown
E_BUSY = 3  # an update is in progress
E_FAULT = 4  # a latched fault must be acknowledged first
E_NO_PERSON = 5  # reserved: the session ended because nobody lies on the device

RESULT_NAMES = ("ok", "wrong state", "bad value", "busy", "fault latched", "no person")

_RUNNING = (ses.SCANNING, ses.LEGREST_RISING, ses.WARMUP, ses.TREATING, ses.COOLDOWN)
_PAUSABLE = (ses.WARMUP, ses.TREATING, ses.COOLDOWN)

_OK = (OK, "")


class Commands:
    def __init__(self, device):
        self._d = device

    def _state(self):
        return self._d.session.state

    def _blocked(self):
        d = self._d
        if d.update_in_progress:
            return (E_BUSY, "a firmware update is in progress")
        if d.safestop.active:
            return (E_FAULT, "safe stop active: " + str(d.safestop.reason))
        return None

    def start(self, duration_min=None, programme_obj=None, user=0):
        s = self._d.session
        blocked = self._blocked()
        if blocked:
            return blocked
        if s.state != ses.IDLE:
            return (E_STATE, "a session is already " + ses.STATE_NAMES[s.state])
        if not isinstance(user, int) or isinstance(user, bool) or not 0 <= user < 5:
            return (E_VALUE, "user: must be 0..4")
        plan = None
        if programme_obj is not None:
            if duration_min is not None:
                return (E_VALUE, "duration: a programme sets its own duration")
            try:
                plan = programme.parse(programme_obj, self._d.board)
            except programme.ProgrammeError as e:
                return (E_VALUE, str(e))
            duration_ms = plan.total_ms
        else:
            if duration_min is None:
                duration_min = ses.DEFAULT_DURATION_MIN
            if type(duration_min) is not int or duration_min not in ses.DURATIONS_MIN:
                return (E_VALUE, "duration: must be one of 10, 20, 30, 40 minutes")
            duration_ms = duration_min * 60_000
        s.begin(duration_ms, plan, user)
        return _OK

    def acknowledge(self):
        # clear a latched fault once its condition has gone (the app's button, or a short press)
        ok, why = self._d.supervisor.acknowledge()
        if ok:
            return _OK
        if why == "no fault latched":
            return (E_STATE, why)
        return (E_FAULT, why)

    def pause(self):
        s = self._d.session
        if s.state not in _PAUSABLE:
            return (E_STATE, "cannot pause while " + ses.STATE_NAMES[s.state])
        s.pause()
        return _OK

    def resume(self):
        s = self._d.session
        if s.state != ses.PAUSED:
            return (E_STATE, "cannot resume while " + ses.STATE_NAMES[s.state])
        blocked = self._blocked()
        if blocked:
            return blocked
        s.resume()
        return _OK

    def stop(self):
        s = self._d.session
        if s.state == ses.IDLE:
            return (E_STATE, "no session is running")
        if s.state == ses.FINISHING:
            return (E_STATE, "the session is already finishing")
        s.stop(ses.END_STOPPED)
        return _OK

    def set_strength(self, level):
        if type(level) is not int or level not in strength.LEVELS:
            return (E_VALUE, "strength: must be 1..10")
        self._d.session.set_strength(level)
        return _OK

    def set_area(self, name):
        s = self._d.session
        if not s.has_area(name):
            return (E_VALUE, "area: unknown or empty on this board: %r" % (name,))
        if s.plan is not None and s.state != ses.IDLE:
            return (E_STATE, "area: a programme is running")
        s.area = name
        s.settings_changed()
        return _OK

    def set_flow(self, name, tempo_pct=None):
        s = self._d.session
        try:
            flows.check_flow(name)
            if tempo_pct is not None:
                flows.check_tempo(tempo_pct)
        except ValueError as e:
            return (E_VALUE, "flow: " + str(e))
        if s.plan is not None and s.state != ses.IDLE:
            return (E_STATE, "flow: a programme is running")
        s.flow = name
        if tempo_pct is not None:
            s.tempo_pct = tempo_pct
        s.settings_changed()
        return _OK
