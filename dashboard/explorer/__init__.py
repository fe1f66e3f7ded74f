"""The Patch page's alpha explorer: a slider drawn in the browser over every slider position the server has
computed, so that a move redraws a few numbers, captions and one SVG marker without a round trip (issue 15: a
class of 30 on one 2-core server). The server sends each position once (real predictions of the interpolated
weights, shared by all sessions) and computes on demand a position the browser does not have yet.

``position_entry`` and ``payload`` are pure (unit-tested); ``alpha_explorer`` mounts the component.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Callable, Sequence

import streamlit as st

_HERE = Path(__file__).resolve().parent


def explorer_component(name: str, script: str):
    """A page explorer's Streamlit component: ``common.js`` then ``script`` as one module, with the explorers'
    stylesheet, in the page's DOM (the load benchmarks and the browser tests read it like any element)."""
    js = (_HERE / "common.js").read_text() + (_HERE / script).read_text()
    return st.components.v2.component(f"paint_explorer.{name}", js=js, css=(_HERE / "explorer.css").read_text(),
                                      isolate_styles=False)


_COMPONENT = explorer_component("alpha_explorer", "explorer.js")


def alpha_key(alpha: float) -> str:
    """A slider position as the browser names it (two decimals, like JavaScript's ``toFixed(2)``)."""
    return f"{float(alpha):.2f}"


# A sweep grid at least this fine becomes the slider's grid: every position then has its whole-split figure
# and its own point on the curve (issue 26: the slider stepped by 0.05 over a 0.1 sweep).
MAX_GRID_STEP = 0.2


def slider_grid(sweep_alphas: Sequence[float], default_step: float) -> tuple[float, tuple[float, ...]]:
    """(step, positions) of the Patch page's slider: the sweep's alphas when they are an even grid from 0 to 1 with
    a step of at most ``MAX_GRID_STEP`` that the slider's ``default_step`` divides; else every ``default_step``."""
    alphas = sorted({round(float(a), 6) for a in sweep_alphas})
    fallback = (default_step, tuple(round(default_step * i, 2) for i in range(int(round(1 / default_step)) + 1)))
    if len(alphas) < 2 or alphas[0] != 0 or alphas[-1] != 1:
        return fallback
    step = alphas[1] - alphas[0]
    even = all(abs((b - a) - step) < 1e-6 for a, b in zip(alphas, alphas[1:]))
    ratio = step / default_step
    if not even or step > MAX_GRID_STEP + 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        return fallback
    return round(step, 6), tuple(round(a, 2) for a in alphas)


def whole_split(sweep, split: str, patch: str, supported: Sequence[str]) -> dict[str, dict]:
    """``alpha_key`` -> the sweep's figures on the whole ``split`` at that alpha: per task the accuracy, its change
    against alpha 0 (zero-shot) and n, and the frontier's point (patch, mean supported). ``sweep``: sweep.csv's
    table. Shown beside the live subsample's figures, so a number on the Start page is found here too."""
    df = sweep[sweep["split"] == split]
    if not len(df) or 0.0 not in set(df["alpha"].round(6)):
        return {}
    table = df.pivot_table(index="alpha", columns="task", values="accuracy")
    counts = df.pivot_table(index="alpha", columns="task", values="n")
    zero = table.loc[table.index.min()]
    out = {}
    for alpha, row in table.iterrows():
        tasks = {t: {"value": f"{100 * row[t]:.1f}%", "delta": f"{100 * (row[t] - zero[t]):+.1f} vs zero-shot",
                     "n": int(counts.loc[alpha, t])} for t in table.columns}
        mean = sum(row[t] for t in supported) / len(supported) if supported else float("nan")
        out[alpha_key(alpha)] = {"tasks": tasks, "patch": f"{100 * row[patch]:.1f}%", "supported": f"{100 * mean:.1f}%"}
    return out


def position_entry(accuracies: dict[str, float], zero_shot: dict[str, float], patch: str, supported: Sequence[str],
                   n_by_task: dict[str, int], true_names: Sequence[str], zero_shot_names: Sequence[str],
                   now_names: Sequence[str]) -> dict:
    """What the explorer shows at one position: a metric per task (live accuracy on the first ``n`` test images,
    change against zero-shot), the live point (patch, mean supported accuracy) and the sample grid's captions."""
    metrics = [{"task": t, "label": f"{t} ({'patch' if t == patch else 'supported'})",
                "sample": f"live: first {n_by_task[t]} test images",
                "value": f"{100 * a:.1f}%", "delta": f"{100 * (a - zero_shot[t]):+.1f} vs zero-shot",
                "sign": (a > zero_shot[t]) - (a < zero_shot[t])} for t, a in accuracies.items()]
    live = [accuracies[patch], sum(accuracies[t] for t in supported) / len(supported)] if supported else \
        [accuracies[patch], float("nan")]
    captions = [f"true {t} | zs {z} | now {n} ({'right' if n == t else 'WRONG'})"
                for t, z, n in zip(true_names, zero_shot_names, now_names)]
    return {"metrics": metrics, "live": live, "live_text": [f"{100 * live[0]:.1f}%", f"{100 * live[1]:.1f}%"],
            "captions": captions}


def payload(run: str, alpha: float, chosen: float | None, positions: dict[str, dict], n_positions: int, step: float,
            patch: str, thumbnails: Sequence[bytes], frontier_svg: str | None, split: str,
            frontier_note: str | None = None, whole: dict[str, dict] | None = None) -> dict:
    """The component's data: everything the browser needs to answer a move by itself. ``run`` names the run (a
    new name resets the browser's slider to ``alpha``); ``positions`` maps ``alpha_key`` to ``position_entry``;
    ``whole`` maps ``alpha_key`` to ``whole_split``'s figures (the sweep's, on the whole split)."""
    return {"run": run, "alpha": float(alpha), "chosen": chosen, "positions": positions, "n_positions": n_positions,
            "step": step, "patch": patch, "split": split, "svg": frontier_svg, "frontier_note": frontier_note,
            "whole": whole or {},
            "thumbs": ["data:image/png;base64," + base64.b64encode(b).decode("ascii") for b in thumbnails]}


def alpha_explorer(data: dict, key: str, on_alpha_change: Callable[[], None]):
    """Mount the explorer; the browser reports its alpha (``{"run", "alpha"}``) as the state ``alpha``, half a second
    after the last move, or at once for a position it does not have."""
    return _COMPONENT(key=key, data=data, on_alpha_change=on_alpha_change)
