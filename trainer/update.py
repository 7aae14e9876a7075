"""The PPO update: shuffled rows → mini-batches (one optimizer step each) → micro-batches.

Every row is trained under its own context (spec §5): the ratio is π_θ(y|c)/π_old(y|c) with c
the row's prompt. Gradients of the micro-batches of a mini-batch are accumulated, each scaled
by 1/num_micro (verl's convention for token-mean), so a batch never has to fit in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainer import algos
from trainer.batch import TrainRows
from trainer.config import TrainConfig
from trainer.metrics import MetricAverager
from trainer.scoring import pack, response_logits, token_logprobs

LossFn = Callable[[TrainConfig, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]],
                  tuple[torch.Tensor, dict[str, float]]]


def ppo_update(model: Any, optimizer: Any, rows: TrainRows, cfg: TrainConfig, *, pad_id: int,
               generator: torch.Generator, grad_sync: Callable[[Any], None] | None = None) -> dict[str, float]:
    """Run ``ppo_epochs`` passes over the rows; returns averaged update metrics."""
    model.train()
    avg = MetricAverager()
    loss_fn = LOSS_FNS[cfg.algorithm]
    width = rows.mask.shape[1]
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()  # spec §0: shuffle all quarters
        for start in range(0, len(order), cfg.mini_batch_size):
            mini = order[start : start + cfg.mini_batch_size]
            optimizer.zero_grad(set_to_none=True)
            # Micro-batches of similar prompt length (normal vs HE contexts) waste less padding;
            # the mini-batch, and so the optimizer step, is the same rows either way.
            mini = sorted(mini, key=lambda i: len(rows.prompts[i]))
            micro_chunks = [mini[k : k + cfg.micro_batch_size] for k in range(0, len(mini), cfg.micro_batch_size)]
            for micro in micro_chunks:
                loss, metrics = _micro_step(model, rows, micro, cfg, loss_fn, pad_id, width)
                (loss / len(micro_chunks)).backward()
                avg.add(metrics)
            if grad_sync is not None:
                grad_sync(model)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
            optimizer.step()
            avg.add({"actor/grad_norm": float(grad_norm)})
    out = avg.result()
    out["actor/lr"] = optimizer.param_groups[0]["lr"]
    return out


def _micro_step(model: Any, rows: TrainRows, idx: list[int], cfg: TrainConfig, loss_fn: LossFn,
                pad_id: int, width: int) -> tuple[torch.Tensor, dict[str, float]]:
    packed = pack([rows.prompts[i] for i in idx], [rows.responses[i] for i in idx], pad_id=pad_id,
                  response_width=width)
    logits = response_logits(model, packed)  # (B, T, V)
    logp = token_logprobs(logits, packed.responses)  # (B, T)
    batch = {"old_logp": rows.old_logp[idx].to(logp.device), "advantages": rows.advantages[idx].to(logp.device),
             "mask": rows.mask[idx].to(logp.device)}
    loss, metrics = loss_fn(cfg, logits, logp, batch)
    with torch.no_grad():
        ent = algos.entropy_from_logits(logits)
        metrics["actor/entropy"] = algos.masked_mean(ent, batch["mask"]).item()
        metrics["actor/adv_abs_mean"] = algos.masked_mean(batch["advantages"].abs(), batch["mask"]).item()
    return loss, metrics


def _ppo(cfg: TrainConfig, logits: torch.Tensor, logp: torch.Tensor, b: dict[str, torch.Tensor],
         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    loss, m = algos.ppo_clip_loss(logp, b["old_logp"], b["advantages"], b["mask"] if mask is None else mask,
                                  clip_low=cfg.clip_low, clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
                                  agg=cfg.loss_agg)
    return loss, _actor_metrics(loss, m)


def _forking_tokens(cfg: TrainConfig, logits: torch.Tensor, logp: torch.Tensor, b: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """Spec §10.2: train only the top-20 % entropy tokens of the micro-batch (current policy)."""
    with torch.no_grad():
        keep = algos.forking_token_mask(algos.entropy_from_logits(logits), b["mask"], top_ratio=cfg.forking_top_ratio)
    return _ppo(cfg, logits, logp, b, mask=keep)


def _entropy_reg(cfg: TrainConfig, logits: torch.Tensor, logp: torch.Tensor, b: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Spec §10.6: PPO loss − c·H of the current policy, with gradient through H."""
    loss, m = _ppo(cfg, logits, logp, b)
    bonus = algos.entropy_bonus_loss(algos.entropy_from_logits(logits), b["mask"], coef=cfg.entropy_coef,
                                     agg=cfg.loss_agg)
    return loss + bonus, m


def _clip_cov(cfg: TrainConfig, logits: torch.Tensor, logp: torch.Tensor, b: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, dict[str, float]]:
    loss, m = algos.clip_cov_loss(logp, b["old_logp"], b["advantages"], b["mask"], ratio=cfg.cov_ratio,
                                  lb=cfg.cov_lb, ub=cfg.cov_ub, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                                  agg=cfg.loss_agg)
    return loss, _actor_metrics(loss, m)


def _kl_cov(cfg: TrainConfig, logits: torch.Tensor, logp: torch.Tensor, b: dict[str, torch.Tensor]
            ) -> tuple[torch.Tensor, dict[str, float]]:
    loss, m = algos.kl_cov_loss(logp, b["old_logp"], b["advantages"], b["mask"], ratio=cfg.cov_ratio,
                                coef=cfg.kl_cov_coef, agg=cfg.loss_agg)
    return loss, _actor_metrics(loss, m)


def _actor_metrics(loss: torch.Tensor, m: dict[str, float]) -> dict[str, float]:
    out = {"actor/pg_loss": float(loss.detach())}
    for src, dst in (("clip_frac", "actor/clip_frac"), ("clip_frac_lower", "actor/clip_frac_lower"),
                     ("approx_kl", "actor/approx_kl")):
        if src in m:
            out[dst] = float(m[src])
    return out


# Advantages already carry the algorithm's signal for policy_split, grpo, eda and entropy_adv
# (trainer/batch.py); these differ only in the loss.
LOSS_FNS: dict[str, LossFn] = {
    "policy_split": _ppo,
    "grpo": _ppo,
    "eda": _ppo,
    "entropy_adv": _ppo,
    "forking_tokens": _forking_tokens,
    "entropy_reg": _entropy_reg,
    "clip_cov": _clip_cov,
    "kl_cov": _kl_cov,
}
