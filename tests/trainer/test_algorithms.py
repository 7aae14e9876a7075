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
