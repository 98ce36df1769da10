r"""Denoiser (DAE) parameterizations whose parameters are the bases (SPEC A4; paper eqs. 9, 11, 16-17).

Three torch modules share one parameter layout: a stack ``U`` of shape
``(B, n, D)``, ``D = sum_k d_k``, holding the bases ``U_1, ..., U_K`` of ``B``
independent problems side by side (columns ``cuts[k]:cuts[k+1]`` are ``U_k``).
Every projection is a batched matrix product over that stack (SPEC A7), so one
module trains ``B`` problems at once.

All three are called the same way on a batch (STYLE habit 4)::

    denoiser(x_t, scale, sigma, x0=None)  ->  estimate of x_0, same shape as x_t

with ``x_t`` of shape ``(B, M, n)`` and ``scale`` (``s_t``), ``sigma``
(``sigma_t``) scalars or arrays broadcasting over ``(B, M)`` (one time per
sample).  Writing ``c_t = 1 / (1 + sigma_t^2)``:

- ``single`` (K = 1, eq. 11): :math:`x_\theta = \frac{c_t}{s_t} U U^T x_t`.
- ``softmax`` (eq. 9): the closed-form posterior mean of SPEC A3 with the true
  bases replaced by ``theta``; computed by
  :func:`molrg.posterior.posterior_mean_from_bases` (one implementation of the
  formula for the whole toolkit).
- ``hardmax`` (eqs. 16-17): :math:`x_\theta = \frac{c_t}{s_t} U_j U_j^T x_t`,
  ``j`` the argmax of the softmax logits with ``||U_k^T x_t||^2`` replaced by
  its expectation ``s_t^2 ||U_k^T x_0||^2 + s_t^2 sigma_t^2 d_k`` given the
  clean training sample ``x_0``.  For equal dims and weights this is
  ``j = argmax_k ||U_k^T x_0||`` (independent of ``t``).  No gradient flows
  through the argmax.
"""

from __future__ import annotations

import numpy as np
import torch

from .posterior import posterior_logits_from_norms, posterior_mean_from_bases
from .utils import check_choice, check_dims, orthonormalize

__all__ = ["BasesDAE", "SingleDAE", "SoftmaxDAE", "HardmaxDAE", "make_denoiser", "PARAMETERIZATIONS"]


def _stack_bases(bases, dims, dtype, device):
    """Normalize ``bases`` to one tensor ``(B, n, D)``; returns (tensor, dims, batched)."""
    if isinstance(bases, (np.ndarray, torch.Tensor)):
        U = torch.as_tensor(bases, device=device).detach().clone()
        if U.ndim not in (2, 3):
            raise ValueError(f"bases must have shape (n, D) or (B, n, D), got {tuple(U.shape)}")
        batched = U.ndim == 3
        if not batched:
            U = U[None]
        D = U.shape[-1]
        dims = (D,) if dims is None else check_dims("dims", dims, U.shape[-2])
        if sum(dims) != D:
            raise ValueError(f"dims must sum to the number of columns of bases, {D}, got dims={dims}")
    else:
        try:
            parts = [torch.as_tensor(b, device=device).detach() for b in bases]
        except TypeError:
            raise TypeError("bases must be an array (B, n, D) or a sequence of K arrays (B, n, d_k)") from None
        if not parts:
            raise ValueError("bases must contain at least one basis")
        nd = {p.ndim for p in parts}
        if len(nd) != 1 or nd.pop() not in (2, 3):
            raise ValueError(f"bases must all have shape (n, d_k) or all (B, n, d_k), got {[tuple(p.shape) for p in parts]}")
        batched = parts[0].ndim == 3
        if not batched:
            parts = [p[None] for p in parts]
        lead = {tuple(p.shape[:2]) for p in parts}
        if len(lead) != 1:
            raise ValueError(f"bases must share the batch size and ambient dimension, got {[tuple(p.shape) for p in parts]}")
        given = tuple(int(p.shape[-1]) for p in parts)
        if dims is not None and tuple(check_dims("dims", dims)) != given:
            raise ValueError(f"dims={tuple(dims)} disagree with the bases' widths {given}")
        dims = given
        U = torch.cat(parts, dim=-1)
    if dtype is None:
        dtype = U.dtype if U.dtype.is_floating_point else torch.get_default_dtype()
    return U.to(dtype), tuple(int(d) for d in dims), batched


class BasesDAE(torch.nn.Module):
    """Common base: the stacked bases parameter, component views and the retraction.

    Parameters
    ----------
    bases : array or tensor ``(B, n, D)`` / ``(n, D)``, or a sequence of K ``(B, n, d_k)`` / ``(n, d_k)``
        Initial bases (copied).  With a single array, ``dims`` splits its columns.
    dims : int or sequence of int, optional
        Component dimensions ``(d_1, ..., d_K)``; default: one component, or the
        widths of the sequence.
    weights : array ``(K,)``, optional
        Mixing weights ``pi_k`` (fixed, not trained); uniform by default.
    dtype, device : optional
        Default: the dtype of ``bases`` (float32 stays float32) and its device.

    Attributes
    ----------
    U : torch.nn.Parameter ``(B, n, D)``
        The trained parameter: all bases of all problems.
    dims, cuts : the component dimensions and column offsets.
    batched : bool
        False when built from unbatched bases; then ``(M, n)`` inputs give ``(M, n)`` outputs.
    """

    name = "base"

    def __init__(self, bases, dims=None, *, weights=None, dtype=None, device=None):
        super().__init__()
        U, dims, batched = _stack_bases(bases, dims, dtype, device)
        self.U = torch.nn.Parameter(U)
        self.dims = dims
        self.cuts = tuple(int(c) for c in np.cumsum((0,) + dims))
        self.batched = batched
        K = len(dims)
        if weights is None:
            logw = np.full(K, -np.log(K))
        else:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            if w.shape != (K,) or np.any(~np.isfinite(w)) or np.any(w <= 0) or abs(w.sum() - 1) > 1e-8:
                raise ValueError(f"weights must be K = {K} positive numbers summing to 1, got {w.tolist()}")
            logw = np.log(w)
        self.log_weights = logw
        self.uniform_weights = bool(np.all(logw == logw[0]))

    # ------------------------------------------------------------------ views
    @property
    def n_problems(self) -> int:
        return int(self.U.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.U.shape[1])

    @property
    def n_components(self) -> int:
        return len(self.dims)

    def bases(self) -> list:
        """The K bases as views ``(B, n, d_k)`` of the parameter (autograd-connected)."""
        return [self.U[..., self.cuts[k] : self.cuts[k + 1]] for k in range(len(self.dims))]

    def bases_numpy(self) -> tuple:
        """Detached copies of the bases as numpy arrays ``(B, n, d_k)`` (``(n, d_k)`` when unbatched)."""
        out = tuple(b.detach().cpu().numpy().copy() for b in self.bases())
        return out if self.batched else tuple(b[0] for b in out)

    def segment_sums(self, a):
        """Sum ``a`` ``(..., D)`` over each component's columns: ``(..., K)``."""
        if len(set(self.dims)) == 1:
            return a.reshape(a.shape[:-1] + (len(self.dims), self.dims[0])).sum(-1)
        return torch.stack([a[..., p:q].sum(-1) for p, q in zip(self.cuts[:-1], self.cuts[1:])], -1)

    def expand(self, w):
        """Repeat per-component values ``w`` ``(..., K)`` over each component's columns: ``(..., D)``."""
        if len(set(self.dims)) == 1:
            return w.repeat_interleave(self.dims[0], dim=-1)
        return w.repeat_interleave(torch.as_tensor(self.dims, device=w.device), dim=-1)

    # ------------------------------------------------------------------ retraction
    @torch.no_grad()
    def retract_(self, method: str = "polar", passes: int = 2):
        """Re-orthonormalize every ``U_k`` in place (SPEC A7): ``"polar"`` (``U <- A B^T``) or ``"qr"``.

        Both keep the column span, so they give the same projectors ``U_k U_k^T``
        (the denoisers depend on ``U_k`` only through them).  ``"qr"`` is
        Cholesky-QR applied twice (``U <- U L^{-T}``, ``L L^T = U^T U``), which is
        cheaper than a batched SVD; if a Gram matrix is not positive definite
        the step falls back to the polar factor.  ``passes=1`` (used inside the
        SGD loop) leaves an orthogonality error of about ``eps * cond(U)^2``,
        which does not accumulate since every step re-orthonormalizes.
        """
        check_choice("method", method, ("polar", "qr"))
        U = self.U.data
        if len(set(self.dims)) == 1:
            B, n, D = U.shape
            d = self.dims[0]
            blocks = [U.reshape(B, n, len(self.dims), d).transpose(1, 2)]  # (B, K, n, d)
        else:
            blocks = [U[..., a:b] for a, b in zip(self.cuts[:-1], self.cuts[1:])]
        new = [_retract(V, method, passes) for V in blocks]
        if len(set(self.dims)) == 1:
            U.copy_(new[0].transpose(1, 2).reshape(U.shape))
        else:
            U.copy_(torch.cat(new, dim=-1))
        return self

    # ------------------------------------------------------------------ helpers
    def _prep(self, x_t, scale, sigma):
        """Broadcast inputs: returns (x (B, M, n), s (B, M, 1), sigma (B, M, 1), squeeze flag)."""
        x = torch.as_tensor(x_t, dtype=self.U.dtype, device=self.U.device)
        squeeze = x.ndim == 2 and not self.batched
        if squeeze:
            x = x[None]
        if x.ndim != 3 or x.shape[-1] != self.n_features:
            raise ValueError(f"x_t must have shape (B, M, {self.n_features}), got {tuple(x.shape)}")
        s = torch.as_tensor(scale, dtype=self.U.dtype, device=x.device)
        sg = torch.as_tensor(sigma, dtype=self.U.dtype, device=x.device)
        if squeeze:
            s = s[None] if s.ndim >= 1 else s
            sg = sg[None] if sg.ndim >= 1 else sg
        for nm, v in (("scale", s), ("sigma", sg)):
            if v.ndim > 2:
                raise ValueError(f"{nm} must be a scalar or broadcast over (B, M), got shape {tuple(v.shape)}")
        s = s.reshape(s.shape + (1,) * (3 - s.ndim)) if s.ndim else s
        sg = sg.reshape(sg.shape + (1,) * (3 - sg.ndim)) if sg.ndim else sg
        return x, s, sg, squeeze

    def _project_block(self, x, mask_cols=None):
        """``(x @ U * mask) @ U^T``: projection onto all (or masked) components."""
        proj = x @ self.U
        if mask_cols is not None:
            proj = proj * mask_cols
        return proj @ self.U.transpose(-1, -2)

    def forward(self, x_t, scale, sigma, x0=None):  # pragma: no cover - abstract
        raise NotImplementedError


class SingleDAE(BasesDAE):
    r"""Single low-rank Gaussian DAE (paper eq. 11): :math:`x_\theta(x_t) = \frac{c_t}{s_t} U U^T x_t`.

    Examples
    --------
    >>> import torch
    >>> U = torch.linalg.qr(torch.randn(2, 6, 2, dtype=torch.float64))[0]   # B = 2 problems
    >>> dae = SingleDAE(U)
    >>> dae(torch.randn(2, 5, 6, dtype=torch.float64), 1.0, 0.5).shape
    torch.Size([2, 5, 6])
    """

    name = "single"

    def __init__(self, bases, dims=None, *, weights=None, dtype=None, device=None):
        super().__init__(bases, dims, weights=weights, dtype=dtype, device=device)
        if len(self.dims) != 1:
            raise ValueError(f"parameterization 'single' needs K = 1 component, got dims={self.dims}")

    def forward(self, x_t, scale, sigma, x0=None):
        x, s, sg, squeeze = self._prep(x_t, scale, sigma)
        out = self._project_block(x) * (1.0 / ((1.0 + sg * sg) * s))
        return out[0] if squeeze else out


class SoftmaxDAE(BasesDAE):
    r"""Softmax DAE (paper eq. 9): the MoLRG posterior mean (SPEC A3) with bases ``theta``.

    :math:`x_\theta(x_t) = \frac{c_t}{s_t}\sum_k w_k(x_t) U_k U_k^T x_t`, ``w`` the
    softmax of the SPEC A3 logits (log-sum-exp in float64).  Delegates to
    :func:`molrg.posterior.posterior_mean_from_bases`; unequal dims are supported.
    """

    name = "softmax"

    def weights_from_projections(self, Z, sigma):
        """Posterior weights ``w_k`` ``(B, M, K)`` (float64) from ``Z = U^T x_t / s_t`` ``(B, M, D)``.

        The softmax of the SPEC A3 logits (computed by :mod:`molrg.posterior`,
        log-sum-exp in float64); ``sigma`` broadcasts over ``(B, M)``.  Used by
        the SGD kernel, which has ``Z`` already.
        """
        logits = posterior_logits_from_norms(self.segment_sums(Z * Z), self.dims, self.log_weights, 1.0, sigma)
        return torch.softmax(logits, dim=-1)

    def forward(self, x_t, scale, sigma, x0=None):
        x, s, sg, squeeze = self._prep(x_t, scale, sigma)
        s2 = s.reshape(s.shape[:-1]) if s.ndim else s
        sg2 = sg.reshape(sg.shape[:-1]) if sg.ndim else sg
        out = posterior_mean_from_bases(self.bases(), self.log_weights, x, s2, sg2)
        return out[0] if squeeze else out


class HardmaxDAE(BasesDAE):
    r"""Hard-max DAE (paper eqs. 16-17): :math:`x_\theta(x_t; x_0) = \frac{c_t}{s_t} U_j U_j^T x_t`.

    ``j`` maximizes the SPEC A3 logit with ``||U_k^T x_t||^2`` replaced by its
    expectation ``s_t^2 (||U_k^T x_0||^2 + sigma_t^2 d_k)`` given the clean sample:

    .. math:: j = \arg\max_k \; \log\pi_k + \frac{\|U_k^T x_0\|^2 + \sigma_t^2 d_k}{2\sigma_t^2(1+\sigma_t^2)}
              - \frac{d_k}{2}\log\frac{1+\sigma_t^2}{\sigma_t^2},

    which for equal dims and weights is ``argmax_k ||U_k^T x_0||`` (computed as
    such, ties to the lowest index, independent of ``t``).  The argmax is not
    differentiated.  ``x0`` is required.
    """

    name = "hardmax"

    def assignments(self, x0, sigma=None):
        """Component index ``j`` per sample, shape ``x0.shape[:-1]`` (no gradient)."""
        with torch.no_grad():
            x0 = torch.as_tensor(x0, dtype=self.U.dtype, device=self.U.device)
            squeeze = x0.ndim == 2 and not self.batched
            if squeeze:
                x0 = x0[None]
            proj = x0 @ self.U
            if len(set(self.dims)) == 1 and self.uniform_weights:
                score = self.segment_sums(proj * proj)  # argmax_k ||U_k^T x0||
            else:
                if sigma is None:
                    raise ValueError("sigma is needed for the hardmax assignment with unequal dims or weights")
                v = torch.as_tensor(sigma, dtype=torch.float64, device=x0.device)
                if squeeze and v.ndim >= 1:
                    v = v[None]
                v = torch.broadcast_to(v, proj.shape[:-1])
                d = torch.as_tensor(self.dims, dtype=torch.float64, device=x0.device)
                # SPEC A3 logits of x_t / s_t with ||U_k^T x_t||^2 / s_t^2 replaced by its expectation
                q = self.segment_sums(proj * proj).double() + (v * v)[..., None] * d
                score = posterior_logits_from_norms(q, self.dims, self.log_weights, 1.0, v)
            j = score.argmax(-1)
            return j[0] if squeeze else j

    def column_mask(self, x0, sigma=None):
        """0/1 columns ``(..., D)`` of the selected component of each sample (the one hardmax mask)."""
        j = self.assignments(x0, sigma=sigma)
        return self.expand(torch.nn.functional.one_hot(j, len(self.dims)).to(self.U.dtype))

    def forward(self, x_t, scale, sigma, x0=None):
        if x0 is None:
            raise ValueError("x0 (the clean training samples) is required by the hardmax denoiser")
        x, s, sg, squeeze = self._prep(x_t, scale, sigma)
        x0 = torch.as_tensor(x0, dtype=self.U.dtype, device=self.U.device)
        if squeeze:
            x0 = x0[None]
        if x0.shape[-1] != x.shape[-1]:
            raise ValueError(f"x0 must have shape {tuple(x.shape)}, got {tuple(x0.shape)}")
        sig_full = torch.broadcast_to(sg, x.shape[:-1] + (1,))[..., 0] if sg.ndim else sg
        out = self._project_block(x, self.column_mask(x0, sigma=sig_full)) * (1.0 / ((1.0 + sg * sg) * s))
        return out[0] if squeeze else out


PARAMETERIZATIONS = {"single": SingleDAE, "softmax": SoftmaxDAE, "hardmax": HardmaxDAE}


def make_denoiser(parameterization: str, bases, dims=None, *, weights=None, dtype=None, device=None) -> BasesDAE:
    """A DAE by name: ``"single"`` (eq. 11), ``"softmax"`` (eq. 9) or ``"hardmax"`` (eqs. 16-17).

    See :class:`BasesDAE` for the arguments.  ``single`` with K >= 2 raises ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> from molrg.utils import random_orthonormal
    >>> U = random_orthonormal(10, 4, size=(3,), random_state=0)      # 3 problems, K = 2, d = 2
    >>> make_denoiser("hardmax", U, dims=(2, 2)).U.shape
    torch.Size([3, 10, 4])
    """
    if not isinstance(parameterization, str) or parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}")
    return PARAMETERIZATIONS[parameterization](bases, dims, weights=weights, dtype=dtype, device=device)


# --------------------------------------------------------------------------- retraction kernels
def _retract(V: torch.Tensor, method: str, passes: int = 2) -> torch.Tensor:
    """Orthonormalize the last two axes of ``V`` (``(..., n, d)``); private, assumes clean input."""
    if method == "polar":
        return orthonormalize(V)
    Q = V
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
    for _ in range(passes):  # CholeskyQR (passes=2: CholeskyQR2, orthonormal to working precision)
        L, info = torch.linalg.cholesky_ex(Q.transpose(-1, -2) @ Q)
        if bool((info != 0).any()):
            return orthonormalize(V)
        Linv = torch.linalg.solve_triangular(L, eye, upper=False)  # small (..., d, d)
        Q = Q @ Linv.transpose(-1, -2)
    return Q
