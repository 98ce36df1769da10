"""Typed experiment parameters: every parameter of an experiment declared once.

An experiment's parameters are one frozen dataclass deriving from
:class:`Parameters`; each field is declared with :func:`param` (type from the
annotation, default, allowed range or choices, one-line help).  The grid keys
and the fixed parameters are both fields: the experiment's ``grid`` and
``quick_grid`` name the fields that are swept, every other field is fixed at its
default (or at ``quick_params`` in a quick run, or at ``--set`` / ``params=``).
This plays the role of scikit-learn's ``_parameter_constraints``: everything is
checked in one place before any work starts.

Usage (experiment authors)
--------------------------
::

    from dataclasses import dataclass

    from phase_transition.params import Parameters, param
    from phase_transition.registry import Experiment, register


    @dataclass(frozen=True, kw_only=True)        # always frozen=True, kw_only=True
    class KSSParameters(Parameters):
        d: int = param(ge=1, help="subspace dimension")            # swept: no default needed
        N: int = param(ge=1, help="training samples")              # swept
        n: int = param(48, ge=1, help="ambient dimension")
        K: int = param(2, ge=1, help="number of subspaces")
        noise_std: float = param(0.0, ge=0.0, help="noise standard deviation delta (SPEC A1)")
        tau: float = param(0.5, gt=0.0, help="success threshold on the subspace error (SPEC A8)")
        kss_init: str = param("spectral", choices=("spectral", "random"), help="K-subspaces start")
        label: str | None = param(None, help="optional text (None allowed because of '| None')")

        def validate(self):
            # Cross-parameter rules, after every field passed its own check.
            # Call the library's own validators here (the engine itself imports no mathematics).
            from molrg.utils import check_int

            check_int("K * d", self.K * self.d, high=self.n)   # raises ValueError naming the rule


    def run(tasks):
        p = tasks[0].params          # a KSSParameters instance: p.N, p["N"], p.get("K"), dict(p) all work
        ...


    register(Experiment(
        name="molrg-kss", description="...", run=run,
        parameters=KSSParameters,                     # instead of params= and validate=
        grid={"d": [1, 2, 3], "N": [1, 2, 4, 8]},     # keys: fields of KSSParameters
        quick_grid={"d": [1, 2], "N": [2, 8]},
        quick_params={"K": 2},                        # overrides of field defaults for --quick
    ))

Rules the engine applies
    * Field types: ``int``, ``float``, ``bool``, ``str``, each optionally ``| None``.
      ``int`` accepts integer values (also ``2.0``); ``float`` accepts any real
      and stores a ``float`` (finite unless ``param(..., finite=False)``);
      ``bool`` and ``str`` accept only themselves.  A wrong type is a
      ``TypeError``, a value out of range a ``ValueError``; both messages name
      the parameter and the allowed range, e.g. ``N must be an integer >= 1,
      got 0``.
    * Ranges: ``ge``, ``gt``, ``le``, ``lt`` (bounds), ``choices`` (a tuple of
      allowed values).
    * ``validate(self)``: an optional hook for rules across fields
      (``b < d``, ``K * d <= n``); it runs after the field checks.
    * :func:`~phase_transition.grid.plan_grid` builds and validates one instance
      per grid point before any chunk runs; ``Task.params`` is that instance
      (a read-only mapping too, so ``run`` functions written for dicts keep
      working).  The trial seeds hash the grid values as written in the grid,
      so converting an experiment to typed parameters changes no seed.
    * The command line parses ``--set key=value`` with the field's type
      (comma lists for grid keys), and ``phase-transition show NAME`` /
      ``phase-transition run NAME --help`` list every field with its type,
      default, range and help.
    * Field names must not shadow the mapping methods (``keys``, ``items``,
      ``values``, ``get``) or ``validate``, ``replace``, ``to_dict``, ``specs``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any

__all__ = ["Parameters", "ParamSpec", "param", "parameter_specs", "parse_value"]

_TYPES = (int, float, bool, str)
_RESERVED = {"keys", "items", "values", "get", "validate", "replace", "to_dict", "specs"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_META = "phase_transition.param"


@dataclass(frozen=True)
class _Constraint:
    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    choices: tuple | None = None
    finite: bool = True
    help: str = ""


def param(default: Any = MISSING, *, ge=None, gt=None, le=None, lt=None, choices=None, finite: bool = True,
          help: str = ""):
    """Declare one experiment parameter (a :func:`dataclasses.field` carrying its constraints).

    Parameters
    ----------
    default : optional
        The default value; leave it out for a parameter that is always swept (a grid key).
    ge, gt, le, lt : number, optional
        Bounds: ``value >= ge``, ``value > gt``, ``value <= le``, ``value < lt``.
    choices : sequence, optional
        The allowed values.
    finite : bool, default True
        For ``float`` fields: reject NaN and infinities.
    help : str
        One line for ``phase-transition show NAME``.
    """
    if ge is not None and gt is not None or le is not None and lt is not None:
        raise ValueError("param: give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    meta = _Constraint(ge, gt, le, lt, None if choices is None else tuple(choices), bool(finite), str(help))
    return dataclasses.field(default=default, metadata={_META: meta})


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: what :func:`param` stored, with the field's name and type resolved."""

    name: str
    type: type
    optional: bool
    default: Any
    constraint: _Constraint

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    @property
    def type_name(self) -> str:
        return self.type.__name__ + (" | None" if self.optional else "")

    def range_text(self) -> str:
        """The allowed values in words: ``>= 1``, ``in (0, 1]``, ``one of: a, b``, or ``any``."""
        c = self.constraint
        if c.choices is not None:
            return "one of: " + ", ".join(map(str, c.choices))
        low = (">=", c.ge) if c.ge is not None else (">", c.gt) if c.gt is not None else None
        high = ("<=", c.le) if c.le is not None else ("<", c.lt) if c.lt is not None else None
        if low and high:
            return f"in {'[' if low[0] == '>=' else '('}{low[1]}, {high[1]}{']' if high[0] == '<=' else ')'}"
        if low or high:
            op, v = low if low is not None else high  # type: ignore[misc]
            return f"{op} {v}"
        return "any"

    def _fail(self, value, exc=ValueError):
        kind = {int: "an integer", float: "a finite number" if self.constraint.finite else "a number",
                bool: "a bool", str: "a string"}[self.type]
        rng = self.range_text()
        wanted = kind if rng == "any" else (f"{kind} {rng}" if not rng.startswith("one of") else rng)
        if self.optional:
            wanted += " or None"
        raise exc(f"{self.name} must be {wanted}, got {value!r}")

    def coerce(self, value: Any) -> Any:
        """``value`` checked against the type and range (converted: ``int`` -> ``float`` fields, numpy scalars)."""
        if value is None:
            if self.optional:
                return None
            self._fail(value, TypeError)
        t = self.type
        if t is bool:
            if not isinstance(value, bool) and type(value).__name__ != "bool_":
                self._fail(value, TypeError)
            value = bool(value)
        elif t is int:
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                self._fail(value, TypeError)
            if isinstance(value, numbers.Integral):
                value = int(value)
            elif isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
                value = int(float(value))
            else:
                self._fail(value, TypeError)
        elif t is float:
            if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
                self._fail(value, TypeError)
            value = float(value)
            if self.constraint.finite and not math.isfinite(value):
                self._fail(value)
        elif t is str:
            if not isinstance(value, str):
                self._fail(value, TypeError)
        c = self.constraint
        if c.choices is not None and value not in c.choices:
            self._fail(value)
        if t in (int, float):
            if (c.ge is not None and not value >= c.ge or c.gt is not None and not value > c.gt
                    or c.le is not None and not value <= c.le or c.lt is not None and not value < c.lt):
                self._fail(value)
        return value

    def parse(self, text: str) -> Any:
        """The value written as ``text`` on the command line (``none`` for an optional parameter)."""
        text = text.strip()
        if self.optional and text.lower() in ("none", "null"):
            return None
        try:
            if self.type is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError
            if self.type is int:
                return int(text)
            if self.type is float:
                return float(text)
        except ValueError:
            raise ValueError(f"{self.name}: expected a value of type {self.type.__name__}, got {text!r}") from None
        return text


def _resolve(cls, name: str, hint) -> tuple[type, bool]:
    if hint in _TYPES:
        return hint, False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2 and args[0] in _TYPES:
            return args[0], True
    raise TypeError(f"{cls.__name__}.{name}: parameter type must be int, float, bool or str (optionally | None), got {hint!r}")


def parameter_specs(cls) -> dict[str, ParamSpec]:
    """The declared parameters of a :class:`Parameters` dataclass, by name, in declaration order."""
    cached = cls.__dict__.get("_specs_cache")
    if cached is not None:
        return cached
    if not (isinstance(cls, type) and issubclass(cls, Parameters) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"parameters must be a dataclass deriving from phase_transition.params.Parameters, got {cls!r}")
    if not cls.__dataclass_params__.frozen:
        raise TypeError(f"{cls.__name__} must be declared with @dataclass(frozen=True, kw_only=True)")
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        if f.name in _RESERVED:
            raise TypeError(f"{cls.__name__}.{f.name}: this name is reserved (it would shadow a method)")
        meta = f.metadata.get(_META)
        if meta is None:
            raise TypeError(f"{cls.__name__}.{f.name}: declare every field with phase_transition.params.param(...)")
        typ, optional = _resolve(cls, f.name, hints[f.name])
        specs[f.name] = ParamSpec(f.name, typ, optional, f.default, meta)
    for spec in specs.values():  # defaults must satisfy their own constraints
        if spec.has_default:
            spec.coerce(spec.default)
    cls._specs_cache = specs
    return specs


def parse_value(cls, name: str, text: str) -> Any:
    """Parse command-line ``text`` for parameter ``name`` of ``cls`` (``ValueError`` naming it)."""
    return parameter_specs(cls)[name].parse(text)


class Parameters(Mapping):
    """Base of every experiment's parameter dataclass (see the module doc).

    Instances are immutable, validated on construction (each field, then
    :meth:`validate`), and read like a mapping as well as by attribute.
    """

    def __post_init__(self):
        for name, spec in parameter_specs(type(self)).items():
            object.__setattr__(self, name, spec.coerce(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Rules across fields; override it (raise ``ValueError`` naming the parameters)."""

    @classmethod
    def specs(cls) -> dict[str, ParamSpec]:
        """The declared parameters, by name (see :func:`parameter_specs`)."""
        return parameter_specs(cls)

    def to_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every field."""
        return {name: getattr(self, name) for name in parameter_specs(type(self))}

    def replace(self, **changes) -> Parameters:
        """A validated copy with some fields changed (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    # read-only mapping access, so that run functions written for dicts keep working
    def __getitem__(self, key: str) -> Any:
        if key not in parameter_specs(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(parameter_specs(type(self)))

    def __len__(self) -> int:
        return len(parameter_specs(type(self)))
