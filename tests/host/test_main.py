"""The device's entry point (firmware/main.py) builds the device from its flash: the identity the
factory wrote names the board, the serial the phone sees and the key updates must be signed
with; a missing or broken identity file leaves a working, unprovisioned device. The update
service's SMP GATT service is registered with the BLE service's."""

import pytest

from backhug_host import blestack, hostrt
from backhug_host.sim.device import SimDevice
from firmware import storage

blestack.use_aioble()
from firmware import main  # noqa: E402  (imports micropython-lib's aioble)


@pytest.fixture(autouse=True)
def _fresh_radio():
    # main.build() makes the characteristics before any loop runs, as on the device: aioble's
    # capture task is then held for the next loop (backhug_host.mpcompat). Each test is a boot
    # that never runs; reset() drops what it left, so no later test's loop starts it.
    blestack.reset()
    yield
    blestack.reset()


def _hw():
    return SimDevice("sim", person="nobody", clock=hostrt.install_virtual()).build_hal()


def test_identity_names_board_and_serial(tmp_path):
    storage.Store(str(tmp_path / "data")).save(
        "identity", {"board": "sim", "serial": "BH3-000123", "hardware": "v3.1"}
    )
    d = main.build(str(tmp_path / "data"), hw=_hw(), slots_root=str(tmp_path / "slots"))
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


def test_update_service_with_its_smp_gatt_service(tmp_path):
    key = "ab" * 32
    storage.Store(str(tmp_path / "data")).save(
        "identity", {"board": "sim", "serial": "BH3-1", "hardware": "v3", "update_key": key}
    )
    d = main.build(str(tmp_path / "data"), hw=_hw(), slots_root=str(tmp_path / "slots"))
    ble, update = d.services
    assert update.slots.public_key == bytes.fromhex(key)
    assert ble.extras == update.extras
    (smp_service,) = update.extras[0].gatt_services()
    assert "8D53DC1D-1DB7-4CD3-868B-8A527460AA84" in str(smp_service.uuid).upper()


def test_update_key_must_be_64_hex_digits(tmp_path):
    store = storage.Store(str(tmp_path))
    store.save(
        "identity", {"board": "sim", "serial": "BH3-1", "hardware": "v3", "update_key": "ab" * 31}
    )
    assert main.load_identity(storage.Store(str(tmp_path))) == {}


def test_factory_calibration_reaches_the_drivers(tmp_path):
    force = [[40 + i, 25_000 + i] for i in range(26)]
    storage.Store(str(tmp_path / "data")).save(
        "identity",
        {"board": "sim", "serial": "BH3-1", "hardware": "v3", "calibration": {"force": force}},
    )
    d = main.build(str(tmp_path / "data"), hw=_hw(), slots_root=str(tmp_path / "slots"))
    assert d.supervisor.fault_code == 0
    assert list(d.hw.forces._off) == [p[0] for p in force]
    assert list(d.hw.forces._gain) == [p[1] for p in force]


def test_a_calibration_for_another_board_sets_the_identity_aside(tmp_path):
    # 4 fingers of calibration (the devkit's) for the 26-finger board: never half applied
    force = [[40, 25_000]] * 4
    store = storage.Store(str(tmp_path / "data"))
    store.save(
        "identity",
        {"board": "sim", "serial": "BH3-1", "hardware": "v3", "calibration": {"force": force}},
    )
    d = main.build(str(tmp_path / "data"), hw=_hw(), slots_root=str(tmp_path / "slots"))
    assert d.services[0].serial == "UNPROVISIONED"
    assert main.load_identity(storage.Store(str(tmp_path / "data"))) == {}
