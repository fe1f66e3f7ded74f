"""The Task arithmetic page's coefficient explorer, server side: what the browser is sent (pure functions)."""
from __future__ import annotations

from dashboard.explorer.coefficients import on_slider_lines, payload, reported_values, setting_entry, setting_key


def test_a_setting_is_named_as_javascript_names_it():
    # JavaScript: values.map((v) => v.toFixed(2)).join(",")
    assert setting_key([0.3, -1.5, 2.0]) == "0.30,-1.50,2.00"
    # round gives -0.0 here, and JavaScript's (-0).toFixed(2) is "0.00"
    assert setting_key([0.1 + 0.2, round(0.3 - 3 * 0.1, 4)]) == "0.30,0.00"


def test_an_entry_shows_each_task_against_zero_shot_in_points():
    entry = setting_entry({"digits": 0.61, "shapes": 0.97, "colours": 1.0}, {"digits": 0.51, "shapes": 1.0,
                          "colours": 1.0}, ["digits"], {"digits": 100, "shapes": 100, "colours": 50})
    assert entry == [
        {"task": "digits", "label": "digits", "value": "61.0%", "delta": "+10.0 pts", "sign": 1,
         "sample": "task vector, n=100 test images"},
        {"task": "shapes", "label": "shapes", "value": "97.0%", "delta": "-3.0 pts", "sign": -1,
         "sample": "control, n=100 test images"},
        {"task": "colours", "label": "colours", "value": "100.0%", "delta": "+0.0 pts", "sign": 0,
         "sample": "control, n=50 test images"}]


def test_the_browser_is_sent_the_settings_one_slider_move_reaches():
    settings = {(0.3, 0.3): "here", (0.7, 0.3): "digits moved", (0.3, -1.5): "counting moved",
                (0.4, 0.4): "both moved", (0.7, -1.5): "both moved"}
    assert on_slider_lines(settings, [0.3, 0.3]) == {(0.3, 0.3): "here", (0.7, 0.3): "digits moved",
                                                     (0.3, -1.5): "counting moved"}
    assert on_slider_lines(settings, [0.7, 0.30000000001]) == {(0.7, 0.3): "digits moved", (0.3, 0.3): "here",
                                                               (0.7, -1.5): "both moved"}


def test_the_payload_carries_the_sliders_grid_and_whether_the_merge_learns():
    data = payload("runs#sum#[]", ("digits", "counting"), (0.3, 0.3), {"0.30,0.30": []}, 0.1, (-1.5, 2.0), False)
    assert data == {"identity": "runs#sum#[]", "tasks": ["digits", "counting"], "values": [0.3, 0.3],
                    "settings": {"0.30,0.30": []}, "step": 0.1, "min": -1.5, "max": 2.0, "learns": False}


def test_a_report_from_the_browser_is_checked_like_any_input():
    """The browser's report becomes the session's coefficients only when it is this page's (its runs) and one
    finite number per task; values are snapped to the sliders' 0.1 grid and clamped to [-1.5, 2]."""
    here = "runs/a|runs/b"

    def take(report, n=2):
        return reported_values(report, here, n, (-1.5, 2.0), 0.1)
    assert take({"identity": here + "#task arithmetic#[]", "values": [0.34, -0.26]}) == [0.3, -0.3]
    assert take({"identity": here + "#ties#[]", "values": [7.0, -9]}) == [2.0, -1.5]  # out of range: clamped
    assert take({"identity": here + "#x", "values": [1, 2]}) == [1.0, 2.0]  # integers are numbers too
    for foreign in ({"identity": "runs/c#task arithmetic#[]", "values": [0.3, 0.3]},  # another page's runs
                    {"identity": here, "values": [0.3, 0.3]},                       # no method part
                    {"identity": here + "|runs/z#m", "values": [0.3, 0.3]},          # a longer set of runs
                    {"values": [0.3, 0.3]}, None, "0.3,0.3", [0.3, 0.3]):
        assert take(foreign) is None, foreign
    for bad in ([0.3], [0.3, 0.3, 0.3], [0.3, "1"], [0.3, None], [float("nan"), 0.3], [float("inf"), 0.3],
                [True, 0.3], "0.3,0.3", None):
        assert take({"identity": here + "#m", "values": bad}) is None, bad
