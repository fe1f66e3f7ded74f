"""Pure figure builders: DataFrames in, plotly figures (or SVG text) out. No Streamlit, no model: unit-tested
alone."""
from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Sequence

import pandas as pd
import plotly.graph_objects as go

from paint_core.core.frontier import chord_gap

if TYPE_CHECKING:  # the studies' readers, for the hints only (a figure needs no model code)
    from paint_core.studies.arithmetic import Negation
    from paint_core.studies.multitask import ComparisonRow
    from paint_core.studies.wiseft import EnsembleSummary


def frontier_figure(f: pd.DataFrame, patch: str, alpha: float | None = None, chosen: float | None = None,
                    live: tuple[float, float] | None = None, split: str = "test", plans: pd.DataFrame | None = None,
                    marked: dict[str, tuple[float, float]] | None = None) -> go.Figure:
    """Supported accuracy vs patch accuracy along alpha (one point per alpha), from ``paint_core.frontier``.

    ``alpha`` marks the slider's alpha on the curve, ``chosen`` the paper's choice, ``live`` the accuracies
    measured live on the evaluation subsample (patch, supported). ``plans``: per-block plans measured on the same
    split (``plan_points`` rows: patch, supported), drawn as points beside the curve; ``marked``: label ->
    (patch, supported) of plans to name (a search's choice). Accuracies in [0, 1].
    """
    x, y, a = (100 * f["patch"]).tolist(), (100 * f["supported"]).tolist(), [float(v) for v in f.index]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[y[0], y[-1]], mode="lines", name="straight line (chord)",
                             line={"dash": "dash", "color": "gray"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="lines+markers", name=f"frontier ({split})", customdata=a,
        hovertemplate="alpha %{customdata:.2f}<br>patch %{x:.1f}%<br>supported %{y:.1f}%<extra></extra>"))
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[y[0], y[-1]], mode="markers+text", name="endpoints",
                             text=["zero-shot", "fine-tuned"], textposition=["bottom right", "top left"],
                             marker={"size": 11, "symbol": "square", "color": "black"}, hoverinfo="skip"))
    if chosen is not None and chosen in f.index:
        fig.add_trace(go.Scatter(x=[100 * f.loc[chosen, "patch"]], y=[100 * f.loc[chosen, "supported"]],
                                 mode="markers", name=f"chosen on val (alpha {chosen:g})",
                                 marker={"size": 16, "symbol": "star", "color": "gold", "line": {"width": 1}}))
    if alpha is not None and live is None:
        nearest = min(f.index, key=lambda v: abs(v - alpha))
        fig.add_trace(go.Scatter(x=[100 * f.loc[nearest, "patch"]], y=[100 * f.loc[nearest, "supported"]],
                                 mode="markers", name=f"slider (alpha {alpha:g})",
                                 marker={"size": 14, "color": "red", "symbol": "circle-open", "line": {"width": 3}}))
    if plans is not None and len(plans):
        fig.add_trace(go.Scatter(x=(100 * plans["patch"]).tolist(), y=(100 * plans["supported"]).tolist(),
                                 mode="markers", name="per-block plans measured by a search", customdata=list(plans.index),
                                 marker={"size": 6, "color": "rgba(120, 80, 200, 0.45)"},
                                 hovertemplate="%{customdata}<br>patch %{x:.1f}%<br>supported %{y:.1f}%<extra></extra>"))
    for label, (p, s) in (marked or {}).items():
        fig.add_trace(go.Scatter(x=[100 * p], y=[100 * s], mode="markers", name=label,
                                 marker={"size": 14, "symbol": "diamond", "line": {"width": 1}}))
    if live is not None:
        fig.add_trace(go.Scatter(x=[100 * live[0]], y=[100 * live[1]], mode="markers",
                                 name=f"live subsample (alpha {alpha:g})" if alpha is not None else "live subsample (this plan)",
                                 marker={"size": 14, "color": "red", "symbol": "x"}))
    fig.update_layout(xaxis_title=f"patch task: {patch} accuracy (%)", yaxis_title="supported tasks accuracy (%)",
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 30}, height=430)
    return fig


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    span = max(hi - lo, 1e-9)
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 6) for i in range(int((hi - first) / step + 1e-9) + 1)]


def frontier_svg(f: pd.DataFrame, patch: str, chosen: float | None, markers: dict[float, tuple[float, float]],
                 split: str = "test", width: int = 520, height: int = 420) -> str:
    """The frontier as an SVG drawing for the Patch page's slider, with one hidden marker group per slider
    position (``markers``: alpha -> live (patch, supported) accuracy): the browser shows the group of the slider's
    alpha, so a move redraws no picture and asks nothing of the server (issue 15). Each group holds a red circle on
    the curve at the nearest swept alpha and a red x at the live subsample's point. Accuracies in [0, 1]."""
    xs, ys = (100 * f["patch"]).tolist(), (100 * f["supported"]).tolist()
    all_x = xs + [100 * p for p, _ in markers.values()]
    all_y = ys + [100 * s for _, s in markers.values()]
    pad_x, pad_y = max(2.0, 0.06 * (max(all_x) - min(all_x))), max(2.0, 0.08 * (max(all_y) - min(all_y)))
    x_lo, x_hi = max(0.0, min(all_x) - pad_x), min(100.0, max(all_x) + pad_x)
    y_lo, y_hi = max(0.0, min(all_y) - pad_y), min(100.0, max(all_y) + pad_y)
    if x_hi - x_lo < 1:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if y_hi - y_lo < 1:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    left, right, top, bottom = 58, width - 12, 12, height - 48

    def px(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * (right - left), 2)

    def py(y: float) -> float:
        return round(bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top), 2)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="pe-frontier" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="white" stroke="#999"/>']
    for t in nice_ticks(x_lo, x_hi):
        out.append(f'<line x1="{px(t)}" y1="{top}" x2="{px(t)}" y2="{bottom}" stroke="#e5e5e5"/>'
                   f'<text x="{px(t)}" y="{bottom + 15}" text-anchor="middle">{t:g}</text>')
    for t in nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{py(t)}" x2="{right}" y2="{py(t)}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 6}" y="{py(t) + 4}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{(left + right) / 2}" y="{height - 12}" text-anchor="middle">'
               f'patch task: {html.escape(patch)} accuracy (%)</text>')
    out.append(f'<text transform="translate(14 {(top + bottom) / 2}) rotate(-90)" text-anchor="middle">'
               'supported tasks accuracy (%)</text>')
    out.append(f'<line class="chord" x1="{px(xs[0])}" y1="{py(ys[0])}" x2="{px(xs[-1])}" y2="{py(ys[-1])}" '
               'stroke="gray" stroke-dasharray="6 4" stroke-width="1.5"/>')
    out.append('<polyline class="curve" fill="none" stroke="#1f77b4" stroke-width="2" points="'
               + " ".join(f"{px(x)},{py(y)}" for x, y in zip(xs, ys)) + '"/>')
    for a, x, y in zip(f.index, xs, ys):
        out.append(f'<circle class="curve-point" data-alpha="{float(a):g}" data-patch="{x:.4f}" '
                   f'data-supported="{y:.4f}" cx="{px(x)}" cy="{py(y)}" r="3.5" fill="#1f77b4">'
                   f'<title>alpha {float(a):g} ({split}): patch {x:.1f}%, supported {y:.1f}%</title></circle>')
    for (x, y), label, dx, dy, anchor in (((xs[0], ys[0]), "zero-shot", 8, 14, "start"),
                                          ((xs[-1], ys[-1]), "fine-tuned", -8, -9, "end")):
        out.append(f'<rect class="endpoint" x="{px(x) - 5}" y="{py(y) - 5}" width="10" height="10" fill="black"/>'
                   f'<text x="{px(x) + dx}" y="{py(y) + dy}" text-anchor="{anchor}">{label}</text>')
    if chosen is not None and chosen in f.index:
        cx, cy = px(100 * f.loc[chosen, "patch"]), py(100 * f.loc[chosen, "supported"])
        star = " ".join(f"{cx + r * math.sin(math.pi * k / 5):.2f},{cy - r * math.cos(math.pi * k / 5):.2f}"
                        for k, r in zip(range(10), [11, 4.5] * 5))
        out.append(f'<polygon class="chosen" data-alpha="{float(chosen):g}" points="{star}" fill="gold" '
                   f'stroke="black"><title>chosen on val: alpha {float(chosen):g}</title></polygon>')
    for alpha, (p, s) in sorted(markers.items()):
        nearest = min(f.index, key=lambda v: abs(v - alpha))
        cx, cy = px(100 * f.loc[nearest, "patch"]), py(100 * f.loc[nearest, "supported"])
        lx, ly = px(100 * p), py(100 * s)
        out.append(f'<g class="pe-marker" data-alpha="{alpha:.2f}" data-live-patch="{100 * p:.4f}" '
                   f'data-live-supported="{100 * s:.4f}" data-curve-alpha="{float(nearest):g}" display="none">'
                   f'<circle cx="{cx}" cy="{cy}" r="8" fill="none" stroke="red" stroke-width="2.5"/>'
                   f'<path d="M{lx - 6},{ly - 6} L{lx + 6},{ly + 6} M{lx - 6},{ly + 6} L{lx + 6},{ly - 6}" '
                   'stroke="red" stroke-width="2.5"/></g>')
    legend = [("#1f77b4", f"frontier ({split})"), ("gray", "straight line (chord)"), ("gold", "chosen on val"),
              ("red", "slider: o curve, x live subsample")]
    for i, (colour, text) in enumerate(legend):
        y = bottom - 10 - 14 * (len(legend) - 1 - i)
        out.append(f'<rect x="{left + 8}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + 22}" y="{y + 1}" font-size="10">{html.escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def accuracy_vs_alpha_figure(df: pd.DataFrame, split: str = "test", alpha: float | None = None) -> go.Figure:
    """Accuracy of every task along alpha; a vertical line at the slider's alpha."""
    sub = df[df["split"] == split].sort_values("alpha")
    fig = go.Figure()
    for task, g in sub.groupby("task", sort=True):
        fig.add_trace(go.Scatter(x=g["alpha"].tolist(), y=(100 * g["accuracy"]).tolist(), mode="lines+markers",
                                 name=str(task)))
    if alpha is not None:
        fig.add_vline(x=alpha, line={"color": "red", "dash": "dot"})
    fig.update_layout(xaxis_title="alpha (0 = zero-shot, 1 = fine-tuned)", yaxis_title=f"{split} accuracy (%)",
                      margin={"t": 30}, height=380)
    return fig


def per_count_figure(table: pd.DataFrame, names: list[str]) -> go.Figure:
    """Accuracy per true class for several models (columns ``<name>`` in ``table``, index = class)."""
    fig = go.Figure()
    for name in names:
        fig.add_trace(go.Bar(x=table.index.tolist(), y=(100 * table[name]).tolist(), name=name))
    fig.update_layout(barmode="group", xaxis_title="true count", yaxis_title="accuracy (%)", height=320,
                      margin={"t": 30})
    return fig


def gap_table(f: pd.DataFrame) -> pd.DataFrame:
    """Per alpha: patch, supported, and the gap above the chord, in points (for the page's table)."""
    return pd.DataFrame({"alpha": f.index, "patch %": (100 * f["patch"]).round(1).to_numpy(),
                         "supported %": (100 * f["supported"]).round(1).to_numpy(),
                         "above chord (pts)": (100 * chord_gap(f)).round(1).to_numpy()})


def multitask_figure(rows: Sequence[ComparisonRow], tasks: Sequence[str], supported: Sequence[str]) -> go.Figure:
    """Grouped bars: accuracy on every patch and supported task for each specialist and multi-task model."""
    fig = go.Figure()
    columns = [*tasks, *supported]
    for row in rows:
        fig.add_trace(go.Bar(name=f"{row.model} (alpha {row.alpha})", x=columns,
                             y=[100 * row.accuracy[c] for c in columns],
                             hovertemplate="%{x}: %{y:.1f}%<extra>" + row.model + "</extra>"))
    fig.update_layout(barmode="group", yaxis_title="test accuracy (%)", yaxis_range=[0, 100],
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 30})
    return fig


def transfer_heatmap(rows: pd.DataFrame) -> go.Figure:
    """Accuracy change (patched minus zero-shot, points) for each (patch task, eval task); ¤ = shared classes."""
    piv = rows.pivot(index="patch_task", columns="eval_task", values="change") * 100
    shared = rows.pivot(index="patch_task", columns="eval_task", values="disjoint_classes")
    cols = [c for c in dict.fromkeys(rows["eval_task"])]
    idx = [r for r in dict.fromkeys(rows["patch_task"])]
    piv, shared = piv.loc[idx, cols], shared.loc[idx, cols]
    text = [[f"{v:+.1f}" + ("" if shared.iloc[i, j] else " ¤") for j, v in enumerate(r)] for i, r in enumerate(piv.to_numpy())]
    lim = float(max(1.0, abs(piv.to_numpy()).max()))
    fig = go.Figure(go.Heatmap(z=piv.to_numpy().tolist(), x=cols, y=idx, text=text, texttemplate="%{text}", zmin=-lim, zmax=lim,
                               colorscale="RdBu", colorbar={"title": "points"},
                               hovertemplate="patched on %{y}<br>evaluated on %{x}<br>change %{z:+.1f} points<extra></extra>"))
    fig.update_layout(xaxis_title="evaluated on", yaxis_title="patched on", margin={"t": 30})
    return fig


def wiseft_figure(rows: pd.DataFrame, id_task: str, shift_task: str, split: str = "test") -> go.Figure:
    """Shifted vs in-distribution accuracy along alpha for both ensembles, with the endpoints' straight line."""
    fig = go.Figure()
    df = rows[rows["split"] == split]
    for name, dash in (("weight", "solid"), ("output", "dot")):
        piv = df[df["ensemble"] == name].pivot_table(index="alpha", columns="task", values="accuracy").sort_index()
        x, y = 100 * piv[id_task], 100 * piv[shift_task]
        if name == "weight":
            fig.add_trace(go.Scatter(x=[x.iloc[0], x.iloc[-1]], y=[y.iloc[0], y.iloc[-1]], mode="lines+markers+text",
                                     name="endpoints' line (no effective robustness)", text=["zero-shot", "fine-tuned"],
                                     textposition=["bottom right", "top left"], line={"dash": "dash", "color": "gray"}))
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{name}-space ensemble", line={"dash": dash},
                                 customdata=list(piv.index),
                                 hovertemplate="alpha %{customdata:.1f}<br>in-distribution %{x:.1f}%<br>"
                                               "shifted %{y:.1f}%<extra></extra>"))
    fig.update_layout(xaxis_title=f"in-distribution: {id_task} accuracy (%)",
                      yaxis_title=f"shifted: {shift_task} accuracy (%)", margin={"t": 30},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def lambda_figure(rows: pd.DataFrame, value: str = "accuracy", split: str = "val") -> go.Figure:
    """Accuracy (or normalized accuracy) along the task-arithmetic scaling coefficient lambda, per task."""
    df = rows[rows["split"] == split]
    fig = go.Figure()
    for task, d in df.groupby("task", sort=False):
        if d[value].notna().any():
            fig.add_trace(go.Scatter(x=d["lambda"], y=100 * d[value], mode="lines+markers", name=task))
    fig.update_layout(xaxis_title="lambda", yaxis_title=f"{split} {value} (%)", margin={"t": 30})
    return fig


def disentanglement_heatmap(error: list[list[float]], grid: list[float], tasks: list[str], title: str) -> go.Figure:
    """xi(lambda_1, lambda_2): 0 = the two edits do not interfere; rows lambda_1 (first task), columns lambda_2."""
    fig = go.Figure(go.Heatmap(z=error, x=grid, y=grid, zmin=0, colorscale="Viridis", colorbar={"title": "xi"},
                               text=[[f"{v:.2f}" for v in row] for row in error], texttemplate="%{text}",
                               hovertemplate=f"lambda {tasks[0]} %{{y}}<br>lambda {tasks[1]} %{{x}}<br>"
                                             "error %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=f"lambda of tau({tasks[1]})", yaxis_title=f"lambda of tau({tasks[0]})",
                      margin={"t": 40})
    return fig


def prompt_bars(rows: pd.DataFrame) -> go.Figure:
    """Mean accuracy over seeds per method (error bars: min to max over seeds)."""
    g = rows.groupby("method", sort=False)["accuracy"]
    mean, lo, hi = 100 * g.mean(), 100 * g.min(), 100 * g.max()
    fig = go.Figure(go.Bar(x=list(mean.index), y=mean.to_numpy(), error_y={"type": "data", "symmetric": False,
                                                                          "array": (hi - mean).to_numpy(),
                                                                          "arrayminus": (mean - lo).to_numpy()},
                           text=[f"{v:.1f}" for v in mean], textposition="inside", insidetextanchor="start",
                           marker={"color": ["#9aa5b1" if "old" in m else "#1f77b4" for m in mean.index]},
                           hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(yaxis_title="test accuracy (%)", yaxis_range=[0, 105], margin={"t": 30})
    return fig


# Viridis's anchors (dark purple -> teal -> yellow): reads on any image once the image is shown in grey.
_HEAT_COLOURS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
HEAT_OPACITY = 0.6


def heat_colours(heat):
    """Map values in [0, 1] (any shape) to RGB in [0, 255] along the viridis anchors; shape (..., 3)."""
    import numpy as np
    anchors = np.asarray(_HEAT_COLOURS, dtype=np.float32)
    pos = np.clip(np.asarray(heat, dtype=np.float32), 0, 1) * (len(anchors) - 1)
    lo = np.minimum(pos.astype(int), len(anchors) - 2)
    frac = (pos - lo)[..., None]
    return anchors[lo] * (1 - frac) + anchors[lo + 1] * frac


def model_view(image):
    """The central square of ``image``: what an open_clip preprocess (resize the short side, centre crop) shows the
    model, so a saliency map lies over the part of the picture it was computed on."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def saliency_overlay(image, cam, size: int = 160):
    """The model's view of ``image`` in grey with a saliency map ([H, W] in [0, 1], any resolution) laid over it as
    a colour map (yellow: most evidence, dark purple: none), as a PIL image. Grey underneath and a colour map on top
    read on any picture (issue 26: a red overlay vanished on red objects)."""
    import numpy as np
    from PIL import Image
    grey = np.asarray(model_view(image).convert("L").convert("RGB").resize((size, size)), dtype=np.float32)
    heat = np.asarray(Image.fromarray((np.clip(np.asarray(cam, dtype=np.float32), 0, 1) * 255).astype(np.uint8))
                      .resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    out = grey * (1 - HEAT_OPACITY) + heat_colours(heat) * HEAT_OPACITY
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def fit_image(image, size: int = 160):
    """``image`` scaled so its longer side is ``size`` px, its aspect ratio kept (issue 26: uploads were squashed to
    a square: a ball became an egg)."""
    w, h = image.size
    scale = size / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))))


def along_alpha_figure(table: pd.DataFrame, true_class: str, alpha: float | None = None, top: int = 4) -> go.Figure:
    """One image's class probabilities along alpha: the true class and the classes that ever come near it
    (the ``top`` highest peaks). ``table``: rows alpha, columns class (``PatchSession.along_alpha``)."""
    peaks = table.max().sort_values(ascending=False)
    shown = list(dict.fromkeys([true_class, *peaks.index[:top]]))
    fig = go.Figure()
    for name in shown:
        fig.add_trace(go.Scatter(x=list(table.index), y=table[name], mode="lines+markers",
                                 name=f"{name} (true)" if name == true_class else name,
                                 line={"width": 4 if name == true_class else 2}))
    if alpha is not None:
        fig.add_vline(x=alpha, line={"color": "red"}, annotation_text=f"alpha {alpha:g}")
    fig.update_layout(xaxis_title="alpha (0 zero-shot, 1 fine-tuned)", yaxis_title="probability", yaxis_range=[0, 1],
                      height=320, margin={"t": 30})
    return fig


# ------------------------------------------------------------------------------------------------- tables
# Tables the relatives' pages show: readable headers, every cell a value (no None), accuracies in % and
# differences in points, each said in the header.

def _pct(v: float) -> float:
    return round(100 * float(v), 1)


def _alpha_text(alpha) -> str:
    """An alpha, or one per step (a list, or the study's text of one: "[0.8, 0.2, 0.3]"), as "0.8, 0.2, 0.3"."""
    if isinstance(alpha, (list, tuple)):
        return ", ".join(f"{float(a):g}" for a in alpha)
    if isinstance(alpha, str):
        return ", ".join(f"{float(a):g}" for a in alpha.strip("[] ").split(","))
    return f"{float(alpha):g}"


def multitask_table(rows: Sequence[ComparisonRow], tasks: Sequence[str], supported: Sequence[str]) -> pd.DataFrame:
    """One row per model (specialists, joint, sequential, parallel): test accuracy % per task, the means, and the
    gap to the specialists in points (the specialists are that reference: their cell says so)."""
    out = []
    for r in rows:
        out.append({"model": r.model, "alpha": _alpha_text(r.alpha),
                    **{f"{t} %": _pct(r.accuracy[t]) for t in [*tasks, *supported]},
                    "patch mean %": _pct(r.patch_mean), "supported mean %": _pct(r.supported_mean),
                    "vs specialists (pts)": "reference" if r.vs_specialists is None
                    else f"{100 * r.vs_specialists:+.1f}"})
    return pd.DataFrame(out)


def transfer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Broad transfer rows (``transfer`` study): accuracies in %, the change in points, best change first."""
    rows = rows.sort_values("change", ascending=False)
    return pd.DataFrame({"patched on": rows["patch_task"].to_numpy(), "evaluated on": rows["eval_task"].to_numpy(),
                         "alpha": [f"{a:g}" for a in rows["alpha"]],
                         "zero-shot %": [_pct(v) for v in rows["zero_shot"]],
                         "patched %": [_pct(v) for v in rows["patched"]],
                         "change (points)": [round(100 * float(v), 1) for v in rows["change"]]})


def negation_table(negation: dict[str, Negation]) -> pd.DataFrame:
    """One row per forgotten task: its test accuracy before and after negation, and the control tasks' mean."""
    out = []
    for task, r in negation.items():
        control = r.control
        out.append({"forget": task, "lambda": f"{r.lam:g}", "chance %": _pct(r.chance),
                    "forgotten task: zero-shot %": _pct(r.zero_shot_test[task]),
                    "forgotten task: negated %": _pct(r.test[task]),
                    "controls": ", ".join(control),
                    "controls: zero-shot %": _pct(sum(r.zero_shot_test[c] for c in control) / len(control)),
                    "controls: negated %": _pct(sum(r.test[c] for c in control) / len(control))})
    return pd.DataFrame(out)


def wiseft_table(summary: dict[str, EnsembleSummary]) -> pd.DataFrame:
    """Per ensemble on one shifted task: the endpoints, the best shifted accuracy and where, in % and points."""
    names = {"weight": "weight-space", "output": "output-space"}
    return pd.DataFrame([{"ensemble": names.get(n, n), "shift: zero-shot %": _pct(s.zero_shot_shift),
                          "shift: fine-tuned %": _pct(s.finetuned_shift),
                          "shift: best %": _pct(s.best_shift), "at alpha": f"{s.best_shift_alpha:g}",
                          "beats both endpoints": "yes" if s.beats_both_endpoints else "no",
                          "above the line (points)": round(100 * s.max_effective_robustness, 1)}
                         for n, s in summary.items()])


WORD_RATE_LABEL = "written word chosen %"
WORD_RATE_COLUMNS = {"all": "all", "white": "white ink", "black": "black ink", "yellow": "yellow ink",
                     "over": "over the object", "top": "above", "bottom": "below"}


def word_rate_row(rates: pd.DataFrame) -> pd.DataFrame:
    """One row, one column per class word: how often the model names that word when it is written on another
    class's object, in % (``rates`` from ``paint_core.studies.diagnostics.word_rates``, fractions)."""
    return pd.DataFrame([{"": WORD_RATE_LABEL, **{str(w): _pct(v) for w, v in rates["all"].items()}}])


def word_rate_detail(rates: pd.DataFrame) -> pd.DataFrame:
    """Per class word (rows): the rate over all its objects and per ink and place, in %, and the objects counted."""
    out = pd.DataFrame({label: [_pct(v) for v in rates[col]] for col, label in WORD_RATE_COLUMNS.items()},
                       index=[str(w) for w in rates.index])
    out["objects"] = rates["n"].astype(int).to_numpy()
    return out.rename_axis("word written").reset_index()
