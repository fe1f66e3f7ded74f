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
_COMPONENT = st.components.v2.component(
    "paint_explorer.alpha_explorer", js=(_HERE / "explorer.js").read_text(), css=(_HERE / "explorer.css").read_text(),
    isolate_styles=False)  # in the page's DOM: the load benchmark and the browser tests read it like any element


def alpha_key(alpha: float) -> str:
    """A slider position as the browser names it (two decimals, like JavaScript's ``toFixed(2)``)."""
    return f"{float(alpha):.2f}"


def position_entry(accuracies: dict[str, float], zero_shot: dict[str, float], patch: str, supported: Sequence[str],
                   n_by_task: dict[str, int], true_names: Sequence[str], zero_shot_names: Sequence[str],
                   now_names: Sequence[str]) -> dict:
    """What the explorer shows at one position: a metric per task (accuracy, change against zero-shot), the live
    point (patch, mean supported accuracy) and the sample grid's captions."""
    metrics = [{"task": t, "label": f"{t} ({'patch' if t == patch else 'supported'}, n={n_by_task[t]})",
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
            frontier_note: str | None = None) -> dict:
    """The component's data: everything the browser needs to answer a move by itself. ``run`` names the run (a
    new name resets the browser's slider to ``alpha``); ``positions`` maps ``alpha_key`` to ``position_entry``."""
    return {"run": run, "alpha": float(alpha), "chosen": chosen, "positions": positions, "n_positions": n_positions,
            "step": step, "patch": patch, "split": split, "svg": frontier_svg, "frontier_note": frontier_note,
            "thumbs": ["data:image/png;base64," + base64.b64encode(b).decode("ascii") for b in thumbnails]}


def alpha_explorer(data: dict, key: str, on_alpha_change: Callable[[], None]):
    """Mount the explorer; the browser reports its alpha (``{"run", "alpha"}``) as the state ``alpha``, half a second
    after the last move, or at once for a position it does not have."""
    return _COMPONENT(key=key, data=data, on_alpha_change=on_alpha_change)
