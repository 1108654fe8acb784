# DriverFault: a part of the hardware failed or was used wrongly (before init()). `part` names
# the chip as the fault log shows it, e.g. "pca9685@0x41"; `detail` says what happened.


class DriverFault(Exception):
    def __init__(self, part, detail):
        super().__init__(part, detail)
        self.part = part
        self.detail = detail

    def __str__(self):
        return "%s: %s" % (self.part, self.detail)


def not_ready(part):
    return DriverFault(part, "used before init()")
