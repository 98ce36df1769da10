r"""Closed-form posterior of a MoLRG along the forward process (SPEC A3; paper Lemma 1, Prop. 1).

Given component ``k`` the data covariance is ``lam_par P_k + lam_perp (I - P_k)``
with ``lam_par = 1 + delta^2``, ``lam_perp = delta^2`` (``delta = 0``: the paper's
noiseless model).  With ``x_t = s x_0 + s sigma eps``:

.. math::

    E[x_0 | x_t, k] = \frac{1}{s}\Big(\frac{\lambda_\parallel}{\lambda_\parallel+\sigma^2} P_k
                      + \frac{\lambda_\perp}{\lambda_\perp+\sigma^2}(I-P_k)\Big) x_t

which for ``delta = 0`` is ``c_t / s * U_k U_k^T x_t`` with ``c_t = 1/(1+sigma^2)``.
The posterior weights are ``softmax_k`` of

.. math::

    \ell_k = \log\pi_k + \frac{\|U_k^T x_t\|^2}{2 s^2}\Big(\frac{1}{\lambda_\perp+\sigma^2}
             - \frac{1}{\lambda_\parallel+\sigma^2}\Big)
             - \frac{d_k}{2}\log\frac{\lambda_\parallel+\sigma^2}{\lambda_\perp+\sigma^2},

i.e. ``log pi_k + ||U_k^T x_t||^2 / (2 s^2 sigma^2 (1 + sigma^2)) - d_k/2 log((1+sigma^2)/sigma^2)``
for ``delta = 0`` (SPEC A3).  The score is Tweedie's formula
``(s E[x_0|x_t] - x_t) / (s^2 sigma^2)``, evaluated in the cancellation-free form
``-(1/s^2) sum_k w_k [P_k x/(lam_par+sigma^2) + (I-P_k) x/(lam_perp+sigma^2)]``.

One implementation serves numpy arrays and torch tensors (with autograd), with
any leading batch axes on the points and on the bases.  Logits and the
log-sum-exp run in float64 and are cast back to the input dtype; the logit
formula itself lives in one place, :func:`posterior_logits_from_norms`.

Validation and extreme scales.  The public functions reject NaN/inf, strings,
complex and object input, a wrong last axis of ``x_t`` and ``scale``/``sigma``
arrays that do not match the leading axes of ``x_t`` (``ValueError`` /
``TypeError`` naming the argument and the expected shape).  Given the weights,
the mean and the score are linear in ``x_t``, so a row whose largest entry is
beyond ``2^200`` (``2^24`` for torch float32) or below ``2^-200`` is divided by
an exact power of two ``2^e``, and so is the scale: the logits depend on
``x_t / s_t`` only, and ``(x 2^-e) / (s 2^-e) = x / s``; the mean and score factors
become ``2^e / s`` and ``2^e / s^2``.  Where a logit still overflows, the
softmax is taken over the logits minus the winning component's quadratic term
(the same softmax, now finite).  A finite entry of ``1e200`` (with any scale)
thus gives the exact finite posterior mean; other rows are computed exactly as
given (the same bits as without the rescaling).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import (
    append_dims,
    array_namespace,
    check_array,
    check_dims,
    check_levels,
    check_real,
    concrete_all,
    is_torch,
    max_abs,
)

__all__ = [
    "posterior_logits",
    "posterior_logits_from_norms",
    "posterior_weights",
    "posterior_mean",
    "score",
    "posterior_mean_from_bases",
    "score_from_bases",
    "posterior_weights_from_bases",
]

# Rows whose largest entry lies outside [2^-limit, 2^limit] are rescaled by an exact power of 2 before
# the projections (float64 squares overflow near 2^512, torch float32 ones near 2^64); other rows are
# computed exactly as given, so ordinary inputs give the same bits as without the rescaling.
_EXP_LIMIT_FLOAT64 = 200
_EXP_LIMIT_FLOAT32 = 24


# --------------------------------------------------------------------------- validation
def _unpack_model(model):
    """(bases, log_weights, noise_var) from a MoLRG-like object."""
    try:
        bases, weights = model.bases, model.weights
    except AttributeError:
        raise TypeError(f"model must be a MoLRG (with bases and weights), got {type(model).__name__}") from None
    noise_var = float(getattr(model, "noise_std", 0.0)) ** 2
    return bases, np.log(np.asarray(weights, dtype=np.float64)), noise_var


def _check_bases_arg(bases) -> list:
    """A sequence of ``(..., n, d_k)`` arrays or tensors (one array is one basis); real and finite."""
    if is_torch(bases) or (isinstance(bases, np.ndarray) and bases.ndim >= 2):
        bases = (bases,)
    if isinstance(bases, (str, bytes)) or not hasattr(bases, "__iter__"):
        raise TypeError(f"bases must be a sequence of (..., n, d_k) arrays, got {type(bases).__name__}")
    # finiteness is checked once on the concatenated bases (see _prepare)
    out = [check_array(f"bases[{k}]", U, min_ndim=2, finite=False, expected="(..., n, d_k)") for k, U in enumerate(bases)]
    if not out:
        raise ValueError("bases must contain at least one basis")
    n = out[0].shape[-2]
    for k, U in enumerate(out):
        if U.shape[-2] != n:
            raise ValueError(f"bases[{k}] has ambient dimension {U.shape[-2]}, expected n = {n} (that of bases[0])")
    return out


def _prepare(bases, log_weights, x, scale, sigma, noise_var):
    """Validate, concatenate the bases, move everything to one backend/dtype, broadcast scale and sigma.

    Returns (xp, U_cat (..., n, D), dims, logw (K,), x, s, sg, out_dtype) with s, sg shaped
    like ``x.shape[:-1]`` (broadcastable).  numpy inputs are computed in float64.
    """
    bases = _check_bases_arg(bases)
    n = int(bases[0].shape[-2])
    # NaN/inf in x_t is detected by _row_exponents (one pass over x_t serves both)
    x = check_array("x_t", x, min_ndim=1, last=n, finite=False, expected=f"(..., {n}) (n = {n}, the ambient dimension of the bases)")
    xp = array_namespace(x, *bases)
    dims = tuple(int(U.shape[-1]) for U in bases)
    batch_shape = tuple(x.shape[:-1])
    if xp is np:
        out_dtype = x.dtype
        x = x.astype(np.float64, copy=False)
        U = np.concatenate([np.asarray(B, dtype=np.float64) for B in bases], axis=-1)
    else:
        torch = xp
        ref = next(t for t in [x, *bases] if is_torch(t))
        out_dtype = ref.dtype if ref.dtype.is_floating_point else torch.float32
        x = torch.as_tensor(x, dtype=out_dtype, device=ref.device)
        U = torch.cat(
            [torch.as_tensor(np.array(B) if isinstance(B, np.ndarray) else B, dtype=out_dtype, device=ref.device) for B in bases],
            dim=-1,
        )
    if not np.isfinite(max_abs(U)):
        raise ValueError("bases contain NaN or inf")
    s = check_levels("scale", scale, batch_shape, like=x)
    sg = check_levels("sigma", sigma, batch_shape, like=x)
    s = append_dims(s, len(batch_shape))
    sg = append_dims(sg, len(batch_shape))
    logw = check_array("log_weights", log_weights, dtype=np.float64, finite=False)
    logw = logw.reshape(-1) if not is_torch(logw) else logw.detach().cpu().numpy().astype(np.float64).reshape(-1)
    if logw.shape[0] != len(dims):
        raise ValueError(f"weights must have length K = {len(dims)} (one per basis), got {logw.shape[0]}")
    if np.any(np.isnan(logw)) or np.any(logw == np.inf):
        raise ValueError("log_weights must be finite or -inf (log of weights in [0, 1]), got NaN or +inf")
    check_real("noise_var", noise_var, low=0.0)
    if xp is not np:
        logw = xp.as_tensor(logw, dtype=xp.float64, device=x.device)
    return xp, U, dims, logw, x, s, sg, out_dtype


# --------------------------------------------------------------------------- kernel
def _segment_sqnorms(xp, proj, dims):
    """Per-component squared norms of ``proj`` (..., D) split into blocks ``dims`` -> (..., K)."""
    sq = proj * proj
    if len(set(dims)) == 1:
        return sq.reshape(tuple(sq.shape[:-1]) + (len(dims), dims[0])).sum(-1)
    cuts = np.cumsum((0,) + dims)
    return xp.stack([sq[..., cuts[k] : cuts[k + 1]].sum(-1) for k in range(len(dims))], -1)


def _expand_weights(xp, w, dims):
    """Repeat per-component weights (..., K) over each component's columns -> (..., D)."""
    if len(set(dims)) == 1:
        if xp is np:
            return np.repeat(w, dims[0], axis=-1)
        return w.repeat_interleave(dims[0], dim=-1)
    if xp is np:
        return np.repeat(w, dims, axis=-1)
    return w.repeat_interleave(xp.as_tensor(dims, device=w.device), dim=-1)


def _ldexp(xp, a, e):
    """``a * 2**e`` exactly (``e`` integer-valued, broadcastable), inf where it overflows."""
    if xp is np:
        with np.errstate(over="ignore"):
            return np.ldexp(a, e)
    return a * xp.exp2(e.to(a.dtype))


def _row_exponents(xp, x, s):
    """Per-row power-of-2 exponents ``e`` (shape ``x.shape[:-1] + (1,)``) for an exact rescaling, or None.

    ``e = 0`` for rows whose largest entry is within ``2^-limit .. 2^limit`` (so
    ordinary inputs are computed exactly as given), else the exponent of the
    row's max abs entry; all-zero rows get 0.  Returns None (no extra work) in
    the common case, checked in one pass: every entry below ``2^limit`` and the
    scale at least ``2^-limit`` (a tiny row with an ordinary scale needs no
    rescaling: its logits' quadratic term is negligible either way).  Raises
    ``ValueError`` for NaN or inf in ``x``.
    """
    limit = _EXP_LIMIT_FLOAT32 if xp is not np and x.dtype != xp.float64 else _EXP_LIMIT_FLOAT64
    hi = max_abs(x)
    if not np.isfinite(hi):
        raise ValueError("x_t contains NaN or inf")
    s_min = float(s.min()) if xp is np else _min_or_zero(s)
    if hi < 2.0**limit and s_min >= 2.0 ** (-limit):
        return None
    if xp is np:
        e = np.frexp(np.max(np.abs(x), axis=-1, keepdims=True))[1]
        e = np.where(np.abs(e) > limit, e, 0)
        return e if e.any() else None
    with xp.no_grad():
        e = xp.frexp(x.detach().abs().amax(-1, keepdim=True))[1]
        e = xp.where(e.abs() > limit, e, xp.zeros_like(e))
    try:
        return e if bool(e.any()) else None
    except RuntimeError:  # inside a torch.func transform: keep the (exact) rescaling
        return e


def _min_or_zero(t) -> float:
    """``min(t)`` of a torch tensor, 0.0 when not concrete (forces the general path)."""
    try:
        return float(t.detach().min())
    except RuntimeError:
        return 0.0


def _logit_terms(xp, dims, sg, s_col, noise_var, like):
    """The parts of the A3 logit ``logw_k + q_k gain / (2 s^2) - half_logdet_k``: (gain, 2 s^2, half_logdet).

    ``s_col``: the scale with a trailing axis, ``(..., 1)``.
    """
    var = (sg * sg)[..., None]
    s2 = s_col * s_col
    d = np.asarray(dims, dtype=np.float64) if xp is np else xp.as_tensor(dims, dtype=xp.float64, device=like.device)
    lam_par, lam_perp = 1.0 + noise_var, noise_var
    # 1/(lam_perp+v) - 1/(lam_par+v) = (lam_par - lam_perp) / ((lam_perp+v)(lam_par+v)), no cancellation
    gain = 1.0 / ((lam_perp + var) * (lam_par + var))
    logdet_ratio = xp.log1p(1.0 / (lam_perp + var))  # log((lam_par+v)/(lam_perp+v)), lam_par - lam_perp = 1
    return gain, 2.0 * s2, 0.5 * d * logdet_ratio


def _logits_scaled(xp, sqn_y, s_e, dims, logw, sg, noise_var):
    """Logits (..., K), float64, from squared norms ``sqn_y`` of rows rescaled by ``2^-e``.

    ``s_e = s 2^-e`` (``(..., 1)``), so that ``q / s^2 = sqn_y / s_e^2`` without
    forming ``q``; where the quadratic term still overflows the logit is +inf
    (callers needing weights use :func:`_weights_scaled`).
    """
    gain, two_s2, half_logdet = _logit_terms(xp, dims, sg, s_e, noise_var, sqn_y)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        quad = sqn_y * gain / two_s2
    return logw + quad - half_logdet, (gain, two_s2, half_logdet)


def _weights_scaled(xp, sqn_y, s_e, dims, logw, sg, noise_var):
    """Posterior weights (..., K) and logits; rows with overflowing logits use relative logits.

    Subtracting the winning component's quadratic term from every logit leaves
    the softmax unchanged: ``logw_k - (sqn_y_max - sqn_y_k) gain / (2 s_e^2) - half_logdet_k``,
    finite or -inf (0 for the winners themselves).
    """
    logits, (gain, two_s2, half_logdet) = _logits_scaled(xp, sqn_y, s_e, dims, logw, sg, noise_var)
    bad = ~xp.isfinite(logits).all(-1)
    try:
        any_bad = bool(bad.any())
    except RuntimeError:  # values not concrete (inside a torch.func transform): take the safe path
        any_bad = True
    if any_bad:
        top = sqn_y.max(-1, keepdims=True) if xp is np else sqn_y.amax(-1, keepdim=True)
        diff = top - sqn_y
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            gap = xp.where(diff > 0, diff * gain / two_s2, xp.zeros_like(diff))
        rel = logw - gap - half_logdet
        logits = xp.where(bad[..., None], rel, logits)
    return _softmax(xp, logits), logits


def _softmax(xp, logits):
    m = xp.amax(logits, -1)[..., None]
    e = xp.exp(logits - m)
    return e / e.sum(-1)[..., None]


def _posterior(bases, log_weights, x, scale, sigma, noise_var, want):
    xp, U, dims, logw, x, s, sg, out_dtype = _prepare(bases, log_weights, x, scale, sigma, noise_var)
    # y = x 2^-e and s_e = s 2^-e (exact powers of two): the logits depend on x / s only, and given
    # the weights the mean (the score) is linear in x, so everything below runs on (y, s_e)
    e = _row_exponents(xp, x, s)  # (..., 1), 0 for ordinary rows; None when no row needs it
    s_col = s[..., None]
    y, s_e = (x, s_col) if e is None else (_ldexp(xp, x, -e), _ldexp(xp, s_col, -e))
    proj = y @ U  # rows of U^T y, (..., M, D): a batch of bases (..., n, D) pairs with y (..., M, n)
    sqn = _segment_sqnorms(xp, proj, dims)
    sqn = sqn.astype(np.float64) if xp is np else sqn.to(xp.float64)
    if want == "logits":
        return _cast(xp, _logits_scaled(xp, sqn, s_e, dims, logw, sg, noise_var)[0], out_dtype)
    w, _ = _weights_scaled(xp, sqn, s_e, dims, logw, sg, noise_var)
    if want == "weights":
        return _cast(xp, w, out_dtype)
    # Both outputs are  factor * [ (g_par - g_perp) sum_k w_k P_k x + g_perp x ]  with
    #   mean:  g = lam / (lam + v),  factor = 1 / s
    #   score: g = 1 / (lam + v),    factor = -1 / s^2   (Tweedie, without cancellation)
    # and on the rescaled rows  factor(x) [.. x ..] = (2^e factor) [.. y ..]:  2^e / s = 1 / s_e,
    # 2^e / s^2 = 1 / (s_e s).
    var = (sg * sg)[..., None]
    lam_par, lam_perp = 1.0 + noise_var, noise_var
    if want == "mean":
        g_par, g_perp, factor = lam_par / (lam_par + var), lam_perp / (lam_perp + var), 1.0 / s_e
    elif want == "score":
        g_par, g_perp, factor = 1.0 / (lam_par + var), 1.0 / (lam_perp + var), -1.0 / (s_e * s_col)
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown quantity {want!r}")
    coef_proj = _cast(xp, _expand_weights(xp, w, dims) * (g_par - g_perp), out_dtype)
    rec = (proj * coef_proj) @ _mT(xp, U)
    out = (rec + _cast(xp, g_perp, out_dtype) * y) * _cast(xp, factor, out_dtype)
    out = _cast(xp, out, out_dtype)
    if e is not None and not concrete_all(xp.isfinite(out)):
        warnings.warn(
            f"the posterior {want} overflows {out_dtype}: its true value is beyond the floating range",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def _mT(xp, U):
    return np.swapaxes(U, -1, -2) if xp is np else U.transpose(-1, -2)


def _cast(xp, a, dtype):
    if xp is np:
        return a.astype(dtype, copy=False)
    return a.to(dtype)


# --------------------------------------------------------------------------- logits from norms
def posterior_logits_from_norms(sq_norms, dims, log_weights, scale, sigma, noise_var: float = 0.0):
    r"""The SPEC A3 logits from per-component squared norms ``||U_k^T x_t||^2`` (numpy or torch).

    .. math::

        \ell_k = \log\pi_k + \frac{q_k}{2 s^2}\Big(\frac{1}{\lambda_\perp+\sigma^2}
                 - \frac{1}{\lambda_\parallel+\sigma^2}\Big)
                 - \frac{d_k}{2}\log\frac{\lambda_\parallel+\sigma^2}{\lambda_\perp+\sigma^2},
        \qquad q_k = \|U_k^T x_t\|^2

    (paper Lemma 1 / Prop. 1; ``lambda_par = 1 + delta^2``, ``lambda_perp = delta^2``).
    The one implementation of the formula: :func:`posterior_logits` and the
    softmax weights call it, and so can a denoiser that replaces ``q_k`` by
    something else, e.g. the hardmax DAE of SPEC A4 (eqs. 16-17) with its
    expectation given the clean sample, ``q_k = s^2 (||U_k^T x_0||^2 + sigma^2 d_k)``.

    Parameters
    ----------
    sq_norms : array or tensor ``(..., K)``
        The squared norms ``q_k`` (non-negative).
    dims : sequence of K ints
        Component dimensions ``d_k``.
    log_weights : array ``(K,)``
        ``log pi_k``.
    scale, sigma : float or array
        ``s_t > 0`` and ``sigma_t > 0``, broadcasting over the leading axes of ``sq_norms``.
    noise_var : float, default 0
        ``delta^2``.

    Returns
    -------
    float64 array or tensor ``(..., K)`` (the backend and device of ``sq_norms``).

    Examples
    --------
    >>> posterior_logits_from_norms(np.array([4.0, 0.0]), [2, 2], np.log([0.5, 0.5]), 1.0, 1.0).round(4)
    array([-0.3863, -1.3863])
    """
    sq = check_array("sq_norms", sq_norms, min_ndim=1)
    dims = check_dims("dims", dims)
    if sq.shape[-1] != len(dims):
        raise ValueError(f"sq_norms must have shape (..., K) with K = len(dims) = {len(dims)}, got shape {tuple(sq.shape)}")
    xp = array_namespace(sq)
    sq = sq.astype(np.float64, copy=False) if xp is np else sq.to(xp.float64)
    batch_shape = tuple(sq.shape[:-1])
    s = append_dims(check_levels("scale", scale, batch_shape, like=sq), len(batch_shape))
    sg = append_dims(check_levels("sigma", sigma, batch_shape, like=sq), len(batch_shape))
    logw = check_array("log_weights", log_weights, dtype=np.float64, finite=False).reshape(-1)
    if logw.shape[0] != len(dims):
        raise ValueError(f"log_weights must have length K = {len(dims)}, got {logw.shape[0]}")
    noise_var = check_real("noise_var", noise_var, low=0.0)
    if xp is not np:
        logw = xp.as_tensor(logw, dtype=xp.float64, device=sq.device)
    return _logits_scaled(xp, sq, s[..., None], dims, logw, sg, noise_var)[0]


# --------------------------------------------------------------------------- public, from bases
def posterior_weights_from_bases(bases: Sequence[Any], log_weights, x_t, scale, sigma, noise_var: float = 0.0):
    """Posterior component weights ``w_k(x_t)`` for explicit bases, shape ``x_t.shape[:-1] + (K,)``.

    ``bases``: sequence of ``(..., n, d_k)`` arrays or tensors. Points multiply the bases
    as a matrix of rows, ``x_t @ U``: ``x_t`` of shape ``(M, n)`` or ``(n,)`` with unbatched
    bases, or ``(B, M, n)`` with bases ``(B, n, d_k)`` (one set of bases per problem, the
    layout of batched training). ``log_weights``: ``log pi_k``, shape ``(K,)``.
    ``noise_var``: ``delta^2 >= 0``.  Validation as :func:`posterior_mean`.
    """
    return _posterior(bases, log_weights, x_t, scale, sigma, noise_var, "weights")


def posterior_mean_from_bases(bases: Sequence[Any], log_weights, x_t, scale, sigma, noise_var: float = 0.0):
    """``E[x_0 | x_t]`` (SPEC A3) for explicit bases; the softmax denoiser of SPEC A4 (eq. 9)."""
    return _posterior(bases, log_weights, x_t, scale, sigma, noise_var, "mean")


def score_from_bases(bases: Sequence[Any], log_weights, x_t, scale, sigma, noise_var: float = 0.0):
    """``grad log p_t(x_t)`` (SPEC A3, Tweedie) for explicit bases."""
    return _posterior(bases, log_weights, x_t, scale, sigma, noise_var, "score")


# --------------------------------------------------------------------------- public, from a model
def posterior_logits(model, x_t, scale, sigma):
    """Unnormalized log posterior component probabilities ``logit_k(x_t)`` (SPEC A3), float64 inside."""
    bases, logw, nv = _unpack_model(model)
    return _posterior(bases, logw, x_t, scale, sigma, nv, "logits")


def posterior_weights(model, x_t, scale, sigma):
    """Posterior component probabilities ``P(k | x_t)``, shape ``x_t.shape[:-1] + (K,)`` (SPEC A3).

    Examples
    --------
    >>> from molrg import MoLRG
    >>> m = MoLRG.random(10, [2, 2], random_state=0)
    >>> posterior_weights(m, m.bases[0][:, 0] * 5, 1.0, 0.1).round(3)
    array([1., 0.])
    """
    bases, logw, nv = _unpack_model(model)
    return _posterior(bases, logw, x_t, scale, sigma, nv, "weights")


def posterior_mean(model, x_t, scale, sigma):
    """Posterior mean ``E[x_0 | x_t] = c_t/s_t sum_k w_k(x_t) U_k U_k^T x_t`` (SPEC A3, paper Prop. 1).

    Parameters
    ----------
    model : MoLRG
    x_t : array or tensor ``(..., n)``
        Noisy points, one per row.
    scale, sigma : float or array
        ``s_t`` and ``sigma_t``; arrays broadcast over the leading axes of ``x_t``.

    Returns
    -------
    Same type, shape and floating dtype as ``x_t`` (integer input gives float64).

    Raises
    ------
    TypeError
        ``model`` is not a MoLRG; ``x_t``, ``scale`` or ``sigma`` hold strings,
        complex numbers or objects.
    ValueError
        ``x_t`` is not of shape ``(..., n)`` or holds NaN/inf; ``scale`` or
        ``sigma`` is not positive and finite, or its shape does not match the
        leading axes of ``x_t``.

    Examples
    --------
    >>> from molrg import MoLRG
    >>> m = MoLRG.random(4, [1, 1], random_state=0)
    >>> x = 1e200 * m.bases[0][:, 0]          # huge but finite: the exact answer is finite
    >>> bool(np.allclose(posterior_mean(m, x, 1.0, 1.0), 0.5 * x))
    True
    """
    bases, logw, nv = _unpack_model(model)
    return _posterior(bases, logw, x_t, scale, sigma, nv, "mean")


def score(model, x_t, scale, sigma):
    """Score ``grad log p_t(x_t) = (s_t E[x_0|x_t] - x_t) / (s_t^2 sigma_t^2)`` (SPEC A3, Tweedie)."""
    bases, logw, nv = _unpack_model(model)
    return _posterior(bases, logw, x_t, scale, sigma, nv, "score")
