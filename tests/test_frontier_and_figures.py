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


def test_frontier_picture_marks_the_curve_the_choice_and_the_live_point():
    f = frontier(_sweep(), "digits", ["shapes"], "test")
    fig = figures.frontier_image_figure(f, "digits", alpha=0.45, chosen=0.5, live=(0.7, 0.88))
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].lines}
    assert lines["frontier (test)"] == (pytest.approx([32.0, 78.0, 91.0]), pytest.approx([91.0, 90.0, 62.0]))
    assert lines["chosen on val (alpha 0.5)"] == (pytest.approx([78.0]), pytest.approx([90.0]))
    assert lines["curve at alpha 0.5"] == (pytest.approx([78.0]), pytest.approx([90.0]))  # nearest swept alpha
    assert lines["live subsample (alpha 0.45)"] == (pytest.approx([70.0]), pytest.approx([88.0]))
    assert lines["straight line (chord)"] == (pytest.approx([32.0, 91.0]), pytest.approx([91.0, 62.0]))
    png = figures.png_bytes(fig)
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(png)).size == (520, 420)


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
    mt = fg.multitask_figure([{"model": "joint", "alpha": "0.6", "a": 0.9, "s": 1.0}], ["a"], ["s"])
    assert list(mt.data[0].y) == pytest.approx([90.0, 100.0]) and mt.data[0].name == "joint (alpha 0.6)"
    hm = fg.disentanglement_heatmap([[0.0, 0.5], [0.2, 1.0]], [0.0, 1.0], ["a", "b"], "t")
    assert hm.data[0].z[1][1] == 1.0


def test_word_sweep_heatmap_and_margin_figure_hold_the_tables_values():
    import pandas as pd
    from PIL import Image

    from dashboard.figures import margin_figure, saliency_overlay, word_sweep_heatmap
    table = pd.DataFrame([{"word": w, "position": p, "size": s, "predicted": f"{w}-{p}", "p_predicted": 0.9,
                           "p_true": i / 10} for i, (w, p, s) in enumerate(
                              [("star", "top", 0.2), ("star", "center", 0.3), ("cat", "top", 0.2), ("cat", "center", 0.3)])])
    fig = word_sweep_heatmap(table, "zero-shot")
    heat = fig.data[0]
    assert list(heat.y) == ["star", "cat"] and list(heat.x) == ["top 20%", "center 30%"]
    assert [list(r) for r in heat.z] == [[0.0, 0.1], [0.2, 0.3]]
    assert heat.text[1][1] == "cat-center"
    margins = pd.DataFrame([{"image": im, "alpha": a, "margin": m} for im, a, m in
                            [("clean", 0.0, 2.0), ("clean", 1.0, 3.0), ("attacked", 0.0, -1.0), ("attacked", 1.0, 0.5)]])
    fig = margin_figure(margins, 0.4)
    assert [t.name for t in fig.data] == ["clean", "attacked"] and list(fig.data[1].y) == [-1.0, 0.5]
    overlay = saliency_overlay(Image.new("RGB", (10, 10), (0, 0, 255)), [[0.0, 1.0], [0.0, 1.0]], size=4)
    px = overlay.load()
    assert px[0, 0] == (0, 0, 255) and px[3, 0][0] > 100  # no evidence left untouched, evidence turns red


def test_frontier_pictures_are_drawn_in_the_background_for_every_stored_position():
    """The Patch page's pictures: the warm-up draws each position the store has, with the live point the page
    computes, so the page's own call is a lookup (the very same bytes object)."""
    import torch
    from dashboard.state import FrontierPictures
    from paint_core.live.sessions import EvalSet, PredictionStore, subsample_accuracies
    f = frontier(_sweep(), "digits", ["shapes"], "test")
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
    pictures = FrontierPictures(f, "digits", ("shapes",), 0.5, "test")
    pictures.warm(store, eval_sets, [0.0, 0.5, 1.0], patience_s=1.0).join(timeout=30)
    assert len(pictures._pictures) == 2  # alpha 1.0 never came into the store: not drawn
    acc = subsample_accuracies(store.get(0.5), eval_sets)
    assert pictures.live_point(acc) == (0.75, 0.75)
    drawn = pictures._pictures[(0.5, (0.75, 0.75))]
    assert pictures.get(0.5, pictures.live_point(acc)) is drawn
    assert pictures.get(1.0, (0.9, 0.6)) is not None and len(pictures._pictures) == 3  # a miss is drawn and kept
