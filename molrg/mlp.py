r"""An over-parameterized MLP denoiser with EDM preconditioning (SPEC A9).

The network ``F_theta`` is wrapped as in Karras et al. (2022, Table 1, "EDM"):

.. math::

    D(x, \sigma) = c_{skip}(\sigma)\, x + c_{out}(\sigma)\, F_\theta\big(c_{in}(\sigma)\, x,\ c_{noise}(\sigma)\big),

``c_skip = sigma_d^2 / (sigma^2 + sigma_d^2)``, ``c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2)``,
``c_in = 1 / sqrt(sigma^2 + sigma_d^2)``, ``c_noise = log(sigma) / 4``, with
``sigma_d`` the data's RMS per coordinate.  ``c_noise`` enters through fixed
sinusoidal features (plus ``c_noise`` itself) concatenated to the input.  With a
schedule scale ``s`` the input is ``x / s`` (``x_t = s (x_0 + sigma eps)``), so the
module is a denoiser ``denoise(x, scale, sigma)`` like every other one (STYLE habit 4).

Training minimizes the denoising loss (SPEC A5) with EDM's weighting
``lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2`` and
``log sigma ~ N(P_mean, P_std^2)``, i.e. ``|| F - (x_0 - c_skip x) / c_out ||^2``,
by Adam with a cosine-decayed learning rate.

Several independent networks train at once (``n_models = E``): every weight has a
leading model axis and layers are batched matrix products, so the E problems of a
sweep (different N, different trials) cost about one CPU call each step.  With
``E > 1`` inputs are ``(E, ..., n)``; with ``E = 1`` any ``(..., n)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .utils import check_int, check_matrix, check_random_state, check_real, is_torch, torch_generator

__all__ = ["MLPDenoiser", "train_mlp_denoiser", "MLPTrainingResult"]


def _torch():
    import torch

    return torch


class MLPDenoiser(_torch().nn.Module):
    """An ensemble of ``n_models`` MLP denoisers with EDM preconditioning and sigma conditioning.

    Parameters
    ----------
    n : int
        Ambient dimension.
    width : int, default 256
        Hidden width.
    depth : int, default 3
        Number of hidden layers (SiLU activations).
    n_models : int, default 1
        Number of independent networks ``E`` (a leading axis on every weight).
    sigma_data : float or sequence of ``E`` floats, default 1
        RMS per coordinate of each network's data (``sigma_d`` of the preconditioning).
    n_freqs : int, default 8
        Sinusoidal features of ``c_noise`` (frequencies ``2^0 .. 2^(n_freqs-1)`` times pi/2).
    random_state : None, int, numpy Generator or torch Generator
        Initialization (uniform ``+-1/sqrt(fan_in)``, as ``torch.nn.Linear``).
    dtype, device : torch dtype and device, default float32 on CPU.

    Examples
    --------
    >>> import torch
    >>> net = MLPDenoiser(4, width=16, depth=2, random_state=0)
    >>> net(torch.zeros(5, 4), 1.0, 0.5).shape
    torch.Size([5, 4])
    """

    def __init__(
        self,
        n: int,
        *,
        width: int = 256,
        depth: int = 3,
        n_models: int = 1,
        sigma_data: float | Sequence[float] = 1.0,
        n_freqs: int = 8,
        random_state: Any = None,
        dtype=None,
        device: Any = "cpu",
    ):
        torch = _torch()
        super().__init__()
        self.n = check_int("n", n, low=1)
        self.width = check_int("width", width, low=1)
        self.depth = check_int("depth", depth, low=1)
        self.n_models = check_int("n_models", n_models, low=1)
        self.n_freqs = check_int("n_freqs", n_freqs, low=0)
        dtype = torch.float32 if dtype is None else dtype
        sd = np.broadcast_to(np.asarray(sigma_data, dtype=np.float64), (self.n_models,)).copy()
        if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
            raise ValueError(f"sigma_data must be positive, got {sd.tolist()}")
        self.register_buffer("sigma_data", torch.as_tensor(sd, dtype=dtype, device=device))
        self.register_buffer(
            "freqs", torch.as_tensor(0.5 * np.pi * 2.0 ** np.arange(self.n_freqs), dtype=dtype, device=device)
        )
        gen = torch_generator(random_state, device=device)
        sizes = [self.n + 1 + 2 * self.n_freqs] + [self.width] * self.depth + [self.n]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        E = self.n_models
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            W = (torch.rand((E, fan_in, fan_out), generator=gen, device=device, dtype=dtype) * 2 - 1) * bound
            b = (torch.rand((E, 1, fan_out), generator=gen, device=device, dtype=dtype) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(W))
            self.biases.append(torch.nn.Parameter(b))

    # ------------------------------------------------------------------ core
    def _flat(self, x):
        """(E, M, n) view of the input and the shape to restore."""
        if x.shape[-1] != self.n:
            raise ValueError(f"x must have shape (..., {self.n}), got {tuple(x.shape)}")
        if self.n_models == 1:
            return x.reshape(1, -1, self.n), tuple(x.shape)
        if x.ndim < 2 or x.shape[0] != self.n_models:
            raise ValueError(f"x must have shape ({self.n_models}, ..., {self.n}) for an ensemble, got {tuple(x.shape)}")
        return x.reshape(self.n_models, -1, self.n), tuple(x.shape)

    def _per_row(self, v, shape, ref):
        """Broadcast a scalar or per-row array over the (E, M) rows of ``ref``."""
        torch = _torch()
        v = torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
        batch = shape[:-1]
        if v.ndim > len(batch):
            raise ValueError(f"scale and sigma must broadcast over the leading axes of x, got shape {tuple(v.shape)}")
        v = v.reshape(tuple(v.shape) + (1,) * (len(batch) - v.ndim))
        return v.expand(batch).reshape(ref.shape[0], ref.shape[1], 1)

    def raw(self, x_in, c_noise):
        """``F_theta(x_in, c_noise)`` on ``(E, M, n)`` inputs and ``(E, M, 1)`` noise labels."""
        torch = _torch()
        feats = [x_in, c_noise]
        if self.n_freqs:
            arg = c_noise * self.freqs
            feats += [torch.sin(arg), torch.cos(arg)]
        h = torch.cat(feats, -1)
        L = len(self.weights)
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, W)
            if i < L - 1:
                h = torch.nn.functional.silu(h)
        return h

    def preconditioning(self, sigma):
        """``(c_skip, c_out, c_in, c_noise)`` for ``sigma`` of shape ``(E, M, 1)``."""
        torch = _torch()
        sd = self.sigma_data.reshape(-1, 1, 1)
        tot = sigma * sigma + sd * sd
        return sd * sd / tot, sigma * sd * torch.rsqrt(tot), torch.rsqrt(tot), torch.log(sigma) / 4

    def forward(self, x, scale, sigma):
        """``D(x / scale, sigma)``: the denoiser, on ``(..., n)`` (or ``(E, ..., n)``) inputs."""
        torch = _torch()
        if not is_torch(x):
            x_np = np.asarray(x)
            out = self.forward(torch.as_tensor(x_np, dtype=self.sigma_data.dtype, device=self.sigma_data.device), scale, sigma)
            return out.detach().cpu().numpy().astype(x_np.dtype if x_np.dtype.kind == "f" else np.float64)
        xf, shape = self._flat(x)
        xf = xf.to(self.sigma_data.dtype)
        s = self._per_row(scale, shape, xf)
        sg = self._per_row(sigma, shape, xf)
        xf = xf / s
        c_skip, c_out, c_in, c_noise = self.preconditioning(sg)
        out = c_skip * xf + c_out * self.raw(c_in * xf, c_noise)
        return out.reshape(shape).to(x.dtype)

    def member(self, e: int):
        """A denoiser callable for network ``e`` alone, on ``(..., n)`` inputs."""
        e = check_int("e", e, low=0, high=self.n_models - 1)
        return _Member(self, e)

    def n_parameters(self) -> int:
        """Trainable parameters per network."""
        return sum(p[0].numel() for p in self.parameters())


class _Member:
    def __init__(self, net, e):
        self.net, self.e = net, e

    def __call__(self, x, scale, sigma):
        torch = _torch()
        numpy_in = not is_torch(x)
        xt = torch.as_tensor(np.asarray(x), dtype=self.net.sigma_data.dtype) if numpy_in else x
        shape = tuple(xt.shape)
        xf = xt.reshape(-1, self.net.n)
        s = self.net._per_row(scale, shape, xf[None]).reshape(-1, 1)
        sg = self.net._per_row(sigma, shape, xf[None]).reshape(-1, 1)
        Ws = [W[self.e] for W in self.net.weights]
        bs = [b[self.e] for b in self.net.biases]
        sd = self.net.sigma_data[self.e]
        xf = xf.to(sd.dtype) / s
        tot = sg * sg + sd * sd
        c_skip, c_out, c_in, c_noise = sd * sd / tot, sg * sd * torch.rsqrt(tot), torch.rsqrt(tot), torch.log(sg) / 4
        feats = [c_in * xf, c_noise]
        if self.net.n_freqs:
            arg = c_noise * self.net.freqs
            feats += [torch.sin(arg), torch.cos(arg)]
        h = torch.cat(feats, -1)
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.addmm(b, h, W) if h.ndim == 2 else h @ W + b
            if i < len(Ws) - 1:
                h = torch.nn.functional.silu(h)
        out = (c_skip * xf + c_out * h).reshape(shape)
        if numpy_in:
            return out.detach().cpu().numpy()
        return out.to(xt.dtype)

    def __repr__(self):
        return f"MLPDenoiser.member({self.e})"


@dataclass
class MLPTrainingResult:
    """What :func:`train_mlp_denoiser` returns: the trained ensemble and its loss curve.

    ``losses[step, e]``: the mini-batch EDM loss of network ``e`` at each step.
    """

    model: MLPDenoiser
    losses: np.ndarray
    runtime_s: float
    n_train: tuple = field(default_factory=tuple)

    def denoiser(self, e: int = 0):
        """Network ``e`` as a callable ``denoise(x, scale, sigma)``."""
        return self.model.member(e)


def train_mlp_denoiser(
    X,
    *,
    width: int = 256,
    depth: int = 3,
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 2e-3,
    lr_min_ratio: float = 0.05,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float | Sequence[float] | None = None,
    n_freqs: int = 8,
    random_state: Any = None,
    dtype=None,
    device: Any = "cpu",
) -> MLPTrainingResult:
    """Train MLP denoisers on training sets by the denoising loss (SPEC A5, A9; EDM weighting).

    Parameters
    ----------
    X : array ``(N, n)`` or a sequence of ``E`` arrays ``(N_e, n)``
        One training set, or one per network (the ``N_e`` may differ: an ensemble
        over a grid of training-set sizes).
    width, depth, n_freqs
        Architecture, see :class:`MLPDenoiser` (width 256, 3 hidden layers: ~150k
        parameters, over-parameterized for the N of the memorization experiments).
    steps : int, default 3000
        Adam steps; each draws ``batch_size`` training samples (with replacement), one
        ``sigma`` per sample (``log sigma ~ N(p_mean, p_std^2)``) and one noise vector.
    lr, lr_min_ratio : float
        Adam learning rate, cosine-decayed to ``lr * lr_min_ratio``.
    sigma_data : float or sequence, optional
        Data RMS per coordinate; estimated from each training set by default.
    random_state : None, int or numpy Generator
        Seeds the initialization and every draw.
    dtype, device : default float32 on CPU.

    Returns
    -------
    MLPTrainingResult

    Examples
    --------
    >>> X = np.random.default_rng(0).standard_normal((8, 4))
    >>> res = train_mlp_denoiser(X, width=32, steps=20, random_state=0)
    >>> res.losses.shape
    (20, 1)
    """
    import time

    torch = _torch()
    t0 = time.perf_counter()
    if isinstance(X, np.ndarray) and X.ndim == 2 or is_torch(X):
        sets = [np.asarray(X.detach().cpu() if is_torch(X) else X)]
    else:
        sets = list(X)
        if not sets:
            raise ValueError("X must hold at least one training set")
    sets = [check_matrix(f"X[{e}]", np.asarray(S)) for e, S in enumerate(sets)]
    n = sets[0].shape[1]
    for e, S in enumerate(sets):
        if S.shape[1] != n:
            raise ValueError(f"X[{e}] has {S.shape[1]} columns, expected n = {n}")
    E = len(sets)
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    lr_min_ratio = check_real("lr_min_ratio", lr_min_ratio, low=0.0, high=1.0)
    p_mean = check_real("p_mean", p_mean)
    p_std = check_real("p_std", p_std, low=0.0)
    dtype = torch.float32 if dtype is None else dtype
    if sigma_data is None:
        sigma_data = [max(float(np.sqrt(np.mean(S**2))), 1e-3) for S in sets]
    rng = check_random_state(random_state)
    gen = torch_generator(rng, device=device)
    net = MLPDenoiser(
        n, width=width, depth=depth, n_models=E, sigma_data=sigma_data, n_freqs=n_freqs, random_state=gen, dtype=dtype, device=device
    )
    # padded training sets (E, N_max, n) and their sizes, to index per network
    N_e = torch.as_tensor([S.shape[0] for S in sets], device=device)
    N_max = int(N_e.max())
    data = torch.zeros((E, N_max, n), dtype=dtype, device=device)
    for e, S in enumerate(sets):
        data[e, : S.shape[0]] = torch.as_tensor(S, dtype=dtype, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    losses = np.empty((steps, E))
    rows = torch.arange(E, device=device)[:, None]
    for step in range(steps):
        idx = (torch.rand((E, batch_size), generator=gen, device=device) * N_e[:, None]).long()
        x0 = data[rows, idx]
        sigma = torch.exp(p_mean + p_std * torch.randn((E, batch_size, 1), generator=gen, device=device, dtype=dtype))
        noise = torch.randn(x0.shape, generator=gen, device=device, dtype=dtype)
        x = x0 + sigma * noise
        c_skip, c_out, c_in, c_noise = net.preconditioning(sigma)
        target = (x0 - c_skip * x) / c_out
        err = (net.raw(c_in * x, c_noise) - target) ** 2
        per_model = err.mean(dim=(1, 2))
        loss = per_model.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses[step] = per_model.detach().cpu().numpy()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return MLPTrainingResult(net, losses, time.perf_counter() - t0, tuple(int(S.shape[0]) for S in sets))
