r"""An over-parameterized MLP denoiser with EDM preconditioning (SPEC A9).

The network ``F_theta`` is wrapped as in Karras et al. (2022, Table 1, "EDM"):

.. math::

    D(x, \sigma) = c_{skip}(\sigma)\, x + c_{out}(\sigma)\, F_\theta\big(c_{in}(\sigma)\, x,\ c_{noise}(\sigma)\big),

``c_skip = sigma_d^2 / (sigma^2 + sigma_d^2)``, ``c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2)``,
``c_in = 1 / sqrt(sigma^2 + sigma_d^2)``, ``c_noise = log(sigma) / 4``, with
``sigma_d`` the data's RMS per coordinate (:func:`edm_preconditioning`, the one
place the formula lives).  ``c_noise`` enters through fixed sinusoidal features
(plus ``c_noise`` itself) concatenated to the input.  With a schedule scale ``s``
the input is ``x / s`` (``x_t = s (x_0 + sigma eps)``), so the module is a
denoiser ``denoise(x, scale, sigma)`` like every other one (STYLE habit 4).

Training minimizes the denoising loss (SPEC A5) with EDM's weighting
``lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2`` and
``log sigma ~ N(P_mean, P_std^2)``, i.e. ``|| F - (x_0 - c_skip x) / c_out ||^2``,
by Adam with a cosine-decayed learning rate.

Several independent networks train at once (``n_models = E``): they are one
:class:`molrg.nn.BatchedMLP`, trained by :class:`molrg.nn.StackedTrainer` (a
hand-written backward as batched matrix products, one fused Adam step for all),
and each network has its own random stream for its initialization, its
mini-batches, noise levels and noise (:class:`molrg.nn.NetworkStreams`), so a
network's result depends on its own seed only, never on which networks share the
batch (pass ``random_state`` as one seed per training set).  With ``E > 1``
inputs are ``(E, ..., n)``; with ``E = 1`` any ``(..., n)``.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ._validation import (
    check_int,
    check_matrix,
    check_real,
    is_torch,
    problem_generators,
)
from .nn import BatchedMLP, NetworkStreams, StackedTrainer, cosine_factor

__all__ = ["MLPDenoiser", "train_mlp_denoiser", "MLPTrainingResult", "edm_preconditioning"]


def _torch():
    import torch

    return torch


def edm_preconditioning(sigma, sigma_data):
    r"""EDM's ``(c_skip, c_out, c_in, c_noise)`` (Karras et al. 2022, Table 1).

    Parameters
    ----------
    sigma, sigma_data : tensors that broadcast together

    Returns
    -------
    tuple of four tensors
        ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
        ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4``.
    """
    torch = _torch()
    tot = sigma * sigma + sigma_data * sigma_data
    r = torch.rsqrt(tot)
    return sigma_data * sigma_data / tot, sigma * sigma_data * r, r, torch.log(sigma) / 4


class MLPDenoiser(_torch().nn.Module):  # type: ignore[misc]  # torch is loaded on first use
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
        Number of independent networks ``E`` (a :class:`molrg.nn.BatchedMLP`).
    sigma_data : float or sequence of ``E`` floats, default 1
        RMS per coordinate of each network's data (``sigma_d`` of the preconditioning).
    n_freqs : int, default 8
        Sinusoidal features of ``c_noise`` (frequencies ``2^0 .. 2^(n_freqs-1)`` times pi/2).
    random_state : None, int, Generator, or a sequence of ``E`` seeds
        Initialization (uniform ``+-1/sqrt(fan_in)``, as ``torch.nn.Linear``), one
        stream per network (:func:`molrg.nn.network_generators`).
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
        self.net = BatchedMLP(
            self.n + 1 + 2 * self.n_freqs,
            self.n,
            n_models=self.n_models,
            width=self.width,
            depth=self.depth,
            activation="silu",
            random_state=random_state,
            dtype=dtype,
            device=device,
        )

    # ------------------------------------------------------------------ core
    def _features(self, x_in, c_noise):
        torch = _torch()
        feats = [x_in, c_noise]
        if self.n_freqs:
            arg = c_noise * self.freqs
            feats += [torch.sin(arg), torch.cos(arg)]
        return torch.cat(feats, -1)

    def raw(self, x_in, c_noise, e: int | None = None):
        """``F_theta(x_in, c_noise)``: ``(E, M, n)`` inputs and ``(E, M, 1)`` labels, or network ``e`` on ``(M, n)``."""
        h = self._features(x_in, c_noise)
        return self.net._forward(h) if e is None else self.net.forward_member(e, h)

    def preconditioning(self, sigma, e: int | None = None):
        """``(c_skip, c_out, c_in, c_noise)`` for ``sigma`` of shape ``(E, M, 1)`` (or ``(M, 1)`` for network ``e``)."""
        sd = self.sigma_data.reshape(-1, 1, 1) if e is None else self.sigma_data[e]
        return edm_preconditioning(sigma, sd)

    def _denoise(self, xf, s, sg, e: int | None = None):
        """EDM-preconditioned denoiser on flattened rows (``(E, M, n)``, or ``(M, n)`` for network ``e``)."""
        xf = xf / s
        c_skip, c_out, c_in, c_noise = self.preconditioning(sg, e)
        return c_skip * xf + c_out * self.raw(c_in * xf, c_noise, e)

    def _per_row(self, v, batch, rows: tuple, ref):
        """Broadcast a scalar or per-row array over the leading axes ``batch`` of x, as ``rows + (1,)``."""
        torch = _torch()
        v = torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
        if v.ndim > len(batch):
            raise ValueError(f"scale and sigma must broadcast over the leading axes of x, got shape {tuple(v.shape)}")
        v = v.reshape(tuple(v.shape) + (1,) * (len(batch) - v.ndim))
        return v.expand(batch).reshape(rows + (1,))

    def forward(self, x, scale, sigma):
        """``D(x / scale, sigma)``: the denoiser, on ``(..., n)`` (or ``(E, ..., n)``) inputs."""
        torch = _torch()
        if not is_torch(x):
            x_np = np.asarray(x)
            out = self.forward(torch.as_tensor(x_np, dtype=self.sigma_data.dtype, device=self.sigma_data.device), scale, sigma)
            return out.detach().cpu().numpy().astype(x_np.dtype if x_np.dtype.kind == "f" else np.float64)
        if x.shape[-1] != self.n:
            raise ValueError(f"x must have shape (..., {self.n}), got {tuple(x.shape)}")
        shape = tuple(x.shape)
        if self.n_models > 1 and (x.ndim < 2 or x.shape[0] != self.n_models):
            raise ValueError(f"x must have shape ({self.n_models}, ..., {self.n}) for an ensemble, got {shape}")
        xf = x.reshape(self.n_models, -1, self.n).to(self.sigma_data.dtype)
        rows = tuple(xf.shape[:2])
        s = self._per_row(scale, shape[:-1], rows, xf)
        sg = self._per_row(sigma, shape[:-1], rows, xf)
        return self._denoise(xf, s, sg).reshape(shape).to(x.dtype)

    def member(self, e: int):
        """A denoiser callable for network ``e`` alone, on ``(..., n)`` inputs."""
        e = check_int("e", e, low=0, high=self.n_models - 1)
        return _Member(self, e)

    def n_parameters(self) -> int:
        """Trainable parameters per network."""
        return self.net.n_parameters(0)


class _Member:
    """Network ``e`` of an :class:`MLPDenoiser` as a denoiser ``(x, scale, sigma)``."""

    def __init__(self, net, e):
        self.net, self.e = net, e

    def __call__(self, x, scale, sigma):
        torch = _torch()
        numpy_in = not is_torch(x)
        xt = torch.as_tensor(np.asarray(x), dtype=self.net.sigma_data.dtype) if numpy_in else x
        if xt.shape[-1] != self.net.n:
            raise ValueError(f"x must have shape (..., {self.net.n}), got {tuple(xt.shape)}")
        shape = tuple(xt.shape)
        xf = xt.reshape(-1, self.net.n).to(self.net.sigma_data.dtype)
        s = self.net._per_row(scale, shape[:-1], (xf.shape[0],), xf)
        sg = self.net._per_row(sigma, shape[:-1], (xf.shape[0],), xf)
        out = self.net._denoise(xf, s, sg, self.e).reshape(shape)
        if numpy_in:
            return out.detach().cpu().numpy()
        return out.to(xt.dtype)

    def jacobian(self, x, scale, sigma):
        r"""``d D(x / scale, sigma) / d x`` at every point of ``x (..., n)``: ``(..., n, n)``, same dtype as ``x``.

        The chain rule written out, forward mode: with ``u = c_in x / s`` the network's
        first ``n`` inputs, ``T_0 = W_0[:n]`` and ``T_l = (T_{l-1} \odot \phi'(z_l)) W_l``
        (one batched product per layer, ``n`` directions per point),

        .. math::

            \frac{\partial D}{\partial x} = \frac1s \big(c_{skip} I + c_{out}\, c_{in}\, T_L^T\big).

        The same products as reverse mode over the ``n`` outputs, without the
        ``torch.func`` transforms; :func:`molrg.jacobian.denoiser_jacobian` uses it
        (``tests/test_jacobian.py`` checks it against ``jacrev``).
        """
        torch = _torch()
        from .nn import _activation_backward

        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64) if not is_torch(x) else x
        n = self.net.n
        if xt.shape[-1] != n:
            raise ValueError(f"x must have shape (..., {n}), got {tuple(xt.shape)}")
        shape = tuple(xt.shape)
        mlp, e = self.net.net, self.e
        with torch.no_grad():
            xf = xt.detach().reshape(-1, n).to(self.net.sigma_data.dtype)
            s = self.net._per_row(scale, shape[:-1], (xf.shape[0],), xf)
            sg = self.net._per_row(sigma, shape[:-1], (xf.shape[0],), xf)
            c_skip, c_out, c_in, c_noise = self.net.preconditioning(sg, e)
            h = self.net._features(c_in * (xf / s), c_noise)[:, : mlp.in_widths[e]]
            p = mlp.layers[e]
            act_grad = _activation_backward(mlp.activation)
            T = None
            for i in range(mlp.n_layers):
                W, b = p[2 * i], p[2 * i + 1]
                T = W[:n].expand((h.shape[0],) + tuple(W[:n].shape)) if T is None else torch.matmul(T, W)
                if i < mlp.n_layers - 1:
                    z = torch.addmm(b, h, W)
                    h = mlp._act(z)
                    T = T * act_grad(torch.ones_like(z), z, h)[:, None, :]
            # T[p, a, b] = dF_b / du_a
            J = (c_out * c_in)[:, :, None] * T.transpose(1, 2)
            J = J + torch.diag_embed(c_skip.expand(-1, n))
            J = J / s[:, :, None]
        return J.reshape(shape + (n,)).to(xt.dtype)

    def __repr__(self):
        return f"MLPDenoiser.member({self.e})"


@dataclass(frozen=True)
class MLPTrainingResult:
    """What :func:`train_mlp_denoiser` returns: the trained ensemble and its histories.

    Attributes
    ----------
    model : MLPDenoiser
        The trained ensemble (parameters frozen).
    loss_history : array ``(steps, E)``
        The mini-batch EDM loss of network ``e`` at each step.
    grad_norm_history : array ``(steps, E)`` or None
        The 2-norm of network ``e``'s loss gradient (all its parameters) at each
        step, before the update (``track_grad_norm=True``; the paper's Figure 7b).
    snapshots : tuple of ``(step, MLPDenoiser)``
        Frozen copies of the ensemble after the requested numbers of steps.
    runtime_s : float
    n_train : tuple of ints
        Training-set size per network.
    """

    model: MLPDenoiser
    loss_history: np.ndarray
    runtime_s: float
    n_train: tuple = ()
    grad_norm_history: np.ndarray | None = None
    snapshots: tuple = ()

    @property
    def losses(self) -> np.ndarray:
        """Deprecated name of :attr:`loss_history` (``FutureWarning``)."""
        warnings.warn("MLPTrainingResult.losses is deprecated; use loss_history", FutureWarning, stacklevel=2)
        return self.loss_history

    def denoiser(self, e: int = 0):
        """Network ``e`` as a callable ``denoise(x, scale, sigma)``."""
        return self.model.member(e)

    def to_frame(self):
        """Tidy table of the histories: one row per step and network."""
        import pandas as pd

        steps, E = self.loss_history.shape
        out = {
            "step": np.repeat(np.arange(1, steps + 1), E),
            "model": np.tile(np.arange(E), steps),
            "loss": self.loss_history.ravel(),
        }
        if self.grad_norm_history is not None:
            out["grad_norm"] = self.grad_norm_history.ravel()
        return pd.DataFrame(out)


def _frozen_copy(net):
    twin = copy.deepcopy(net)
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


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
    track_grad_norm: bool = False,
    snapshot_steps: Sequence[int] = (),
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
        ``sigma`` per sample (``log sigma ~ N(p_mean, p_std^2)``) and one noise vector,
        per network from its own stream.
    lr, lr_min_ratio : float
        Adam learning rate, cosine-decayed to ``lr * lr_min_ratio``.
    sigma_data : float or sequence, optional
        Data RMS per coordinate; estimated from each training set by default.
    track_grad_norm : bool, default False
        Record each network's gradient norm at every step (``grad_norm_history``).
    snapshot_steps : sequence of ints in ``[0, steps]``
        Keep a frozen copy of the ensemble after these many steps (``snapshots``).
    random_state : None, int, Generator, or a sequence of ``E`` seeds
        One stream per network for its initialization and every draw (a sequence:
        network ``e`` uses entry ``e``, so its result does not depend on the other
        networks; otherwise ``E`` child streams tied to positions).
    dtype, device : default float32 on CPU.

    Returns
    -------
    MLPTrainingResult

    Examples
    --------
    >>> X = np.random.default_rng(0).standard_normal((8, 4))
    >>> res = train_mlp_denoiser(X, width=32, steps=20, random_state=0)
    >>> res.loss_history.shape
    (20, 1)
    """
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
    snaps = sorted({check_int("snapshot_steps", k, low=0, high=steps) for k in snapshot_steps})
    dtype = torch.float32 if dtype is None else dtype
    if sigma_data is None:
        sigma_data = [max(float(np.sqrt(np.mean(S**2))), 1e-3) for S in sets]
    # one stream per network: its initialization seed and its draws' seed
    seeds = [rng.integers(0, 2**63 - 1, size=2) for rng in problem_generators(random_state, E)]
    model = MLPDenoiser(
        n,
        width=width,
        depth=depth,
        n_models=E,
        sigma_data=sigma_data,
        n_freqs=n_freqs,
        random_state=[int(s[0]) for s in seeds],
        dtype=dtype,
        device=device,
    )
    streams = NetworkStreams([int(s[1]) for s in seeds], E, dtype=dtype, device=device)
    # padded training sets (E, N_max, n) and their sizes, to index per network
    N_e = torch.as_tensor([S.shape[0] for S in sets], device=device)
    data = torch.zeros((E, int(N_e.max()), n), dtype=dtype, device=device)
    for e, S in enumerate(sets):
        data[e, : S.shape[0]] = torch.as_tensor(S, dtype=dtype, device=device)
    trainer = StackedTrainer(model.net, lr)  # hand-written backward and Adam on stacked weights (molrg.nn)
    losses = np.empty((steps, E))
    grad_norms = np.empty((steps, E)) if track_grad_norm else None
    snapshots = [(0, _frozen_copy(model))] if snaps and snaps[0] == 0 else []
    rows = torch.arange(E, device=device)[:, None]
    sd = model.sigma_data.reshape(-1, 1, 1)
    # numpy's BLAS runs the trainer's small per-network GEMMs on one thread: its worker threads,
    # alternating with torch's, took 10x longer on 2 cores (digits-semantic-editing --quick: 59 s against 5.5 s)
    with torch.no_grad(), threadpool_limits(limits=1, user_api="blas"):
        for step in range(steps):
            x0 = data[rows, streams.randint(N_e, batch_size)]
            sigma = torch.exp(p_mean + p_std * streams.randn((batch_size, 1)))
            x = x0 + sigma * streams.randn((batch_size, n))
            c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sd)
            target = (x0 - c_skip * x) / c_out
            per_model = trainer.loss_and_grad(model._features(c_in * x, c_noise), target)
            if grad_norms is not None:
                grad_norms[step] = trainer.grad_norms().cpu().numpy()
            trainer.step(cosine_factor(step, steps, lr_min_ratio))
            losses[step] = per_model.cpu().numpy()
            if snaps and step + 1 in snaps:
                trainer.write_back()
                snapshots.append((step + 1, _frozen_copy(model)))
    trainer.write_back()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return MLPTrainingResult(
        model=model,
        loss_history=losses,
        runtime_s=time.perf_counter() - t0,
        n_train=tuple(int(S.shape[0]) for S in sets),
        grad_norm_history=grad_norms,
        snapshots=tuple(snapshots),
    )
