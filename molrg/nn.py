r"""Many small networks as one: a batched MLP, per-network random streams, one Adam step.

The sweeps train many small, independent networks (one per training-set size, trial
or localization radius).  Trained one after the other, each step of each network is a
handful of thin matrix products and an optimizer call, all overhead.  Here ``B``
networks are one module: every weight carries a leading network axis,

.. math::

    h^{(l+1)}_b = \phi\big(h^{(l)}_b W^{(l)}_b + b^{(l)}_b\big), \qquad b = 1, \dots, B,

computed with one batched product per layer (:func:`torch.baddbmm`) for all
networks, and one optimizer step updates all of them.  Nothing couples the
networks: the loss is the *sum* of the per-network losses (so each network's
gradient is its own loss's gradient), Adam is elementwise, and the learning-rate
schedule is a function of the step only.

**One random stream per network.**  Network ``b`` is initialized from its own
:class:`torch.Generator` and draws its own mini-batches and noise from it
(:class:`NetworkStreams`), so its trajectory depends only on its own seed, never on
which networks share the batch nor on their number (SPEC Part C; the glossary's
per-problem ``random_state``).  Sweeps pass one seed per network (a sequence); an
int or ``None`` spawns ``B`` child seeds tied to positions.

**Different input widths.**  ``in_features`` may be one width per network (for
example a window of ``2 r + 1`` values plus the diffusion time, for several radii
``r``): the inputs are zero-padded to the largest width, network ``b``'s first layer
sees only its first ``in_features[b]`` columns, and
it is initialized with its own fan-in, exactly as a stand-alone network of that width
(its first layer is stored at its own width and zero-padded when stacked, so the
padding receives no gradient).
Put the shared inputs (the diffusion time) *first* or give every network the same
layout, e.g. ``[t, window..., 0-padding]``.

**Measured choices** (``benchmarks/bench_mlp.py``; CPU, 2 threads): stacked weights
with :func:`torch.baddbmm` against ``torch.func.functional_call`` + ``vmap`` over
per-network parameter dicts, and Adam as ``fused=True``, ``foreach=True`` and the
single-tensor loop; :func:`batched_adam` picks the fastest available form
(fused where the installed torch supports it on the parameters' device).

Examples
--------
>>> import torch
>>> net = BatchedMLP(3, 2, n_models=4, width=16, depth=2, random_state=[0, 1, 2, 3])
>>> net(torch.zeros(4, 5, 3)).shape
torch.Size([4, 5, 2])
>>> solo = BatchedMLP(3, 2, n_models=1, width=16, depth=2, random_state=[2])
>>> bool(torch.equal(solo.layers[0][0], net.layers[2][0]))  # same seed, same network
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import check_choice, check_int, check_real, problem_generators

__all__ = ["BatchedMLP", "NetworkStreams", "network_generators", "batched_adam", "cosine_schedule"]

ACTIVATIONS = ("silu", "relu", "tanh", "gelu")


def _torch():
    import torch

    return torch


def network_generators(random_state: Any, n_models: int, device: Any = "cpu") -> list:
    """One :class:`torch.Generator` per network.

    Parameters
    ----------
    random_state : None, int, SeedSequence, numpy Generator, or a sequence of ``n_models`` of them
        A sequence gives network ``b`` its own entry (independent of the batch: the
        form sweeps use); anything else is spawned into ``n_models`` child streams
        (:func:`molrg.utils.problem_generators`).  A sequence of
        :class:`torch.Generator` is passed through.
    n_models : int
    device : torch device of the generators.

    Returns
    -------
    list of ``n_models`` :class:`torch.Generator`
    """
    torch = _torch()
    n_models = check_int("n_models", n_models, low=1)
    if isinstance(random_state, (list, tuple)) and random_state and all(
        isinstance(g, torch.Generator) for g in random_state
    ):
        if len(random_state) != n_models:
            raise ValueError(f"random_state must have one entry per network ({n_models}), got {len(random_state)}")
        return list(random_state)
    out = []
    for rng in problem_generators(random_state, n_models):
        g = torch.Generator(device=device)
        g.manual_seed(int(rng.integers(0, 2**63 - 1)))
        out.append(g)
    return out


class NetworkStreams:
    """Per-network random draws, stacked on a leading network axis.

    ``streams.randn(shape)`` returns a ``(B, *shape)`` tensor whose slice ``b`` comes
    from network ``b``'s own generator only.  To amortize the ``B`` generator calls,
    draws of one ``(kind, shape)`` are made ``block`` steps at a time per network and
    handed out one step at a time; the sequence a network receives depends only on its
    seed, ``block`` and the sequence of requests (the same for every network), never on
    the other networks.

    Parameters
    ----------
    random_state : see :func:`network_generators`
    n_models : int
    block : int, default 64
        Steps drawn per generator call.  Part of the stream's definition: changing it
        changes the draws.
    dtype, device : default float32 on CPU.

    Examples
    --------
    >>> s4 = NetworkStreams([5, 6, 7, 8], 4)
    >>> s1 = NetworkStreams([7], 1)
    >>> import torch
    >>> bool(torch.equal(s4.randn((3,))[2], s1.randn((3,))[0]))
    True
    """

    def __init__(self, random_state: Any, n_models: int, *, block: int = 64, dtype=None, device: Any = "cpu"):
        torch = _torch()
        self.n_models = check_int("n_models", n_models, low=1)
        self.block = check_int("block", block, low=1)
        self.dtype = torch.float32 if dtype is None else dtype
        self.device = device
        self.generators = network_generators(random_state, self.n_models, device=device)
        self._buffers: dict = {}

    def _draw(self, kind: str, shape: tuple):
        torch = _torch()
        key = (kind, tuple(shape))
        buf = self._buffers.get(key)
        if buf is None or buf[1] >= self.block:
            fn = torch.randn if kind == "randn" else torch.rand
            data = torch.stack(
                [fn((self.block,) + tuple(shape), generator=g, dtype=self.dtype, device=self.device) for g in self.generators]
            )
            buf = [data, 0]
            self._buffers[key] = buf
        out = buf[0][:, buf[1]]
        buf[1] += 1
        return out

    def randn(self, shape: Sequence[int]):
        """Standard normal draws, ``(B, *shape)``."""
        return self._draw("randn", tuple(int(s) for s in shape))

    def rand(self, shape: Sequence[int]):
        """Uniform draws on ``[0, 1)``, ``(B, *shape)``."""
        return self._draw("rand", tuple(int(s) for s in shape))

    def randint(self, high, size: int):
        """Integers ``0 <= i < high[b]`` per network, ``(B, size)`` (``high``: int or ``(B,)`` tensor)."""
        torch = _torch()
        high = torch.as_tensor(high, device=self.device)
        u = self.rand((size,))
        idx = (u.to(torch.float64) * high.reshape(-1, 1).to(torch.float64)).long()
        return torch.minimum(idx, high.reshape(-1, 1).long() - 1)


class BatchedMLP(_torch().nn.Module):  # type: ignore[misc]  # torch is loaded on first use
    """``B`` independent MLPs evaluated as one, with batched matrix products.

    Each network's weights are its own leaf tensors (so a fused optimizer treats
    every network as a separate tensor and its update does not depend on the
    batch, bit for bit); the forward pass stacks them on a leading network axis and
    runs one :func:`torch.baddbmm` per layer for all networks.

    Parameters
    ----------
    in_features : int or sequence of ``n_models`` ints
        Input width, or one per network (inputs zero-padded to the largest; see the
        module docstring).
    out_features : int
    n_models : int
        Number of networks ``B``.
    width : int, default 256
        Hidden width.
    depth : int, default 3
        Number of hidden layers.
    activation : {"silu", "relu", "tanh", "gelu"}, default "silu"
    random_state : see :func:`network_generators`
        Initialization, per network: uniform ``+-1/sqrt(fan_in)`` for weights and
        biases, as :class:`torch.nn.Linear`, with each network's own fan-in.
    dtype, device : default float32 on CPU.

    Attributes
    ----------
    layers : ModuleList of ParameterList
        ``layers[b]`` holds network ``b``'s ``[W_0, b_0, W_1, b_1, ...]`` with
        ``W_l`` of shape ``(fan_in, fan_out)`` (``fan_in = in_features[b]`` at layer 0)
        and ``b_l`` of shape ``(1, fan_out)``.
    in_widths : tuple of ints
        The per-network input widths; ``in_features`` is their maximum.
    """

    def __init__(
        self,
        in_features: int | Sequence[int],
        out_features: int,
        *,
        n_models: int = 1,
        width: int = 256,
        depth: int = 3,
        activation: str = "silu",
        random_state: Any = None,
        dtype=None,
        device: Any = "cpu",
    ):
        torch = _torch()
        super().__init__()
        self.n_models = B = check_int("n_models", n_models, low=1)
        widths = np.full(B, in_features, dtype=object) if np.ndim(in_features) == 0 else np.asarray(in_features, dtype=object)
        if widths.shape != (B,):
            raise ValueError(f"in_features must be an int or one width per network ({B}), got {list(np.ravel(widths))}")
        self.in_widths = tuple(check_int(f"in_features[{b}]", w, low=1) for b, w in enumerate(widths.tolist()))
        self.in_features = max(self.in_widths)
        self.out_features = check_int("out_features", out_features, low=1)
        self.width = check_int("width", width, low=1)
        self.depth = check_int("depth", depth, low=0)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self._act = {
            "silu": torch.nn.functional.silu,
            "relu": torch.nn.functional.relu,
            "tanh": torch.tanh,
            "gelu": torch.nn.functional.gelu,
        }[activation]
        dtype = torch.float32 if dtype is None else dtype
        gens = network_generators(random_state, B, device=device)
        self.layers = torch.nn.ModuleList()
        for b, g in enumerate(gens):
            sizes = [self.in_widths[b]] + [self.width] * self.depth + [self.out_features]
            plist = torch.nn.ParameterList()
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
                bound = 1.0 / math.sqrt(fan_in)
                plist.append((torch.rand((fan_in, fan_out), generator=g, dtype=dtype, device=device) * 2 - 1) * bound)
                plist.append((torch.rand((1, fan_out), generator=g, dtype=dtype, device=device) * 2 - 1) * bound)
            self.layers.append(plist)

    @property
    def n_layers(self) -> int:
        """Number of affine layers (``depth + 1``)."""
        return self.depth + 1

    def stacked(self):
        """Weights and biases stacked on the network axis: lists of ``(B, fan_in, fan_out)`` and ``(B, 1, fan_out)``.

        Layer 0 is zero-padded to ``in_features`` rows (padding receives no gradient).
        """
        torch = _torch()
        Ws, bs = [], []
        for layer in range(self.n_layers):
            W = [p[2 * layer] for p in self.layers]
            if layer == 0 and len(set(self.in_widths)) > 1:
                W = [torch.nn.functional.pad(w, (0, 0, 0, self.in_features - w.shape[0])) for w in W]
            Ws.append(torch.stack(W))
            bs.append(torch.stack([p[2 * layer + 1] for p in self.layers]))
        return Ws, bs

    def forward(self, h):
        """Apply network ``b`` to ``h[b]``: ``(B, M, in_features) -> (B, M, out_features)``."""
        if h.ndim != 3 or h.shape[0] != self.n_models or h.shape[2] != self.in_features:
            raise ValueError(f"input must have shape ({self.n_models}, M, {self.in_features}), got {tuple(h.shape)}")
        return self._forward(h)

    def _forward(self, h):
        """Private kernel of :meth:`forward` (clean ``(B, M, in)`` input)."""
        torch = _torch()
        Ws, bs = self.stacked()
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, W)
            if i < self.n_layers - 1:
                h = self._act(h)
        return h

    def forward_member(self, e: int, h):
        """Network ``e`` alone on ``(..., in_features[e])`` (or ``(..., in_features)``, padding ignored) inputs."""
        torch = _torch()
        e = check_int("e", e, low=0, high=self.n_models - 1)
        w = self.in_widths[e]
        if h.shape[-1] not in (w, self.in_features):
            raise ValueError(f"input of network {e} must have {w} (or {self.in_features}) columns, got {h.shape[-1]}")
        shape = h.shape[:-1]
        h = h[..., :w].reshape(-1, w)
        p = self.layers[e]
        for i in range(self.n_layers):
            h = torch.addmm(p[2 * i + 1], h, p[2 * i])
            if i < self.n_layers - 1:
                h = self._act(h)
        return h.reshape(tuple(shape) + (self.out_features,))

    def n_parameters(self, e: int = 0) -> int:
        """Trainable parameters of network ``e``."""
        e = check_int("e", e, low=0, high=self.n_models - 1)
        return sum(p.numel() for p in self.layers[e])


def batched_adam(params, lr: float, *, method: str = "auto", **kwargs):
    """Adam over the stacked parameters of a batched model, in its fastest available form.

    Adam is elementwise, so one optimizer over all networks' parameters updates every
    network as its own Adam would (no global gradient clipping or weight-norm coupling
    here).  The fused kernel processes each tensor in chunks whose vectorized tails
    depend on the tensor's size, so on *stacked* weights a network's update would
    differ in the last bit with the batch; :class:`BatchedMLP` keeps one leaf tensor
    per network and layer, which makes the fused update batch-independent bit for bit.

    Parameters
    ----------
    params : iterable of tensors
    lr : float > 0
    method : {"auto", "fused", "foreach", "single"}, default "auto"
        ``"auto"``: fused where supported (torch >= 2.4 on CPU), else foreach.
        Measured on CPU on the ensembles' shapes (benchmarks/README.md): fused
        about 3.6x faster per step than the single-tensor loop.
    **kwargs : passed to :class:`torch.optim.Adam` (betas, eps, weight_decay).

    Returns
    -------
    torch.optim.Adam
    """
    torch = _torch()
    check_choice("method", method, ("auto", "fused", "foreach", "single"))
    lr = check_real("lr", lr, low=0.0, low_open=True)
    params = list(params)
    if method == "auto":
        try:
            return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)
    if method == "fused":
        return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)
    if method == "foreach":
        return torch.optim.Adam(params, lr=lr, foreach=True, **kwargs)
    return torch.optim.Adam(params, lr=lr, foreach=False, fused=False, **kwargs)


def cosine_schedule(optimizer, steps: int, lr_min_ratio: float = 0.05):
    """Cosine decay of the learning rate from ``lr`` to ``lr * lr_min_ratio`` over ``steps`` steps."""
    torch = _torch()
    steps = check_int("steps", steps, low=1)
    lr_min_ratio = check_real("lr_min_ratio", lr_min_ratio, low=0.0, high=1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
