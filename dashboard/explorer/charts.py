"""The Typographic page's word sweep and margin along alpha, drawn in the browser from the numbers the server
computed (issue 31: with ten sessions typing words, plotly's three figures cost each browser more CPU per word than
the rest of the page; a table of coloured cells and one small SVG cost next to nothing). The server's answers stay
the shared, cached tables of ``dashboard/typographic_answers.py``; this module only says what to draw.

``heat_colour``, ``word_sweep_grid`` and ``margin_lines`` are pure (unit-tested); ``chart`` mounts the component.
"""
from __future__ import annotations

import pandas as pd

from dashboard.explorer import explorer_component
from dashboard.figures import nice_ticks

_COMPONENT = explorer_component("typographic_charts", "charts.js")

# plotly's RdYlGn (ColorBrewer), the scale the heat-maps used: red where the true class is unlikely, green where sure
RD_YL_GN = ((165, 0, 38), (215, 48, 39), (244, 109, 67), (253, 174, 97), (254, 224, 139), (255, 255, 191),
            (217, 239, 139), (166, 217, 106), (102, 189, 99), (26, 152, 80), (0, 104, 55))


def heat_colour(p: float) -> str:
    """``p`` in [0, 1] as a CSS colour on ``RD_YL_GN``, linear between its eleven even stops (clipped)."""
    x = min(max(float(p), 0.0), 1.0) * (len(RD_YL_GN) - 1)
    i = min(int(x), len(RD_YL_GN) - 2)
    f = x - i
    r, g, b = (round(a + f * (c - a)) for a, c in zip(RD_YL_GN[i], RD_YL_GN[i + 1]))
    return f"rgb({r},{g},{b})"


def _where(position: str, size: float) -> str:
    return f"{position} {round(100 * float(size))}%"


def word_sweep_grid(table: pd.DataFrame, title: str) -> dict:
    """Words (rows, in the table's order) by where the word is written (position and height, columns): per cell
    the true class's probability, its colour and the predicted class. ``table`` from
    ``paint_core.engine.attack.word_sweep``."""
    table = table.assign(where=[_where(p, s) for p, s in zip(table["position"], table["size"])])
    words = list(dict.fromkeys(table["word"]))
    columns = list(dict.fromkeys(table["where"]))
    p = table.pivot(index="word", columns="where", values="p_true").loc[words, columns]
    predicted = table.pivot(index="word", columns="where", values="predicted").loc[words, columns]
    return {"kind": "sweep", "title": title, "words": words, "columns": columns,
            "p": [[round(float(v), 4) for v in row] for row in p.to_numpy()],
            "colour": [[heat_colour(v) for v in row] for row in p.to_numpy()],
            "predicted": [[str(v) for v in row] for row in predicted.to_numpy()]}


def margin_lines(table: pd.DataFrame, alpha: float | None) -> dict:
    """The logit margin true - written class along alpha, one line per image (clean, attacked), with the y range
    (zero always inside it, padded by 8%) and its ticks, and the slider's ``alpha`` for a marker. ``table`` from
    ``margin_along_alpha``."""
    lines = [{"name": str(name), "alpha": [float(a) for a in rows["alpha"]],
              "margin": [round(float(m), 4) for m in rows["margin"]]}
             for name, rows in table.groupby("image", sort=False)]
    values = [m for line in lines for m in line["margin"]] + [0.0]
    lo, hi = min(values), max(values)
    pad = max(0.08 * (hi - lo), 0.1)
    lo, hi = lo - pad, hi + pad
    ticks = [t for t in nice_ticks(lo, hi) if lo <= t <= hi]
    return {"kind": "margin", "lines": lines, "alpha": None if alpha is None else float(alpha),
            "y_range": [round(lo, 4), round(hi, 4)], "y_ticks": ticks}


def chart(data: dict, key: str):
    """Mount one chart (``word_sweep_grid`` or ``margin_lines``'s data); it reports nothing back."""
    return _COMPONENT(key=key, data=data)
