"""The closed-form optimizer deltas against real torch optimizers, and the reductions against numpy."""

import numpy as np
import pytest
import torch

from resofilter_hf.engine.deltas import AdamState, DeltaStats, StepTransform


def _real_step(optimizer_cls, w, g, **kwargs):
    """Delta of one real step of a fresh optimizer on gradient g."""
    p = torch.nn.Parameter(w.clone())
    opt = optimizer_cls([p], **kwargs)
    p.grad = g.clone()
    opt.step()
    return p.detach() - w


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, 24, generator=gen, dtype=torch.float64) * 0.02
    g = torch.randn(16, 24, generator=gen, dtype=torch.float64) * 1e-3
    g[0, :5] = 0.0  # entries under eps
    g[1, :5] = 3e-9
    return w, g


def test_fresh_adamw_matches_torch(tensors):
    w, g = tensors
    expected = _real_step(torch.optim.AdamW, w, g, lr=1e-5, weight_decay=0.01, eps=1e-8)
    got = StepTransform("adamw", lr=1e-5, weight_decay=0.01, eps=1e-8).delta(g, w)
    # where g = 0 the delta is only -lr*wd*w (~1e-9), and torch's w*(1-lr*wd) - w rounds at w's last bit (~1e-18)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-17)


def test_sgd_matches_torch(tensors):
    w, g = tensors
    expected = _real_step(torch.optim.SGD, w, g, lr=1e-3, weight_decay=0.01)
    got = StepTransform("sgd", lr=1e-3, weight_decay=0.01).delta(g, w)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-20)


def test_adamw_state_matches_a_running_torch_adamw(tensors):
    w, g = tensors
    gen = torch.Generator().manual_seed(1)
    history = [torch.randn(w.shape, generator=gen, dtype=torch.float64) * 1e-3 for _ in range(5)]
    kwargs = dict(lr=2e-4, weight_decay=0.1, eps=1e-8, betas=(0.9, 0.95))
    # the state right before the step we simulate
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.AdamW([p], **kwargs)
    for past in history:
        p.grad = past.clone()
        opt.step()
    state = opt.state[p]
    moments = AdamState(
        exp_avg_sq=state["exp_avg_sq"].clone(), exp_avg=state["exp_avg"].clone(), step=int(state["step"])
    )
    transform = StepTransform("adamw_state", lr=2e-4, weight_decay=0.1, eps=1e-8, betas=(0.9, 0.95))
    got = transform.delta(g, p.detach().clone(), moments)
    before = p.detach().clone()
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(got, p.detach() - before, rtol=1e-9, atol=1e-20)


def test_fresh_state_through_the_general_formula_equals_fresh_adamw(tensors):
    w, g = tensors
    transform = StepTransform("adamw_state", lr=1e-5, weight_decay=0.01, eps=1e-8)
    general = transform.delta(g, w, AdamState(exp_avg_sq=torch.zeros_like(w), step=0))
    fresh = StepTransform("adamw", lr=1e-5, weight_decay=0.01, eps=1e-8).delta(g, w)
    torch.testing.assert_close(general, fresh, rtol=1e-9, atol=1e-20)


def test_adamw_state_without_moments_is_an_error(tensors):
    w, g = tensors
    with pytest.raises(ValueError, match="AdamState"):
        StepTransform("adamw_state").delta(g, w)


def test_delta_stats_match_numpy_over_chunks():
    gen = torch.Generator().manual_seed(2)
    d = torch.randn(3, 10, 7, generator=gen, dtype=torch.float32) * 1e-5
    g = torch.randn(3, 10, 7, generator=gen, dtype=torch.float32)
    w = torch.randn(10, 7, generator=gen, dtype=torch.float32)
    stats = DeltaStats(3, d.device)
    for rows in (slice(0, 4), slice(4, 9), slice(9, 10)):  # uneven chunks
        stats.add(d[:, rows], g[:, rows], w[rows], eps=0.5)
    ref = d.double().numpy().reshape(3, -1)
    np.testing.assert_allclose(stats.metric("mean_abs"), np.abs(ref).mean(1), rtol=1e-12)
    # squares of fp32 entries are formed in fp32 (summed in fp64): ~1e-8 relative
    np.testing.assert_allclose(stats.metric("l2"), np.linalg.norm(ref, axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats.metric("max_abs"), np.abs(ref).max(1), rtol=1e-12)
    np.testing.assert_allclose(stats.metric("std"), ref.std(1, ddof=1), rtol=1e-6)
    toward_zero = ((d * w) < 0).reshape(3, -1).sum(1).double()
    torch.testing.assert_close(stats.sums["toward_zero"], toward_zero)
    below = (g.abs() < 0.5).reshape(3, -1).sum(1).double()
    torch.testing.assert_close(stats.sums["below_eps"], below)
