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
:class:`StackedTrainer` goes further for a plain mean-squared loss: a hand-written
backward on one buffer of stacked weights and one fused Adam call per step (the
denoisers of :func:`molrg.mlp.train_mlp_denoiser`).

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

__all__ = [
    "BatchedMLP",
    "NetworkStreams",
    "StackedTrainer",
    "network_generators",
    "batched_adam",
    "cosine_schedule",
    "cosine_factor",
]

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


def cosine_factor(k: int, steps: int, lr_min_ratio: float = 0.05) -> float:
    """The factor of the learning rate at step ``k`` (0-based) of a cosine decay to ``lr_min_ratio`` over ``steps``."""
    return lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))


def cosine_schedule(optimizer, steps: int, lr_min_ratio: float = 0.05):
    """Cosine decay of the learning rate from ``lr`` to ``lr * lr_min_ratio`` over ``steps`` steps."""
    torch = _torch()
    steps = check_int("steps", steps, low=1)
    lr_min_ratio = check_real("lr_min_ratio", lr_min_ratio, low=0.0, high=1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: cosine_factor(k, steps, lr_min_ratio))


def _activation_backward(name: str):
    """``grad_z = backward(grad_a, z, a)`` of ``a = phi(z)`` for the activations of :class:`BatchedMLP` (fused aten kernels)."""
    aten = _torch().ops.aten
    return {
        "silu": lambda g, z, a: aten.silu_backward(g, z),
        "relu": lambda g, z, a: aten.threshold_backward(g, a, 0),
        "tanh": lambda g, z, a: aten.tanh_backward(g, a),
        "gelu": lambda g, z, a: aten.gelu_backward(g, z),
    }[name]


def _torch_bmm(a, b, out=None):
    if out is None:
        return _torch().bmm(a, b)
    return out.copy_(_torch().bmm(a, b))


def _numpy_bmm(a, b, out=None):
    """``torch.bmm`` through numpy's BLAS (CPU tensors, shared memory; one BLAS call per matrix)."""
    torch = _torch()
    if out is None:
        out = torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype)
    np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    return out


class StackedTrainer:
    r"""Train a :class:`BatchedMLP` by Adam with a hand-written backward, on stacked weights.

    The ensemble's weights are copied once into one ``(B, P)`` buffer (network ``b``'s
    parameters in row ``b``), viewed as stacks ``W_l`` of shape ``(B, fan_in, fan_out)``
    and ``b_l`` of shape ``(B, 1, fan_out)`` that are updated in place; :meth:`write_back`
    copies them into the module's per-network parameters.  One step of the loss
    ``sum_b mean((f_b(h_b) - y_b)^2)`` is, with ``z_l = a_{l-1} W_l + b_l``,
    ``a_l = phi(z_l)`` and ``g_L = 2 (f - y) / (M n_out)``,

    .. math::

        \nabla W_l = a_{l-1}^T g_l, \quad \nabla b_l = \textstyle\sum_{rows} g_l, \quad
        g_{l-1} = (g_l W_l^T) \odot \phi'(z_{l-1}),

    one batched product each, without the autograd graph and without stacking the
    ``B x 2 (depth + 1)`` leaves (and unstacking their gradients) at every step.  On
    CPU the products go through numpy's BLAS (``np.matmul`` on the tensors' memory, one
    GEMM call per network; OpenBLAS is 1.1-1.5x faster than torch's MKL on these
    small shapes on AMD CPUs), elsewhere through :func:`torch.bmm`; the activation's
    derivative is torch's fused kernel (``aten.silu_backward``, ...).  The networks go
    through in groups whose activations (about ``GROUP_ELEMENTS`` floats) stay in
    cache between the passes.  Adam is ``torch._fused_adam_`` (``torch.optim.Adam``'s
    fused update, ``amsgrad=False``, no weight decay) on the whole buffer: one kernel
    call per step.  Every row starts on a multiple of ``ALIGN`` elements, so the fused
    kernel's vector blocks never straddle two networks and network ``b``'s update does
    not depend on the other networks, bit for bit (``tests/test_nn.py``); the padded
    rows of a narrower first layer stay zero (their gradient is masked).
    ``benchmarks/bench_mlp.py`` measures it against autograd + fused Adam.

    Parameters
    ----------
    net : BatchedMLP
    lr : float
        Base learning rate; :meth:`step` takes the step's factor (a schedule).
    betas, eps : Adam's constants (defaults of ``torch.optim.Adam``).

    Attributes
    ----------
    Ws, bs, grads : lists of views of the buffers (``grads``: ``[dW_0, db_0, dW_1, ...]``)
    group : int or None
        Networks per group (None: from ``GROUP_ELEMENTS``).
    """

    GROUP_ELEMENTS = 2**17
    ALIGN = 64

    def __init__(self, net: BatchedMLP, lr: float, *, betas: tuple = (0.9, 0.999), eps: float = 1e-8):
        torch = _torch()
        self.net = net
        self.lr = check_real("lr", lr, low=0.0, low_open=True)
        self.beta1, self.beta2 = (check_real("betas", b, low=0.0, high=1.0) for b in betas)
        self.eps = check_real("eps", eps, low=0.0)
        with torch.no_grad():
            Ws, bs = net.stacked()
        stacks = [t for pair in zip(Ws, bs) for t in pair]  # W_0, b_0, W_1, b_1, ...
        B = net.n_models
        sizes = [t[0].numel() for t in stacks]
        # one (B, P) buffer each for the parameters, gradients and Adam's moments, network b's parameters in row b,
        # P padded to a multiple of 64 so that each row starts on a vector boundary of the fused Adam kernel
        P = -(-sum(sizes) // self.ALIGN) * self.ALIGN
        like = stacks[0]
        self.flat = torch.zeros((B, P), dtype=like.dtype, device=like.device)
        self.grad_flat = torch.zeros_like(self.flat)
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        self.params = [self.flat[:, a:b].view(t.shape) for a, b, t in zip(offsets[:-1], offsets[1:], stacks)]
        self.grads = [self.grad_flat[:, a:b].view(t.shape) for a, b, t in zip(offsets[:-1], offsets[1:], stacks)]
        for p, t in zip(self.params, stacks):
            p.copy_(t.detach())
        self.Ws, self.bs = self.params[0::2], self.params[1::2]
        self._step = torch.zeros((), dtype=like.dtype, device=like.device)
        self.n_steps = 0
        self.group = None
        self._bmm = _numpy_bmm if self.flat.device.type == "cpu" and self.flat.dtype in (torch.float32, torch.float64) else _torch_bmm
        self._act = net._act
        self._act_backward = _activation_backward(net.activation)
        self._mask = None
        if len(set(net.in_widths)) > 1:
            rows = torch.arange(net.in_features, device=self.Ws[0].device)
            widths = torch.as_tensor(net.in_widths, device=self.Ws[0].device)
            self._mask = (rows[None, :] < widths[:, None]).to(self.Ws[0].dtype)[:, :, None]

    def forward(self, h):
        """The ensemble on ``(B, M, in_features)`` with the current stacks (no graph)."""
        torch = _torch()
        for i, (W, b) in enumerate(zip(self.Ws, self.bs)):
            h = torch.baddbmm(b, h, W)
            if i < len(self.Ws) - 1:
                h = self._act(h)
        return h

    def loss_and_grad(self, h, target):
        """Per-network losses ``mean((f_b(h_b) - y_b)^2)``, ``(B,)``; their gradients go to :attr:`grads`."""
        torch = _torch()
        B = h.shape[0]
        # networks in groups whose activations (about 128k floats) stay in cache between the passes
        G = self.group if self.group is not None else max(1, self.GROUP_ELEMENTS // (h.shape[1] * self.net.width))
        if G >= B:
            loss = self._loss_and_grad(h, target, self.Ws, self.bs, self.grads)
        else:
            loss = torch.empty(B, dtype=h.dtype, device=h.device)
            for e0 in range(0, B, G):
                sl = slice(e0, e0 + G)
                loss[sl] = self._loss_and_grad(h[sl], target[sl], [W[sl] for W in self.Ws], [b[sl] for b in self.bs],
                                               [gr[sl] for gr in self.grads])
        if self._mask is not None:
            self.grads[0].mul_(self._mask)
        return loss

    def _loss_and_grad(self, h, target, Ws, bs, grads):
        torch = _torch()
        mm = self._bmm
        L = len(Ws)
        acts, pre = [h], []
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = mm(acts[-1], W).add_(b)
            if i < L - 1:
                pre.append(z)
                acts.append(self._act(z))
            else:
                out = z
        r = out.sub_(target)
        loss = (r * r).mean(dim=(1, 2))
        g = r.mul_(2.0 / (r.shape[1] * r.shape[2]))
        for i in range(L - 1, -1, -1):
            mm(acts[i].transpose(1, 2), g, out=grads[2 * i])
            torch.sum(g, 1, keepdim=True, out=grads[2 * i + 1])
            if i > 0:
                g = self._act_backward(mm(g, Ws[i].transpose(1, 2)), pre[i - 1], acts[i])
        return loss

    def grad_norms(self):
        """The 2-norm of each network's gradient (all its parameters), float64 ``(B,)``."""
        torch = _torch()
        total = None
        for gr in self.grads:
            s = gr.double().square().sum(dim=tuple(range(1, gr.ndim)))
            total = s if total is None else total + s
        return torch.sqrt(total)

    def step(self, factor: float = 1.0):
        """One Adam step at learning rate ``lr * factor`` with the gradients of :meth:`loss_and_grad`."""
        torch = _torch()
        self.n_steps += 1
        self._step.add_(1)
        torch._fused_adam_(
            [self.flat], [self.grad_flat], [self.m], [self.v], [], [self._step],
            lr=self.lr * float(factor), beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
            amsgrad=False, maximize=False,
        )

    def write_back(self):
        """Copy the stacks into the module's per-network parameters (layer 0 at each network's own width)."""
        torch = _torch()
        with torch.no_grad():
            for b, plist in enumerate(self.net.layers):
                for i in range(len(self.Ws)):
                    W = plist[2 * i]
                    W.copy_(self.Ws[i][b, : W.shape[0]])
                    plist[2 * i + 1].copy_(self.bs[i][b])
        return self.net
