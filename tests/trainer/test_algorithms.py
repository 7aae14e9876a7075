"""The algorithm registry the training loop dispatches through (trainer/rl/algorithms.py)."""

from __future__ import annotations

import pytest
import torch

from trainer.choices import ALGORITHMS
from trainer.config import TrainConfig
from trainer.rl import algorithms
from trainer.rl.algorithms import LossInputs, advantage_step, policy_loss, register_policy_loss


def test_every_algorithm_has_an_advantage_step_and_a_policy_loss() -> None:
    assert set(algorithms.ADVANTAGE_STEPS) == set(ALGORITHMS)
    assert set(algorithms.POLICY_LOSSES) == set(ALGORITHMS)


def test_it_refuses_to_register_a_name_twice() -> None:
    with pytest.raises(ValueError, match="'grpo' is already registered"):
        register_policy_loss("grpo")(lambda cfg, b: (torch.zeros(()), {}))
    assert algorithms.POLICY_LOSSES["grpo"] is algorithms.ppo_loss


def test_the_lookup_error_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown algorithm 'ppo'; valid names: policy_split, grpo"):
        policy_loss("ppo")
    with pytest.raises(ValueError, match="entropy_adv"):
        advantage_step("reinforce")


def _inputs(seed: int = 0) -> LossInputs:
    gen = torch.Generator().manual_seed(seed)
    logp = (-3 * torch.rand(2, 5, generator=gen)).requires_grad_()
    entropy = (2 * torch.rand(2, 5, generator=gen)).requires_grad_()
    return LossInputs(
        logp=logp,
        entropy=entropy,
        old_logp=logp.detach().clone(),
        advantages=torch.tensor([[1.0] * 5, [-1.0] * 5]),
        mask=torch.ones(2, 5),
    )


def test_entropy_reg_adds_minus_coef_times_the_mean_entropy_to_the_ppo_loss() -> None:
    cfg = TrainConfig(algorithm="entropy_reg", entropy_coef=0.5)
    b = _inputs()
    loss, _ = policy_loss("entropy_reg")(cfg, b)
    ppo, _ = policy_loss("grpo")(cfg, b)
    torch.testing.assert_close(loss, ppo - 0.5 * b.entropy.mean())
    loss.backward()
    torch.testing.assert_close(b.entropy.grad, torch.full((2, 5), -0.5 / 10))  # gradient through H


def test_forking_tokens_trains_only_the_highest_entropy_tokens() -> None:
    cfg = TrainConfig(algorithm="forking_tokens", forking_top_ratio=0.2)
    b = _inputs(1)
    loss, _ = policy_loss("forking_tokens")(cfg, b)
    loss.backward()
    top = b.entropy.detach().reshape(-1).topk(2).indices  # ⌈0.2 · 10⌉ = 2 tokens
    has_grad = (b.logp.grad.reshape(-1) != 0).nonzero().squeeze(-1)
    assert sorted(has_grad.tolist()) == sorted(top.tolist())


def _grads(cfg: TrainConfig, name: str, b: LossInputs) -> torch.Tensor:
    logp = b.logp.detach().clone().requires_grad_()
    loss, _ = policy_loss(name)(cfg, LossInputs(logp, b.entropy, b.old_logp, b.advantages, b.mask))
    loss.backward()
    assert logp.grad is not None
    return logp.grad


def _spread_inputs() -> LossInputs:
    """Advantages ∓2 and log-probs spread over [-6, 0]: every Cov = (A − Ā)(logp − mean) is > 0, some lie in (1, 5)."""
    logp = torch.linspace(-6.0, 0.0, 20).reshape(2, 10)
    advantages = torch.tensor([[-2.0] * 10, [2.0] * 10])
    return LossInputs(logp, torch.zeros(2, 10), logp.clone(), advantages, torch.ones(2, 10))


def test_clip_cov_removes_the_gradient_of_a_fraction_of_the_tokens_inside_its_covariance_window() -> None:
    cfg = TrainConfig(algorithm="clip_cov", cov_ratio=0.2, cov_lb=1.0, cov_ub=5.0)
    b = _spread_inputs()
    cov = (b.advantages - b.advantages.mean()) * (b.logp - b.logp.mean())
    window = (cov > 1.0) & (cov < 5.0)
    assert 4 <= int(window.sum()) < 20  # the case exercises the window, not every token
    grpo, clip_cov = _grads(cfg, "grpo", b), _grads(cfg, "clip_cov", b)
    detached = (clip_cov == 0) & (grpo != 0)
    assert int(detached.sum()) == 4  # ⌊0.2 · 20⌋ tokens
    assert bool(window[detached].all())  # every detached token was inside the window
    torch.testing.assert_close(clip_cov[~detached], grpo[~detached])  # the rest train as under GRPO


def test_kl_cov_penalises_the_highest_covariance_tokens_once_the_policy_has_moved() -> None:
    cfg = TrainConfig(algorithm="kl_cov", cov_ratio=0.1, kl_cov_coef=1.0, loss_agg="token-mean")
    b = _spread_inputs()
    moved = LossInputs(b.logp, b.entropy, b.logp - 0.05, b.advantages, b.mask)  # ρ = e^0.05 everywhere
    grpo, kl_cov = _grads(cfg, "grpo", moved), _grads(cfg, "kl_cov", moved)
    cov = (b.advantages - b.advantages.mean()) * (b.logp - b.logp.mean())
    top = torch.zeros(20, dtype=torch.bool)
    top[cov.reshape(-1).topk(2).indices] = True  # ⌊0.1 · 20⌋ tokens
    top = top.reshape(2, 10)
    # +coef · |log ρ| adds coef · sign(log ρ) / N to those tokens' gradient; the others are plain −A·ρ
    # (ρ = e^0.05 lies inside GRPO's clip range, so GRPO's gradient is the same −A·ρ / N there).
    torch.testing.assert_close(kl_cov[top], grpo[top] + 1.0 / 20)
    torch.testing.assert_close(kl_cov[~top], grpo[~top])


def test_on_policy_kl_cov_trains_exactly_as_grpo() -> None:
    """Why the learning tests cannot tell KL-Cov from GRPO at one optimizer step per training step:
    at ρ = 1 the |log ρ| penalty has zero gradient, so only later mini-batches feel it."""
    cfg = TrainConfig(algorithm="kl_cov", cov_ratio=0.1)
    b = _spread_inputs()
    torch.testing.assert_close(_grads(cfg, "kl_cov", b), _grads(cfg, "grpo", b))
