"""Batched MLPs with per-network random streams (molrg.nn; issue 16 item 2, issue 12 item 3)."""

import pytest
import torch

from molrg.nn import (
    BatchedMLP,
    NetworkStreams,
    StackedTrainer,
    batched_adam,
    cosine_factor,
    cosine_schedule,
    network_generators,
)


def _train(seeds, widths, steps=30, method="auto"):
    """A toy regression per network, in one batched model; returns the trained module."""
    B = len(seeds)
    net = BatchedMLP(widths, 2, n_models=B, width=32, depth=2, random_state=seeds)
    streams = NetworkStreams([s + 1000 for s in seeds], B, block=8)
    opt = batched_adam(net.parameters(), 1e-2, method=method)
    sched = cosine_schedule(opt, steps)
    mask = torch.arange(net.in_features)[None, :] < torch.as_tensor(net.in_widths)[:, None]
    for _ in range(steps):
        x = streams.randn((16, 5))[..., : net.in_features] * mask[:, None, :]  # same draws at any width
        y = torch.stack([x[..., :1].sin(), x[..., 1:2] ** 2], -1)[..., 0]
        loss = ((net(x) - y) ** 2).mean(dim=(1, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net


def test_init_depends_on_the_network_seed_only():
    big = BatchedMLP(5, 3, n_models=3, width=8, depth=2, random_state=[11, 12, 13])
    solo = BatchedMLP(5, 3, n_models=1, width=8, depth=2, random_state=[12])
    for Wb, Ws in zip(big.layers[1], solo.layers[0]):
        assert torch.equal(Wb, Ws)
    other = BatchedMLP(5, 3, n_models=2, width=8, depth=2, random_state=[12, 11])
    assert torch.equal(other.layers[1][0], big.layers[0][0])
    assert not torch.equal(big.layers[0][0], big.layers[1][0])


def test_streams_depend_on_the_network_seed_only():
    a = NetworkStreams([1, 2, 3], 3, block=4)
    b = NetworkStreams([3], 1, block=4)
    for _ in range(9):  # crosses block boundaries, interleaving kinds
        torch.testing.assert_close(a.randn((2, 5))[2], b.randn((2, 5))[0], rtol=0, atol=0)
        torch.testing.assert_close(a.rand((7,))[2], b.rand((7,))[0], rtol=0, atol=0)
        assert torch.equal(a.randint(torch.tensor([3, 4, 5]), 6)[2], b.randint(5, 6)[0])
    idx = NetworkStreams(0, 2).randint(torch.tensor([1, 1000]), 500)
    assert idx[0].max() == 0 and 0 <= idx[1].min() and idx[1].max() < 1000


@pytest.mark.parametrize("method", ["fused", "foreach", "single"])
def test_training_a_network_does_not_depend_on_its_batch(method):
    alone = _train([7], [4], method=method)
    batch = _train([5, 7, 9], [4, 4, 4], method=method)
    for p, q in zip(batch.layers[1], alone.layers[0]):  # bit for bit, fused Adam included
        assert torch.equal(p, q)


def test_padded_widths_equal_standalone_networks():
    mixed = _train([5, 7], [3, 5])
    narrow = _train([5], [3])  # network 0 alone at its own width (no padding at all)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mixed.forward_member(0, x), narrow.forward_member(0, x), rtol=1e-5, atol=1e-6)
    assert mixed.layers[0][0].shape == (3, 32)
    assert torch.all(mixed.stacked()[0][0][0, 3:] == 0)  # padding, never trained
    xp = torch.cat([x, torch.randn(10, 2)], -1)
    full = mixed(torch.stack([xp, xp]))[0]
    torch.testing.assert_close(full, mixed.forward_member(0, x), rtol=1e-5, atol=1e-6)
    assert mixed.n_parameters(0) == 3 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2
    assert mixed.n_parameters(1) == mixed.n_parameters(0) + 2 * 32


def test_batched_forward_matches_members():
    net = BatchedMLP([4, 2], 3, n_models=2, width=16, depth=3, activation="tanh", random_state=0)
    x = torch.randn(2, 6, 4)
    x[1, :, 2:] = 0
    out = net(x)
    torch.testing.assert_close(out[0], net.forward_member(0, x[0]))
    torch.testing.assert_close(out[1], net.forward_member(1, x[1, :, :2]))


def test_validation():
    with pytest.raises(ValueError, match="in_features must be an int or one width per network"):
        BatchedMLP([2, 3], 1, n_models=3)
    with pytest.raises(ValueError, match="in_features\\[1\\] must be"):
        BatchedMLP([2, 0], 1, n_models=2)
    with pytest.raises(ValueError, match="activation must be one of"):
        BatchedMLP(2, 1, activation="sigmoid")
    net = BatchedMLP(2, 1, n_models=2, width=4)
    with pytest.raises(ValueError, match=r"input must have shape \(2, M, 2\)"):
        net(torch.zeros(3, 5, 2))
    with pytest.raises(ValueError, match="random_state must have one entry per network"):
        network_generators([torch.Generator()], 2)
    with pytest.raises(ValueError, match="random_state as a sequence must have one entry per problem"):
        network_generators([1, 2, 3], 2)
    with pytest.raises(ValueError, match="method must be one of"):
        batched_adam(net.parameters(), 1e-3, method="sgd")
    with pytest.raises(ValueError, match="lr must be finite"):
        batched_adam(net.parameters(), 0.0)


# --------------------------------------------------------------------------- StackedTrainer (hand-written backward)
@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "gelu"])
def test_stacked_gradients_match_autograd(activation):
    net = BatchedMLP([5, 3, 5], 4, n_models=3, width=16, depth=3, activation=activation, random_state=[1, 2, 3])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=g)
    x[1, :, 3:] = 0
    y = torch.randn(3, 7, 4, generator=g)
    trainer = StackedTrainer(net, 1e-2)
    trainer.group = 2  # networks in two groups: the same gradients
    with torch.no_grad():
        loss = trainer.loss_and_grad(x, y)
    ref = ((net(x) - y) ** 2).mean(dim=(1, 2))
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-6, atol=0)
    for b, plist in enumerate(net.layers):
        for i, p in enumerate(plist):
            got = trainer.grads[i][b][: p.shape[0]]
            torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-7)
    assert torch.all(trainer.grads[0][1, 3:] == 0)  # padding rows get no gradient
    norms = trainer.grad_norms()
    expect = [torch.sqrt(sum((p.grad.double() ** 2).sum() for p in plist)) for plist in net.layers]
    torch.testing.assert_close(norms, torch.stack(expect), rtol=1e-5, atol=0)


def _train_stacked(seeds, widths, steps=30):
    """As :func:`_train`, with :class:`StackedTrainer` (hand-written backward, fused Adam on the stacks)."""
    B = len(seeds)
    net = BatchedMLP(widths, 2, n_models=B, width=32, depth=2, random_state=seeds)
    streams = NetworkStreams([s + 1000 for s in seeds], B, block=8)
    trainer = StackedTrainer(net, 1e-2)
    mask = torch.arange(net.in_features)[None, :] < torch.as_tensor(net.in_widths)[:, None]
    with torch.no_grad():
        for k in range(steps):
            x = streams.randn((16, 5))[..., : net.in_features] * mask[:, None, :]
            y = torch.stack([x[..., :1].sin(), x[..., 1:2] ** 2], -1)[..., 0]
            trainer.loss_and_grad(x, y)
            trainer.step(cosine_factor(k, steps))
    return trainer.write_back()


def test_stacked_training_matches_torch_adam():
    """Independent check: autograd + torch.optim.Adam (foreach) + the LambdaLR cosine schedule."""
    ours = _train_stacked([5, 7], [4, 4])
    ref = _train([5, 7], [4, 4], method="foreach")
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_stacked_training_does_not_depend_on_its_batch():
    alone = _train_stacked([7], [4])
    batch = _train_stacked([5, 7, 9], [4, 4, 4])
    for p, q in zip(batch.layers[1], alone.layers[0]):  # bit for bit
        assert torch.equal(p, q)
    mixed = _train_stacked([5, 7], [3, 5])
    narrow = _train_stacked([5], [3])
    for p, q in zip(mixed.layers[0], narrow.layers[0]):  # padded first layer: the stand-alone network
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert mixed.layers[0][0].shape == (3, 32)
