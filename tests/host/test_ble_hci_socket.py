"""The simulator as a separate process with its BLE radio on an HCI socket (loopback TCP), and
the `backhug` console script in other processes driving it over a real HCI link: pair in the
pairing window, start a session, read the state, stop; a bond kept in the client's key file
lets a later process in without pairing again."""

import re
import subprocess
import sys
import time

DEVICE = "F0:BA:C4:00:00:01"


def backhug(spec, keys, *argv):
    cmd = [
        sys.executable,
        "-m",
        "backhug_host.client.cli",
        "--hci",
        spec,
        "--keystore",
        str(keys),
        "--address",
        DEVICE,
        *argv,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_client_process_drives_the_simulator_process(served, tmp_path):
    keys = tmp_path / "keys.json"
    r = backhug(served, keys, "pair")
    assert r.returncode == 0, r.stderr
    assert "paired and bonded" in r.stdout and keys.exists()
    r = backhug(served, keys, "start", "--minutes", "10")
    assert r.returncode == 0, r.stderr
    time.sleep(1.0)
    r = backhug(served, keys, "status")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^(scanning|legrest_rising|warmup)\b", r.stdout, re.M), r.stdout
    # a refused command: exit 1 with the device's reason
    r = backhug(served, keys, "resume")
    assert r.returncode == 1 and "cannot resume" in r.stderr
    r = backhug(served, keys, "stop")
    assert r.returncode == 0, r.stderr
    # a central without the bond file is refused by the stack
    r = backhug(served, tmp_path / "other.json", "status")
    assert r.returncode == 2 and "pair" in r.stderr.lower()
