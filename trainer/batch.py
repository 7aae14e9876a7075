"""One step's rollouts, their scores under each context, and the rows the update trains on.

Shapes, for S questions and G pooled responses per question (G = 2n for Policy Split, the first
n from the normal mode; G = n for single-mode algorithms), T = longest response of the step:

    rewards (S, G); logp[ctx], entropy[ctx], mask (S, G, T)

A *row* is one (context, response) pair with its token advantages and old log-probs; Policy
Split with rollout sharing trains 4n rows per question (spec §3.3), without sharing 2n, and
single-mode algorithms n.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer import algos
from trainer.config import TrainConfig


@dataclass
class StepRollouts:
    questions: list  # list[trainer.tasks.Question], length S
    prompts: dict[str, list[list[int]]]  # context -> S prompt id lists ("he_q4": HE context for normal rollouts)
    responses: list[list[list[int]]]  # [S][G] token ids (EOS kept)
    gen_modes: list[str]  # length G: the mode that generated pooled response g
    truncated: list[list[bool]]  # [S][G]

    @property
    def group_size(self) -> int:
        return len(self.gen_modes)

    def prompt_for(self, q: int, context: str, g: int) -> list[int]:
        """Prompt ids of question q under ``context`` for pooled response g (Q4 may use its own variant)."""
        if context == "he" and self.gen_modes[g] == "normal" and "he_q4" in self.prompts:
            return self.prompts["he_q4"][q]
        return self.prompts[context][q]


@dataclass
class ContextScores:
    logp: dict[str, torch.Tensor]  # context -> (S, G, T) old log-probs
    entropy: dict[str, torch.Tensor]  # context -> (S, G, T) full-vocabulary entropies (nats)
    mask: torch.Tensor  # (S, G, T)


@dataclass
class TrainRows:
    prompts: list[list[int]]  # R prompts
    responses: list[list[int]]  # R responses
    old_logp: torch.Tensor  # (R, T)
    advantages: torch.Tensor  # (R, T), 0 on padding
    mask: torch.Tensor  # (R, T)
    contexts: list[str]  # R

    def __len__(self) -> int:
        return len(self.prompts)


def build_rows(cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: torch.Tensor
               ) -> tuple[TrainRows, dict[str, float]]:
    """Token advantages for the configured algorithm, laid out as training rows."""
    if cfg.is_policy_split:
        return _policy_split_rows(cfg, ro, sc, rewards)
    return _single_mode_rows(cfg, ro, sc, rewards)


def _policy_split_rows(cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: torch.Tensor
                       ) -> tuple[TrainRows, dict[str, float]]:
    adv_normal, adv_he, stats = algos.policy_split_advantages(
        rewards, sc.logp["normal"], sc.logp["he"], sc.mask,
        alpha=cfg.alpha, eta=cfg.eta, eta_normal=cfg.eta_normal, kappa=cfg.kappa,
        clamp_order=cfg.clamp_order, normalize=cfg.normalize, lowest_ratio=cfg.lowest_ratio,
        estimator=cfg.estimator, entropy_normal=sc.entropy["normal"], entropy_he=sc.entropy["he"],
        share_rollouts=cfg.rollout_sharing, return_stats=True,
    )  # each (S, 2n, T)
    n = cfg.n
    # Which pooled responses each context trains on: all 2n with sharing (Q1+Q3, Q2+Q4), else its own n.
    own = {"normal": range(0, n), "he": range(n, 2 * n)}
    pooled = range(2 * n)
    rows = _RowCollector()
    for q in range(len(ro.questions)):
        for ctx, adv in (("normal", adv_normal), ("he", adv_he)):
            for g in (pooled if cfg.rollout_sharing else own[ctx]):
                rows.add(ro.prompt_for(q, ctx, g), ro.responses[q][g], sc.logp[ctx][q, g], adv[q, g],
                         sc.mask[q, g], ctx)
    return rows.build(), {
        # Tokens with A = 0 always "bind" (their bound is 0), so count only where A ≠ 0.
        "split/clamp_frac": stats["clamp_binding_frac_nonzero_adv"],
        "split/bonus_abs_mean": stats["bonus_abs_mean_he"],
        "train/frac_zero_adv_groups": stats["zero_adv_group_frac"],
    }


def _single_mode_rows(cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: torch.Tensor
                      ) -> tuple[TrainRows, dict[str, float]]:
    s, g = rewards.shape
    group_ids = torch.arange(s).repeat_interleave(g)  # (S·G,)
    mask = sc.mask.reshape(s * g, -1)  # (S·G, T)
    ent = sc.entropy["normal"].reshape(s * g, -1)
    adv_seq = algos.grpo_advantages(rewards.reshape(-1), group_ids)  # (S·G,)
    if cfg.algorithm == "eda":
        seq_entropy = algos.masked_mean(ent, mask, dim=-1)  # (S·G,)
        adv_seq = algos.eda_advantages(adv_seq, seq_entropy, group_ids)
    adv_tok = adv_seq[:, None] * mask  # (S·G, T)
    if cfg.algorithm == "entropy_adv":
        adv_tok = algos.entropy_advantage(adv_tok, ent, mask, alpha=cfg.entropy_adv_alpha, kappa=cfg.kappa)
    logp = sc.logp["normal"].reshape(s * g, -1)
    rows = _RowCollector()
    for q in range(s):
        for k in range(g):
            i = q * g + k
            rows.add(ro.prompts["normal"][q], ro.responses[q][k], logp[i], adv_tok[i], mask[i], "normal")
    zero = (rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean().item()
    return rows.build(), {"train/frac_zero_adv_groups": zero}


class _RowCollector:
    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.responses: list[list[int]] = []
        self.logp: list[torch.Tensor] = []
        self.adv: list[torch.Tensor] = []
        self.mask: list[torch.Tensor] = []
        self.contexts: list[str] = []

    def add(self, prompt: list[int], response: list[int], logp: torch.Tensor, adv: torch.Tensor,
            mask: torch.Tensor, context: str) -> None:
        self.prompts.append(prompt)
        self.responses.append(response)
        self.logp.append(logp)
        self.adv.append(adv)
        self.mask.append(mask)
        self.contexts.append(context)

    def build(self) -> TrainRows:
        return TrainRows(self.prompts, self.responses, torch.stack(self.logp), torch.stack(self.adv),
                         torch.stack(self.mask), self.contexts)
