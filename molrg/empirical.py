r"""The empirical optimal denoiser: the memorizing reference (SPEC A9).

For a training set ``x_1, ..., x_N`` the minimizer of the denoising loss over
*all* functions (SPEC A5 with an unrestricted model) is the posterior mean of the
training set's empirical distribution ``(1/N) sum_i delta_{x_i}``:

.. math::

    E[x_0 | x_t] = \sum_i w_i(x_t)\, x_i, \qquad
    w_i = \operatorname{softmax}_i\Big(-\frac{\|x_t - s x_i\|^2}{2 s^2\sigma^2}\Big)
        = \operatorname{softmax}_i\Big(\frac{x_t^\top x_i}{s\sigma^2} - \frac{\|x_i\|^2}{2\sigma^2}\Big).

(The term ``||x_t||^2`` is the same for every ``i`` and cancels.)  Sampling with it
reproduces training points: the model of perfect memorization (Gu et al. 2023,
Yoon et al. 2023; the paper's section on memorization and generalization).

The logits and the log-sum-exp run in float64 and the result is cast back to the
input dtype; queries are processed in chunks so that at most ``chunk_elements``
query-by-training-point logits are held at once.  numpy arrays and torch tensors
(with autograd, hence Jacobians) are both accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import append_dims, array_namespace, check_array, check_int, check_levels, check_matrix

__all__ = ["empirical_posterior_mean", "EmpiricalDenoiser"]

_DEFAULT_CHUNK = 2**22


def _kernel(xp, x, train, sqn, s, sg, out_dtype):
    """Posterior mean for a flat chunk ``x (M, n)`` with per-row ``s, sg (M,)``; float64 inside.

    Private: inputs are validated and already float64 on one backend.
    """
    var = sg * sg
    logits = (x @ train.T) / (s * var)[:, None] - sqn[None, :] / (2.0 * var)[:, None]
    m = logits.max(-1)[0] if xp is not np else logits.max(-1)
    e = xp.exp(logits - m[:, None])
    w = e / e.sum(-1)[:, None]
    out = w @ train
    return out.astype(out_dtype, copy=False) if xp is np else out.to(out_dtype)


def empirical_posterior_mean(X_train, x_t, scale, sigma, *, chunk_elements: int = _DEFAULT_CHUNK):
    r"""Posterior mean of the empirical distribution of ``X_train`` given ``x_t`` (SPEC A9).

    Parameters
    ----------
    X_train : array ``(N, n)``
        Training samples, one per row.
    x_t : array or tensor ``(..., n)``
        Noisy points ``x_t = s (x_0 + sigma eps)``.
    scale, sigma : float or array
        ``s_t > 0`` and ``sigma_t > 0``; arrays broadcast over the leading axes of ``x_t``.
    chunk_elements : int, default 2**22
        At most this many query-by-training-point logits are held in memory at once.

    Returns
    -------
    Same type, shape and floating dtype as ``x_t``: ``sum_i w_i(x_t) x_i``.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> empirical_posterior_mean(X, np.array([0.9, 0.1]), 1.0, 0.05).round(6)
    array([1., 0.])
    """
    chunk_elements = check_int("chunk_elements", chunk_elements, low=1)
    X_train = check_matrix("X_train", X_train)
    n = X_train.shape[1]
    x_t = check_array("x_t", x_t, min_ndim=1, last=n, expected=f"(..., {n}) to match X_train")
    xp = array_namespace(x_t)
    batch_shape = tuple(x_t.shape[:-1])
    s = check_levels("scale", scale, batch_shape, like=x_t)
    sg = check_levels("sigma", sigma, batch_shape, like=x_t)
    s = append_dims(s, len(batch_shape))
    sg = append_dims(sg, len(batch_shape))
    if xp is np:
        out_dtype = x_t.dtype
        train = X_train.astype(np.float64, copy=False)
        x64 = x_t.astype(np.float64, copy=False)
        s = np.broadcast_to(s, batch_shape).reshape(-1)
        sg = np.broadcast_to(sg, batch_shape).reshape(-1)
    else:
        out_dtype = x_t.dtype if x_t.dtype.is_floating_point else xp.float32
        train = xp.as_tensor(X_train, dtype=xp.float64, device=x_t.device)
        x64 = x_t.to(xp.float64)
        s = s.expand(batch_shape).reshape(-1)
        sg = sg.expand(batch_shape).reshape(-1)
    flat = x64.reshape(-1, n)
    sqn = (train * train).sum(-1)
    M = flat.shape[0]
    step = max(1, chunk_elements // max(1, train.shape[0]))
    parts = [
        _kernel(xp, flat[i : i + step], train, sqn, s[i : i + step], sg[i : i + step], out_dtype)
        for i in range(0, M, step)
    ]
    if not parts:
        out = flat.astype(out_dtype) if xp is np else flat.to(out_dtype)
    else:
        out = xp.concatenate(parts, 0) if xp is np else xp.cat(parts, 0)
    return out.reshape(batch_shape + (n,))


class EmpiricalDenoiser:
    """The empirical optimal denoiser of a training set as a callable ``denoise(x, scale, sigma)``.

    Parameters
    ----------
    X_train : array ``(N, n)``
        The training set whose empirical distribution is denoised towards.
    chunk_elements : int, default 2**22
        Memory bound, see :func:`empirical_posterior_mean`.

    Examples
    --------
    >>> D = EmpiricalDenoiser(np.eye(3))
    >>> D(np.array([[2.0, 0.1, 0.0]]), 1.0, 0.01).round(6)
    array([[1., 0., 0.]])
    """

    def __init__(self, X_train: Any, *, chunk_elements: int = _DEFAULT_CHUNK):
        self.X_train = check_matrix("X_train", X_train).astype(np.float64)
        self.chunk_elements = check_int("chunk_elements", chunk_elements, low=1)

    @property
    def n(self) -> int:
        return self.X_train.shape[1]

    def __call__(self, x, scale, sigma, **extra_args):
        if extra_args:
            raise TypeError(f"the empirical denoiser takes no extra arguments, got {sorted(extra_args)}")
        return empirical_posterior_mean(self.X_train, x, scale, sigma, chunk_elements=self.chunk_elements)

    def __repr__(self) -> str:
        return f"EmpiricalDenoiser(N={self.X_train.shape[0]}, n={self.n})"
