"""The training loop, top to bottom (docs/method.md §12).

    for each step:
        questions → normal + HE prompts (chat template) → n rollouts per mode → rewards
        → score every response under both contexts, reusing its token ids (docs/method.md §0)
        → advantages → shuffled PPO mini-batches → optimizer steps → metrics, samples, checkpoint

GRPO and the baselines run the same loop with one mode. Everything the outside world sees goes
through ``Callbacks``; this module never touches a database.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.config import TrainConfig
from trainer.data.datasets import Question, Task, get_task
from trainer.data.prompts import encode_prompts
from trainer.engine.checkpoint import load_trainer_state, save_checkpoint
from trainer.events import Callbacks, Sample
from trainer.paths import latest_checkpoint
from trainer.registry import load_model, load_tokenizer
from trainer.rl import algos
from trainer.rl.algorithms import build_rows
from trainer.rl.batch import ContextScores, StepRollouts
from trainer.rl.scoring import score
from trainer.rl.update import ppo_update
from trainer.rollout.backend import RolloutBackend, SamplingParams, make_backend


@dataclass
class TrainState:
    cfg: TrainConfig
    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    backend: RolloutBackend
    task: Task
    pool: list[Question]
    pad_id: int
    step: int = 0
    dist: Any = None  # trainer.engine.distributed.DistContext when running under torchrun
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    steps_done: int
    stopped_early: bool
    last_metrics: dict[str, float]
    checkpoint: str | None


def train(
    cfg: TrainConfig,
    callbacks: Callbacks | None = None,
    *,
    resume: bool = False,
    dist: Any = None,
    task: Task | None = None,
) -> TrainResult:
    """Train for ``cfg.steps`` steps (or continue from the latest checkpoint when ``resume``).

    ``task`` replaces ``cfg.task`` with any object that has ``questions()`` and ``grade()``
    (a researcher's own reward, or a test's).
    """
    cb = callbacks or Callbacks()
    state = setup(cfg, dist=dist, task=task)
    if resume:
        _restore(state, cb)
    metrics: dict[str, float] = {}
    stopped = False
    last_ckpt: str | None = None
    cb.on_log(
        "info",
        f"{cfg.algorithm} on {cfg.model}, task {cfg.task}: steps {state.step + 1}..{cfg.steps}, "
        f"{cfg.rows_per_step} trained rows per step",
    )
    if dist is not None:
        cb.on_log("info", f"data parallel over {dist.world_size} processes ({dist.device})")
    cb.on_progress(state.step, cfg.steps)
    while state.step < cfg.steps:
        if _stop_requested(state, cb):
            stopped = True
            cb.on_log("info", f"stop requested; stopping after step {state.step}")
            break
        state.step += 1
        try:
            metrics = train_step(state, cb)
        except StepAborted:
            state.step -= 1  # abandoned before any optimizer step: the model is still that of the last step
            stopped = True
            cb.on_log("info", f"stop requested; abandoned step {state.step + 1} before its update")
            break
        cb.on_metrics(state.step, metrics)
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
            last_ckpt = _checkpoint(state, cb)
        cb.on_progress(state.step, cfg.steps)
    if state.step > 0 and (last_ckpt is None or not last_ckpt.endswith(f"{state.step:06d}")):
        last_ckpt = _checkpoint(state, cb)
    cb.on_log("info", f"{'stopped' if stopped else 'finished'} at step {state.step}; last checkpoint {last_ckpt}")
    return TrainResult(state.step, stopped, metrics, last_ckpt)


def setup(cfg: TrainConfig, *, dist: Any = None, task: Task | None = None) -> TrainState:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    if os.environ.get("PSL_TORCH_THREADS"):
        torch.set_num_threads(int(os.environ["PSL_TORCH_THREADS"]))
    device = dist.device if dist else ("cuda" if cfg.gpus and torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype=cfg.dtype, device=device)
    model.config.use_cache = True
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    backend = make_backend(cfg.rollout_backend, model, tokenizer)
    task = task or get_task(cfg.task)
    pool = task.questions("train", seed=cfg.seed)
    if not pool:
        raise ValueError(f"task {cfg.task!r} has no training questions")
    return TrainState(cfg, model, tokenizer, optimizer, backend, task, pool, tokenizer.pad_token_id, dist=dist)


def train_step(state: TrainState, cb: Callbacks) -> dict[str, float]:
    """One step: rollouts, rewards, scores, advantages, update. Returns the step's metrics."""
    cfg, t0 = state.cfg, time.perf_counter()
    questions = questions_for_step(state.pool, cfg, state.step, dist=state.dist)
    rollouts = generate(state, questions)
    t_gen = time.perf_counter()
    _safe_point(state, cb)
    rewards = grade(state.task, state.tokenizer, rollouts)  # (S, G)
    scores = score_contexts(state, rollouts)
    t_score = time.perf_counter()
    _safe_point(state, cb)
    rows, adv_stats = build_rows(cfg, rollouts, scores, rewards)
    gen = torch.Generator().manual_seed(_step_seed(cfg, state.step) + 1)
    grad_sync = state.dist.all_reduce_grads if state.dist else None
    update = ppo_update(
        state.model, state.optimizer, rows, cfg, pad_id=state.pad_id, generator=gen, grad_sync=grad_sync
    )
    state.backend.sync_weights(state.model)
    t_end = time.perf_counter()
    metrics = {**rollout_metrics(cfg, rollouts, scores, rewards), **adv_stats, **update}
    n_tokens = sum(len(r) for per_q in rollouts.responses for r in per_q)
    metrics.update(
        {
            "timing/generate_s": t_gen - t0,
            "timing/score_s": t_score - t_gen,
            "timing/update_s": t_end - t_score,
            "timing/step_s": t_end - t0,
            "perf/generated_tokens": float(n_tokens),
            "perf/tokens_per_s": n_tokens / max(t_gen - t0, 1e-9),
            "perf/trained_rows": float(len(rows)),
            "perf/peak_rss_mb": _peak_rss_mb(),
        }
    )
    if cfg.eval_every and state.step % cfg.eval_every == 0:
        metrics.update(held_out_accuracy(state))
    if state.dist:
        metrics = state.dist.average_metrics(metrics)
    if cfg.samples_per_step:
        cb.on_samples(state.step, make_samples(state, rollouts, scores, rewards, rows))
    return metrics


class StepAborted(Exception):
    """A stop request arrived before the step's first optimizer step; the step is dropped."""


def _stop_requested(state: TrainState, cb: Callbacks) -> bool:
    stop = cb.should_stop()
    return state.dist.agree(stop) if state.dist is not None else stop


def _safe_point(state: TrainState, cb: Callbacks) -> None:
    """Generation and scoring can be long; a cancel need not wait for them to be used."""
    if _stop_requested(state, cb):
        raise StepAborted


def questions_for_step(pool: list[Question], cfg: TrainConfig, step: int, *, dist: Any = None) -> list[Question]:
    """The S questions of a step: a pure function of (seed, step), so resuming needs no data state.

    Epoch e walks a permutation of the pool seeded by (seed, e); under data parallelism each rank
    takes its own contiguous share of the step's questions.
    """
    s = cfg.questions_per_step * (dist.world_size if dist else 1)
    out = []
    for k in range((step - 1) * s, step * s):
        epoch, pos = divmod(k, len(pool))
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        out.append(pool[int(perm[pos])])
    if dist:
        per = cfg.questions_per_step
        out = out[dist.rank * per : (dist.rank + 1) * per]
    return out


def generate(state: TrainState, questions: list[Question]) -> StepRollouts:
    """n rollouts per question and mode; the pooled responses of a question are [normal×n, HE×n]."""
    cfg, tok = state.cfg, state.tokenizer
    texts = [q.prompt for q in questions]
    kw: dict[str, Any] = {"max_prompt_length": cfg.max_prompt_length, "enable_thinking": cfg.enable_thinking}
    prompts = {mode: encode_prompts(tok, texts, mode, **kw) for mode in ("normal", "he")}
    if cfg.q4_context != "paper":
        prompts["he_q4"] = encode_prompts(tok, texts, "he", q4_context=cfg.q4_context, **kw)
    params = SamplingParams(
        n=cfg.n,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=_step_seed(cfg, state.step),
    )
    # Both modes in one engine call: 2S prompts, as the released code does (docs/method.md §3.2).
    modes = cfg.modes
    all_prompts = [p for mode in modes for p in prompts[mode]]
    out = state.backend.generate(all_prompts, params)
    s = len(questions)
    responses = [[r for m in range(len(modes)) for r in out.responses[m * s + q]] for q in range(s)]
    truncated = [[t for m in range(len(modes)) for t in out.truncated[m * s + q]] for q in range(s)]
    gen_modes = [mode for mode in modes for _ in range(cfg.n)]
    return StepRollouts(questions, prompts, responses, gen_modes, truncated)


def held_out_accuracy(state: TrainState) -> dict[str, float]:
    """One sample per question and mode on held-out questions, with the paper's evaluation sampling
    (T=0.6, top-k 20, top-p 0.95); the full k-sample evaluation is ``trainer.evaluation.evaluate``."""
    cfg = state.cfg
    questions = state.task.questions("test", limit=cfg.eval_questions, seed=cfg.seed)
    if not questions:
        return {}
    params = SamplingParams(
        n=1,
        temperature=0.6,
        top_k=20,
        top_p=0.95,
        max_new_tokens=cfg.max_new_tokens,
        seed=_step_seed(cfg, state.step) + 7,
    )
    out = {}
    for mode in ("normal", "he"):
        prompts = encode_prompts(
            state.tokenizer,
            [q.prompt for q in questions],
            mode,
            max_prompt_length=cfg.max_prompt_length,
            enable_thinking=cfg.enable_thinking,
        )
        gen = state.backend.generate(prompts, params)
        texts = [state.tokenizer.decode(r[0], skip_special_tokens=True) for r in gen.responses]
        out[f"eval/{mode}/accuracy"] = float(
            np.mean([state.task.grade(q, t) for q, t in zip(questions, texts, strict=True)])
        )
    return out


def grade(task: Task, tokenizer: Any, ro: StepRollouts) -> torch.Tensor:
    """Correctness reward of every pooled response: (S, G)."""
    texts = [[tokenizer.decode(r, skip_special_tokens=True) for r in per_q] for per_q in ro.responses]
    return torch.tensor(
        [[task.grade(q, t) for t in per_q] for q, per_q in zip(ro.questions, texts, strict=True)], dtype=torch.float32
    )


def score_contexts(state: TrainState, ro: StepRollouts) -> ContextScores:
    """Old log-probs and entropies of every pooled response under each trained context (no grad).

    Policy Split scores all 2n responses under both contexts (Q1–Q4, docs/method.md §3.3); the same token
    ids are reused under the other context, so positions line up for the cross-mode terms.
    """
    cfg = state.cfg
    s, g = len(ro.questions), ro.group_size
    width = max(1, max(len(r) for per_q in ro.responses for r in per_q))
    flat_resp = [ro.responses[q][k] for q in range(s) for k in range(g)]
    logp, ent = {}, {}
    mask = torch.zeros(0)
    for ctx in cfg.modes:
        flat_prompts = [ro.prompt_for(q, ctx, k) for q in range(s) for k in range(g)]
        lp, en, mask = score(
            state.model,
            flat_prompts,
            flat_resp,
            pad_id=state.pad_id,
            micro_batch_size=cfg.micro_batch_size,
            response_width=width,
        )
        logp[ctx], ent[ctx] = lp.reshape(s, g, width), en.reshape(s, g, width)
    return ContextScores(logp, ent, mask.reshape(s, g, width))


def rollout_metrics(cfg: TrainConfig, ro: StepRollouts, sc: ContextScores, rewards: torch.Tensor) -> dict[str, float]:
    """Per-mode accuracy/entropy/length from each mode's own rollouts (Q1, Q2) and the inter-mode KLs."""
    out = {
        "train/reward": rewards.mean().item(),
        "train/reward_std": rewards.std().item() if rewards.numel() > 1 else 0.0,
        "train/truncated_frac": float(np.mean([t for per_q in ro.truncated for t in per_q])),
    }
    modes = torch.tensor([m == "he" for m in ro.gen_modes])
    for mode in cfg.modes:
        sel = modes if mode == "he" else ~modes
        m = sc.mask[:, sel]  # (S, n, T)
        out[f"{mode}/accuracy"] = rewards[:, sel].mean().item()
        out[f"{mode}/entropy"] = algos.masked_mean(sc.entropy[mode][:, sel], m).item()
        out[f"{mode}/logprob"] = algos.masked_mean(sc.logp[mode][:, sel], m).item()
        out[f"{mode}/length"] = m.sum(-1).mean().item()
    if cfg.is_policy_split:
        for key, own, other, sel in (
            ("split/he_normal_kl", "he", "normal", modes),
            ("split/normal_he_kl", "normal", "he", ~modes),
        ):
            m = sc.mask[:, sel]
            kl_tok = algos.kl_estimate(sc.logp[own][:, sel], sc.logp[other][:, sel], kind="k1") * m
            per_seq = kl_tok.sum(-1) / m.sum(-1).clamp(min=1)  # token mean per sequence (docs/method.md §8)
            out[key] = per_seq.mean().item()
    return out


def make_samples(
    state: TrainState, ro: StepRollouts, sc: ContextScores, rewards: torch.Tensor, rows: Any
) -> list[Sample]:
    """All rollouts of the step's first ``samples_per_step`` questions, each under its own context."""
    tok, cfg = state.tokenizer, state.cfg
    samples = []
    for q in range(min(cfg.samples_per_step, len(ro.questions))):
        question = ro.questions[q]
        for g, mode in enumerate(ro.gen_modes):
            ids = ro.responses[q][g]
            n_tok = len(ids)
            surprisal = (-sc.logp[mode][q, g, :n_tok]).tolist()
            ent = sc.entropy[mode][q, g, :n_tok]
            samples.append(
                Sample(
                    question_id=question.id,
                    question=question.prompt,
                    answer=question.answer,
                    mode=mode,
                    context=mode,
                    index=g % cfg.n,
                    prompt=tok.decode(ro.prompts[mode][q]),
                    response=tok.decode(ids, skip_special_tokens=True),
                    reward=float(rewards[q, g]),
                    advantage=None,
                    num_tokens=n_tok,
                    mean_entropy=float(ent.mean()) if n_tok else None,
                    surprisal=[round(x, 4) for x in surprisal],
                    tokens=[tok.decode([t]) for t in ids],
                )
            )
    return samples


def _checkpoint(state: TrainState, cb: Callbacks) -> str | None:
    if state.dist and state.dist.rank != 0:
        state.dist.barrier()
        return None
    path = save_checkpoint(
        state.cfg.output_dir,
        state.step,
        state.model,
        state.tokenizer,
        state.optimizer,
        state.cfg.to_dict(),
        keep=state.cfg.keep_checkpoints,
    )
    if state.dist:
        state.dist.barrier()
    cb.on_checkpoint(state.step, str(path))
    return str(path)


def _restore(state: TrainState, cb: Callbacks) -> None:
    path = latest_checkpoint(state.cfg.output_dir)
    if path is None:
        cb.on_log("info", "no checkpoint to resume from; starting at step 0")
        return
    from trainer.registry import load_model

    state.model.load_state_dict(load_model(str(path), dtype=state.cfg.dtype).state_dict())
    state.step = load_trainer_state(path, state.optimizer)
    state.backend.sync_weights(state.model)
    cb.on_log("info", f"resumed from {path} at step {state.step}")


def _step_seed(cfg: TrainConfig, step: int) -> int:
    return cfg.seed * 1_000_003 + step


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
