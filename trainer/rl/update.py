"""The PPO update: shuffled rows → mini-batches (one optimizer step each) → micro-batches.

Every row is trained under its own context (docs/method.md §5): the ratio is π_θ(y|c)/π_old(y|c) with c
the row's prompt. Gradients of the micro-batches of a mini-batch are accumulated, each scaled
by 1/num_micro (verl's convention for token-mean), so a batch never has to fit in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainer.config import TrainConfig
from trainer.metrics import MetricAverager
from trainer.rl import algos
from trainer.rl.algorithms import LossInputs, PolicyLoss, policy_loss
from trainer.rl.batch import TrainRows
from trainer.rl.scoring import pack, response_logits, token_logprobs


def ppo_update(
    model: Any,
    optimizer: Any,
    rows: TrainRows,
    cfg: TrainConfig,
    *,
    pad_id: int,
    generator: torch.Generator,
    grad_sync: Callable[[Any], None] | None = None,
) -> dict[str, float]:
    """Run ``ppo_epochs`` passes over the rows; returns averaged update metrics."""
    model.train()
    avg = MetricAverager()
    loss_fn = policy_loss(cfg.algorithm)
    width = rows.mask.shape[1]
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()  # docs/method.md §0: shuffle all quarters
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


def _micro_step(
    model: Any, rows: TrainRows, idx: list[int], cfg: TrainConfig, loss_fn: PolicyLoss, pad_id: int, width: int
) -> tuple[torch.Tensor, dict[str, float]]:
    packed = pack([rows.prompts[i] for i in idx], [rows.responses[i] for i in idx], pad_id=pad_id, response_width=width)
    logits = response_logits(model, packed)  # (B, T, V)
    logp = token_logprobs(logits, packed.responses)  # (B, T)
    device = logp.device
    batch = LossInputs(
        logp=logp,
        entropy=algos.entropy_from_logits(logits),
        old_logp=rows.old_logp[idx].to(device),
        advantages=rows.advantages[idx].to(device),
        mask=rows.mask[idx].to(device),
    )
    loss, metrics = loss_fn(cfg, batch)
    with torch.no_grad():
        metrics["actor/entropy"] = algos.masked_mean(batch.entropy, batch.mask).item()
        metrics["actor/adv_abs_mean"] = algos.masked_mean(batch.advantages.abs(), batch.mask).item()
    return loss, metrics
