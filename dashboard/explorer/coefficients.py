"""The Task arithmetic page's coefficient explorer: one slider per task vector, drawn in the browser over every
setting the server has computed along the sliders through the current one, so that a move onto a computed setting
redraws the accuracies without a round trip (issue 31: a class of 30 on one 2-core server; the Patch page's
alpha explorer does the same for one alpha). The browser asks at once for a setting it lacks, and as soon as a
setting one step from where it stands is missing, so that the server computes ahead of the class.

``setting_key``, ``setting_entry``, ``on_slider_lines``, ``payload`` and ``reported_values`` are pure (unit-tested);
``coefficient_explorer`` mounts the component.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from dashboard.explorer import explorer_component

_COMPONENT = explorer_component("coefficient_explorer", "coefficients.js")


def setting_key(values: Sequence[float]) -> str:
    """Coefficients as the browser names them (two decimals each, like JavaScript's ``toFixed(2)``, comma-joined;
    a rounded -0.0 is 0, as JavaScript writes it)."""
    return ",".join(f"{float(v) + 0.0:.2f}" for v in values)


def setting_entry(accuracies: dict[str, float], zero_shot: dict[str, float], vector_tasks: Sequence[str],
                  n_by_task: dict[str, int]) -> list[dict]:
    """What the explorer shows at one setting: per task its live accuracy and change against zero-shot in points,
    and whether it is a task vector or a control."""
    return [{"task": t, "label": t, "value": f"{100 * a:.1f}%", "delta": f"{100 * (a - zero_shot[t]):+.1f} pts",
             "sign": (a > zero_shot[t]) - (a < zero_shot[t]),
             "sample": f"{'task vector' if t in vector_tasks else 'control'}, n={n_by_task[t]} test images"}
            for t, a in accuracies.items()]


def on_slider_lines(settings: dict[tuple[float, ...], dict], here: Sequence[float]) -> dict[tuple[float, ...], dict]:
    """The settings one slider's move can reach from ``here``: those differing from it in at most one coefficient.
    What the browser is sent, so a long class session does not grow the page with every setting ever computed."""
    here = tuple(round(float(v), 4) for v in here)
    return {s: e for s, e in settings.items() if sum(abs(a - b) > 1e-9 for a, b in zip(s, here)) <= 1}


def payload(identity: str, tasks: Sequence[str], values: Sequence[float], settings: dict[str, list[dict]],
            step: float, bounds: tuple[float, float], learns: bool) -> dict:
    """The component's data. ``identity`` names the runs and merge (a new one resets the browser's sliders to
    ``values``); ``settings`` maps ``setting_key`` to ``setting_entry``; ``learns``: the merge learns from data, so
    a setting is computed only when asked (the page's button), never ahead."""
    return {"identity": identity, "tasks": list(tasks), "values": [float(v) for v in values], "settings": settings,
            "step": step, "min": bounds[0], "max": bounds[1], "learns": learns}


def reported_values(reported, runs_identity: str, n_tasks: int, bounds: tuple[float, float],
                    step: float) -> list[float] | None:
    """The coefficients a browser reported, on the sliders' grid and clamped to ``bounds``; None for a report that
    is not this page's (another set of runs: its identity does not start with ``runs_identity#``) or is malformed
    (not one finite number per task). A report comes from the browser, so it is checked like any input."""
    if not isinstance(reported, dict) or not str(reported.get("identity", "")).startswith(runs_identity + "#"):
        return None
    values = reported.get("values")
    if not isinstance(values, list) or len(values) != n_tasks or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    lo, hi = bounds
    return [min(hi, max(lo, round(round(v / step) * step, 2))) for v in values]


def coefficient_explorer(data: dict, key: str, on_change: Callable[[], None]):
    """Mount the explorer; the browser reports its coefficients (``{"identity", "values"}``) as the state
    ``coefficients``: at once for a setting it lacks or one whose next steps it lacks, else half a second after
    the last move."""
    return _COMPONENT(key=key, data=data, on_coefficients_change=on_change)
