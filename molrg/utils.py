"""Shared helpers: randomness, validation at the public boundary, array backends.

Every stochastic public function of the toolkit takes ``random_state`` (None, an
int or a :class:`numpy.random.Generator`) and normalizes it once with
:func:`check_random_state`; torch code derives a :class:`torch.Generator` from it
with :func:`torch_generator`.  Validators raise :class:`ValueError` (or
:class:`TypeError`) whose message names the argument, shows the value and the
allowed range.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_random_state",
    "problem_generators",
    "torch_generator",
    "check_int",
    "check_real",
    "check_choice",
    "check_matrix",
    "check_dims",
    "random_orthonormal",
    "orthonormalize",
    "is_torch",
    "array_namespace",
    "append_dims",
]


# --------------------------------------------------------------------------- randomness
def check_random_state(random_state: Any = None) -> np.random.Generator:
    """Normalize ``random_state`` to a :class:`numpy.random.Generator`.

    ``None`` gives a fresh unseeded generator, an int (or a
    :class:`numpy.random.SeedSequence`) a seeded one, and a ``Generator`` is
    returned as is (so the caller's stream advances).
    """
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and int(random_state) < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy.random.SeedSequence or a "
        f"numpy.random.Generator, got {type(random_state).__name__}"
    )


def torch_generator(random_state: Any = None, device: Any = "cpu"):
    """A :class:`torch.Generator` on ``device`` seeded from ``random_state``.

    A ``torch.Generator`` is passed through; anything else goes through
    :func:`check_random_state` and one 63-bit seed is drawn from it.
    """
    import torch

    if isinstance(random_state, torch.Generator):
        return random_state
    rng = check_random_state(random_state)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return gen


# --------------------------------------------------------------------------- validation
def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int, checking ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
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
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
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
        raise ValueError(f"{name} must be finite and in {left}{_fmt(low, '-inf')}, {_fmt(high)}{right}, got {value}")
    return value


def check_choice(name: str, value: Any, choices) -> str:
    """Check that ``value`` is one of ``choices`` (strings)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_matrix(name: str, X: Any, *, ndim: int = 2, width: int | None = None, dtype=None) -> np.ndarray:
    """Convert ``X`` to a finite floating numpy array with ``ndim`` axes (and last axis ``width``)."""
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    if X.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {X.shape}")
    if width is not None and X.shape[-1] != width:
        raise ValueError(f"{name} must have {width} columns (the ambient dimension), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or inf")
    return X


def check_dims(name: str, dims: Any, n: int | None = None) -> tuple[int, ...]:
    """Validate subspace dimensions: a positive int or a non-empty sequence of them, each <= n."""
    if isinstance(dims, (numbers.Integral, np.integer)) and not isinstance(dims, bool):
        dims = (dims,)
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"{name} must be a positive int or a sequence of them, got {dims!r}") from None
    if not dims:
        raise ValueError(f"{name} must not be empty")
    out = tuple(check_int(f"{name}[{k}]", d, low=1, high=n) for k, d in enumerate(dims))
    return out


def _fmt(v, missing: str = "inf") -> str:
    return missing if v is None else str(v)


# --------------------------------------------------------------------------- orthonormal bases
def random_orthonormal(n: int, d: int, *, size: tuple[int, ...] = (), random_state: Any = None) -> np.ndarray:
    """Haar-random orthonormal ``n x d`` bases, shape ``size + (n, d)``.

    QR of a Gaussian matrix with the signs of ``diag(R)`` folded into ``Q``
    (Mezzadri 2007), which makes ``Q`` Haar-distributed on the Stiefel manifold.
    """
    n = check_int("n", n, low=1)
    d = check_int("d", d, low=1, high=n)
    rng = check_random_state(random_state)
    G = rng.standard_normal(tuple(size) + (n, d))
    Q, R = np.linalg.qr(G)
    signs = np.sign(np.diagonal(R, axis1=-2, axis2=-1))
    signs[signs == 0] = 1.0
    return Q * signs[..., None, :]


def orthonormalize(A):
    """Polar factor ``U = W V^T`` of ``A = W S V^T`` (the closest orthonormal matrix).

    Works on numpy arrays and torch tensors with any leading batch axes, shape
    ``(..., n, d)`` with ``d <= n``.  Used as the retraction after a gradient
    step (SPEC A7) and for perturbed starts.
    """
    if is_torch(A):
        import torch

        W, _, Vh = torch.linalg.svd(A, full_matrices=False)
        return W @ Vh
    W, _, Vh = np.linalg.svd(np.asarray(A), full_matrices=False)
    return W @ Vh


# --------------------------------------------------------------------------- numpy / torch
def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch if it is not loaded)."""
    mod = type(x).__module__
    return mod.startswith("torch")


def array_namespace(*xs):
    """``torch`` if any argument is a torch tensor, else ``numpy``."""
    if any(is_torch(x) for x in xs):
        import torch

        return torch
    return np


def append_dims(x, target_ndim: int):
    """Append trailing singleton axes to ``x`` until it has ``target_ndim`` axes (k-diffusion)."""
    extra = target_ndim - x.ndim
    if extra < 0:
        raise ValueError(f"input has {x.ndim} dims but target_ndim is {target_ndim}, which is less")
    return x[(...,) + (None,) * extra]


def problem_generators(random_state: Any, n_problems: int) -> list[np.random.Generator]:
    """One independent :class:`numpy.random.Generator` per problem.

    - a sequence of length ``n_problems`` (ints, SeedSequences or Generators):
      problem ``b`` uses its own entry, so its result does not depend on the
      batch it is trained in (the form sweeps should use);
    - ``None``, an int or a SeedSequence: ``SeedSequence(random_state).spawn(B)``,
      i.e. tied to the position ``b`` in this batch;
    - a Generator: B child seeds drawn from it (tied to positions).
    """
    if isinstance(random_state, (list, tuple, np.ndarray)):
        if len(random_state) != n_problems:
            raise ValueError(f"random_state as a sequence must have one entry per problem ({n_problems}), got {len(random_state)}")
        out = []
        for k, r in enumerate(random_state):
            if isinstance(r, np.random.Generator):
                out.append(r)
            elif isinstance(r, (numbers.Integral, np.integer, np.random.SeedSequence)) and not isinstance(r, bool):
                if isinstance(r, (numbers.Integral, np.integer)) and int(r) < 0:
                    raise ValueError(f"random_state[{k}] must be a non-negative int, got {r}")
                out.append(np.random.default_rng(r))
            else:
                raise TypeError(f"random_state[{k}] must be an int, SeedSequence or Generator, got {type(r).__name__}")
        return out
    if isinstance(random_state, np.random.Generator):
        seeds = random_state.integers(0, 2**63 - 1, size=n_problems)
        return [np.random.default_rng(int(s)) for s in seeds]
    if random_state is None or isinstance(random_state, (numbers.Integral, np.integer, np.random.SeedSequence)):
        if isinstance(random_state, (numbers.Integral, np.integer)) and int(random_state) < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}")
        ss = random_state if isinstance(random_state, np.random.SeedSequence) else np.random.SeedSequence(random_state)
        return [np.random.default_rng(c) for c in ss.spawn(n_problems)]
    raise TypeError(f"random_state must be None, an int, a Generator or a sequence of them, got {type(random_state).__name__}")
