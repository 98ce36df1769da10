"""The demos are sphinx-gallery examples that also open as notebooks (issue 18).

They are executed by the documentation build (``make docs``, run by CI with
warnings as errors, so a failing demo fails CI); here we check their structure.
"""

from pathlib import Path

import pytest

DEMOS = sorted((Path(__file__).resolve().parents[1] / "demos").glob("[0-9][0-9]_*.py"))


def test_there_is_a_demo_per_idea():
    assert len(DEMOS) >= 6
    assert (DEMOS[0].parent / "README.rst").exists()


@pytest.mark.parametrize("demo", DEMOS, ids=lambda p: p.stem)
def test_demo_is_a_gallery_script_with_prose_and_a_figure(demo):
    sg = pytest.importorskip("sphinx_gallery.py_source_parser")
    _, blocks = sg.split_code_and_text_blocks(str(demo))[:2]
    kinds = [b.type for b in blocks]
    assert kinds[0] == "text" and blocks[0].content.strip().splitlines()[1].startswith("===")
    assert kinds.count("text") >= 2 and kinds.count("code") >= 2
    source = demo.read_text()
    assert "plt.show()" in source or "fig = " in source  # the figure is displayed, not only saved
    assert "matplotlib.use(" not in source  # the backend is the runner's choice (inline in notebooks)


@pytest.mark.parametrize("demo", DEMOS, ids=lambda p: p.stem)
def test_demo_opens_as_a_notebook_with_inline_figures(demo):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(demo, fmt="py:sphinx")
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 2 and kinds.count("code") >= 2
    assert nb.cells[0].source.strip() == "%matplotlib inline"


def test_a_demo_executed_as_a_notebook_shows_its_figure_inline(tmp_path):
    """The jupytext route of the README: the executed notebook holds the figure as an inline PNG."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    demo = DEMOS[0]
    nb = jupytext.read(demo, fmt="py:sphinx")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
