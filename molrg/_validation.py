"""Validation and random-state helpers shared by ``molrg`` and ``locality`` (never imports torch).

Public functions of both packages validate their inputs here, at the boundary,
and pass clean arrays to private kernels (STYLE habit 2, scikit-learn's
``utils/validation.py``).  Every validator raises :class:`ValueError` (bad
value, shape or range) or :class:`TypeError` (wrong kind: strings, complex,
object arrays) whose message names the argument, shows what it got and says
what is allowed.

Torch tensors are recognized by the module of their type
(:func:`is_torch`), so this module, and every numpy module that imports it,
loads without torch; :func:`torch_generator` imports torch only when it is
called.

Randomness: every stochastic public function takes ``random_state`` (None, an
int, a :class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator`),
normalized once by :func:`check_random_state`; batched functions accept a
sequence of per-problem seeds (:func:`problem_generators`).
"""

from __future__ import annotations

import numbers
import sys
import warnings
from typing import Any

import numpy as np

__all__ = [
    "check_random_state",
    "problem_generators",
    "torch_generator",
    "check_int",
    "check_real",
    "check_choice",
    "check_array",
    "check_matrix",
    "check_batch",
    "check_levels",
    "check_dims",
    "check_int_sequence",
    "is_torch",
    "array_namespace",
    "append_dims",
    "deprecated_alias",
    "concrete_all",
    "max_abs",
]


# --------------------------------------------------------------------------- numpy / torch
def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (or another torch object), without importing torch."""
    return type(x).__module__.split(".", 1)[0] == "torch"


def array_namespace(*xs):
    """``torch`` if any argument is a torch tensor, else ``numpy`` (torch is then already loaded)."""
    if any(is_torch(x) for x in xs):
        return sys.modules["torch"]
    return np


def append_dims(x, target_ndim: int):
    """Append trailing singleton axes to ``x`` until it has ``target_ndim`` axes (k-diffusion ``utils``)."""
    extra = target_ndim - x.ndim
    if extra < 0:
        raise ValueError(f"input has {x.ndim} dims but target_ndim is {target_ndim}, which is less")
    return x[(...,) + (None,) * extra]


def concrete_all(mask) -> bool:
    """``bool(mask.all())`` for a numpy or torch boolean array; True when it cannot be known.

    Inside a torch.func transform (``vmap``, ``jacrev``) tensor values are not
    concrete and cannot steer Python control flow; the checks are then skipped
    (the transform's caller passed values that were checked at its boundary).
    """
    if not is_torch(mask):
        return bool(np.all(mask))
    try:
        return bool(mask.all())
    except RuntimeError:
        return True


def max_abs(a) -> float:
    """``max |a|`` of a numpy array or torch tensor in one pass (no temporary array).

    NaN when ``a`` holds a NaN, inf when it holds an inf, 0.0 when empty.  Inside
    a torch.func transform (values not concrete) returns 0.0.  ``np.isfinite(max_abs(a))``
    is the cheap form of ``np.isfinite(a).all()``.
    """
    if is_torch(a):
        if a.numel() == 0:
            return 0.0
        try:
            lo, hi = sys.modules["torch"].aminmax(a.detach())
            return float(max(-lo, hi))
        except RuntimeError:
            return 0.0
    a = np.asarray(a)
    if a.size == 0:
        return 0.0
    return float(max(-np.min(a), np.max(a)))


# --------------------------------------------------------------------------- randomness
def _is_int(v: Any) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_random_state(random_state: Any = None) -> np.random.Generator:
    """Normalize ``random_state`` to a :class:`numpy.random.Generator`.

    ``None`` gives a fresh unseeded generator, an int (or a
    :class:`numpy.random.SeedSequence`) a seeded one, and a ``Generator`` is
    returned as is (so the caller's stream advances).
    """
    if random_state is None or _is_int(random_state) or isinstance(random_state, np.random.SeedSequence):
        if _is_int(random_state) and int(random_state) < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy.random.SeedSequence or a "
        f"numpy.random.Generator, got {type(random_state).__name__}"
    )


def problem_generators(random_state: Any, n_problems: int) -> list[np.random.Generator]:
    """One independent :class:`numpy.random.Generator` per problem.

    - a sequence of length ``n_problems`` (ints, SeedSequences or Generators):
      problem ``b`` uses its own entry, so its result does not depend on the
      batch it runs in (the form sweeps should use);
    - ``None``, an int or a SeedSequence: ``SeedSequence(random_state).spawn(B)``,
      i.e. tied to the position ``b`` in this batch;
    - a Generator: B child seeds drawn from it (tied to positions).
    """
    if isinstance(random_state, (list, tuple, np.ndarray)):
        if len(random_state) != n_problems:
            raise ValueError(
                f"random_state as a sequence must have one entry per problem ({n_problems}), got {len(random_state)}"
            )
        out = []
        for k, r in enumerate(random_state):
            if isinstance(r, np.random.Generator):
                out.append(r)
            elif _is_int(r) or isinstance(r, np.random.SeedSequence):
                if _is_int(r) and int(r) < 0:
                    raise ValueError(f"random_state[{k}] must be a non-negative int, got {r}")
                out.append(np.random.default_rng(r))
            else:
                raise TypeError(f"random_state[{k}] must be an int, SeedSequence or Generator, got {type(r).__name__}")
        return out
    if isinstance(random_state, np.random.Generator):
        seeds = random_state.integers(0, 2**63 - 1, size=n_problems)
        return [np.random.default_rng(int(s)) for s in seeds]
    if random_state is None or _is_int(random_state) or isinstance(random_state, np.random.SeedSequence):
        if _is_int(random_state) and int(random_state) < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}")
        ss = random_state if isinstance(random_state, np.random.SeedSequence) else np.random.SeedSequence(random_state)
        return [np.random.default_rng(c) for c in ss.spawn(n_problems)]
    raise TypeError(
        f"random_state must be None, an int, a Generator or a sequence of them, got {type(random_state).__name__}"
    )


def torch_generator(random_state: Any = None, device: Any = "cpu"):
    """A :class:`torch.Generator` on ``device`` seeded from ``random_state``.

    A ``torch.Generator`` is passed through; anything else goes through
    :func:`check_random_state` and one 63-bit seed is drawn from it.  Imports
    torch (the only helper here that does).
    """
    import torch

    if isinstance(random_state, torch.Generator):
        return random_state
    rng = check_random_state(random_state)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return gen


# --------------------------------------------------------------------------- scalars and options
def _fmt(v, missing: str = "inf") -> str:
    return missing if v is None else str(v)


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, checking ``low <= value <= high`` (integral floats are accepted)."""
    if not _is_int(value):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{_fmt(low, '-inf')}, {_fmt(high)}], got {value}")
    return value


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given (open or closed) interval."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad = not np.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(
            f"{name} must be finite and in {left}{_fmt(low, '-inf')}, {_fmt(high)}{right}, got {value}"
        )
    return value


def check_choice(name: str, value: Any, choices) -> str:
    """Check that ``value`` is one of ``choices`` (strings)."""
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a dict or set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_int_sequence(name: str, value: Any, *, low: int | None = 1, high: int | None = None) -> tuple[int, ...]:
    """An int or a non-empty sequence of ints, each in ``[low, high]``, returned as a tuple.

    The one rule for options such as ``dims`` (subspace dimensions) or ``q``
    (neighbour counts of the spectral start).
    """
    if _is_int(value):
        value = (value,)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a positive int or a sequence of them, got {value!r}")
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive int or a sequence of them, got {value!r}") from None
    if not value:
        raise ValueError(f"{name} must not be empty")
    return tuple(check_int(f"{name}[{k}]", v, low=low, high=high) for k, v in enumerate(value))


def check_dims(name: str, dims: Any, n: int | None = None) -> tuple[int, ...]:
    """Validate subspace dimensions: a positive int or a non-empty sequence of them, each <= n."""
    return check_int_sequence(name, dims, low=1, high=n)


# --------------------------------------------------------------------------- arrays
def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_ndim: int = 0,
    last: int | None = None,
    finite: bool = True,
    dtype: Any = None,
    expected: str | None = None,
):
    """Check an array or tensor of real numbers; return it as an array of the same kind.

    Parameters
    ----------
    name : str
        The argument's name, used in the messages.
    x : array_like or torch.Tensor
        numpy input (lists, scalars) becomes a numpy array; a torch tensor stays
        a tensor (same device, dtype and autograd graph).
    ndim : int or tuple of int, optional
        Allowed numbers of axes.
    min_ndim : int, default 0
        Least number of axes.
    last : int, optional
        Required length of the last axis (the ambient dimension ``n``).
    finite : bool, default True
        Reject NaN and inf.
    dtype : numpy dtype, optional
        Cast numpy input to it; by default floating input keeps its dtype and
        integer/boolean input becomes float64 (torch input is never cast).
    expected : str, optional
        The expected shape as text, e.g. ``"(..., 10)"``, for the messages.

    Raises
    ------
    TypeError
        Strings, complex numbers, objects (anything that is not real numbers).
    ValueError
        Wrong number of axes, wrong last axis, NaN or inf.
    """
    torch_in = is_torch(x)
    if torch_in:
        if x.is_complex():
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {x.dtype}")
        shape = tuple(x.shape)
    else:
        if isinstance(x, (str, bytes)):
            raise TypeError(f"{name} must be an array of real numbers, got the string {x!r}")
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested sequences
            raise ValueError(f"{name} must be a rectangular array of real numbers ({exc})") from None
        if arr.dtype.kind not in "fiub":
            what = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects"}.get(arr.dtype.kind, str(arr.dtype))
            raise TypeError(f"{name} must hold real numbers, got {what} (dtype {arr.dtype})")
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        x = arr
        shape = arr.shape
    want = expected or (None if last is None else f"(..., {last})")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            axes = " or ".join(str(a) for a in allowed)
            extra = f" {want}" if want else ""
            raise ValueError(f"{name} must have {axes} axes{extra}, got shape {_shape_text(shape)}")
    if len(shape) < min_ndim or (last is not None and (len(shape) < 1 or shape[-1] != last)):
        raise ValueError(f"{name} must have shape {want or f'with at least {min_ndim} axes'}, got shape {_shape_text(shape)}")
    if finite:
        if torch_in and x.dtype == sys.modules["torch"].bool:
            ok = True
        else:
            ok = bool(np.isfinite(max_abs(x)))
        if not ok:
            raise ValueError(f"{name} contains NaN or inf")
    return x


def check_matrix(name: str, X: Any, *, ndim: int = 2, width: int | None = None, dtype=None) -> np.ndarray:
    """Convert ``X`` to a finite floating numpy array with ``ndim`` axes (and last axis ``width``)."""
    if is_torch(X):
        X = X.detach().cpu().numpy()
    X = check_array(name, X, dtype=dtype, finite=False)
    if X.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {X.shape}")
    if width is not None and X.shape[-1] != width:
        raise ValueError(f"{name} must have {width} columns (the ambient dimension), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or inf")
    return X


def check_batch(X: Any, mask: Any = None, *, name: str = "X", dtype=None) -> tuple[np.ndarray, np.ndarray, bool]:
    """One rule for a data matrix or a padded batch of them with a mask of valid rows.

    Parameters
    ----------
    X : array ``(N, n)`` or ``(B, N, n)``
        Samples in rows; a leading axis holds independent problems.
    mask : array ``(N,)`` or ``(B, N)`` of bool (or 0/1), optional
        Valid rows; padded rows (``False``) may hold anything, even NaN.
    name : str, default "X"
    dtype : optional
        Cast to it (default: floating input keeps its dtype, integers become float64).

    Returns
    -------
    X : ndarray ``(B, N, n)``
    mask : bool ndarray ``(B, N)`` (all true when not given)
    batched : bool
        Whether the input had the leading problem axis.

    Raises
    ------
    TypeError
        ``X`` not real numbers; ``mask`` not boolean or 0/1.
    ValueError
        Wrong axes, ``N < 1`` or ``n < 1``, a mask of the wrong shape or without
        any valid row in some problem, NaN or inf in a valid row.
    """
    if is_torch(X):
        X = X.detach().cpu().numpy()
    X = check_array(name, X, ndim=(2, 3), dtype=dtype, finite=False, expected="(N, n) or (B, N, n)")
    batched = X.ndim == 3
    if not batched:
        X = X[None]
    if X.shape[1] < 1 or X.shape[2] < 1:
        raise ValueError(f"{name} must have N >= 1 rows and n >= 1 columns, got shape {X.shape[1:] if not batched else X.shape}")
    rows = X.shape[:2]
    if mask is None:
        m = np.ones(rows, dtype=bool)
    else:
        m = np.asarray(mask.detach().cpu() if is_torch(mask) else mask)
        if m.dtype != bool:
            if m.dtype.kind not in "iuf" or not np.all(np.isin(m, (0, 1))):
                raise TypeError(f"mask must be boolean (or 0/1), got dtype {m.dtype}")
            m = m.astype(bool)
        if not batched and m.ndim == 1:
            m = m[None]
        if m.shape != rows:
            want = rows if batched else rows[1:]
            raise ValueError(f"mask must have shape {want} (the rows of {name}), got shape {np.shape(mask)}")
        if not m.any(-1).all():
            raise ValueError("mask must keep at least one row (N >= 1) in every problem")
    if not np.all(np.isfinite(X[m])):
        raise ValueError(f"{name} contains NaN or inf")
    return X, m, batched


def check_levels(name: str, v: Any, batch_shape: tuple[int, ...], *, positive: bool = True, like: Any = None):
    """A noise level or scale: a scalar or an array over the leading axes ``batch_shape`` of ``x_t``.

    The array's axes are matched from the left with ``batch_shape`` (then
    trailing axes are appended, as k-diffusion's ``append_dims``); each axis must
    equal the corresponding one of ``batch_shape`` or be 1.  Returned as float64
    (numpy, or a torch tensor on ``like``'s device when ``v`` or ``like`` is torch).
    """
    torch_in = is_torch(v) or is_torch(like)
    if is_torch(v):
        v = check_array(name, v, finite=True)
        v = v.to(sys.modules["torch"].float64)
    else:
        v = check_array(name, v, dtype=np.float64, finite=True)
        if torch_in:
            v = sys.modules["torch"].as_tensor(v, device=like.device)
    shape = tuple(v.shape)
    if len(shape) > len(batch_shape) or any(a != b and a != 1 for a, b in zip(shape, batch_shape)):
        lead = _shape_text(batch_shape)
        raise ValueError(
            f"{name} must be a scalar or an array over the leading axes of x_t, shape {lead} "
            f"(or its first axes, 1s broadcasting), got shape {_shape_text(shape)}"
        )
    if positive and not concrete_all(v > 0):
        bad = float(v.min())
        raise ValueError(f"{name} must be positive (in (0, inf)), got {bad}")
    return v


# --------------------------------------------------------------------------- deprecation
def deprecated_alias(old: str, new: str, value: Any, current: Any, default: Any, *, stacklevel: int = 3):
    """Resolve a renamed keyword: warn with :class:`FutureWarning` when ``old`` was given.

    ``value`` is what the caller passed as ``old`` (``None`` when absent), ``current``
    what it passed as ``new``; giving both (``current`` not ``default``) is a ``TypeError``.
    """
    if value is None:
        return current
    if current is not default and current != default:
        raise TypeError(f"give {new} only: {old} is its deprecated name")
    warnings.warn(f"{old} is deprecated; use {new}", FutureWarning, stacklevel=stacklevel)
    return value
