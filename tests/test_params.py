"""Typed experiment parameters (phase_transition.params): declaration, validation, mapping access, CLI."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, dataclass

import pytest
from click.testing import CliRunner
from toy_experiments import TOY, ToyParameters

from phase_transition.cli import cli
from phase_transition.grid import plan_grid
from phase_transition.params import Parameters, param
from phase_transition.registry import Experiment, register


@pytest.fixture(autouse=True, scope="module")
def _toy_registered():
    register(TOY)


def test_fields_are_coerced_and_read_as_a_mapping():
    p = ToyParameters(a=2, b=1, scale=3)
    assert p.b == 1.0 and isinstance(p.b, float) and isinstance(p.scale, float)
    assert p["a"] == 2 and p.get("zzz") is None and "scale" in p and "zzz" not in p
    assert dict(p) == {"a": 2, "b": 1.0, "scale": 3.0, "fail_on": -1, "label": "x", "log_dir": "", "mode": "plain",
                       "fail_all": False, "sleep_s": 0.0}
    assert p.to_dict() == dict(p) and len(p) == 9
    assert pickle.loads(pickle.dumps(p)) == p and hash(p) == hash(ToyParameters(a=2, b=1.0, scale=3.0))
    with pytest.raises(FrozenInstanceError):
        p.a = 3
    assert p.replace(a=5).a == 5
    with pytest.raises(ValueError, match="a must be an integer in \\[1, 100\\], got 0"):
        p.replace(a=0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"a": 0}, ValueError, r"a must be an integer in \[1, 100\], got 0"),
        ({"a": 2.5}, TypeError, "a must be an integer"),
        ({"a": True}, TypeError, "a must be an integer"),
        ({"b": 0.0}, ValueError, "b must be a finite number > 0.0, got 0.0"),
        ({"b": float("nan")}, ValueError, "b must be a finite number"),
        ({"b": "1"}, TypeError, "b must be a finite number"),
        ({"label": 3}, TypeError, "label must be a string, got 3"),
        ({"mode": "odd"}, ValueError, "mode must be one of: plain, fancy, got 'odd'"),
        ({"fail_on": 0}, ValueError, "fail_on must not be 0"),  # the cross-field hook
    ],
)
def test_bad_values_name_the_parameter(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ToyParameters(**{"a": 1, "b": 1.0, **kwargs})


def test_declaration_errors():
    with pytest.raises(ValueError, match="at most one lower bound"):
        param(1, ge=0, gt=0)

    @dataclass(frozen=True, kw_only=True)
    class Untyped(Parameters):
        x: tuple = param((1,))

    with pytest.raises(TypeError, match="parameter type must be"):
        Untyped()

    @dataclass(frozen=True, kw_only=True)
    class Shadow(Parameters):
        items: int = param(1)

    with pytest.raises(TypeError, match="reserved"):
        Shadow()

    @dataclass(frozen=True, kw_only=True)
    class Optional(Parameters):
        x: int | None = param(None, ge=0)

    assert Optional().x is None and Optional(x=3).x == 3
    assert Optional.specs()["x"].parse("none") is None

    with pytest.raises(ValueError, match="not fields of"):
        Experiment(name="bad", description="", run=lambda t: [], grid={"zz": [1]}, quick_grid={"zz": [1]},
                   parameters=Optional)
    with pytest.raises(ValueError, match="no default and are not grid keys"):
        Experiment(name="bad", description="", run=lambda t: [], grid={}, quick_grid={}, parameters=ToyParameters)


def test_plan_builds_one_validated_instance_per_point():
    plan = plan_grid(TOY, quick=True)
    tasks = [t for chunk in plan.chunks for _, t in chunk]
    assert all(isinstance(t.params, ToyParameters) for t in tasks)
    assert {(t.params.a, t.params.b) for t in tasks} == {(a, b) for a in (1, 2, 3) for b in (0.5, 1.0)}
    assert tasks[0].params.scale == 2.0  # quick_params
    with pytest.raises(ValueError, match=r"toy-sweep: a must be an integer in \[1, 100\], got 0 \(grid point a=0"):
        plan_grid(TOY, {"a": [1, 0]}, quick=True)
    with pytest.raises(ValueError, match="toy-sweep: mode must be one of"):
        plan_grid(TOY, quick=True, params={"mode": "odd"})


def test_show_and_run_help_list_the_parameters():
    runner = CliRunner()
    for argv in (["show", "toy-sweep"], ["run", "toy-sweep", "--help"], ["run", "--quick", "toy-sweep", "--help"]):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0, result.output
        assert "scale (float, > 0.0) = 1.0 (quick: 2.0)  multiplies the product" in result.output
        assert "a (int, in [1, 100]) = grid: 1,2,3,4; quick: 1,2,3  first factor (grid)" in result.output
        assert "mode (str, one of: plain, fancy) = 'plain'" in result.output
    plain = runner.invoke(cli, ["run", "--help"])
    assert plain.exit_code == 0 and "scale (float" not in plain.output


@pytest.mark.parametrize(
    "setting, fragment",
    [("mode=odd", "mode must be one of: plain, fancy, got 'odd'"), ("a=1,0", "a must be an integer in [1, 100]"),
     ("b=x", "--set b: expected a value of type float, got 'x'"), ("fail_on=0", "fail_on must not be 0")],
)
def test_cli_parses_set_with_the_declared_types(setting, fragment, tmp_path):
    result = CliRunner().invoke(cli, ["run", "toy-sweep", "--quick", "--quiet", "--out", str(tmp_path), "--set", setting],
                                standalone_mode=False, catch_exceptions=True)
    assert result.exception is not None and fragment in str(result.exception)
    assert not list(tmp_path.iterdir())
