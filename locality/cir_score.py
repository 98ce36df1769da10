"""A localized neural score for time series, trained by denoising score matching (SPEC B5).

Paper section 4.2 (figure 3): the score of a stationary series ``x in R^L`` is
approximated position by position by ONE small network shared by all positions.
At position ``i`` it sees only the window ``x_{i-r} .. x_{i+r}`` (radius ``r``) and the
diffusion time, and returns the score component ``i``.  The ends of the series are
reflect-padded (``x_{-j} = x_j``, ``x_{L-1+j} = x_{L-1-j}``, the paper's "reflected
around ``X_0``"), so every position has a full window.  ``r = 0`` sees only its own
coordinate: the generated series then have independent coordinates.

Many networks as one
--------------------
A sweep trains one network per radius, trial and training set.  Here ``B``
networks are ONE module (:class:`LocalScoreMLP` with a sequence of radii): every
weight has a leading network axis, each layer is one batched product for all
networks, and one Adam step (:class:`FlatAdam`, on one flat buffer holding every
parameter) updates all of them.  Nothing couples them: the loss is the sum of the
per-network losses, Adam is elementwise, and network ``b`` is initialized from,
and draws its mini-batches, diffusion steps and noise from, its own
:class:`torch.Generator` (:class:`molrg.nn.NetworkStreams`).  A network's
weights, losses and samples are therefore the same whichever networks share its
batch (tested bitwise).

Implementation choices (SPEC B5 measured with these):

* The network predicts the noise ``eps`` (Ho et al. 2020); the score of the noised
  law at DDPM step ``k`` is ``-eps_hat / sqrt(1 - alpha_bar_k)``
  (:meth:`LocalScoreMLP.score`).
* First layer.  The input of the paper's MLP is the window and an embedding of
  the diffusion time ``t = (k+1)/T`` (``t``, ``sin(pi 2^j t)``, ``cos(pi 2^j t)``,
  ``j < n_freqs``).  Its first layer is split exactly into a window part and a
  time part, ``W [w; e] = W_w w + W_e e``: the time part is the same for every
  position of a series, so it is computed once per series instead of once per
  position.  Windows come from ``F.pad(..., mode="reflect")`` and ``unfold``.
  Networks of different radii have different window widths; ``first_layer``
  chooses how they are batched: ``"grouped"`` (default) runs one batched product
  per distinct radius, each with its exact width; ``"padded"`` zero-pads every
  window to the largest width and masks the first-layer weights (equivalent to
  the narrower layer, one product for all).  ``"grouped"`` is the default: it is
  not slower (``benchmarks/bench_cir.py``), and a network's arithmetic does not
  depend on the largest radius of its batch.  The hidden layers are batched
  products (:func:`torch.baddbmm`) as in :class:`molrg.nn.BatchedMLP`.
* Training (:func:`train_local_scores`) minimizes the DSM loss
  ``E |eps_hat(sqrt(ab_k) x_0 + sqrt(1-ab_k) eps, k) - eps|^2`` over all positions,
  with ``k`` uniform on the DDPM steps of :class:`locality.DDPMSchedule`, one
  diffusion time and one noise draw per series (the paper checked that drawing
  the noise per window instead changes nothing).
* The data are standardized per network before training, ``z = (x - mean) / scale``
  with ONE scalar mean and scale pooled over all values of its training set (the
  CIR marginal has mean ``b = 1``, not 0, and the forward process contracts
  towards 0; one scalar keeps the shift-invariance of the shared network), and
  the generated series are mapped back, ``x = mean + scale z``.
* Generation (:func:`ddpm_sample`, :meth:`LocalScoreFit.sample`) is the DDPM
  ancestral sampler, batched over networks and series, optionally on a strided
  subset of the steps (fewer network calls), with the noise variance ``beta`` of
  the merged step.  The shared samplers of :mod:`molrg.sampling` take any
  denoiser with ``extra_args``; wrapped as a VE denoiser ``D(x, sigma) = x - sigma
  eps_hat(x / sqrt(1 + sigma^2), k(sigma))`` the same trained networks measured a
  worse marginal with them (600 training steps, 1000 series, r = 1 and 4: W1 0.025
  and 0.029 with 100 strided steps here; 0.039-0.043 with ``sample_ddpm`` on 100
  Karras levels, whose posterior variance undershoots on a coarse grid; 0.040-0.050
  with ``sample_heun``, 18 or 30 levels), so the CIR code keeps this chain.
* Cost (issue 16, second round; ``benchmarks/bench_cir.py``).  The products are
  tiny (width 32), so what costs is memory traffic, temporaries and calls:
  the training step keeps its megabyte-sized activations in buffers reused
  between steps (fresh ones are returned to the kernel by glibc and faulted
  back in every step), gathers the scored windows straight from ``x_k`` with a
  cached reflected-index table, and steps Adam on one flat buffer; the sampler
  runs all series of a network in one chain, updated in place, and evaluates
  the network 16 series at a time in buffers allocated once.

Everything is float32 on a ``device`` argument (CPU by default) and seeded through
``random_state``: the same seed gives the same networks, losses and samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from molrg._validation import (
    check_choice,
    check_int,
    check_matrix,
    check_real,
    deprecated_alias,
    problem_generators,
    torch_generator,
)
from molrg.nn import NetworkStreams, batched_adam, network_generators
from molrg.sampling import sample_ddpm_discrete

from .schedule import DDPMSchedule

__all__ = [
    "FlatAdam",
    "LocalScoreMLP",
    "LocalScoreFit",
    "LocalizedDiffusion",
    "train_local_scores",
    "ddpm_sample",
    "sampler_steps",
]

_BLOCK = 64  # steps of training draws per generator call (part of the streams' definition)


def _check_radius(radius: Any) -> int:
    return check_int("radius", radius, low=0)


def _check_length(length: Any, radius: int, name: str = "length") -> int:
    length = check_int(name, length, low=1)
    if length < 2 * radius + 1:
        raise ValueError(
            f"{name} must be >= 2 * radius + 1 = {2 * radius + 1} (one full window of radius {radius}), got {length}"
        )
    return length


def _reflect_windows(x, r: int):
    """``(..., L) -> (..., L, 2r+1)`` reflect-padded windows (a strided view of one padded copy)."""
    if r == 0:
        return x[..., None]
    lead, L = x.shape[:-1], x.shape[-1]
    xp = F.pad(x.reshape(-1, 1, L), (r, r), mode="reflect").reshape(*lead, L + 2 * r)
    return xp.unfold(-1, 2 * r + 1, 1)


class _Streams(NetworkStreams):
    """:class:`molrg.nn.NetworkStreams` with the same draws, each network's block written in place
    into one preallocated ``(B, block, *shape)`` buffer (no stacking copy of ``B`` fresh blocks).

    A returned step is a view of that buffer: valid until the same ``(kind, shape)`` has been
    requested ``block`` more times (the training loop uses each step's draws within the step).
    """

    def _draw(self, kind: str, shape: tuple):
        key = (kind, tuple(shape))
        buf = self._buffers.get(key)
        if buf is None:
            data = torch.empty((self.n_models, self.block) + tuple(shape), dtype=self.dtype, device=self.device)
            buf = self._buffers[key] = [data, self.block]
        if buf[1] >= self.block:
            fn = torch.randn if kind == "randn" else torch.rand
            for b, g in enumerate(self.generators):
                fn((self.block,) + tuple(shape), generator=g, dtype=self.dtype, device=self.device, out=buf[0][b])
            buf[1] = 0
        out = buf[0][:, buf[1]]
        buf[1] += 1
        return out


class FlatAdam:
    """Adam (Kingma & Ba; torch's defaults, no weight decay) on ONE flat buffer holding all parameters.

    The parameters become views of one flat float tensor, their ``.grad`` views of one flat
    gradient (written in place by :meth:`LocalScoreMLP.dsm_backward`, accumulated into by
    autograd), and a step is a dozen elementwise operations on the whole buffer instead of
    an optimizer over every tensor.  Each operation rounds once (a product, a sum, a
    square root or a quotient; no fused multiply-add), so an element's update is the same
    wherever it sits in the buffer: a network's weights do not depend on its batch, bit for
    bit.  The update is torch's ``Adam``: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` (tested against
    :class:`torch.optim.Adam` to rounding).  ``lr`` may be changed between steps.
    Constructing it imports nothing of :mod:`torch.optim` (whose Adam loads torch's compiler
    stack, about 1.5 s of CPU on a fresh process).
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        params = list(params)
        if not params:
            raise ValueError("params must hold at least one tensor")
        self.lr, self.betas, self.eps, self.t = float(lr), (float(betas[0]), float(betas[1])), float(eps), 0
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in params])
            self.grad = torch.zeros_like(self.flat)
            start = 0
            for p in params:
                n = p.numel()
                p.data = self.flat[start : start + n].view_as(p)
                p.grad = self.grad[start : start + n].view_as(p)
                start += n
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self._tmp = torch.empty_like(self.flat)
        self._den = torch.empty_like(self.flat)
        self.params = params

    def zero_grad(self):
        self.grad.zero_()

    def step(self):
        b1, b2 = self.betas
        self.t += 1
        g, m, v, tmp, den = self.grad, self.m, self.v, self._tmp, self._den
        with torch.no_grad():
            m.mul_(b1).add_(torch.mul(g, 1.0 - b1, out=tmp))
            v.mul_(b2).add_(torch.mul(g, g, out=tmp).mul_(1.0 - b2))
            torch.sqrt(v, out=den).div_(math.sqrt(1.0 - b2**self.t)).add_(self.eps)
            self.flat.sub_(torch.div(m, den, out=tmp).mul_(self.lr / (1.0 - b1**self.t)))


# --------------------------------------------------------------------------- the network
class LocalScoreMLP(nn.Module):
    """Shared per-position MLPs (one or ``B`` stacked): window of radius ``r`` + time -> ``eps``.

    Parameters
    ----------
    radius : int or sequence of int
        Localization radius ``r >= 0`` (the window has ``2r + 1`` values), or one
        radius per network for ``B = len(radius)`` networks batched as one.
    width, depth : int
        Hidden width and number of hidden layers (SiLU), default 128 and 2 (SPEC B5).
    n_freqs : int
        The diffusion time ``t = (k + 1)/T`` enters as ``t`` and
        ``sin(pi 2^j t), cos(pi 2^j t)`` for ``j < n_freqs`` (``2 n_freqs + 1`` features).
    T : int
        Number of DDPM steps (to turn the step index ``k`` into ``t``).
    first_layer : {"grouped", "padded"}
        How networks of different radii share the first layer (module docstring).
    random_state : None, int, Generator, torch.Generator, or a sequence of one per network
        Initialization (uniform ``+-1/sqrt(fan_in)`` as :class:`torch.nn.Linear`,
        fan-in ``2r + 1 + 2 n_freqs + 1`` for the first layer), per network.
    device, dtype :
        Where the parameters live (default CPU, float32).

    Notes
    -----
    With an int ``radius``, ``forward(x, k)`` takes ``x`` of shape ``(S, L)``
    (``L >= 2r + 1``) and integer steps ``k`` of shape ``(S,)`` (or one int) and
    returns ``(S, L)``; with a sequence, ``x`` is ``(B, S, L)``, ``k`` is ``(B, S)``
    (or one int) and the result ``(B, S, L)``: network ``b`` acts on ``x[b]``.

    Examples
    --------
    >>> net = LocalScoreMLP([0, 2], width=8, depth=1, random_state=[1, 2])
    >>> net(torch.zeros(2, 3, 10), torch.tensor([[0, 5, 9]] * 2)).shape
    torch.Size([2, 3, 10])
    """

    def __init__(
        self,
        radius,
        *,
        width: int = 128,
        depth: int = 2,
        n_freqs: int = 6,
        T: int = 1000,
        first_layer: str = "grouped",
        random_state: Any = None,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        self.single = np.ndim(radius) == 0
        radii = [radius] if self.single else list(radius)
        if not radii:
            raise ValueError("radius must name at least one network")
        self.radii = tuple(check_int("radius" if self.single else f"radius[{b}]", r, low=0) for b, r in enumerate(radii))
        self.n_models = B = len(self.radii)
        self.width = check_int("width", width, low=1)
        self.depth = check_int("depth", depth, low=1)
        self.n_freqs = check_int("n_freqs", n_freqs, low=0)
        self.T = check_int("T", T, low=1)
        self.first_layer = check_choice("first_layer", first_layer, ("grouped", "padded"))
        device = torch.device("cpu") if device is None else torch.device(device)
        dtype = dtype or torch.float32
        E, H = 2 * self.n_freqs + 1, self.width
        gens = network_generators(random_state, B, device=device)

        # first layer, per network: window weights (2r+1, H), time weights (E, H), bias (1, H),
        # drawn in this order from the network's own generator with nn.Linear's law
        def uniform(shape, bound, g):
            return (torch.rand(shape, generator=g, device=device, dtype=dtype) * 2 - 1) * bound

        win, tim, bia = [], [], []
        for r, g in zip(self.radii, gens):
            bound = 1.0 / math.sqrt(2 * r + 1 + E)
            win.append(uniform((2 * r + 1, H), bound, g))
            tim.append(uniform((E, H), bound, g))
            bia.append(uniform((1, H), bound, g))
        self.time_weight = nn.Parameter(torch.stack(tim))  # (B, E, H)
        self.bias = nn.Parameter(torch.stack(bia))  # (B, 1, H)
        order = sorted(range(B), key=lambda b: self.radii[b])  # stable: networks grouped by radius
        self._perm = None if order == list(range(B)) else torch.tensor(order, device=device)
        self._inv = None if self._perm is None else torch.argsort(self._perm)
        self.window_weights = nn.ParameterList()
        if self.first_layer == "grouped":
            self._groups = []  # (radius, start, stop) in the sorted order
            start = 0
            for r in sorted(set(self.radii)):
                members = [b for b in order if self.radii[b] == r]
                self.window_weights.append(nn.Parameter(torch.stack([win[b] for b in members])))
                self._groups.append((r, start, start + len(members)))
                start += len(members)
        else:
            r_max = max(self.radii)
            padded = torch.zeros(B, 2 * r_max + 1, H, device=device, dtype=dtype)
            mask = torch.zeros(B, 2 * r_max + 1, 1, device=device, dtype=dtype)
            for b, r in enumerate(self.radii):
                padded[b, r_max - r : r_max + r + 1] = win[b]
                mask[b, r_max - r : r_max + r + 1] = 1.0
            self.window_weights.append(nn.Parameter(padded))
            self.register_buffer("window_mask", mask)
        # hidden layers H -> H (SiLU) and the output layer H -> 1, per network in this order.
        # The output layer is a product and a sum over the hidden axis (torch.linalg.vecdot):
        # torch's bmm with ONE output column rounds differently for B = 1 than for B > 1,
        # which would tie a network's result to its batch; the product-and-sum is bitwise
        # the same for every B and 3.5x faster than a two-column bmm (benchmarks/bench_cir.py).
        self.hidden_weights, self.hidden_biases = nn.ParameterList(), nn.ParameterList()
        bound = 1.0 / math.sqrt(H)
        for _ in range(self.depth - 1):
            Ws, bs = zip(*[(uniform((H, H), bound, g), uniform((1, H), bound, g)) for g in gens])
            self.hidden_weights.append(nn.Parameter(torch.stack(Ws)))
            self.hidden_biases.append(nn.Parameter(torch.stack(bs)))
        Ws, bs = zip(*[(uniform((H, 1), bound, g), uniform((1, 1), bound, g)) for g in gens])
        self.out_weight = nn.Parameter(torch.stack(Ws))  # (B, H, 1)
        self.out_bias = nn.Parameter(torch.stack(bs))  # (B, 1, 1)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(self.n_freqs, device=device, dtype=dtype))

    @property
    def radius(self) -> int:
        """The radius of a single network (``ValueError`` for a batch: see ``radii``)."""
        if not self.single:
            raise ValueError(f"this LocalScoreMLP holds {self.n_models} networks: use .radii")
        return self.radii[0]

    def windows(self, x, radius: int | None = None):
        """The ``(..., L, 2r+1)`` reflect-padded windows of ``x`` (``(..., L)``) for radius ``r``."""
        r = self.radius if radius is None else _check_radius(radius)
        if x.shape[-1] < 2 * r + 1:
            raise ValueError(f"series length must be >= 2 * radius + 1 = {2 * r + 1}, got {x.shape[-1]}")
        return _reflect_windows(x, r)

    def time_features(self, k):
        """Embedding ``(..., 2 n_freqs + 1)`` of the steps ``k`` (``t = (k+1)/T``)."""
        t = (k.to(self.freqs.dtype) + 1.0) / self.T
        ft = t[..., None] * self.freqs
        return torch.cat([t[..., None], torch.sin(ft), torch.cos(ft)], dim=-1)

    def forward(self, x, k):
        if self.single:
            return self._forward(x[None], k if isinstance(k, int) else k[None])[0]
        return self._forward(x, k)

    def _first_layer(self, x, k, pos=None, out=None):
        """First-layer pre-activations ``(B, S * P, H)`` and what the backward pass needs.

        ``x`` ``(B, S, L)``, ``k`` ``(B, S)`` or a number; ``pos`` ``(B, S, P)`` integer
        positions (``None``: all ``P = L``): only the windows centred there are
        evaluated.  The group products are written into one preallocated tensor and
        the time part is added in place (no concatenation, no temporaries).
        """
        B, S, L = x.shape
        if L < 2 * max(self.radii) + 1:
            raise ValueError(f"series length must be >= 2 * radius + 1 = {2 * max(self.radii) + 1}, got {L}")
        if isinstance(k, (int, float)):  # one (possibly fractional) step for every series
            k = torch.full((B, 1), float(k), device=x.device, dtype=x.dtype)
        P = L if pos is None else pos.shape[-1]
        H, R = self.width, S * P
        feats = self.time_features(k)
        temb = torch.baddbmm(self.bias, feats, self.time_weight)  # (B, S or 1, H)

        def windows(xg, r, pg):
            if pg is None:
                return _reflect_windows(xg, r).reshape(xg.shape[0], R, 2 * r + 1)  # (G, S, L, 2r+1) view, copied
            # the windows centred at pg, gathered straight from x with the reflected indices (no padded copy)
            ind = self._reflected_indices(r, L, xg.device)[pg]  # (G, S, P, 2r+1)
            return torch.gather(xg, 2, ind.view(xg.shape[0], S, -1)).view(xg.shape[0], R, 2 * r + 1)

        wins = []
        if self.first_layer == "grouped":
            perm = self._perm
            xs = x if perm is None else x[perm]
            ps = pos if pos is None or perm is None else pos[perm]
            graph = torch.is_grad_enabled()  # autograd: products then one concatenation
            hw = None if graph else (out[0] if out is not None else torch.empty(B, R, H, device=x.device, dtype=x.dtype))
            parts = []
            for (r, a, b), W in zip(self._groups, self.window_weights):
                w = windows(xs[a:b], r, None if ps is None else ps[a:b])
                wins.append(w)
                parts.append(torch.bmm(w, W) if graph else torch.bmm(w, W, out=hw[a:b]))
            if graph:
                hw = parts[0] if len(parts) == 1 else torch.cat(parts)
            if self._inv is not None:
                hw = hw[self._inv] if out is None or graph else torch.index_select(hw, 0, self._inv, out=out[1])
        else:
            r = max(self.radii)
            w = windows(x, r, pos)
            wins.append(w)
            hw = torch.bmm(w, self.window_weights[0] * self.window_mask)
        if torch.is_grad_enabled():
            hw = (hw.view(B, S, P, H) + temb[:, :, None, :]).view(B, R, H)
        else:
            hw.view(B, S, P, H).add_(temb[:, :, None, :])
        return hw, (feats, wins)

    def _forward(self, x, k, pos=None):
        """Batched kernel: ``x`` ``(B, S, L)``, ``k`` ``(B, S)`` or an int -> ``(B, S, L)``.

        With positions ``pos`` ``(B, S, P)``: the outputs there only, ``(B, S, P)``.
        """
        B, S, L = x.shape
        P = L if pos is None else pos.shape[-1]
        inplace = not torch.is_grad_enabled()
        h = F.silu(self._first_layer(x, k, pos)[0], inplace=inplace)
        for W, bb in zip(self.hidden_weights, self.hidden_biases):
            h = F.silu(torch.baddbmm(bb, h, W), inplace=inplace)
        return self._output_layer(h).view(B, S, P)

    def _output_layer(self, h):
        """``(B, R, H) -> (B, R)``: ``h . w_b + c_b``, a product and a sum over the last axis
        (batch-independent rounding, unlike a one-column matrix product).
        """
        B = h.shape[0]
        return torch.linalg.vecdot(h, self.out_weight.view(B, 1, -1)) + self.out_bias.view(B, 1)

    def dsm_backward(self, x, k, eps, pos=None):
        """Per-network DSM loss ``mean |eps_hat_b(x_b, k_b) - eps_b|^2`` and its gradient, by hand.

        The same forward pass as :meth:`forward` (the same operations, so the same
        losses bit for bit), then the backward pass written out for this network
        (the chain rule of the layers, :func:`torch.ops.aten.silu_backward` for
        SiLU) instead of autograd: no graph bookkeeping, and the output layer's
        backward as an outer product instead of a slow 2-column matrix product
        (``benchmarks/bench_cir.py``).  The gradient of the SUM of the ``B`` losses
        is written into every parameter's ``.grad`` (in place where it exists with
        that shape, e.g. a view of :class:`FlatAdam`'s flat gradient); network ``b``'s
        gradient depends on its own data only.  ``x``: ``(B, S, L)``; ``k``:
        ``(B, S)`` integer steps; ``pos``: ``(B, S, P)`` positions whose windows are
        scored (``None``: all ``L``); ``eps``: the targets there, ``(B, S, P)``.
        Returns the ``(B,)`` losses (no graph).  Equal to autograd's gradient up to
        rounding (tested).
        """
        B, S, L = x.shape
        P = L if pos is None else pos.shape[-1]
        H, R = self.width, S * P
        silu, silu_backward = torch.ops.aten.silu.out, torch.ops.aten.silu_backward.grad_input
        ws = self._workspace(B, R, x.dtype, x.device)  # the (B, R, H) activations, allocated once
        with torch.no_grad():
            bufs = (ws["pre"][0], None) if self._inv is None else (ws["da"], ws["pre"][0])  # (sorted, final)
            hw, (feats, wins) = self._first_layer(x, k, pos, out=bufs)
            pre = [hw] + ws["pre"][1:]  # pre-activations, layer by layer
            h = silu(hw, out=ws["acts"][0])
            acts = [h]
            for j, (W, bb) in enumerate(zip(self.hidden_weights, self.hidden_biases), start=1):
                torch.baddbmm(bb, h, W, out=pre[j])
                h = silu(pre[j], out=ws["acts"][j])
                acts.append(h)
            # the output layer as _output_layer (vecdot: a product, then a sum), its product in a buffer
            resid = (torch.mul(h, self.out_weight.view(B, 1, H), out=ws["dh"]).sum(-1)
                     + self.out_bias.view(B, 1)).view(B, S, P) - eps
            loss = torch.mean(resid**2, dim=(1, 2))  # (B,): the same operations as the autograd loss
            g = resid.view(B, R, 1) * (2.0 / R)  # d(sum_b loss_b) / d out
            grads = {self.out_bias: g.sum(1, keepdim=True),
                     self.out_weight: acts[-1].mul_(g).sum(1)[..., None]}  # acts[-1] is not needed after this
            dh = torch.mul(g, self.out_weight.view(B, 1, H), out=ws["dh"])  # (B, R, H): outer product
            da = ws["da"]
            for j in range(len(self.hidden_weights) - 1, -1, -1):
                silu_backward(dh, pre[j + 1], grad_input=da)
                W = self.hidden_weights[j]
                grads[W] = torch.bmm(acts[j].transpose(1, 2), da)
                grads[self.hidden_biases[j]] = da.sum(1, keepdim=True)
                dh = torch.bmm(da, W.transpose(1, 2), out=dh)
            silu_backward(dh, pre[0], grad_input=da)  # (B, R, H)
            dtemb = da.view(B, S, P, H).sum(2)  # (B, S, H)
            grads[self.bias] = dtemb.sum(1, keepdim=True)
            grads[self.time_weight] = torch.bmm(feats.transpose(1, 2), dtemb)
            if self.first_layer == "grouped":
                das = da if self._perm is None else da[self._perm]
                for (r, a, b), W, w in zip(self._groups, self.window_weights, wins):
                    grads[W] = torch.bmm(w.transpose(1, 2), das[a:b])
            else:
                grads[self.window_weights[0]] = torch.bmm(wins[0].transpose(1, 2), da) * self.window_mask
            for prm, gr in grads.items():
                if prm.grad is not None and prm.grad.shape == gr.shape:
                    prm.grad.copy_(gr)  # in place: the gradient may be a view of a flat buffer (FlatAdam)
                else:
                    prm.grad = gr
        return loss

    def _reflected_indices(self, r: int, L: int, device):
        """``(L, 2r+1)`` indices of the reflect-padded window of every centre: ``|i - r + j|`` folded at
        ``L - 1`` (the padding of :func:`_reflect_windows`), cached per ``(r, L)``.
        """
        cache = self.__dict__.setdefault("_reflect_cache", {})
        key = (r, L, str(device))
        if key not in cache:
            j = np.arange(L)[:, None] - r + np.arange(2 * r + 1)[None, :]
            j = np.abs(j)
            j = np.where(j > L - 1, 2 * (L - 1) - j, j)
            cache[key] = torch.as_tensor(j, dtype=torch.long, device=device)
        return cache[key]

    def _workspace(self, B: int, R: int, dtype, device) -> dict:
        """Buffers ``(B, R, H)`` of :meth:`dsm_backward`, kept between calls of the same shape: fresh
        megabyte-sized temporaries every step are returned to the kernel and faulted back in.
        """
        key = (B, R, dtype, str(device))
        ws = getattr(self, "_ws", None)
        if ws is None or ws[0] != key:
            def buf():
                return torch.empty(B, R, self.width, dtype=dtype, device=device)
            ws = (key, {"pre": [buf() for _ in range(self.depth)], "acts": [buf() for _ in range(self.depth)],
                        "dh": buf(), "da": buf()})
            self._ws: Any = ws
        return ws[1]

    def score(self, x, k, alpha_bars):
        """Score of the noised (standardized) law: ``-eps_hat / sqrt(1 - alpha_bar_k)``."""
        return -self(x, k) / torch.sqrt(1.0 - alpha_bars[k])[..., None]


class _AllPositionsEval:
    """No-grad ``eps_hat`` of a :class:`LocalScoreMLP` at every position, for samplers.

    ``ev(x, k)``: ``x`` ``(B, S, L)`` (the ``S`` and ``L`` given here), ``k`` one step for all
    series -> ``(B, S, L)``, the same function as ``net._forward(x, k)`` (equal up to rounding).
    The rows are evaluated ``block`` series at a time in buffers allocated once (activations of
    ``B x block x L`` rows stay in cache, and no fresh allocation is faulted in per call), the
    first layer's time part enters its product as one more input (a column of ones in the
    window buffer, the time embedding as one more weight row) instead of a broadcast addition,
    and the output layer is the product-and-sum of :meth:`LocalScoreMLP._output_layer`.  Every
    product is per network (``bmm`` over the network axis): a network's result does not depend
    on the others.  The block size changes no draw (at most the rounding of the products).
    """

    def __init__(self, net: LocalScoreMLP, S: int, L: int, block: int):
        self.net, self.S, self.L = net, S, L
        B, H = net.n_models, net.width
        p: Any = net.freqs.dtype, net.freqs.device
        self.sb = sb = min(block, S)
        R = sb * L
        perm = net._perm if net.first_layer == "grouped" else None
        self.perm, self.inv = perm, (net._inv if perm is not None else None)

        def sorted_(t):  # parameters in the order of the first layer's groups
            return t.detach() if perm is None else t.detach()[perm]

        if net.first_layer == "grouped":
            self.groups = [(r, a, b, W.detach()) for (r, a, b), W in zip(net._groups, net.window_weights)]
        else:
            self.groups = [(max(net.radii), 0, B, (net.window_weights[0] * net.window_mask).detach())]
        self.wbufs = [torch.ones(b - a, R, 2 * r + 2, dtype=p[0], device=p[1]) for r, a, b, _ in self.groups]
        self.hidden = [(sorted_(bb), sorted_(W)) for W, bb in zip(net.hidden_weights, net.hidden_biases)]
        self.w_out, self.c_out = sorted_(net.out_weight).view(B, 1, H), sorted_(net.out_bias).view(B, 1)
        self.bias, self.time_weight = sorted_(net.bias), sorted_(net.time_weight)
        self.h = [torch.empty(B, R, H, dtype=p[0], device=p[1]) for _ in range(2)]
        self.out = torch.empty(B, S, L, dtype=p[0], device=p[1])

    def __call__(self, x, k):
        net, S, L, sb = self.net, self.S, self.L, self.sb
        B = x.shape[0]
        if tuple(x.shape) != (B, S, L) or B != net.n_models:
            raise ValueError(f"x must have shape {(net.n_models, S, L)}, got {tuple(x.shape)}")
        with torch.no_grad():
            kk = torch.full((B, 1), float(k), device=x.device, dtype=x.dtype)
            temb = torch.baddbmm(self.bias, net.time_features(kk), self.time_weight)  # (B, 1, H), sorted
            xs = x if self.perm is None else x[self.perm]
            parts = []
            for r, a, b, W in self.groups:
                xg = xs[a:b]
                xp = xg if r == 0 else F.pad(xg.reshape(-1, 1, L), (r, r), mode="reflect").view(b - a, S, L + 2 * r)
                parts.append((r, a, b, torch.cat([W, temb[a:b]], dim=1), xp))  # (G, 2r+2, H): [W_w; t-part]
            out = self.out
            for s0 in range(0, S, sb):
                s1 = min(S, s0 + sb)
                n = (s1 - s0) * L
                h = self.h[0][:, :n]
                for (r, a, b, Wa, xp), wb in zip(parts, self.wbufs):
                    win = xp[:, s0:s1].unfold(-1, 2 * r + 1, 1) if r else xp[:, s0:s1, :, None]
                    wb[:, :n, : 2 * r + 1].view(b - a, s1 - s0, L, 2 * r + 1).copy_(win)
                    torch.bmm(wb[:, :n], Wa, out=h[a:b])
                F.silu(h, inplace=True)
                j = 0
                for j, (bb, W) in enumerate(self.hidden, start=1):
                    nxt = self.h[j % 2][:, :n]
                    torch.baddbmm(bb, h, W, out=nxt)
                    h = F.silu(nxt, inplace=True)
                # the output layer's product-and-sum (as vecdot's), its product in the free buffer
                prod = torch.mul(h, self.w_out, out=self.h[(j + 1) % 2][:, :n])
                o = out[:, s0:s1].view(B, n)
                torch.sum(prod, dim=-1, out=o)
                o.add_(self.c_out)
            return out if self.inv is None else out[self.inv]  # the buffer: valid until the next call


def _ddpm_chain(model, x, alpha_bars, k_used, variance: str, noise_gens):
    """:func:`molrg.sampling.sample_ddpm_discrete` (``prediction="eps"``, no final noise) in place.

    The same coefficients and the same operations in the same order (each one rounding:
    ``out * c``, ``+ x``, ``* 1/sqrt(alpha)``, ``+ std * z``), so the same numbers, without a
    fresh ``(B, S, L)`` tensor per operation: ``x`` is updated in place, the noise of network
    ``b`` is drawn into its slice of one buffer from ``noise_gens[b]`` (one call per network
    and step, as the shared sampler's per-problem streams).  Returns ``x``.
    """
    ab = np.asarray(alpha_bars, dtype=np.float64)
    prev = np.concatenate([[-1], k_used[:-1]])
    ab_prev = np.where(prev >= 0, ab[np.maximum(prev, 0)], 1.0)
    ab_now = ab[k_used]
    alpha = ab_now / ab_prev
    beta = 1.0 - alpha
    var = beta.copy() if variance == "beta" else beta * (1.0 - ab_prev) / (1.0 - ab_now)
    var[0] = 0.0
    c_out = -beta / np.sqrt(1.0 - ab_now)
    inv_sqrt_alpha = 1.0 / np.sqrt(alpha)
    noise_std = np.sqrt(var)
    z = torch.empty_like(x)
    shape = tuple(x.shape[1:])
    for j in range(k_used.size - 1, -1, -1):
        out = model(x, int(k_used[j]))
        x.add_(out.mul_(float(c_out[j]))).mul_(float(inv_sqrt_alpha[j]))
        if noise_std[j] > 0:
            for b, g in enumerate(noise_gens):
                torch.randn(shape, generator=g, dtype=x.dtype, device=x.device, out=z[b])
            x.add_(z.mul_(float(noise_std[j])))
    return x


# --------------------------------------------------------------------------- the sampler
def sampler_steps(T: int, steps: int | None = None, *, n_steps: int | None = None) -> np.ndarray:
    """Increasing DDPM step indices used by the (strided) sampler.

    ``steps=None`` or ``T``: all steps ``0 .. T-1``; otherwise ``steps`` indices
    evenly spaced from 0 to ``T - 1`` (rounded, ``1 <= steps <= T``).  ``n_steps``
    is the deprecated name of ``steps``.
    """
    steps = deprecated_alias("n_steps", "steps", n_steps, steps, None)
    T = check_int("T", T, low=1)
    if steps is None:
        return np.arange(T)
    steps = check_int("steps", steps, low=1, high=T)
    return np.unique(np.round(np.linspace(0, T - 1, steps)).astype(np.int64))


def ddpm_sample(
    eps_model: Callable,
    n_series: int,
    length: int,
    schedule: DDPMSchedule | None = None,
    *,
    steps: int | None = None,
    variance: str = "beta",
    batch_size: int | None = None,
    device: Any = "cpu",
    dtype: Any = None,
    extra_args: dict | None = None,
    random_state: Any = None,
    n_steps: int | None = None,
):
    """DDPM ancestral sampling with any noise predictor ``eps_model(x, k, **extra_args)``.

    From ``x ~ N(0, I)`` at the last step, each step ``k -> k'`` (``k' < k`` the
    previous step used, ``ab_{-1} = 1``) is

    ``x <- (x - beta / sqrt(1 - ab_k) * eps_model(x, k)) / sqrt(alpha) + s z``,
    ``alpha = ab_k / ab_{k'}``, ``beta = 1 - alpha``,

    i.e. ``(x + beta * score) / sqrt(alpha) + s z`` as in SPEC B4: the shared
    :func:`molrg.sampling.sample_ddpm_discrete` with ``prediction="eps"``.  With all steps
    (``steps=None``) this is Ho et al. (2020), Algorithm 2; with ``steps < T``
    the steps are a strided subset (:func:`sampler_steps`) and ``alpha, beta`` are
    those of the merged step (the same Markov chain on the sub-grid, as in
    DDIM's ``eta = 1`` sampler), ``steps`` network calls instead of ``T``.
    The noise ``s^2`` is ``beta`` (``variance="beta"``) or the posterior variance
    ``beta (1 - ab_{k'}) / (1 - ab_k)`` (``"posterior"``); the last step adds none.
    Striding is a discretization: with the exact denoiser of ``N(0, 0.25)`` data the
    generated variance is 0.2508 with all 1000 steps, 0.259 with 100 strided steps
    and ``"beta"``, 0.268 with 50, and 0.196 with 50 and ``"posterior"`` (which
    drops the spread of ``x_0`` given ``x_k``), hence the default ``"beta"``.

    Parameters
    ----------
    eps_model : callable
        ``eps_model(x, k, **extra_args)`` with ``x`` ``(batch, length)`` and the step
        ``k`` (an int, the same for the whole batch) returns the noise prediction
        ``(batch, length)``.
    n_series, length : int
    schedule : DDPMSchedule, optional
        Default ``DDPMSchedule()`` (T = 1000, beta 1e-4 .. 0.02).
    steps : int, optional
        Number of sampler steps (``None``: all ``T``); ``n_steps`` is its deprecated name.
    variance : {"beta", "posterior"}
    batch_size : int, optional
        Series per network batch (``None``: all at once).
    device, dtype :
        Default CPU, float32.
    extra_args : dict, optional
        Passed to every ``eps_model`` call (k-diffusion's convention).
    random_state : None, int, numpy.random.Generator or torch.Generator

    Returns
    -------
    torch.Tensor of shape (n_series, length)
    """
    steps = deprecated_alias("n_steps", "steps", n_steps, steps, None)
    schedule = schedule if schedule is not None else DDPMSchedule()
    n_series = check_int("n_series", n_series, low=1)
    length = check_int("length", length, low=1)
    check_choice("variance", variance, ("beta", "posterior"))
    batch_size = n_series if batch_size is None else check_int("batch_size", batch_size, low=1)
    if steps is not None:
        steps = check_int("steps", steps, low=1, high=schedule.T)
    dtype = dtype or torch.float32
    gen = torch_generator(random_state, device=device)
    idx = sampler_steps(schedule.T, steps)
    out = []
    with torch.no_grad():
        for start in range(0, n_series, batch_size):
            x = torch.randn((min(batch_size, n_series - start), length), generator=gen, device=device, dtype=dtype)
            out.append(sample_ddpm_discrete(eps_model, x, schedule, steps=idx, prediction="eps", variance=variance,
                                            extra_args=extra_args, random_state=gen))
    return torch.cat(out, dim=0)


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class LocalScoreFit:
    """``B`` trained localized scores (the result of :func:`train_local_scores`).

    Attributes
    ----------
    network : LocalScoreMLP
        The ``B`` networks (in eval mode).
    radii : tuple of int
    mean, scale : ndarray of shape (B,)
        Per-network standardization ``z = (x - mean) / scale``.
    length : int
        Length of the training series (the default length of :meth:`sample`).
    schedule : DDPMSchedule
    loss_history : ndarray of shape (B, steps)
        DSM loss (per value, on standardized data) at every step, per network.
    steps : int
    runtime_s : float
        Wall-clock seconds of the training loop.
    """

    network: LocalScoreMLP
    radii: tuple
    mean: np.ndarray
    scale: np.ndarray
    length: int
    schedule: DDPMSchedule
    loss_history: np.ndarray
    steps: int
    runtime_s: float

    def sample(
        self,
        n_series: int,
        length: int | None = None,
        *,
        steps: int | None = None,
        variance: str = "beta",
        batch_size: int = 16,
        random_state: Any = None,
    ) -> np.ndarray:
        """``n_series`` series from every network: ``(B, n_series, length)`` float64, original units.

        The DDPM ancestral sampler of :func:`ddpm_sample`
        (:func:`molrg.sampling.sample_ddpm_discrete`'s chain and draws, computed in
        place: :func:`_ddpm_chain`), all networks and all series at once: per
        network one draw of the ``(n_series, length)`` start, then one of
        the noise per step.  ``random_state`` as in
        :func:`molrg.utils.problem_generators` (a sequence: one seed per network, so
        a network's samples do not depend on the others).  ``batch_size``: series
        per network whose windows go through the network together (default 16:
        ``B x 16 x 64`` rows of activations stay in cache, measured faster than 4, 8,
        32 or 100; see :class:`_AllPositionsEval`); it changes no draw.
        """
        n_series = check_int("n_series", n_series, low=1)
        length = self.length if length is None else _check_length(length, max(self.radii))
        check_choice("variance", variance, ("beta", "posterior"))
        if steps is not None:
            steps = check_int("steps", steps, low=1, high=self.schedule.T)
        batch_size = check_int("batch_size", batch_size, low=1)
        B = len(self.radii)
        device: Any = self.network.freqs.device
        dtype: Any = self.network.freqs.dtype
        rngs = problem_generators(random_state, B)  # one stream per network
        idx = sampler_steps(self.schedule.T, steps)
        with torch.no_grad():
            x = torch.empty(B, n_series, length, device=device, dtype=dtype)
            for b, g in enumerate(rngs):  # the start, then (the sampler's) one noise draw per step, per network
                torch.randn((n_series, length), generator=torch_generator(g, device=device), device=device,
                            dtype=dtype, out=x[b])
            model = _AllPositionsEval(self.network, n_series, length, batch_size)
            noise = [torch_generator(g, device=device) for g in rngs]  # as sample_ddpm_discrete's streams
            Z = _ddpm_chain(model, x, self.schedule.alpha_bars, idx, variance, noise)
        return self.mean[:, None, None] + self.scale[:, None, None] * Z.cpu().numpy().astype(np.float64)

    def to_frame(self):
        """The loss history as a tidy table: columns ``network``, ``radius``, ``step``, ``loss``."""
        import pandas as pd

        B, S = self.loss_history.shape
        return pd.DataFrame({
            "network": np.repeat(np.arange(B), S),
            "radius": np.repeat(np.asarray(self.radii), S),
            "step": np.tile(np.arange(S), B),
            "loss": self.loss_history.ravel(),
        })


def _check_datasets(X: Any) -> tuple[list[np.ndarray], bool]:
    """``X`` as a list of ``(N_b, L)`` float64 arrays of one common ``L``; True when one array was given."""
    if isinstance(X, (list, tuple)):
        data = [check_matrix(f"X[{b}]", x, ndim=2, dtype=np.float64) for b, x in enumerate(X)]
        if not data:
            raise ValueError("X must hold at least one training set")
        single = False
    else:
        arr = np.asarray(X) if not hasattr(X, "ndim") else X
        if getattr(arr, "ndim", 0) == 3:
            data = [check_matrix(f"X[{b}]", x, ndim=2, dtype=np.float64) for b, x in enumerate(arr)]
            single = False
        else:
            data, single = [check_matrix("X", X, ndim=2, dtype=np.float64)], True
    lengths = {x.shape[1] for x in data}
    if len(lengths) > 1:
        raise ValueError(f"every training set must have the same series length, got {sorted(lengths)}")
    for b, x in enumerate(data):
        if not float(x.std()) > 0:
            raise ValueError(f"X{'' if single else f'[{b}]'} is constant: nothing to learn")
    return data, single


def train_local_scores(
    X: Any,
    radius: Any,
    *,
    width: int = 128,
    depth: int = 2,
    steps: int = 3000,
    batch_size: int = 128,
    positions: int | None = None,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    schedule: DDPMSchedule | None = None,
    n_freqs: int = 6,
    first_layer: str = "grouped",
    optimizer: str = "auto",
    gradient: str = "manual",
    device: Any = "cpu",
    random_state: Any = None,
) -> LocalScoreFit:
    """Train ``B`` localized scores by denoising score matching, as one batched model (SPEC B5).

    Network ``b`` (radius ``radius[b]``) is trained on its own training set
    ``X[b]`` for ``steps`` Adam steps; at each step it draws ``batch_size`` of its
    series, one DDPM step ``k`` per series (uniform on ``0 .. T-1``) and one
    ``eps ~ N(0, I)`` per series, and its loss is

    ``mean_{series, positions} |eps_hat_b(sqrt(ab_k) z + sqrt(1 - ab_k) eps, k) - eps|^2``

    on its standardized data ``z``.  All networks take one Adam step together on
    the sum of their losses (no coupling: module docstring).

    Parameters
    ----------
    X : array ``(N, L)``, a sequence of ``B`` arrays ``(N_b, L)``, or an array ``(B, N, L)``
        Training series (float; ``L >= 2 r + 1``); the sets may differ in size.
    radius : int or sequence of ``B`` ints
        Localization radii (an int: the same for every network).
    width, depth : int
        Hidden width and number of hidden layers (default 128, 2: SPEC B5).
    steps : int
        Adam steps (default 3000, SPEC B5).
    batch_size : int
        Series per network and step (default 128).
    positions : int, optional
        Windows scored per series and step: ``None`` (default) scores every
        position; an int ``P`` draws ``P`` positions per series (uniform, with
        replacement, from the network's stream) and scores only the windows
        centred there: the same DSM loss in expectation (every window of a noised
        series has the law it has in the full sum), at ``P / L`` of the cost per
        series.
    lr : float
        Adam learning rate (default ``1e-3``, the paper's).
    lr_schedule : {"constant", "cosine"}
        ``"cosine"`` anneals the rate from ``lr`` to 0 over the ``steps``.
    schedule : DDPMSchedule, optional
        Default ``DDPMSchedule()``.
    n_freqs : int
        Frequencies of the time embedding (see :class:`LocalScoreMLP`).
    first_layer : {"grouped", "padded"}
        Batching of different radii (module docstring); changes no result beyond rounding.
    optimizer : {"auto", "flat", "fused", "foreach", "single"}
        Form of Adam: ``"flat"`` (= ``"auto"``, default) :class:`FlatAdam` on one flat
        buffer of all parameters; the others torch's :class:`torch.optim.Adam` as
        :func:`molrg.nn.batched_adam` builds it (with :class:`torch.optim.lr_scheduler.CosineAnnealingLR`).
        The same updates up to rounding.
    gradient : {"manual", "autograd"}
        How the gradient is computed: the hand-written backward pass of
        :meth:`LocalScoreMLP.dsm_backward` (default, faster) or torch's autograd;
        the same gradient up to rounding.
    device : str or torch.device
        Default ``"cpu"``.
    random_state : None, int, Generator, or a sequence of ``B`` of them
        One stream per network (a sequence: network ``b`` uses entry ``b`` only, so
        its result does not depend on the other networks): initialization, then
        mini-batches, steps and noise.

    Returns
    -------
    LocalScoreFit

    Examples
    --------
    >>> from locality.cir import simulate_cir
    >>> X = [simulate_cir(40, 16, random_state=s) for s in (0, 1)]
    >>> fit = train_local_scores(X, [0, 2], width=8, depth=1, steps=3, batch_size=4, random_state=[5, 6])
    >>> fit.loss_history.shape, fit.sample(3, steps=5, random_state=[0, 1]).shape
    ((2, 3), (2, 3, 16))
    """
    data, _ = _check_datasets(X)
    B = len(data)
    radii = [radius] * B if np.ndim(radius) == 0 else list(radius)
    if len(radii) != B:
        raise ValueError(f"radius must be an int or one radius per training set ({B}), got {len(radii)}")
    radii = [check_int("radius" if np.ndim(radius) == 0 else f"radius[{b}]", r, low=0) for b, r in enumerate(radii)]
    L = data[0].shape[1]
    _check_length(L, max(radii), "X.shape[1] (the series length)")
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    if positions is not None:
        positions = check_int("positions", positions, low=1)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    check_choice("lr_schedule", lr_schedule, ("constant", "cosine"))
    check_choice("optimizer", optimizer, ("auto", "flat", "fused", "foreach", "single"))
    check_choice("gradient", gradient, ("manual", "autograd"))
    schedule = schedule if schedule is not None else DDPMSchedule()
    device = torch.device(device)
    gens = network_generators(random_state, B, device=device)

    mean = np.array([x.mean() for x in data])
    scale = np.array([x.std() for x in data])
    sizes = [x.shape[0] for x in data]
    Z = torch.zeros(B, max(sizes), L, dtype=torch.float32, device=device)
    for b, x in enumerate(data):
        Z[b, : sizes[b]] = torch.as_tensor((x - mean[b]) / scale[b], dtype=torch.float32)
    sizes_t = torch.as_tensor(sizes, device=device)
    ab = schedule.torch("alpha_bars", device=device, dtype=torch.float32)
    net = LocalScoreMLP(radii, width=width, depth=depth, n_freqs=n_freqs, T=schedule.T,
                        first_layer=first_layer, random_state=gens, device=device)
    streams = _Streams(gens, B, block=_BLOCK, device=device)
    if optimizer in ("auto", "flat"):
        opt, sched = FlatAdam(net.parameters(), lr), None
    else:
        opt = batched_adam(net.parameters(), lr, method=optimizer)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if lr_schedule == "cosine" else None
    losses = torch.empty(steps, B, device=device)  # kept on the device: no sync per step
    offsets = torch.arange(B, device=device)[:, None] * Z.shape[1]  # row of Z[b, 0] in Z.view(-1, L)
    x0_buf = torch.empty(B * batch_size, L, device=device)  # per-step buffers (no fresh allocation per step)
    xk_buf, noise_buf = torch.empty(B, batch_size, L, device=device), torch.empty(B, batch_size, L, device=device)
    t0 = time.perf_counter()
    for it in range(steps):
        idx = streams.randint(sizes_t, batch_size)  # (B, S)
        k = streams.randint(schedule.T, batch_size)  # (B, S)
        eps = streams.randn((batch_size, L))  # (B, S, L)
        a = ab[k][..., None]
        x0 = torch.index_select(Z.view(-1, L), 0, (idx + offsets).view(-1), out=x0_buf).view(B, batch_size, L)  # Z[b, idx[b]]
        xk = torch.mul(x0, torch.sqrt(a), out=xk_buf).add_(torch.mul(eps, torch.sqrt(1.0 - a), out=noise_buf))
        pos, target = None, eps
        if positions is not None:  # the windows centred at P random positions per series
            pos = streams.randint(L, batch_size * positions).view(B, batch_size, positions)
            target = torch.gather(eps, 2, pos)
        if gradient == "manual":
            loss = net.dsm_backward(xk, k, target, pos)  # (B,), gradients written into .grad
        else:
            loss = torch.mean((net._forward(xk, k, pos) - target) ** 2, dim=(1, 2))  # (B,)
            if isinstance(opt, FlatAdam):
                opt.zero_grad()  # autograd accumulates into the flat gradient's views
            else:
                opt.zero_grad(set_to_none=True)
            loss.sum().backward()
        if isinstance(opt, FlatAdam) and lr_schedule == "cosine":
            opt.lr = lr * 0.5 * (1.0 + math.cos(math.pi * it / steps))  # CosineAnnealingLR's rate, closed form
        opt.step()
        if sched is not None:
            sched.step()
        losses[it] = loss.detach()
    runtime = time.perf_counter() - t0
    net._ws = None  # the training workspace (activation buffers) is not needed any more
    net.eval()
    return LocalScoreFit(
        network=net, radii=tuple(radii), mean=mean, scale=scale, length=L, schedule=schedule,
        loss_history=losses.T.cpu().numpy().astype(np.float64), steps=steps, runtime_s=runtime,
    )


# --------------------------------------------------------------------------- estimator
class LocalizedDiffusion:
    """Localized diffusion model for stationary time series (SPEC B5, paper section 4.2).

    One network of :func:`train_local_scores` (``B = 1``): fits a
    :class:`LocalScoreMLP` of radius ``radius`` by denoising score matching (eps
    prediction) on standardized data, and generates new series with the DDPM
    ancestral sampler.  For many radii or trials at once call
    :func:`train_local_scores` directly.

    Parameters
    ----------
    radius : int
        Localization radius ``r >= 0``.
    width, depth : int
        Hidden width and layers of the shared MLP (default 128, 2: SPEC B5).
    steps : int
        Adam steps (default 3000, SPEC B5); ``n_iter`` is its deprecated name.
    batch_size, lr, lr_schedule, schedule, n_freqs, device :
        As in :func:`train_local_scores`.
    random_state : None, int or numpy.random.Generator
        Seeds the initialization and the training draws (batches, steps, noise).

    Attributes
    ----------
    fit_ : LocalScoreFit
    network_ : LocalScoreMLP
    mean_, scale_ : float
        The standardization ``z = (x - mean_) / scale_`` (one scalar each, pooled).
    length_ : int
        Length of the training series (the default length of :meth:`sample`).
    loss_history_ : ndarray of shape (steps,)
        DSM loss (per value, on standardized data) at every step.
    n_iter_ : int
    runtime_s_ : float

    Examples
    --------
    >>> from locality.cir import simulate_cir
    >>> X = simulate_cir(64, 16, random_state=0)
    >>> model = LocalizedDiffusion(1, width=16, depth=1, steps=5, batch_size=8, random_state=0).fit(X)
    >>> model.sample(3, steps=10, random_state=0).shape
    (3, 16)
    """

    def __init__(
        self,
        radius: int,
        *,
        width: int = 128,
        depth: int = 2,
        steps: int = 3000,
        batch_size: int = 128,
        lr: float = 1e-3,
        lr_schedule: str = "constant",
        schedule: DDPMSchedule | None = None,
        n_freqs: int = 6,
        device: Any = "cpu",
        random_state: Any = None,
        n_iter: int | None = None,
    ):
        self.radius = radius
        self.width = width
        self.depth = depth
        self.steps = deprecated_alias("n_iter", "steps", n_iter, steps, 3000)
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.schedule = schedule
        self.n_freqs = n_freqs
        self.device = device
        self.random_state = random_state

    def fit(self, X: Any) -> LocalizedDiffusion:
        """Train on ``X`` of shape ``(n_series, length)`` (``length >= 2 radius + 1``); returns ``self``."""
        radius = _check_radius(self.radius)
        X = check_matrix("X", X, ndim=2, dtype=np.float64)
        fit = train_local_scores(
            X, radius, width=self.width, depth=self.depth, steps=self.steps, batch_size=self.batch_size,
            lr=self.lr, lr_schedule=self.lr_schedule, schedule=self.schedule, n_freqs=self.n_freqs,
            device=self.device, random_state=[self.random_state if self.random_state is not None else
                                               np.random.SeedSequence()],
        )
        self.fit_ = fit
        self.network_ = fit.network
        self.mean_, self.scale_ = float(fit.mean[0]), float(fit.scale[0])
        self.length_ = fit.length
        self.schedule_ = fit.schedule
        self.loss_history_ = fit.loss_history[0]
        self.n_iter_ = fit.steps
        self.runtime_s_ = fit.runtime_s
        return self

    @property
    def fit_time_s_(self) -> float:
        """Deprecated name of ``runtime_s_``."""
        import warnings

        warnings.warn("fit_time_s_ is deprecated; use runtime_s_", FutureWarning, stacklevel=2)
        return self.runtime_s_

    def _check_fitted(self):
        if not hasattr(self, "fit_"):
            raise RuntimeError("this LocalizedDiffusion is not fitted yet: call fit(X) first")

    def sample(
        self,
        n_series: int,
        length: int | None = None,
        *,
        steps: int | None = None,
        variance: str = "beta",
        random_state: Any = None,
        n_steps: int | None = None,
    ) -> np.ndarray:
        """Generate ``n_series`` series (float64 numpy, original units).

        ``length`` defaults to the training length; any ``length >= 2 radius + 1``
        works (the network is shared by the positions).  ``steps`` (sampler steps,
        ``n_steps`` its deprecated name) and ``variance`` as in :func:`ddpm_sample`.
        """
        self._check_fitted()
        steps = deprecated_alias("n_steps", "steps", n_steps, steps, None)
        rs = random_state if random_state is not None else np.random.SeedSequence()
        return self.fit_.sample(n_series, length, steps=steps, variance=variance, random_state=[rs])[0]
