"""Engine-level figure helpers (matplotlib object API, no global pyplot state).

Experiments build their figures from these: success-rate heatmaps with the
theory boundary drawn on, and mean +- std curves grouped by a column.

Failed rows are left out in one place, :func:`successful_rows`: the run path
(:func:`phase_transition.pipeline.run_experiment`) hands ``plot`` and
``summarize`` the successful rows only, and the helpers below apply it too.
Figure code lives here or in ``plot*`` / ``_plot*`` functions of an experiment
module: those are left out of the code fingerprint of the cache
(:mod:`phase_transition.fingerprint`), so editing a figure never invalidates
computed rows.  A ``plot`` function draws from its table alone (no
recomputation), so ``phase-transition plot NAME --from DIR`` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["success_heatmap", "mean_std_lines", "cell_edges", "boundary_staircase", "successful_rows"]


def successful_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows whose trial did not raise (empty ``error``), with boolean metrics back to ``bool``.

    A failed trial leaves NaN in its metric columns, which turns a boolean
    column into ``object``; among the successful rows it is ``bool`` again.
    ``attrs`` (the sweep configuration) are kept.
    """
    if "error" not in table:
        return table
    ok = table[table["error"].fillna("").astype(str) == ""].copy()
    for col in ok.columns:
        if ok[col].dtype == object and len(ok) and ok[col].map(lambda v: isinstance(v, (bool, np.bool_))).all():
            ok[col] = ok[col].astype(bool)
    ok.attrs = dict(table.attrs)
    return ok


def cell_edges(values: Sequence[float]) -> np.ndarray:
    """Edges of cells centred on sorted ``values`` (midpoints; the ends mirrored)."""
    v = np.asarray(sorted(values), dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def boundary_staircase(xs, ys, boundary) -> tuple[np.ndarray, np.ndarray]:
    """The theory boundary as a staircase on cell edges: in row ``y`` it passes left of the first ``x >= boundary(y)``."""
    xe, ye = cell_edges(xs), cell_edges(ys)
    px, py = [], []
    for j, y in enumerate(sorted(ys)):
        first = int(np.searchsorted(np.asarray(sorted(xs), float), boundary(np.asarray(float(y))) - 1e-9))
        px += [xe[min(first, len(xs))]] * 2
        py += [ye[j], ye[j + 1]]
    return np.asarray(px), np.asarray(py)


def success_heatmap(
    table: pd.DataFrame,
    panels: Sequence[tuple[str, str]],
    *,
    x: str = "N",
    y: str = "d",
    boundary: Callable[[np.ndarray], np.ndarray] | None = None,
    boundary_label: str = "theory",
    figsize_per_panel: tuple[float, float] = (4.6, 3.6),
) -> Figure:
    """One heatmap per ``(column, title)`` in ``panels``: the mean of the column per ``(y, x)`` cell.

    Rows with a non-empty ``error`` are left out. ``boundary(y) -> x`` is drawn as
    a dashed line (for example ``N = K d``).
    """
    ok = successful_rows(table)
    fig = Figure(figsize=(figsize_per_panel[0] * len(panels), figsize_per_panel[1]), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    xs, ys = sorted(ok[x].unique()), sorted(ok[y].unique())
    mesh = None
    for ax, (col, title) in zip(axes, panels):
        grid = ok.groupby([y, x])[col].mean().astype(float).unstack(x).reindex(index=ys, columns=xs)
        mesh = ax.pcolormesh(cell_edges(xs), cell_edges(ys), grid.to_numpy(), cmap="viridis", vmin=0, vmax=1)
        if boundary is not None:
            bx, by = boundary_staircase(xs, ys, boundary)
            ax.plot(bx, by, "w--", lw=1.8, label=f"theory: {boundary_label}")
            ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
        ax.set_yticks(ys)
        ax.set(title=title, xlabel=f"{x} (training samples)" if x == "N" else x,
               ylabel=f"{y} (subspace dimension)" if y == "d" else y, xlim=(cell_edges(xs)[0], cell_edges(xs)[-1]))
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), label="success rate", shrink=0.9)
    return fig


def mean_std_lines(
    table: pd.DataFrame,
    x: str,
    y: str,
    *,
    hue: str | None = None,
    ax=None,
    logy: bool = False,
    label_fmt: str = "{hue} = {value}",
):
    """Mean of ``y`` against ``x`` with a +-1 std band, one line per value of ``hue``.

    Returns the axes (a new figure's if ``ax`` is None).
    """
    if ax is None:
        ax = Figure(figsize=(5.5, 4), layout="constrained").subplots()
    ok = successful_rows(table)
    groups = [(None, ok)] if hue is None else list(ok.groupby(hue))
    for value, sub in groups:
        stats = sub.groupby(x)[y].agg(["mean", "std"]).fillna(0.0)
        label = None if hue is None else label_fmt.format(hue=hue, value=value)
        line, = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=line.get_color(), alpha=0.2)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=x, ylabel=y)
    if hue is not None:
        ax.legend(fontsize=8)
    return ax
