"""Each algorithm as two registered steps: its advantages and its policy loss.

The training loop dispatches through this registry and nothing else (verl's ``register_adv_est``
/ ``register_policy_loss`` style): ``advantage_step(name)`` turns a step's rollouts, scores and
rewards into training rows, ``policy_loss(name)`` turns a micro-batch's current log-probs and
entropies into a loss. The math itself is in ``trainer.rl.algos``; this module only wires each
algorithm's configuration into it. A test holds the registry's names equal to
``trainer.choices.ALGORITHMS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from trainer.config import TrainConfig
from trainer.rl import algos
from trainer.rl.batch import ContextScores, RowCollector, StepRollouts, TrainRows


@dataclass
class LossInputs:
    """What a policy loss sees of one micro-batch; every tensor is (B, T)."""

    logp: Tensor  # current log-probs of the response tokens, with gradient
    entropy: Tensor  # current full-vocabulary entropies (nats); with gradient for ENTROPY_GRAD_ALGORITHMS only
    old_logp: Tensor
    advantages: Tensor
    mask: Tensor


AdvantageStep = Callable[[TrainConfig, StepRollouts, ContextScores, Tensor], tuple[TrainRows, dict[str, float]]]
PolicyLoss = Callable[[TrainConfig, LossInputs], tuple[Tensor, dict[str, float]]]

ADVANTAGE_STEPS: dict[str, AdvantageStep] = {}
POLICY_LOSSES: dict[str, PolicyLoss] = {}

_F = TypeVar("_F", bound=Callable[..., object])


def _register(table: dict, kind: str, names: tuple[str, ...]) -> Callable[[_F], _F]:
    def decorator(fn: _F) -> _F:
        for name in names:
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = fn
        return fn

    return decorator


def register_advantage_step(*names: str) -> Callable[[_F], _F]:
    return _register(ADVANTAGE_STEPS, "advantage step", names)


def register_policy_loss(*names: str) -> Callable[[_F], _F]:
    return _register(POLICY_LOSSES, "policy loss", names)


def advantage_step(name: str) -> AdvantageStep:
    """The advantage step of algorithm ``name``; ValueError listing the valid names otherwise."""
    if name not in ADVANTAGE_STEPS:
        raise ValueError(f"unknown algorithm {name!r}; valid names: {', '.join(ADVANTAGE_STEPS)}")
    return ADVANTAGE_STEPS[name]


def policy_loss(name: str) -> PolicyLoss:
    """The policy loss of algorithm ``name``; ValueError listing the valid names otherwise."""
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown algorithm {name!r}; valid names: {', '.join(POLICY_LOSSES)}")
    return POLICY_LOSSES[name]


def build_rows(
    cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: Tensor
) -> tuple[TrainRows, dict[str, float]]:
    """Token advantages of the configured algorithm, laid out as training rows."""
    return advantage_step(cfg.algorithm)(cfg, ro, sc, rewards)


# ---------------------------------------------------------------------------------------------
# Advantage steps
# ---------------------------------------------------------------------------------------------


@register_advantage_step("policy_split")
def policy_split_rows(
    cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: Tensor
) -> tuple[TrainRows, dict[str, float]]:
    """GRPO advantages under the normal context, GRPO + clamped HE bonus under the HE context
    (docs/method.md §4); 4n rows per question with rollout sharing, 2n without."""
    adv_normal, adv_he, stats = algos.policy_split_advantages(
        rewards,
        sc.logp["normal"],
        sc.logp["he"],
        sc.mask,
        alpha=cfg.alpha,
        eta=cfg.eta,
        eta_normal=cfg.eta_normal,
        kappa=cfg.kappa,
        clamp_order=cfg.clamp_order,
        normalize=cfg.normalize,
        lowest_ratio=cfg.lowest_ratio,
        estimator=cfg.estimator,
        entropy_normal=sc.entropy.get("normal"),
        entropy_he=sc.entropy.get("he"),
        share_rollouts=cfg.rollout_sharing,
        return_stats=True,
    )  # each (S, 2n, T)
    n = cfg.n
    # Which pooled responses each context trains on: all 2n with sharing (Q1+Q3, Q2+Q4), else its own n.
    own = {"normal": range(0, n), "he": range(n, 2 * n)}
    pooled = range(2 * n)
    rows = RowCollector()
    for q in range(len(ro.questions)):
        for ctx, adv in (("normal", adv_normal), ("he", adv_he)):
            for g in pooled if cfg.rollout_sharing else own[ctx]:
                rows.add(
                    ro.prompt_for(q, ctx, g), ro.responses[q][g], sc.logp[ctx][q, g], adv[q, g], sc.mask[q, g], ctx
                )
    return rows.build(), {
        # Tokens with A = 0 always "bind" (their bound is 0), so count only where A ≠ 0.
        "split/clamp_frac": stats["clamp_binding_frac_nonzero_adv"],
        "split/bonus_abs_mean": stats["bonus_abs_mean_he"],
        "train/frac_zero_adv_groups": stats["zero_adv_group_frac"],
    }


@register_advantage_step("grpo", "forking_tokens", "clip_cov", "kl_cov", "entropy_reg", "eda", "entropy_adv")
def single_mode_rows(
    cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: Tensor
) -> tuple[TrainRows, dict[str, float]]:
    """GRPO outcome advantages of the normal mode's n rollouts, reshaped by EDA (per response) or
    the entropy advantage (per token) where the algorithm asks for it (docs/method.md §10)."""
    s, g = rewards.shape
    group_ids = torch.arange(s).repeat_interleave(g)  # (S·G,)
    mask = sc.mask.reshape(s * g, -1)  # (S·G, T)
    adv_seq = algos.grpo_advantages(rewards.reshape(-1), group_ids)  # (S·G,)
    if cfg.algorithm in ("eda", "entropy_adv"):
        ent = sc.entropy["normal"].reshape(s * g, -1)
    if cfg.algorithm == "eda":
        seq_entropy = algos.masked_mean(ent, mask, dim=-1)  # (S·G,)
        adv_seq = algos.eda_advantages(adv_seq, seq_entropy, group_ids)
    adv_tok = adv_seq[:, None] * mask  # (S·G, T)
    if cfg.algorithm == "entropy_adv":
        adv_tok = algos.entropy_advantage(adv_tok, ent, mask, alpha=cfg.entropy_adv_alpha, kappa=cfg.kappa)
    logp = sc.logp["normal"].reshape(s * g, -1) if "normal" in sc.logp else None  # None: the update provides it
    rows = RowCollector()
    for q in range(s):
        for k in range(g):
            i = q * g + k
            old = logp[i] if logp is not None else None
            rows.add(ro.prompts["normal"][q], ro.responses[q][k], old, adv_tok[i], mask[i], "normal")
    zero = (rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean().item()
    return rows.build(), {"train/frac_zero_adv_groups": zero}


# ---------------------------------------------------------------------------------------------
# Policy losses. Advantages already carry the signal of policy_split, grpo, eda and entropy_adv,
# so those four share the PPO loss.
# ---------------------------------------------------------------------------------------------


@register_policy_loss("policy_split", "grpo", "eda", "entropy_adv")
def ppo_loss(cfg: TrainConfig, b: LossInputs, mask: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    loss, m = algos.ppo_clip_loss(
        b.logp,
        b.old_logp,
        b.advantages,
        b.mask if mask is None else mask,
        clip_low=cfg.clip_low,
        clip_high=cfg.clip_high,
        dual_clip=cfg.dual_clip,
        agg=cfg.loss_agg,
    )
    return loss, _actor_metrics(loss, m)


@register_policy_loss("forking_tokens")
def forking_tokens_loss(cfg: TrainConfig, b: LossInputs) -> tuple[Tensor, dict[str, float]]:
    """Train only the top-entropy tokens of the micro-batch (current policy; docs/method.md §10.2)."""
    keep = algos.forking_token_mask(b.entropy.detach(), b.mask, top_ratio=cfg.forking_top_ratio)
    return ppo_loss(cfg, b, mask=keep)


@register_policy_loss("entropy_reg")
def entropy_reg_loss(cfg: TrainConfig, b: LossInputs) -> tuple[Tensor, dict[str, float]]:
    """PPO loss − c·H of the current policy, with gradient through H (docs/method.md §10.6)."""
    loss, m = ppo_loss(cfg, b)
    return loss + algos.entropy_bonus_loss(b.entropy, b.mask, coef=cfg.entropy_coef, agg=cfg.loss_agg), m


@register_policy_loss("clip_cov")
def clip_cov_loss(cfg: TrainConfig, b: LossInputs) -> tuple[Tensor, dict[str, float]]:
    loss, m = algos.clip_cov_loss(
        b.logp,
        b.old_logp,
        b.advantages,
        b.mask,
        ratio=cfg.cov_ratio,
        lb=cfg.cov_lb,
        ub=cfg.cov_ub,
        clip_low=cfg.clip_low,
        clip_high=cfg.clip_high,
        agg=cfg.loss_agg,
    )
    return loss, _actor_metrics(loss, m)


@register_policy_loss("kl_cov")
def kl_cov_loss(cfg: TrainConfig, b: LossInputs) -> tuple[Tensor, dict[str, float]]:
    loss, m = algos.kl_cov_loss(
        b.logp, b.old_logp, b.advantages, b.mask, ratio=cfg.cov_ratio, coef=cfg.kl_cov_coef, agg=cfg.loss_agg
    )
    return loss, _actor_metrics(loss, m)


def _actor_metrics(loss: Tensor, m: dict[str, float]) -> dict[str, float]:
    out = {"actor/pg_loss": float(loss.detach())}
    for src, dst in (
        ("clip_frac", "actor/clip_frac"),
        ("clip_frac_lower", "actor/clip_frac_lower"),
        ("approx_kl", "actor/approx_kl"),
    ):
        if src in m:
            out[dst] = float(m[src])
    return out
