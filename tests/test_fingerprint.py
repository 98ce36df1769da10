"""The cache is keyed on the code that computes the rows (issue 12, item 1).

A fixture experiment lives in a temporary package (``exp.py`` importing a
computing helper ``helper.py``); the test edits its files and reloads them:
computing code changes recompute, a figure-only or comment-only change reuses
the cache, and ``Experiment.version`` forces a recomputation.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import uuid

import pytest

from phase_transition import run_grid, save_results
from phase_transition.fingerprint import code_fingerprint, fingerprinted_modules

EXP = '''
"""A fixture experiment."""
from pathlib import Path
import uuid

from phase_transition.registry import Experiment
from . import helper


def run(tasks):
    Path(tasks[0].params["log_dir"], "call-" + uuid.uuid4().hex).write_text("x")
    return [{"value": helper.compute(t.params["a"])} for t in tasks]


def plot(table, config):
    from matplotlib.figure import Figure
    fig = Figure()
    fig.subplots().plot(table["a"], table["value"], "o")  # PLOT-LINE
    return fig


EXPERIMENT = Experiment(name="fixture", description="fixture", run=run, grid={"a": [1, 2]}, quick_grid={"a": [1]},
                        params={"log_dir": ""}, trials=1, quick_trials=1, plot=plot, version=VERSION)
'''

HELPER = '''
def compute(a):
    return a * 2.0
'''


@pytest.fixture
def fixture_package(tmp_path, monkeypatch):
    name = f"fixpkg_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "src" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    files = {"exp": pkg / "exp.py", "helper": pkg / "helper.py"}

    def write(exp=EXP, helper=HELPER, version='""'):
        files["exp"].write_text(textwrap.dedent(exp).replace("VERSION", version))
        files["helper"].write_text(textwrap.dedent(helper))
        importlib.invalidate_caches()
        for mod in (f"{name}.helper", f"{name}.exp"):
            if mod in sys.modules:
                importlib.reload(sys.modules[mod])
        return importlib.import_module(f"{name}.exp").EXPERIMENT

    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield name, write
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def test_cache_follows_the_computing_code(fixture_package, tmp_path):
    name, write = fixture_package
    log, cache = tmp_path / "log", tmp_path / "cache"
    log.mkdir()

    def sweep(exp):
        before = len(list(log.glob("call-*")))
        df = run_grid(exp, params={"log_dir": str(log)}, cache_dir=cache, progress=False)
        return df, len(list(log.glob("call-*"))) - before

    exp = write()
    assert set(fingerprinted_modules(exp)) == {f"{name}.exp", f"{name}.helper", name}
    df, computed = sweep(exp)
    assert computed == 2 and df["value"].tolist() == [2.0, 4.0]
    assert sweep(exp)[1] == 0  # unchanged code: from the cache

    exp = write(helper=HELPER.replace("a * 2.0", "a * 3.0 + 0"))  # a computing helper changes
    df, computed = sweep(exp)
    assert computed == 2 and df["value"].tolist() == [3.0, 6.0]

    fp = code_fingerprint(exp)
    exp = write(exp=EXP.replace('"o")  # PLOT-LINE', '"s-", color="red")'), helper=HELPER.replace("a * 2.0", "a * 3.0 + 0"))
    assert code_fingerprint(exp) == fp
    df, computed = sweep(exp)  # a figure-only change: the cache is reused
    assert computed == 0 and df["value"].tolist() == [3.0, 6.0]

    exp = write(exp=EXP.replace('"""A fixture experiment."""', '"""A fixture experiment."""\n# a comment only'),
                helper=HELPER.replace("a * 2.0", "a * 3.0 + 0"))
    assert sweep(exp)[1] == 0  # comments and formatting do not count

    exp = write(exp=EXP.replace("return [{", "rows = [{").replace("for t in tasks]", "for t in tasks]\n    return rows"),
                helper=HELPER.replace("a * 2.0", "a * 3.0 + 0"))
    assert sweep(exp)[1] == 2  # the run function itself changes

    exp = write(helper=HELPER.replace("a * 2.0", "a * 3.0 + 0"), version='"2"')
    df, computed = sweep(exp)
    assert computed == 2  # Experiment.version bumped by hand
    assert df.attrs["config"]["fingerprint"] == code_fingerprint(exp) != fp
    meta = json.loads(save_results(df, tmp_path / "out", "fixture")["json"].read_text())
    assert meta["fingerprint"] == code_fingerprint(exp)


def test_package_experiments_hash_their_library_modules():
    from phase_transition.registry import get_experiment

    mods = fingerprinted_modules(get_experiment("formula-checks"))
    assert "phase_transition.experiments.checks" in mods and "molrg.posterior" in mods and "locality" in " ".join(mods)
    assert not any(m in mods for m in ("phase_transition.grid", "phase_transition.params", "numpy", "scipy"))
