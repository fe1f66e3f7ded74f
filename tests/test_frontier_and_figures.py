import pandas as pd
import pytest

from dashboard import figures
from paint_core.core.frontier import chord_gap, frontier, frontier_area, gain_within_drift


def _sweep():
    rows = []
    # patch rises fast, supported holds then drops: a bent frontier
    for a, p, s, pt, st in [(0.0, 0.30, 0.90, 0.32, 0.91), (0.5, 0.80, 0.895, 0.78, 0.90), (1.0, 0.90, 0.60, 0.91, 0.62)]:
        rows += [{"alpha": a, "task": "digits", "split": "val", "accuracy": p, "n": 10},
                 {"alpha": a, "task": "shapes", "split": "val", "accuracy": s, "n": 10},
                 {"alpha": a, "task": "digits", "split": "test", "accuracy": pt, "n": 10},
                 {"alpha": a, "task": "shapes", "split": "test", "accuracy": st, "n": 10}]
    return pd.DataFrame(rows)


def test_frontier_measures_against_hand_computation():
    f = frontier(_sweep(), "digits", ["shapes"], "test")
    # chord from (0.32, 0.91) to (0.91, 0.62); at patch 0.78 the line is 0.91 - 0.29 * 0.46 / 0.59
    line = 0.91 - 0.29 * (0.78 - 0.32) / (0.91 - 0.32)
    assert chord_gap(f).loc[0.5] == pytest.approx(0.90 - line)
    # area: two trapezoids of the gap over patch accuracy, x 1e4
    area = ((0 + (0.90 - line)) / 2 * (0.78 - 0.32) + ((0.90 - line) + 0) / 2 * (0.91 - 0.78)) * 1e4
    assert frontier_area(f) == pytest.approx(area)
    g = gain_within_drift(_sweep(), "digits", ["shapes"], 0.01)
    assert g["alpha"] == 0.5  # val drift 0.005 at 0.5, 0.30 at 1.0
    assert g["patch_gain"] == pytest.approx(0.78 - 0.32)


def test_frontier_figure_has_labelled_endpoints_and_markers():
    f = frontier(_sweep(), "digits", ["shapes"], "test")
    fig = figures.frontier_figure(f, "digits", alpha=0.5, chosen=0.5, live=(0.7, 0.88))
    names = [t.name for t in fig.data]
    assert "frontier (test)" in names and "chosen on val (alpha 0.5)" in names
    ends = next(t for t in fig.data if t.name == "endpoints")
    assert list(ends.text) == ["zero-shot", "fine-tuned"]
    front = next(t for t in fig.data if t.name == "frontier (test)")
    assert list(front.x) == pytest.approx([32.0, 78.0, 91.0]) and list(front.customdata) == [0.0, 0.5, 1.0]
    live = next(t for t in fig.data if t.name.startswith("live"))
    assert list(live.x) == [70.0] and list(live.y) == [88.0]


def _svg(markup: str):
    import xml.etree.ElementTree as ET
    return ET.fromstring(markup)


def test_frontier_svg_places_the_curve_the_choice_and_one_marker_per_position():
    f = frontier(_sweep(), "digits", ["shapes"], "test")
    root = _svg(figures.frontier_svg(f, "digits", chosen=0.5, markers={0.45: (0.7, 0.88), 1.0: (0.9, 0.6)}))
    ns = "{http://www.w3.org/2000/svg}"
    points = [c for c in root.iter(ns + "circle") if c.get("class") == "curve-point"]
    assert [float(c.get("data-alpha")) for c in points] == [0.0, 0.5, 1.0]
    assert [float(c.get("data-patch")) for c in points] == pytest.approx([32.0, 78.0, 91.0])
    assert [float(c.get("data-supported")) for c in points] == pytest.approx([91.0, 90.0, 62.0])
    cx, cy = [float(c.get("cx")) for c in points], [float(c.get("cy")) for c in points]
    # one affine map per axis: x grows with patch accuracy, y (downwards) shrinks with supported accuracy
    sx, sy = (cx[2] - cx[0]) / (91 - 32), (cy[2] - cy[0]) / (62 - 91)
    assert sx > 0 and sy < 0
    assert cx[1] == pytest.approx(cx[0] + sx * (78 - 32), abs=0.02)
    assert cy[1] == pytest.approx(cy[0] + sy * (90 - 91), abs=0.02)
    polyline = next(root.iter(ns + "polyline"))
    assert polyline.get("points") == " ".join(f"{x:g},{y:g}" for x, y in zip(cx, cy))
    star = next(e for e in root.iter(ns + "polygon") if e.get("class") == "chosen")
    star_x = [float(pt.split(",")[0]) for pt in star.get("points").split()]
    assert (max(star_x) + min(star_x)) / 2 == pytest.approx(cx[1], abs=0.05)  # centred on alpha 0.5's point
    markers = {g.get("data-alpha"): g for g in root.iter(ns + "g") if g.get("class") == "pe-marker"}
    assert sorted(markers) == ["0.45", "1.00"] and all(g.get("display") == "none" for g in markers.values())
    ring = markers["0.45"].find(ns + "circle")  # on the curve at the nearest swept alpha (0.5)
    assert (float(ring.get("cx")), float(ring.get("cy"))) == pytest.approx((cx[1], cy[1]))
    assert markers["0.45"].get("data-curve-alpha") == "0.5"
    cross = markers["0.45"].find(ns + "path").get("d")  # the x's centre: the live point (70, 88)
    first = [float(v) for v in cross.split()[0][1:].split(",")]
    assert first[0] + 6 == pytest.approx(cx[0] + sx * (70 - 32), abs=0.05)
    assert first[1] + 6 == pytest.approx(cy[0] + sy * (88 - 91), abs=0.05)
    assert root.get("width") == "520"


def test_explorer_entry_and_payload_carry_the_numbers():
    import base64
    from dashboard.explorer import alpha_key, payload, position_entry
    entry = position_entry({"digits": 0.75, "shapes": 0.5, "colours": 1.0}, {"digits": 0.5, "shapes": 0.5, "colours": 1.0},
                           "digits", ["shapes", "colours"], {"digits": 4, "shapes": 4, "colours": 2},
                           ["one", "two"], ["one", "one"], ["one", "two"])
    assert [m["value"] for m in entry["metrics"]] == ["75.0%", "50.0%", "100.0%"]
    assert [m["delta"] for m in entry["metrics"]] == ["+25.0 vs zero-shot", "+0.0 vs zero-shot", "+0.0 vs zero-shot"]
    assert entry["metrics"][0]["label"] == "digits (patch)" and entry["metrics"][1]["label"] == "shapes (supported)"
    assert [m["sample"] for m in entry["metrics"]] == ["live: first 4 test images", "live: first 4 test images",
                                                       "live: first 2 test images"]
    assert entry["live"] == [0.75, 0.75] and entry["live_text"] == ["75.0%", "75.0%"]
    assert entry["captions"] == ["true one | zs one | now one (right)", "true two | zs one | now two (right)"]
    data = payload("runs/x", 0.35, 0.5, {alpha_key(0.35): entry}, 21, 0.05, "digits", [b"\x89PNG"], "<svg/>", "val")
    assert list(data["positions"]) == ["0.35"] and data["alpha"] == 0.35 and data["split"] == "val"
    assert base64.b64decode(data["thumbs"][0].split(",", 1)[1]) == b"\x89PNG"


@pytest.mark.parametrize("alphas, step, n", [
    ([i / 10 for i in range(11)], 0.1, 11),          # the default sweep: the slider steps with it
    ([0, 0.2, 0.4, 0.6, 0.8, 1.0], 0.2, 6),
    ([0, 0.25, 0.5, 0.75, 1.0], 0.05, 21),           # a grid, but too coarse for a slider
    ([0, 1], 0.05, 21),                              # two endpoints: the slider keeps its own positions
    ([0, 0.1, 0.3, 1.0], 0.05, 21),                  # uneven
    ([], 0.05, 21),                                  # no sweep
])
def test_the_slider_follows_the_sweeps_grid_when_it_is_fine_enough(alphas, step, n):
    from dashboard.explorer import slider_grid
    got_step, positions = slider_grid(alphas, 0.05)
    assert got_step == pytest.approx(step) and len(positions) == n and positions[0] == 0 and positions[-1] == 1
    if step != 0.05:
        assert list(positions) == [round(a, 2) for a in alphas]


def test_whole_split_figures_are_the_sweeps_own():
    from dashboard.explorer import whole_split
    df = _sweep()
    whole = whole_split(df, "val", "digits", ["shapes"])
    val = df[df["split"] == "val"]
    for alpha in sorted(set(val["alpha"])):
        at = val[val["alpha"] == alpha].set_index("task")["accuracy"]
        zero = val[val["alpha"] == 0].set_index("task")["accuracy"]
        got = whole[f"{alpha:.2f}"]
        assert got["tasks"]["digits"]["value"] == f"{100 * at['digits']:.1f}%"
        assert got["tasks"]["digits"]["delta"] == f"{100 * (at['digits'] - zero['digits']):+.1f} vs zero-shot"
        assert got["patch"] == f"{100 * at['digits']:.1f}%" and got["supported"] == f"{100 * at['shapes']:.1f}%"
        assert got["tasks"]["shapes"]["n"] == 10


def test_accuracy_vs_alpha_has_one_line_per_task():
    fig = figures.accuracy_vs_alpha_figure(_sweep(), "val", alpha=0.3)
    assert sorted(t.name for t in fig.data) == ["digits", "shapes"]
    assert fig.layout.shapes[0].x0 == 0.3


def test_relatives_figures_carry_the_numbers():
    import pandas as pd
    from dashboard import figures as fg

    rows = pd.DataFrame([{"patch_task": "a", "eval_task": e, "change": c, "disjoint_classes": d}
                         for e, c, d in (("a", 0.4, False), ("b", -0.1, True))])
    heat = fg.transfer_heatmap(rows).data[0]
    assert list(heat.z[0]) == pytest.approx([40.0, -10.0]) and heat.text[0][0].endswith("¤") and heat.text[0][1] == "-10.0"
    wf = pd.DataFrame([{"ensemble": e, "alpha": a, "task": t, "split": "test", "accuracy": acc}
                       for e in ("weight", "output") for a, (i, s) in {0.0: (0.5, 0.3), 1.0: (0.9, 0.4)}.items()
                       for t, acc in (("id", i), ("sh", s))])
    fig = fg.wiseft_figure(wf, "id", "sh")
    assert list(fig.data[0].x) == pytest.approx([50.0, 90.0]) and list(fig.data[0].y) == pytest.approx([30.0, 40.0])
    bars = fg.prompt_bars(pd.DataFrame({"method": ["m", "m", "n"], "accuracy": [0.5, 0.7, 0.9]})).data[0]
    assert list(bars.y) == pytest.approx([60.0, 90.0]) and list(bars.error_y.array) == pytest.approx([10.0, 0.0])
    from paint_core.studies.multitask import ComparisonRow
    mt = fg.multitask_figure([ComparisonRow("joint", "0.6", {"a": 0.9, "s": 1.0}, 0.9, 1.0, -0.01)], ["a"], ["s"])
    assert list(mt.data[0].y) == pytest.approx([90.0, 100.0]) and mt.data[0].name == "joint (alpha 0.6)"
    hm = fg.disentanglement_heatmap([[0.0, 0.5], [0.2, 1.0]], [0.0, 1.0], ["a", "b"], "t")
    assert hm.data[0].z[1][1] == 1.0


def test_word_sweep_grid_and_margin_lines_hold_the_tables_values():
    """What the Typographic page's browser draws: the sweep's cells by word and place with the predicted class and
    the RdYlGn colour of p(true); the margin's lines per image, a y range holding every point and zero."""
    import pandas as pd
    from PIL import Image

    from dashboard.explorer.charts import RD_YL_GN, heat_colour, margin_lines, word_sweep_grid
    from dashboard.figures import saliency_overlay
    table = pd.DataFrame([{"word": w, "position": p, "size": s, "predicted": f"{w}-{p}", "p_predicted": 0.9,
                           "p_true": i / 10} for i, (w, p, s) in enumerate(
                              [("star", "top", 0.2), ("star", "center", 0.3), ("cat", "top", 0.2), ("cat", "center", 0.3)])])
    grid = word_sweep_grid(table, "zero-shot")
    assert grid["words"] == ["star", "cat"] and grid["columns"] == ["top 20%", "center 30%"]
    assert grid["p"] == [[0.0, 0.1], [0.2, 0.3]] and grid["predicted"][1][1] == "cat-center"
    assert grid["colour"][0][0] == "rgb(165,0,38)" and grid["colour"][1][0] == "rgb(244,109,67)"  # stops 0 and 2
    assert heat_colour(1.0) == "rgb(0,104,55)" and heat_colour(2.0) == heat_colour(1.0)
    assert heat_colour(0.25) == "rgb({},{},{})".format(*(round((a + b) / 2) for a, b in zip(RD_YL_GN[2], RD_YL_GN[3])))
    margins = pd.DataFrame([{"image": im, "alpha": a, "margin": m} for im, a, m in
                            [("clean", 0.0, 2.0), ("clean", 1.0, 3.0), ("attacked", 0.0, -1.0), ("attacked", 1.0, 0.5)]])
    lines = margin_lines(margins, 0.4)
    assert [line["name"] for line in lines["lines"]] == ["clean", "attacked"]
    assert lines["lines"][1] == {"name": "attacked", "alpha": [0.0, 1.0], "margin": [-1.0, 0.5]}
    lo, hi = lines["y_range"]
    assert lo == pytest.approx(-1.0 - 0.32) and hi == pytest.approx(3.0 + 0.32) and lines["alpha"] == 0.4
    assert lines["y_ticks"] == [-1.0, 0.0, 1.0, 2.0, 3.0]
    assert margin_lines(margins[margins["image"] == "clean"], None)["y_range"][0] < 0  # zero is always shown
    overlay = saliency_overlay(Image.new("RGB", (10, 10), (0, 0, 255)), [[0.0, 1.0], [0.0, 1.0]], size=4)
    px = overlay.load()
    assert px[3, 0][0] > 140 and px[3, 0][1] > 140 and px[3, 0][2] < 60  # evidence: yellow
    assert sum(px[0, 0]) < 150 and px[0, 0][2] > px[0, 0][1]              # none: dark purple


@pytest.mark.parametrize("background", [(220, 20, 20), (20, 200, 20), (20, 20, 220), (255, 255, 255), (0, 0, 0)])
def test_the_saliency_overlay_reads_on_any_background(background):
    """Where the evidence is stands out from where it is not on every colour, red included (issue 26: the red
    overlay vanished on red objects), and looks the same whatever the image's hue (the image is shown in grey)."""
    import numpy as np
    from PIL import Image

    from dashboard.figures import HEAT_OPACITY, heat_colours, saliency_overlay
    image = Image.new("RGB", (40, 40), background)
    px = saliency_overlay(image, [[0.0, 1.0]], size=40).load()
    cold, hot = np.array(px[2, 20], dtype=float), np.array(px[37, 20], dtype=float)
    assert np.linalg.norm(hot - cold) > 140
    grey = float(np.asarray(image.convert("L"))[0, 0])
    expected_hot = grey * (1 - HEAT_OPACITY) + heat_colours(1.0) * HEAT_OPACITY
    np.testing.assert_allclose(hot, expected_hot, atol=2)  # only the grey level of the image shows through


def test_uploads_keep_their_aspect_ratio_and_the_overlay_covers_what_the_model_sees():
    from PIL import Image

    from dashboard.figures import fit_image, model_view, saliency_overlay
    wide = Image.new("RGB", (300, 200), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 50, 200))  # a white band at the left, outside the centre square
    assert fit_image(wide, 160).size == (160, 107) and fit_image(Image.new("RGB", (48, 96)), 160).size == (80, 160)
    assert model_view(wide).size == (200, 200) and model_view(wide).getpixel((0, 100)) == (0, 0, 0)
    assert saliency_overlay(wide, [[0.0]], size=160).size == (160, 160)


def test_explorer_positions_are_built_from_the_shared_store():
    """Every position the store has becomes one entry (accuracies equal to correct / n on the stored
    predictions), shared: a second call returns the same entry objects; a position the store lacks has none."""
    import torch
    from dashboard.opened_runs import ExplorerPositions
    from paint_core.live.sessions import EvalSet, PredictionStore
    labels = {"digits": torch.tensor([0, 1, 1, 0]), "shapes": torch.tensor([1, 1, 0, 0])}
    eval_sets = {t: EvalSet(task=t, classnames=("a", "b"), images=torch.zeros(4, 3, 8, 8), labels=y, head=torch.zeros(2, 4))
                 for t, y in labels.items()}
    store = PredictionStore()
    for alpha, right in ((0.0, 1), (0.5, 3)):  # ``right`` of 4 images correct on each task
        probs = {}
        for t, y in labels.items():
            pred = torch.where(torch.arange(4) < right, y, 1 - y)
            probs[t] = torch.nn.functional.one_hot(pred, 2).float()
        store.put(alpha, probs)
    positions = ExplorerPositions(store, eval_sets, "digits", ("shapes",), sample_labels=[0, 1, 1])
    entries = positions.entries()
    assert sorted(entries) == ["0.00", "0.50"]
    assert [m["value"] for m in entries["0.50"]["metrics"]] == ["75.0%", "75.0%"]
    assert [m["delta"] for m in entries["0.50"]["metrics"]] == ["+50.0 vs zero-shot", "+50.0 vs zero-shot"]
    assert entries["0.50"]["live"] == [0.75, 0.75]
    # first three digits images: at 0.5 the first three are right; at 0 only the first
    assert entries["0.50"]["captions"] == ["true a | zs a | now a (right)", "true b | zs a | now b (right)",
                                           "true b | zs a | now b (right)"]
    assert positions.entries()["0.50"] is entries["0.50"]
    f = frontier(_sweep(), "digits", ["shapes"], "test")
    svg = positions.frontier_svg(f, 0.5, "test", 1.0, entries)
    assert svg.count('class="pe-marker"') == 2 and positions.frontier_svg(f, 0.5, "test", 1.0, entries) is svg


def test_word_rate_tables_are_the_rates_in_percent():
    rates = pd.DataFrame({"all": [0.25, 1 / 3], "white": [0.5, 0.0], "black": [0.0, 1.0], "yellow": [0.25, 0.0],
                          "over": [0.0, 0.5], "top": [1.0, 0.0], "bottom": [0.0, 0.5], "n": [4, 3]},
                         index=["star", "diamond"])
    row = figures.word_rate_row(rates)
    assert row.to_dict("records") == [{"": "written word chosen %", "star": 25.0, "diamond": 33.3}]
    detail = figures.word_rate_detail(rates).set_index("word written")
    assert detail.loc["diamond", "black ink"] == 100.0 and detail.loc["star", "above"] == 100.0
    assert detail.loc["diamond", "all"] == 33.3 and list(detail["objects"]) == [4, 3]
