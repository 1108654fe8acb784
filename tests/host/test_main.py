"""The device's entry point (firmware/main.py) builds the device from its flash: the identity the
factory wrote names the board and the serial the phone sees; a missing or broken identity file
leaves a working, unprovisioned device."""

from backhug_host import blestack, hostrt
from backhug_host.sim.device import SimDevice
from firmware import storage

blestack.use_fake_aioble()
from firmware import main  # noqa: E402  (imports aioble: the host adapter)


def _hw():
    return SimDevice("sim", person="nobody", clock=hostrt.install_virtual()).build_hal()


def test_identity_names_board_and_serial(tmp_path):
    storage.Store(str(tmp_path)).save(
        "identity", {"board": "sim", "serial": "BH3-000123", "hardware": "v3.1"}
    )
    d = main.build(str(tmp_path), hw=_hw())
    svc = d.services[0]
    assert d.board.id == "sim"
    assert svc.serial == "BH3-000123" and svc.name == "BackHug-0123" and svc.hardware == "v3.1"


def test_broken_identity_is_set_aside_and_the_device_still_builds(tmp_path):
    store = storage.Store(str(tmp_path))
    store.save("identity", {"board": "sim", "serial": "x" * 40})
    assert main.load_identity(storage.Store(str(tmp_path))) == {}
    store.save("identity", {"board": "sim", "colour": "red"})
    s = storage.Store(str(tmp_path))
    assert main.load_identity(s) == {}
    assert [n for n, _ in s.problems] == ["identity"]
