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
log-sum-exp run in float64 and are cast back to the input dtype.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .utils import append_dims, array_namespace, is_torch

__all__ = [
    "posterior_logits",
    "posterior_weights",
    "posterior_mean",
    "score",
    "posterior_mean_from_bases",
    "score_from_bases",
    "posterior_weights_from_bases",
]


# --------------------------------------------------------------------------- kernel
def _unpack_model(model):
    """(bases, log_weights, noise_var) from a MoLRG-like object."""
    try:
        bases, weights = model.bases, model.weights
    except AttributeError:
        raise TypeError(f"model must be a MoLRG (with bases and weights), got {type(model).__name__}") from None
    noise_var = float(getattr(model, "noise_std", 0.0)) ** 2
    return bases, np.log(np.asarray(weights, dtype=np.float64)), noise_var


def _prepare(bases, log_weights, x, scale, sigma):
    """Concatenate bases, move everything to one backend/dtype, broadcast scale and sigma.

    Returns (xp, U_cat (..., n, D), dims, logw (K,), x, s, sg, out_dtype) with s, sg shaped
    like ``x.shape[:-1]`` (broadcastable).  numpy inputs are computed in float64.
    """
    if isinstance(bases, np.ndarray) and bases.ndim >= 2 and not isinstance(bases, (list, tuple)):
        bases = (bases,)
    if is_torch(bases):  # a single torch tensor (..., n, d)
        bases = (bases,)
    bases = list(bases)
    xp = array_namespace(x, *bases)
    dims = tuple(int(U.shape[-1]) for U in bases)
    if xp is np:
        x = np.asarray(x)
        out_dtype = x.dtype if x.dtype.kind == "f" else np.float64
        x = x.astype(np.float64, copy=False)
        U = np.concatenate([np.asarray(B, dtype=np.float64) for B in bases], axis=-1)
        s = np.asarray(scale, dtype=np.float64)
        sg = np.asarray(sigma, dtype=np.float64)
    else:
        import torch

        ref = next(t for t in [x, *bases] if is_torch(t))
        out_dtype = ref.dtype if ref.dtype.is_floating_point else torch.float32
        x = torch.as_tensor(x, dtype=out_dtype, device=ref.device)
        U = torch.cat(
            [torch.as_tensor(np.array(B) if isinstance(B, np.ndarray) else B, dtype=out_dtype, device=ref.device) for B in bases],
            dim=-1,
        )
        s = torch.as_tensor(scale, dtype=torch.float64, device=ref.device)
        sg = torch.as_tensor(sigma, dtype=torch.float64, device=ref.device)
    if x.shape[-1] != U.shape[-2]:
        raise ValueError(f"x_t has {x.shape[-1]} coordinates but the bases live in R^{U.shape[-2]}")
    batch_ndim = x.ndim - 1
    for name, v in (("scale", s), ("sigma", sg)):
        if v.ndim > batch_ndim:
            raise ValueError(f"{name} must be a scalar or broadcast over the leading axes of x_t, got shape {tuple(v.shape)}")
    if not bool((sg > 0).all()) or not bool((s > 0).all()):
        raise ValueError("scale and sigma must be positive")
    s = append_dims(s, batch_ndim)
    sg = append_dims(sg, batch_ndim)
    logw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    if logw.shape[0] != len(dims):
        raise ValueError(f"weights must have length K = {len(dims)}, got {logw.shape[0]}")
    if xp is not np:
        logw = xp.as_tensor(logw, dtype=torch.float64, device=x.device)
    return xp, U, dims, logw, x, s, sg, out_dtype


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
    import torch

    return w.repeat_interleave(torch.as_tensor(dims, device=w.device), dim=-1)


def _logits(xp, proj, dims, logw, s, sg, noise_var):
    """Posterior logits (..., K) in float64 from the projections ``U^T x`` (..., D)."""
    sqn = _segment_sqnorms(xp, proj, dims)
    sqn = sqn.astype(np.float64) if xp is np else sqn.to(xp.float64)
    var = sg * sg
    s2 = (s * s)[..., None]
    var = var[..., None]
    d = np.asarray(dims, dtype=np.float64) if xp is np else xp.as_tensor(dims, dtype=xp.float64, device=sqn.device)
    lam_par, lam_perp = 1.0 + noise_var, noise_var
    # 1/(lam_perp+v) - 1/(lam_par+v) = (lam_par - lam_perp) / ((lam_perp+v)(lam_par+v)), no cancellation
    gain = 1.0 / ((lam_perp + var) * (lam_par + var))
    logdet_ratio = xp.log1p(1.0 / (lam_perp + var))  # log((lam_par+v)/(lam_perp+v)), lam_par - lam_perp = 1
    return logw + sqn * gain / (2.0 * s2) - 0.5 * d * logdet_ratio


def _softmax(xp, logits):
    m = xp.amax(logits, -1)[..., None]
    e = xp.exp(logits - m)
    return e / e.sum(-1)[..., None]


def _posterior(bases, log_weights, x, scale, sigma, noise_var, want):
    xp, U, dims, logw, x, s, sg, out_dtype = _prepare(bases, log_weights, x, scale, sigma)
    proj = x @ U  # rows of U^T x, (..., M, D): a batch of bases (..., n, D) pairs with x (..., M, n)
    logits = _logits(xp, proj, dims, logw, s, sg, noise_var)
    if want == "logits":
        return _cast(xp, logits, out_dtype)
    w = _softmax(xp, logits)
    if want == "weights":
        return _cast(xp, w, out_dtype)
    # Both outputs are  factor * [ (g_par - g_perp) sum_k w_k P_k x + g_perp x ]  with
    #   mean:  g = lam / (lam + v),  factor = 1 / s
    #   score: g = 1 / (lam + v),    factor = -1 / s^2   (Tweedie, without cancellation)
    var = (sg * sg)[..., None]
    lam_par, lam_perp = 1.0 + noise_var, noise_var
    if want == "mean":
        g_par, g_perp, factor = lam_par / (lam_par + var), lam_perp / (lam_perp + var), 1.0 / s[..., None]
    elif want == "score":
        g_par, g_perp, factor = 1.0 / (lam_par + var), 1.0 / (lam_perp + var), -1.0 / (s * s)[..., None]
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown quantity {want!r}")
    coef_proj = _cast(xp, _expand_weights(xp, w, dims) * (g_par - g_perp), out_dtype)
    rec = (proj * coef_proj) @ _mT(xp, U)
    return _cast(xp, (rec + _cast(xp, g_perp, out_dtype) * x) * _cast(xp, factor, out_dtype), out_dtype)


def _mT(xp, U):
    return np.swapaxes(U, -1, -2) if xp is np else U.transpose(-1, -2)


def _cast(xp, a, dtype):
    if xp is np:
        return a.astype(dtype, copy=False)
    return a.to(dtype)


# --------------------------------------------------------------------------- public, from bases
def posterior_weights_from_bases(bases: Sequence[Any], log_weights, x_t, scale, sigma, noise_var: float = 0.0):
    """Posterior component weights ``w_k(x_t)`` for explicit bases, shape ``x_t.shape[:-1] + (K,)``.

    ``bases``: sequence of ``(..., n, d_k)`` arrays or tensors. Points multiply the bases
    as a matrix of rows, ``x_t @ U``: ``x_t`` of shape ``(M, n)`` or ``(n,)`` with unbatched
    bases, or ``(B, M, n)`` with bases ``(B, n, d_k)`` (one set of bases per problem, the
    layout of batched training). ``log_weights``: ``log pi_k``, shape ``(K,)``.
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
    Same type, shape and floating dtype as ``x_t``.
    """
    bases, logw, nv = _unpack_model(model)
    return _posterior(bases, logw, x_t, scale, sigma, nv, "mean")


def score(model, x_t, scale, sigma):
    """Score ``grad log p_t(x_t) = (s_t E[x_0|x_t] - x_t) / (s_t^2 sigma_t^2)`` (SPEC A3, Tweedie)."""
    bases, logw, nv = _unpack_model(model)
    return _posterior(bases, logw, x_t, scale, sigma, nv, "score")
