"""Every registered experiment rejects every out-of-range parameter at plan time (issue 12, item 2).

Generated from the declarations: for each experiment with typed ``parameters``
and each declared parameter with a range or choices, one value just outside it
is given (in the grid for a grid key, as a fixed parameter otherwise).
``plan_grid`` must raise naming the parameter, and ``phase-transition run NAME
--set p=bad`` must exit 2 with one line on stderr.  Nothing is computed: the
sweep function is replaced by one that fails the test if it is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from toy_experiments import TOY, ToyParameters, toy_run

import phase_transition.grid as grid_module
from phase_transition.cli import main
from phase_transition.grid import plan_grid
from phase_transition.registry import Experiment, list_experiments, register


def _package_experiments():
    return [e for e in list_experiments() if e.run.__module__.startswith("phase_transition.experiments.")]


def _bad_value(spec):
    """A value just outside the declared range (None when nothing is declared)."""
    c = spec.constraint
    if c.choices is not None:
        if spec.type is str:
            return "not-" + "-".join(map(str, c.choices))[:20]
        if spec.type in (int, float):
            return spec.type(max(c.choices) + 1)
        return None
    step = 1 if spec.type is int else 0.5
    if spec.type not in (int, float):
        return None
    for bound, value in ((c.ge, lambda b: b - step), (c.gt, lambda b: b), (c.le, lambda b: b + step), (c.lt, lambda b: b)):
        if bound is not None:
            return spec.type(value(bound))
    return None


def _cases():
    cases = []
    for exp in _package_experiments():
        if exp.parameters is None:
            cases.append(pytest.param(exp.name, None, None, marks=pytest.mark.skip(
                reason=f"{exp.name} still uses the older params=/validate= (not converted to typed parameters yet)")))
            continue
        for name, spec in exp.parameters.specs().items():
            bad = _bad_value(spec)
            if bad is not None:
                cases.append(pytest.param(exp.name, name, bad, id=f"{exp.name}-{name}"))
    return cases


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("name, key, bad", _cases())
def test_out_of_range_is_rejected_at_plan_time(name, key, bad, monkeypatch, capsys, tmp_path):
    exp = next(e for e in _package_experiments() if e.name == name)
    _assert_rejected(exp, key, bad, monkeypatch, capsys, tmp_path)


def _assert_rejected(exp, key, bad, monkeypatch, capsys, tmp_path):
    name = exp.name
    kwargs = {"grid": {key: [bad]}} if key in exp.grid else {"params": {key: bad}}
    with pytest.raises((ValueError, TypeError)) as info:
        plan_grid(exp, quick=True, **kwargs)
    assert key in str(info.value), str(info.value)

    def unreachable(*args, **kwargs):
        raise AssertionError("the sweep started although a parameter was out of range")

    monkeypatch.setattr(grid_module, "run_grid", unreachable)
    with pytest.raises(SystemExit) as code:
        main(["run", name, "--quick", "--quiet", "--out", str(tmp_path / "out"), "--set", f"{key}={_text(bad)}"])
    err = capsys.readouterr().err
    assert code.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert key in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_generator_finds_bad_values():
    """The generated cases are not vacuous: the converted formula-checks experiment yields one."""
    assert any(c.values[0] == "formula-checks" and c.values[1] == "check" for c in _cases())


@dataclass(frozen=True, kw_only=True)
class _Unchecked(ToyParameters):
    """The toy's declarations with the checks switched off."""

    def __post_init__(self):
        pass


_UNCHECKED = Experiment(name="toy-unchecked", description="toy with validation switched off", run=toy_run,
                        grid={"a": [1], "b": [1.0]}, quick_grid={"a": [1], "b": [1.0]}, parameters=_Unchecked)


def test_the_check_fails_when_validation_is_switched_off(monkeypatch, capsys, tmp_path):
    register(TOY)
    _assert_rejected(TOY, "a", 0, monkeypatch, capsys, tmp_path / "ok")
    register(_UNCHECKED)
    with pytest.raises(pytest.fail.Exception):
        _assert_rejected(_UNCHECKED, "b", 0.0, monkeypatch, capsys, tmp_path / "off")
