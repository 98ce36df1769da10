"""Every textbook demo runs on its smallest setting, writes its figure, and opens as a notebook (issue 8)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMOS = sorted((Path(__file__).resolve().parents[1] / "demos").glob("[0-9][0-9]_*.py"))


def test_there_is_a_demo_per_idea():
    assert len(DEMOS) == 6


@pytest.mark.parametrize("demo", DEMOS, ids=lambda p: p.stem)
def test_demo_runs_and_writes_its_figure(demo, tmp_path):
    env = {**os.environ, "DEMO_QUICK": "1", "DEMO_OUT": str(tmp_path), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, demo.name], cwd=demo.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = tmp_path / f"{demo.stem}.png"
    assert png.exists() and png.stat().st_size > 10_000


@pytest.mark.parametrize("demo", DEMOS, ids=lambda p: p.stem)
def test_demo_is_a_percent_format_notebook(demo):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(demo)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 1 and kinds.count("code") >= 2
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
