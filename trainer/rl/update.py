"""The PPO update: shuffled rows → mini-batches (one optimizer step each) → micro-batches.

Every row is trained under its own context (docs/method.md §5): the ratio is π_θ(y|c)/π_old(y|c)
with c the row's prompt. The rows of a step are shuffled across all quarters (§0) and split into
``cfg.mini_batches`` mini-batches; a mini-batch is cut into forward/backward passes of similar
length (``batch.plan_micro_batches``: at most ``micro_batch_size`` rows, or a token budget).

Gradients of the passes are accumulated with exact weights, so the optimizer step sees the
gradient of the mini-batch's aggregated loss whatever the cut: for ``token-mean`` each pass is
weighted by its share of the mini-batch's tokens, for the ``seq-mean-*`` modes by its share of the
rows. How processes share the work (DDP, FSDP2), the precision and gradient scaling are the
``engine``'s business (trainer/engine/parallel.py); this loop is the same for all of them.

On-policy shortcut: with a single optimizer step per training step and advantages that need no
scores, ``rows.old_logp`` is None and the update's own first forward provides it (ratio = 1, as in
TRL), which saves the whole no-grad scoring pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.choices import ENTROPY_GRAD_ALGORITHMS
from trainer.config import TrainConfig
from trainer.metrics import MetricAverager
from trainer.rl import algos
from trainer.rl.algorithms import LossInputs, PolicyLoss, policy_loss
from trainer.rl.batch import TrainRows, plan_micro_batches
from trainer.rl.scoring import calls_are_collective, can_share_prompts, pack_rows, token_logprob_entropy


@dataclass
class UpdateResult:
    metrics: dict[str, float]
    # (R, T) log-probs and entropies of each row at its first forward, i.e. under the policy that
    # sampled it when the step has one optimizer step; what the metrics use when scoring was skipped.
    first_logp: torch.Tensor
    first_entropy: torch.Tensor


def ppo_update(
    model: Any,
    optimizer: Any,
    rows: TrainRows,
    cfg: TrainConfig,
    *,
    pad_id: int,
    generator: torch.Generator,
    engine: Any,
) -> UpdateResult:
    """Run ``ppo_epochs`` passes over the rows; returns averaged update metrics."""
    if rows.old_logp is None and cfg.optimizer_steps_per_step != 1:
        raise ValueError("rows without old log-probs can only be trained with a single optimizer step")
    model.train()
    avg = MetricAverager()
    loss_fn = policy_loss(cfg.algorithm)
    width = rows.mask.shape[1]
    first_logp, first_entropy = torch.zeros(len(rows), width), torch.zeros(len(rows), width)
    seen = torch.zeros(len(rows), dtype=torch.bool)
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()  # docs/method.md §0: shuffle all quarters
        for start in range(0, len(order), cfg.rows_per_mini_batch):
            mini = order[start : start + cfg.rows_per_mini_batch]
            passes = _plan(rows, mini, cfg, engine)
            denominator = _loss_denominator(rows, mini, cfg.loss_agg)
            optimizer.zero_grad(set_to_none=True)
            for k, micro in enumerate(passes):
                with engine.accumulate(model, last=k == len(passes) - 1), engine.autocast():
                    loss, metrics, logp, entropy = _micro_step(model, rows, micro, cfg, loss_fn, pad_id)
                    engine.backward(loss * (_loss_denominator(rows, micro, cfg.loss_agg) / denominator))
                avg.add(metrics)
                fresh = [j for j, i in enumerate(micro) if not seen[i]]
                for j in fresh:
                    i = micro[j]
                    first_logp[i, : logp.shape[1]] = logp[j].detach().float().cpu()
                    first_entropy[i, : entropy.shape[1]] = entropy[j].detach().float().cpu()
                    seen[i] = True
            grad_norm = engine.step(optimizer, model, cfg.grad_clip)
            avg.add({"actor/grad_norm": grad_norm})
    out = avg.result()
    out["actor/lr"] = optimizer.param_groups[0]["lr"]
    return UpdateResult(out, first_logp * rows.mask, first_entropy * rows.mask)


def _plan(rows: TrainRows, mini: list[int], cfg: TrainConfig, engine: Any) -> list[list[int]]:
    """Passes of similar length; every rank runs as many as the rank that needs the most."""
    p_lens = [len(rows.prompts[i]) for i in mini]
    r_lens = [len(rows.responses[i]) for i in mini]
    kw: dict[str, Any] = {
        "max_rows": cfg.micro_batch_size,
        "max_tokens": cfg.max_tokens_per_micro_batch,
        "prompt_keys": [tuple(rows.prompts[i]) for i in mini],
    }
    count = engine.agree_max(len(plan_micro_batches(p_lens, r_lens, **kw)))
    return [[mini[j] for j in p] for p in plan_micro_batches(p_lens, r_lens, **kw, min_count=min(count, len(mini)))]


def _loss_denominator(rows: TrainRows, idx: list[int], agg: str) -> float:
    """What the aggregated loss of ``idx`` averages over: its valid tokens (token-mean) or its non-empty rows."""
    mask = rows.mask[idx]
    if agg == "token-mean":
        return float(mask.sum().clamp_min(1.0))
    return float((mask.sum(-1) > 0).sum().clamp_min(1))


def _micro_step(
    model: Any, rows: TrainRows, idx: list[int], cfg: TrainConfig, loss_fn: PolicyLoss, pad_id: int
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    packed = pack_rows(
        [rows.prompts[i] for i in idx],
        [rows.responses[i] for i in idx],
        pad_id=pad_id,
        share_prompts=can_share_prompts(model, grad=True),
        uniform=calls_are_collective(model),
    )
    logp, entropy = token_logprob_entropy(
        model,
        packed,
        temperature=cfg.temperature,
        chunk_tokens=cfg.logprob_chunk_tokens,
        grad=True,
        entropy_grad=cfg.algorithm in ENTROPY_GRAD_ALGORITHMS,
    )  # (B, t) each, t = this pass's longest response
    t, device = logp.shape[1], logp.device
    old = logp.detach() if rows.old_logp is None else rows.old_logp[idx, :t].to(device)
    batch = LossInputs(
        logp=logp,
        entropy=entropy,
        old_logp=old,
        advantages=rows.advantages[idx, :t].to(device),
        mask=rows.mask[idx, :t].to(device),
    )
    loss, metrics = loss_fn(cfg, batch)
    with torch.no_grad():
        metrics["actor/entropy"] = algos.masked_mean(batch.entropy, batch.mask).item()
        metrics["actor/adv_abs_mean"] = algos.masked_mean(batch.advantages.abs(), batch.mask).item()
    return loss, metrics, logp, entropy
