# Board validation: the shipped boards load, and every kind of bad board data is refused at load
# time with a message that starts with the dotted field name.

import copy
import importlib

import pytest

from firmware import boardspec
from firmware.boardspec import BoardError

BOARDS = ("backhug_v3", "devkit", "sim")


def v3():
    return copy.deepcopy(importlib.import_module("boards.backhug_v3.board").BOARD)


def refused(data, field, words=""):
    with pytest.raises(BoardError) as ei:
        boardspec.validate(data)
    msg = str(ei.value)
    assert msg.startswith(field + ": "), msg
    assert ei.value.field == field
    for w in words.split("|") if words else ():
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("board_id", BOARDS)
def test_shipped_boards_load(board_id):
    b = boardspec.load(board_id)
    assert b.id == board_id
    assert b.finger_count == b.rows * b.cols == len(b.fingers["channels"])
    assert len(b.pulse_cal) == len(b.force_cal) == b.finger_count
    assert len(b.strength_cn) == 10
    assert max(b.strength_cn) < b.force_cap_cn <= boardspec.FORCE_CAP_MAX_CN


def test_v3_attributes_follow_the_board_file():
    b = boardspec.load("backhug_v3")
    assert (b.finger_count, b.rows, b.cols) == (26, 13, 2)
    assert b.region_rows == {"upper": (0, 4), "middle": (4, 9), "lower": (9, 13)}
    assert b.fingers["channels"][16] == (0x41, 0)
    assert b.force["channels"][25] == (1, 9)
    assert b.pulse_cal[25] == (1000, 2000)
    assert b.force_cal[0] == (40, 25_000)
    assert b.force_cap_cn == 15_000 and b.contact_threshold_cn == 300 and b.min_contacts == 8
    assert b.watchdog_ms == 1000
    assert b.legrest["inrush_ms"] == 200  # optional field takes its default


def test_per_finger_calibration_tables_are_accepted():
    d = v3()
    d["fingers"]["pulse_us"] = tuple((1000 + i, 2000 - i) for i in range(26))
    d["force"]["offset"] = tuple(range(26))
    d["force"]["gain_q12"] = tuple(24_000 + i for i in range(26))
    b = boardspec.validate(d)
    assert b.pulse_cal[5] == (1005, 1995)
    assert b.force_cal[7] == (7, 24_007)


def test_lists_are_accepted_as_tuples():
    d = v3()
    d["fingers"]["channels"] = [list(c) for c in d["fingers"]["channels"]]
    b = boardspec.validate(d)
    assert b.fingers["channels"][3] == (0x40, 3)


def test_load_rejects_bad_ids():
    with pytest.raises(BoardError, match="^id: "):
        boardspec.load("../evil")
    with pytest.raises(ImportError):
        boardspec.load("no_such_board")


def test_load_checks_id_matches_module(monkeypatch):
    mod = importlib.import_module("boards.devkit.board")
    bad = copy.deepcopy(mod.BOARD)
    bad["id"] = "other"
    monkeypatch.setattr(mod, "BOARD", bad)
    with pytest.raises(BoardError, match="^id: 'other' does not match"):
        boardspec.load("devkit")


# --- refusals: one case per rule -------------------------------------------------------------


def test_unknown_top_level_key():
    d = v3()
    d["fingerz"] = 1
    refused(d, "fingerz", "unknown key")


def test_unknown_nested_key():
    d = v3()
    d["legrest"]["curent_limit_ma"] = 100
    refused(d, "legrest.curent_limit_ma", "unknown key")


def test_unknown_region_name():
    d = v3()
    d["fingers"]["regions"]["neck"] = (0, 0)
    refused(d, "fingers.regions.neck", "unknown key")


@pytest.mark.parametrize(
    "section,key",
    [
        ("legrest", "limit_top"),
        ("button", "pin"),
        ("i2c", "sda"),
        ("pwm", "oe_pin"),
        ("led", "g"),
        ("buzzer", "pin"),
        ("legrest", "current_adc"),
    ],
)
def test_missing_pin(section, key):
    d = v3()
    del d[section][key]
    refused(d, "%s.%s" % (section, key), "missing")


def test_missing_top_level_field():
    d = v3()
    del d["watchdog_ms"]
    refused(d, "watchdog_ms", "missing")


def test_section_not_a_dict():
    d = v3()
    d["button"] = 14
    refused(d, "button", "must be a dict")


def test_duplicate_pwm_channel():
    d = v3()
    ch = list(d["fingers"]["channels"])
    ch[3] = (0x40, 0)
    d["fingers"]["channels"] = tuple(ch)
    refused(d, "fingers.channels[3]", "duplicate channel 0x40/0|finger 0")


def test_channel_on_a_chip_that_is_not_fitted():
    d = v3()
    ch = list(d["fingers"]["channels"])
    ch[20] = (0x42, 4)
    d["fingers"]["channels"] = tuple(ch)
    refused(d, "fingers.channels[20]", "not in pwm.chips")


def test_channel_number_out_of_range():
    d = v3()
    ch = list(d["fingers"]["channels"])
    ch[20] = (0x41, 16)
    d["fingers"]["channels"] = tuple(ch)
    refused(d, "fingers.channels[20][1]", "above the maximum 15")


def test_finger_count_not_matching_channel_map():
    d = v3()
    d["fingers"]["channels"] = d["fingers"]["channels"][:25]
    refused(d, "fingers.channels", "needs 26 entries, got 25")


def test_finger_count_not_matching_rows_times_cols():
    d = v3()
    d["fingers"]["rows"] = 12
    refused(d, "fingers.count", "26 does not match rows * cols = 24")


def test_more_fingers_than_chip_channels():
    d = v3()
    d["pwm"]["chips"] = (0x40,)
    refused(d, "fingers.count", "above the maximum 16")


def test_duplicate_chip_and_allcall_address():
    d = v3()
    d["pwm"]["chips"] = (0x40, 0x40)
    refused(d, "pwm.chips[1]", "duplicate chip address 0x40")
    d["pwm"]["chips"] = (0x40, 0x70)
    refused(d, "pwm.chips[1]", "all-call")


def test_pwm_frequency_outside_the_prescaler_range():
    d = v3()
    d["pwm"]["freq_hz"] = 2000
    refused(d, "pwm.freq_hz", "above the maximum 1526")


@pytest.mark.parametrize("limit_cn", [20_001, 25_000])
def test_force_cap_above_200_newtons(limit_cn):
    d = v3()
    d["limits"]["force_cap_cn"] = limit_cn
    refused(d, "limits.force_cap_cn", "above the maximum 20000")


def test_force_cap_at_200_newtons_is_allowed():
    d = v3()
    d["limits"]["force_cap_cn"] = 20_000
    d["force"]["gain_q12"] = 30_000  # full scale must stay above the cap
    assert boardspec.validate(d).force_cap_cn == 20_000


def test_sensor_full_scale_below_the_cap():
    d = v3()
    d["force"]["gain_q12"] = 10_000  # ~98 N full scale under a 150 N cap
    refused(d, "force.gain_q12", "full scale|not above limits.force_cap_cn")


@pytest.mark.parametrize(
    "regions,field,words",
    [
        ({"upper": (1, 4), "middle": (4, 9), "lower": (9, 13)}, "upper", "starts at row 1"),
        ({"upper": (0, 4), "middle": (5, 9), "lower": (9, 13)}, "middle", "expected 4"),
        ({"upper": (0, 4), "middle": (4, 9), "lower": (9, 12)}, "lower", "board has 13 rows"),
        ({"upper": (0, 9), "middle": (9, 4), "lower": (4, 13)}, "middle", "before it starts"),
        ({"upper": (0, 4), "middle": (4, 9), "lower": (9, 14)}, "lower[1]", "above the max"),
        ({"upper": (0, 4), "lower": (9, 13)}, "middle", "missing"),
    ],
)
def test_regions_must_partition_rows_in_order(regions, field, words):
    d = v3()
    d["fingers"]["regions"] = regions
    refused(d, "fingers.regions." + field, words)


def test_region_may_be_empty():
    d = v3()
    d["fingers"]["regions"] = {"upper": (0, 6), "middle": (6, 13), "lower": (13, 13)}
    assert boardspec.validate(d).region_rows["lower"] == (13, 13)


@pytest.mark.parametrize(
    "table,field,words",
    [
        ((2_000,) * 10, "strength_cn[1]", "not above level 1"),
        (tuple(range(2_000, 11_001, 1_000))[:9], "strength_cn", "needs 10 entries, got 9"),
        (tuple(range(2_000, 12_001, 1_000)), "strength_cn", "needs 10 entries, got 11"),
        (tuple(range(7_000, 17_000, 1_000)), "strength_cn[8]", "above the maximum 14999"),
        ((3_000, 2_000) + tuple(range(4_000, 12_000, 1_000)), "strength_cn[1]", "not above"),
        ((200,) + tuple(range(3_000, 12_000, 1_000)), "strength_cn[0]", "contact_threshold"),
        ((2_000.0,) + tuple(range(3_000, 12_000, 1_000)), "strength_cn[0]", "integer"),
    ],
)
def test_strength_table(table, field, words):
    d = v3()
    d["strength_cn"] = table
    refused(d, field, words)


def test_force_channel_naming_a_missing_adc():
    d = v3()
    ch = list(d["force"]["channels"])
    ch[17] = (2, 1)
    d["force"]["channels"] = tuple(ch)
    refused(d, "force.channels[17]", "ADC 2 does not exist|force.adc has 2")


def test_duplicate_force_input():
    d = v3()
    ch = list(d["force"]["channels"])
    ch[17] = (1, 0)
    d["force"]["channels"] = tuple(ch)
    refused(d, "force.channels[17]", "duplicate mux input 1/0|finger 16")


def test_mux_needs_four_select_lines():
    d = v3()
    d["force"]["mux_select"] = (4, 5, 6)
    refused(d, "force.mux_select", "needs 4 entries")


def test_pin_used_twice():
    d = v3()
    d["buzzer"]["pin"] = 14
    refused(d, "buzzer.pin", "GPIO 14 already used by button.pin")


def test_pin_that_does_not_exist_or_is_flash():
    d = v3()
    d["led"]["r"] = 27  # SPI flash on every ESP32-S3 module
    refused(d, "led.r", "not usable on esp32s3")
    d["led"]["r"] = 49
    refused(d, "led.r", "not usable")


def test_adc_on_a_non_adc1_pin():
    d = v3()
    d["force"]["adc"] = (1, 12)
    refused(d, "force.adc[1]", "not an ADC1 pin")


def test_pin_given_as_bool_or_string():
    d = v3()
    d["legrest"]["in1"] = True
    refused(d, "legrest.in1", "GPIO number")
    d = v3()
    d["legrest"]["in1"] = "10"
    refused(d, "legrest.in1", "GPIO number")


def test_pulse_calibration_bounds():
    d = v3()
    d["fingers"]["pulse_us"] = (400, 2000)
    refused(d, "fingers.pulse_us[0]", "below the minimum 500")
    d["fingers"]["pulse_us"] = (1500, 1600)
    refused(d, "fingers.pulse_us", "span 100 us")
    d = v3()
    d["pwm"]["freq_hz"] = 500  # 2000 us period: a 2000 us pulse does not fit
    refused(d, "fingers.pulse_us", "does not fit the 2000 us PWM period")
    d = v3()
    d["fingers"]["pulse_us"] = tuple((1000, 2000) for _ in range(25))
    refused(d, "fingers.pulse_us", "needs 26 entries")
    d["fingers"]["pulse_us"] = tuple((1000, 2000) for _ in range(25)) + ((1000, 3000),)
    refused(d, "fingers.pulse_us[25][1]", "above the maximum 2500")


def test_per_finger_force_calibration_bounds():
    d = v3()
    d["force"]["offset"] = (40,) * 25 + (4095,)
    refused(d, "force.offset[25]", "above the maximum 4094")


def test_booleans_must_be_booleans():
    d = v3()
    d["button"]["active_low"] = 1
    refused(d, "button.active_low", "True or False")


def test_button_timing_order():
    d = v3()
    d["button"]["very_long_ms"] = 3_000
    refused(d, "button.very_long_ms", "below the minimum 3001")


def test_legrest_current_limit_above_full_scale():
    d = v3()
    d["legrest"]["current_limit_ma"] = 6_000
    refused(d, "legrest.current_limit_ma", "above the maximum 5000")


def test_contact_threshold_and_min_contacts():
    d = v3()
    d["limits"]["contact_threshold_cn"] = 15_000
    refused(d, "limits.contact_threshold_cn", "above the maximum 14999")
    d = v3()
    d["limits"]["min_contacts"] = 27
    refused(d, "limits.min_contacts", "above the maximum 26")


def test_unknown_mcu_and_bad_strings():
    d = v3()
    d["mcu"] = "esp8266"
    refused(d, "mcu", "unknown MCU")
    d = v3()
    d["id"] = "Back Hug"
    refused(d, "id", "not allowed")
    d = v3()
    d["name"] = ""
    refused(d, "name", "non-empty")


def test_error_is_a_value_error():
    d = v3()
    d["watchdog_ms"] = 10
    with pytest.raises(ValueError, match=r"^watchdog_ms: 10 below the minimum 100$"):
        boardspec.validate(d)


def test_cpu_clock_defaults_to_240_mhz_and_takes_the_s3_steps():
    data = v3()
    assert boardspec.validate(data).cpu_freq_hz == 240_000_000
    del data["cpu_freq_hz"]
    assert boardspec.validate(data).cpu_freq_hz == 240_000_000
    for hz in boardspec.CPU_FREQS_HZ:
        data["cpu_freq_hz"] = hz
        assert boardspec.validate(data).cpu_freq_hz == hz
    data["cpu_freq_hz"] = 120_000_000
    refused(data, "cpu_freq_hz", "80, 160 or 240 MHz")
    data["cpu_freq_hz"] = 480_000_000
    refused(data, "cpu_freq_hz")
