"""Pure figure builders: DataFrames in, plotly figures out. No Streamlit, no model: unit-tested alone."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from paint_core.frontier import chord_gap


def frontier_figure(f: pd.DataFrame, patch: str, alpha: float | None = None, chosen: float | None = None,
                    live: tuple[float, float] | None = None, split: str = "test") -> go.Figure:
    """Supported accuracy vs patch accuracy along alpha (one point per alpha), from ``paint_core.frontier``.

    ``alpha`` marks the slider's alpha on the curve, ``chosen`` the paper's choice, ``live`` the accuracies
    measured live on the evaluation subsample (patch, supported).
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
    if live is not None:
        fig.add_trace(go.Scatter(x=[100 * live[0]], y=[100 * live[1]], mode="markers",
                                 name=f"live subsample (alpha {alpha:g})" if alpha is not None else "live",
                                 marker={"size": 14, "color": "red", "symbol": "x"}))
    fig.update_layout(xaxis_title=f"patch task: {patch} accuracy (%)", yaxis_title="supported tasks accuracy (%)",
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 30}, height=430)
    return fig


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


def probability_bars(table: pd.DataFrame, names: list[str]) -> go.Figure:
    """Grouped bars of top-k probabilities, one group per model of ``compare_predictions``'s table."""
    fig = go.Figure()
    for name in names:
        fig.add_trace(go.Bar(x=table[f"{name} class"].tolist(), y=table[f"{name} prob"].tolist(), name=name))
    fig.update_layout(barmode="group", yaxis_title="probability", yaxis_range=[0, 1], height=320, margin={"t": 30})
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
