"""Writing results (CSV / JSON / PNG / Parquet), the report, and the generic plotting helpers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from toy_experiments import BROKEN_PLOT, TOY

from phase_transition import run_grid, save_results
from phase_transition.plots import boundary_staircase, cell_edges, mean_std_lines, success_heatmap
from phase_transition.registry import register
from phase_transition.report import ReportError, build_report, format_value

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return run_grid(TOY, quick=True, seed=5, params={"fail_on": 3}, progress=False)


def _grid_table() -> pd.DataFrame:
    """success = 1 exactly when N >= d, on N in 1..6, d in 1..4, two trials."""
    rows = [{"N": N, "d": d, "trial": j, "success": N >= d, "err": 1.0 / (N + j), "error": ""}
            for d in range(1, 5) for N in range(1, 7) for j in range(2)]
    rows.append({"N": 1, "d": 1, "trial": 2, "success": np.nan, "err": np.nan, "error": "ValueError: x"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- save_results
def test_save_results_writes_every_file(tmp_path, table):
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    paths = save_results(table, tmp_path / "out", "toy", figure=fig, summary={"mean": 1.5})
    out = tmp_path / "out"
    assert paths["csv"] == out / "toy.csv" and paths["json"] == out / "toy.json" and paths["png"] == out / "toy.png"
    back = pd.read_csv(paths["csv"], keep_default_na=False, na_values=[""])
    assert list(back.columns) == [c for c in table.columns if c != "runtime_s"] and len(back) == len(table)
    np.testing.assert_array_equal(back["seed"], table["seed"])
    np.testing.assert_allclose(back["value"], table["value"], rtol=1e-12)
    assert (back["error"].fillna("") != "").sum() == 2  # the two failed trials
    meta = json.loads(paths["json"].read_text())
    for key in ("experiment", "grid", "params", "trials", "seed", "version", "runtime_s"):
        assert key in meta
    assert meta["columns"] == list(back.columns) and meta["summary"] == {"mean": 1.5}
    assert meta["row_runtime_s"] == [round(v, 6) for v in table["runtime_s"]]
    assert paths["png"].read_bytes()[:8] == PNG
    pytest.importorskip("pyarrow")
    pq = pd.read_parquet(paths["parquet"])
    pd.testing.assert_frame_equal(pq.drop(columns="big"), table.drop(columns=["big", "runtime_s"]))
    ok = table["error"] == ""
    assert pq.loc[ok, "big"].tolist() == table.loc[ok, "big"].tolist()
    assert pq.loc[~ok, "big"].isna().all()  # bool metric of a failed trial: missing
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_save_results_numpy_summary_and_unwritable_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    mixed = pd.DataFrame({"a": [1, 2], "m": ["text", 1.5], "error": ["", ""]})
    with pytest.warns(RuntimeWarning, match="no Parquet file"):
        paths = save_results(mixed, tmp_path, "mixed", summary={"n": np.int64(3), "rate": np.float32(0.5)})
    assert "parquet" not in paths and not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob(".tmp*"))
    assert json.loads(paths["json"].read_text())["summary"] == {"n": 3, "rate": 0.5}
    assert len(pd.read_csv(paths["csv"])) == 2


def test_save_results_without_figure(tmp_path, table):
    paths = save_results(table, tmp_path, "nofig")
    assert "png" not in paths and not (tmp_path / "nofig.png").exists()
    assert (tmp_path / "nofig.csv").exists()


# --------------------------------------------------------------------------- report
def test_build_report(tmp_path):
    register(TOY)
    messages = []
    readme = build_report(tmp_path, quick=True, names=["toy-sweep"], progress=False, echo=messages.append)
    assert readme == tmp_path / "quick" / "README.md"
    text = readme.read_text()
    assert "## toy-sweep" in text
    assert "![toy-sweep](toy-sweep.png)" in text
    assert "| mean value |" in text and "| rows | 18 |" in text
    assert "phase-transition run toy-sweep --quick" in text
    for ext in ("csv", "json", "png"):
        assert (tmp_path / "quick" / f"toy-sweep.{ext}").exists()
    assert "[quick](quick/README.md)" in (tmp_path / "README.md").read_text()
    assert any("toy-sweep" in m for m in messages)
    # the second build reads every chunk from the cache
    cache_files = sorted((tmp_path / ".cache").rglob("chunk-*.json"))
    assert len(cache_files) == 3
    stamps = [p.stat().st_mtime_ns for p in cache_files]
    build_report(tmp_path, quick=True, names=["toy-sweep"], progress=False, echo=messages.append)
    assert [p.stat().st_mtime_ns for p in cache_files] == stamps


def test_a_failing_experiment_does_not_stop_the_report(tmp_path):
    register(TOY)
    register(BROKEN_PLOT)
    with pytest.raises(ReportError, match="toy-broken-plot") as info:
        build_report(tmp_path, quick=True, names=["toy-broken-plot", "toy-sweep"], progress=False, echo=lambda m: None)
    assert list(info.value.failures) == ["toy-broken-plot"]
    assert "RuntimeError: toy plot is broken" in info.value.failures["toy-broken-plot"]
    text = (tmp_path / "quick" / "README.md").read_text()
    assert "**Failed:** `RuntimeError: toy plot is broken`" in text
    assert "![toy-sweep](toy-sweep.png)" in text  # the next experiment still ran
    assert "--only toy-broken-plot --only toy-sweep" in text
    with pytest.raises(RuntimeError, match="toy plot is broken"):
        build_report(tmp_path, quick=True, names=["toy-broken-plot"], progress=False, echo=lambda m: None,
                     fail_fast=True)


def test_format_value():
    assert format_value(0.123456) == "0.123"
    assert format_value(True) == "True"
    assert format_value(7) == "7"


# --------------------------------------------------------------------------- plots
def test_cell_edges():
    np.testing.assert_allclose(cell_edges([1, 2, 4]), [0.5, 1.5, 3.0, 5.0])
    np.testing.assert_allclose(cell_edges([3]), [2.5, 3.5])


def test_boundary_staircase_sits_left_of_the_first_successful_cell():
    xs, ys = [1, 2, 3, 4], [1, 2, 3]
    px, py = boundary_staircase(xs, ys, lambda d: d)  # N = d
    np.testing.assert_allclose(px, [0.5, 0.5, 1.5, 1.5, 2.5, 2.5])
    np.testing.assert_allclose(py, [0.5, 1.5, 1.5, 2.5, 2.5, 3.5])


def test_success_heatmap_cells_axes_colorbar_and_boundary():
    df = _grid_table()
    fig = success_heatmap(df, [("success", "PCA")], boundary=lambda d: d, boundary_label="N = d")
    assert isinstance(fig, Figure)
    ax, cbar = fig.axes[0], fig.axes[1]  # one panel plus its colour bar
    assert len(fig.axes) == 2 and cbar.get_ylabel() == "success rate"
    assert ax.get_xlabel().startswith("N") and ax.get_ylabel().startswith("d") and ax.get_title() == "PCA"
    values = np.asarray(ax.collections[0].get_array()).reshape(4, 6)  # rows d = 1..4, columns N = 1..6
    expected = np.array([[float(N >= d) for N in range(1, 7)] for d in range(1, 5)])
    np.testing.assert_array_equal(values, expected)  # the error row is left out
    lines = [l for l in ax.get_lines() if "N = d" in l.get_label()]
    assert len(lines) == 1
    fig.savefig(__import__("io").BytesIO(), format="png")


def test_success_heatmap_several_panels():
    df = _grid_table()
    df["other"] = 1.0
    fig = success_heatmap(df, [("success", "a"), ("other", "b")])
    assert len(fig.axes) == 3
    np.testing.assert_array_equal(np.asarray(fig.axes[1].collections[0].get_array()).ravel(), np.ones(24))


def test_mean_std_lines():
    df = _grid_table()
    ax = mean_std_lines(df, "N", "err", hue="d")
    assert len(ax.get_lines()) == 4 and len(ax.collections) == 4  # one line and one band per d
    line = ax.get_lines()[0]  # d = 1
    expected = [np.mean([1.0 / N, 1.0 / (N + 1)]) for N in range(1, 7)]
    np.testing.assert_allclose(line.get_ydata(), expected)
    assert ax.get_xlabel() == "N" and ax.get_ylabel() == "err"
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "d = 1"
