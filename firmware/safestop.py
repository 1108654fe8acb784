# The one safe-stop funnel (DESIGN section 3). Every module that owns an output registers a
# handler; trigger(reason) runs each handler once, each in its own try/except so one failing
# handler cannot keep the others from stopping their outputs. Idempotent: a second trigger while
# stopped only records that it happened. Handlers must be quick and synchronous: they run inside
# the control tick that detected the problem.


class SafeStop:
    def __init__(self):
        self._handlers = []
        self.active = False
        self.reason = None
        self.count = 0  # how many times the funnel fired since boot
        self.handler_errors = []  # (handler name, exception) of handlers that raised

    def register(self, name, handler):
        self._handlers.append((name, handler))

    def trigger(self, reason):
        if self.active:
            return False
        self.active = True
        self.reason = reason
        self.count += 1
        for name, handler in self._handlers:
            try:
                handler(reason)
            except Exception as e:  # noqa: BLE001 - every handler must get its turn
                self.handler_errors.append((name, e))
        return True

    def clear(self):
        # Only the session engine calls this, once outputs are back in their rest state.
        self.active = False
        self.reason = None
