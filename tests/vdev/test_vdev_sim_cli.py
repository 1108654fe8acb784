# Tier 4: `make sim ARGS="--vdev"` end to end, kept short: nobody lies down, so the session the
# client starts over BLE on the virtual device ends at the scan (a few seconds of wall time).
# The full session is `make sim ARGS="--vdev"` by hand (about 1.5 min per 10 simulated minutes).

import io
import json

from backhug_host import simsession


def test_make_sim_vdev_runs_the_client_session_on_the_virtual_device(tmp_path):
    out = io.StringIO()
    png, res = tmp_path / "s.png", tmp_path / "s.json"
    rc = simsession.main(["--vdev", "--nobody", "--png", str(png), "--json", str(res)], out=out)
    text = out.getvalue()
    assert rc == 1, text  # the session did not start: nobody there
    assert "session ended: no person detected" in text
    assert "virtual device: the firmware on MicroPython" in text
    assert "resets: none" in text
    result = json.loads(res.read_text())
    assert result["reason"] == "no person detected"
    assert result["telemetry_frames"] > 0 and result["telemetry_notifications"] > 0
    assert not png.exists()  # no picture without a session
