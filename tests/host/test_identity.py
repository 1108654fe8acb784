"""The identity file (firmware/identity.py): what the factory writes is validated strictly at
boot, a bad file is set aside rather than half used, and apply() gives the drivers the factory
calibration."""

import pytest

from backhug_host import hostrt
from backhug_host.sim.device import SimDevice
from firmware import boardspec, identity, storage

KEY = "ab" * 32


def good(board="sim", **extra):
    d = {"board": board, "serial": "BH3-000123", "hardware": "v3.1", "update_key": KEY}
    d.update(extra)
    return d


def cal(n=26, force=(41, 24000), pulse=(1010, 1990)):
    return {"force": [list(force)] * n, "pulse_us": [list(pulse)] * n}


def test_a_full_identity_round_trips_through_the_store(tmp_path):
    store = storage.Store(str(tmp_path))
    store.save(identity.NAME, good(calibration=cal()))
    got = identity.load(storage.Store(str(tmp_path)))
    assert got == good(calibration=cal())


def test_identity_without_key_or_calibration_still_loads(tmp_path):
    # as written before update keys existed (firmware/main.py's tests)
    store = storage.Store(str(tmp_path))
    store.save("identity", {"board": "sim", "serial": "S", "hardware": "h"})
    assert identity.load(storage.Store(str(tmp_path)))["serial"] == "S"


@pytest.mark.parametrize(
    "obj, field",
    [
        (good(colour="red"), "unknown key 'colour'"),
        ({"board": "sim", "serial": "S"}, "identity.hardware: missing"),
        (good(serial="x" * 33), "identity.serial: 1..32"),
        (good(serial="tab\there"), "printable ASCII"),
        (good(update_key="AB" * 32), "identity.update_key"),
        (good(board="nosuchboard"), "no board 'nosuchboard'"),
        (good(calibration=cal(n=25)), "25 entries, the board has 26"),
        (good(calibration={"force": [[41, 24000]] * 26, "zero": 1}), "unknown key 'zero'"),
        (good(calibration=cal(force=(4095, 24000))), "force[0].offset: 4095 outside"),
        (good(calibration=cal(force=(40, 0))), "gain_q12: 0 outside"),
        # saturates at 99 N, below the 150 N cap: an over-force could hide
        (good(calibration=cal(force=(40, 10000))), "not above the force cap"),
        (good(calibration=cal(pulse=(1000, 1100))), "span 100 us below 200"),
        (good(calibration=cal(pulse=(400, 2000))), "at_0: 400 outside"),
        (good(calibration=cal(force=(40.5, 24000))), "an integer"),
    ],
)
def test_a_bad_identity_is_refused_and_set_aside(tmp_path, obj, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(").replace("[", r"\[")):
        identity.check(obj)
    storage.Store(str(tmp_path)).save(identity.NAME, obj)
    store = storage.Store(str(tmp_path))
    assert identity.load(store) == {}
    assert store.problems and store.problems[0][0] == "identity"
    assert (tmp_path / "identity.bad").exists()  # kept for the factory to look at


def _hw(board_id="sim"):
    dev = SimDevice(board_id, person="nobody", clock=hostrt.install_virtual())
    return dev, dev.build_hal(init=False)


def test_apply_gives_the_drivers_the_factory_calibration():
    dev, hw = _hw()
    board = dev.board
    c = cal()
    c["force"][3] = [55, 26000]
    c["pulse_us"][5] = [1100, 1900]
    assert identity.apply(good(calibration=c), hw, board) == 52
    hw.init()
    # a sensor reading: raw 555 through finger 3's own calibration
    assert (555 - 55) * 26000 >> 12 == (555 - hw.forces._off[3]) * hw.forces._gain[3] >> 12
    hw.fingers.set_um(5, board.stroke_um // 2)
    assert hw.fingers.pulse_us(5) == 1500
    hw.fingers.set_um(5, 0)
    assert hw.fingers.pulse_us(5) == 1100
    assert identity.force_cal(good(calibration=c), board)[3] == (55, 26000)
    assert identity.pulse_cal(good(), board) == board.pulse_cal


def test_apply_after_init_rehomes_with_the_new_calibration():
    dev, hw = _hw()
    hw.init()
    identity.apply(good(calibration=cal(pulse=(1200, 2000))), hw, dev.board)
    assert all(hw.fingers.pulse_us(i) == 1200 for i in range(dev.board.finger_count))


def test_apply_refuses_another_boards_identity_and_applies_nothing():
    dev, hw = _hw("devkit")
    with pytest.raises(ValueError, match="identity.board"):
        identity.apply(good(board="sim", calibration=cal()), hw, dev.board)
    assert tuple(hw.forces._off) == tuple(o for o, _ in dev.board.force_cal)
    assert identity.apply({}, hw, dev.board) == 0


def test_every_board_default_calibration_is_a_valid_identity_calibration():
    for b in ("sim", "devkit", "backhug_v3"):
        board = boardspec.load(b)
        c = {
            "force": [list(p) for p in board.force_cal],
            "pulse_us": [list(p) for p in board.pulse_cal],
        }
        identity.check(good(board=b, calibration=c))
