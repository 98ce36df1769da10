"""The claims table (issue 8): every claim names tests that exist, an experiment that runs, and a measured value.

The end-to-end test runs the whole quick report (what `make report` does) and
checks every figure is written and every claim quotes a number of this run.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import molrg
from phase_transition import run_grid
from phase_transition.claims import CLAIMS, claims_table, measured_text
from phase_transition.registry import get_experiment, list_experiments
from phase_transition.report import GALLERY, build_report, update_readme

ROOT = Path(__file__).resolve().parents[1]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_claim_names_tests_that_exist():
    assert len(CLAIMS) >= 15
    for claim in CLAIMS:
        assert claim.tests, claim.source
        for node in claim.tests:
            file, _, func = node.partition("::")
            path = ROOT / file
            assert path.is_file(), node
            assert func in _test_functions(path), node


def test_every_claim_names_a_registered_experiment():
    for claim in CLAIMS:
        get_experiment(claim.experiment)  # raises for an unknown name
    assert {c.experiment for c in CLAIMS} >= {"formula-checks", "molrg-kss", "locality-tradeoff", "cir-radius"}


def test_formula_checks_are_within_tolerance():
    df = run_grid("formula-checks", quick=True, progress=False)
    assert (df["error"] == "").all()
    assert df["within"].all(), df[~df["within"]]
    summary = get_experiment("formula-checks").summarize(df, df.attrs["config"])
    assert summary["all within tolerance"] is True


def test_formula_checks_detect_a_broken_formula(monkeypatch):
    """The checks can fail: a posterior mean off by 1e-6 relative is caught."""
    true_mean = molrg.posterior_mean
    monkeypatch.setattr(molrg, "posterior_mean", lambda *a, **k: true_mean(*a, **k) * (1 + 1e-6))
    df = run_grid("formula-checks", {"check": ["posterior-dense"]}, trials=1, progress=False)
    assert not df["within"].any() and df["discrepancy"].iloc[0] > 1e-7


def test_missing_summary_key_is_an_error_and_missing_experiment_says_so():
    claim = next(c for c in CLAIMS if c.experiment == "molrg-kss")
    with pytest.raises(KeyError):
        measured_text(claim, {"molrg-kss": {}})
    assert measured_text(claim, {}).startswith("not run")
    table = claims_table({})
    assert table.count("\n") == len(CLAIMS) + 1 and "not run" in table


def test_quick_report_end_to_end(tmp_path):
    """`make report` in miniature: every experiment, every figure non-empty, every claim measured."""
    # the registered experiments of the package (other test files register toy ones in this process)
    names = [e.name for e in list_experiments() if e.run.__module__.startswith("phase_transition.experiments.")]
    assert len(names) >= 14
    readme = build_report(tmp_path, quick=True, names=names, progress=False, echo=lambda s: None)
    folder = readme.parent
    text = readme.read_text()
    for name in {c.experiment for c in CLAIMS} | set(GALLERY):
        png = folder / f"{name}.png"
        assert png.stat().st_size > 10_000, name
        assert (folder / f"{name}.csv").stat().st_size > 0
        assert f"![{name}]({name}.png)" in text
    assert "## Claims" in text and "not run" not in text and "**Failed" not in text
    # every claim quotes at least one number computed by this run
    rows = [line for line in text.splitlines() if line.startswith("| ") and "paper" in line.split("|")[1]]
    assert len(rows) == len(CLAIMS)
    assert all(re.search(r"\d", row.split("|")[-2]) for row in rows)
    # the top-level README's markers are filled from the same summaries
    import json

    summaries = {p.stem: json.loads(p.read_text())["summary"] for p in folder.glob("*.json")}
    copy = tmp_path / "README.md"
    copy.write_text((ROOT / "README.md").read_text())
    update_readme(copy, summaries, folder)
    out = copy.read_text()
    assert all(f"quick/{name}.png" in out for name in GALLERY)
    assert out.count("\n| ") >= len(CLAIMS) + 1
    assert np.all([m in out for m in ("<!-- gallery:start -->", "<!-- claims:end -->")])
