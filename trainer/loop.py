"""The training loop, top to bottom (docs/method.md §12).

    for each step:
        questions → normal + HE prompts (chat template) → n rollouts per mode → rewards
        → score every response under both contexts, reusing its token ids (docs/method.md §0)
        → advantages → shuffled PPO mini-batches → optimizer steps → metrics, samples, checkpoint

GRPO and the baselines run the same loop with one mode. Everything the outside world sees goes
through ``Callbacks``; this module never touches a database.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.config import EVAL_SAMPLING, TrainConfig
from trainer.data.datasets import Question, Task, get_task
from trainer.data.prompts import control_token_ids, encode_prompts
from trainer.engine.checkpoint import load_checkpoint, save_checkpoint
from trainer.engine.parallel import Engine, prepare
from trainer.events import Callbacks, Sample
from trainer.paths import checkpoint_dir, latest_checkpoint
from trainer.registry import apply_thread_limit, load_model, load_tokenizer, supports_thinking
from trainer.rl import algos
from trainer.rl.algorithms import build_rows
from trainer.rl.batch import ContextScores, StepRollouts, plan_micro_batches
from trainer.rl.scoring import check_head_reads_last_hidden, score
from trainer.rl.update import UpdateResult, ppo_update
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
    engine: Engine
    step: int = 0
    dist: Any = None  # trainer.engine.distributed.DistContext when running under torchrun
    last_checkpoint_step: int = -1
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
    cb.on_log(
        "info",
        f"{cfg.algorithm} on {cfg.model}, task {cfg.task}: steps {state.step + 1}..{cfg.steps}, "
        f"{cfg.rows_per_step} trained rows per step",
    )
    if dist is not None:
        cb.on_log("info", f"data parallel over {dist.world_size} processes ({dist.device}, {state.engine.parallelism})")
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
            _checkpoint(state, cb)
        cb.on_progress(state.step, cfg.steps)
    if state.step > 0 and state.last_checkpoint_step != state.step:  # the same decision on every rank
        _checkpoint(state, cb)
    last_ckpt = str(checkpoint_dir(cfg.output_dir, state.step)) if state.step > 0 else None
    # Logs reach the web app's users: steps only, never the checkpoint's path on this host.
    saved = f"last checkpoint at step {state.step}" if last_ckpt else "no checkpoint"
    cb.on_log("info", f"{'stopped' if stopped else 'finished'} at step {state.step}; {saved}")
    return TrainResult(state.step, stopped, metrics, last_ckpt)


def setup(
    cfg: TrainConfig, *, dist: Any = None, task: Task | None = None, model: Any = None, tokenizer: Any = None
) -> TrainState:
    """Load ``cfg.model`` (or take ``model``/``tokenizer`` already built: master dtype, any device;
    bench/gpu_check.py builds random weights from a config) and prepare engine, optimizer, rollouts."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    apply_thread_limit()
    device = torch.device(dist.device if dist else ("cuda" if cfg.gpus and torch.cuda.is_available() else "cpu"))
    tokenizer = tokenizer or load_tokenizer(cfg.model)
    if model is None:
        model = load_model(cfg.model, dtype=cfg.master_dtype, device=str(device))  # master weights
    else:
        model = model.to(device=device, dtype=getattr(torch, cfg.master_dtype))
    model.config.use_cache = True
    model, engine = prepare(model, cfg, device=device, dist=dist)
    # After prepare and before any forward: FSDP2 has replaced the parameters with their shards
    # (after a forward its root unit holds gathered copies until the next backward).
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    with engine.autocast():
        check_head_reads_last_hidden(model)
    engine.reshard(model)
    backend = make_backend(cfg.rollout_backend, engine.unwrap(model), tokenizer, synced=engine.is_sharded, config=cfg)
    # docs/method.md §6.1: a thinking model's response earns nothing without its closing </think>.
    task = task or get_task(cfg.task, require_think=cfg.enable_thinking and supports_thinking(cfg.model))
    pool = task.questions("train", seed=cfg.seed)
    if not pool:
        raise ValueError(f"task {cfg.task!r} has no training questions")
    return TrainState(
        cfg, model, tokenizer, optimizer, backend, task, pool, tokenizer.pad_token_id, engine=engine, dist=dist
    )


def train_step(state: TrainState, cb: Callbacks) -> dict[str, float]:
    """One step: rollouts, rewards, scores, advantages, update. Returns the step's metrics."""
    cfg, t0 = state.cfg, time.perf_counter()
    questions = questions_for_step(state.pool, cfg, state.step, dist=state.dist)
    rollouts = generate(state, questions)
    t_gen = time.perf_counter()
    _safe_point(state, cb)
    rewards = grade(state.task, state.tokenizer, rollouts)  # (S, G)
    # The on-policy single-update case needs no separate old-log-prob pass: the update's own
    # first forward provides it (and the rollout metrics), as TRL does.
    fused = not cfg.needs_scoring_pass
    scores = response_masks(rollouts) if fused else score_contexts(state, rollouts)
    t_score = time.perf_counter()
    _safe_point(state, cb)
    rows, adv_stats = build_rows(cfg, rollouts, scores, rewards)
    gen = torch.Generator().manual_seed(_step_seed(cfg, state.step) + 1)
    update = ppo_update(
        state.model, state.optimizer, rows, cfg, pad_id=state.pad_id, generator=gen, engine=state.engine
    )
    if fused:
        scores = scores_from_update(rollouts, update)
    state.backend.sync_weights(state.engine.unwrap(state.model))
    t_end = time.perf_counter()
    metrics = {**rollout_metrics(cfg, rollouts, scores, rewards), **adv_stats, **update.metrics}
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
            "perf/scored_tokens": float(scores.scored_tokens),
            "perf/trained_tokens": float(
                cfg.ppo_epochs * sum(len(p) + len(r) for p, r in zip(rows.prompts, rows.responses, strict=True))
            ),
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
    with state.engine.autocast():
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
        temperature=EVAL_SAMPLING.temperature,
        top_k=EVAL_SAMPLING.top_k,
        top_p=EVAL_SAMPLING.top_p,
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
        with state.engine.autocast():
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
    """Old log-probs and entropies of the pooled responses under each context they need (no grad).

    Policy Split with rollout sharing scores all 2n responses under both contexts (Q1–Q4,
    docs/method.md §3.3); the same token ids are reused under the other context, so positions line
    up for the cross-mode terms. Without sharing only what the advantages read is scored (see
    ``needed_scores``). Every (context, response) pair of the step goes into one set of forward
    passes of similar length, under the same precision as the update.
    """
    cfg = state.cfg
    s, g = len(ro.questions), ro.group_size
    width = max(1, max(len(r) for per_q in ro.responses for r in per_q))
    wanted = needed_scores(cfg, ro.gen_modes)  # context -> pooled responses to score
    pairs = [(ctx, q, k) for ctx, ks in wanted.items() for q in range(s) for k in ks]
    prompts = [ro.prompt_for(q, ctx, k) for ctx, q, k in pairs]
    responses = [ro.responses[q][k] for _, q, k in pairs]
    plan_kw: dict[str, Any] = {
        "max_rows": cfg.micro_batch_size,
        "max_tokens": cfg.max_tokens_per_micro_batch,
        "prompt_keys": [tuple(p) for p in prompts],
    }
    p_lens, r_lens = [len(p) for p in prompts], [len(r) for r in responses]
    count = state.engine.agree_max(len(plan_micro_batches(p_lens, r_lens, **plan_kw)))
    passes = plan_micro_batches(p_lens, r_lens, **plan_kw, min_count=min(count, len(pairs)))
    with state.engine.autocast():
        lp, en, _ = score(
            state.model,
            prompts,
            responses,
            pad_id=state.pad_id,
            micro_batches=passes,
            response_width=width,
            temperature=cfg.temperature,
            chunk_tokens=cfg.logprob_chunk_tokens,
        )
    logp = {ctx: torch.zeros(s, g, width) for ctx in wanted}
    ent = {ctx: torch.zeros(s, g, width) for ctx in wanted}
    for i, (ctx, q, k) in enumerate(pairs):
        logp[ctx][q, k], ent[ctx][q, k] = lp[i], en[i]
    scored = {ctx: torch.tensor([k in ks for k in range(g)]) for ctx, ks in wanted.items()}
    return ContextScores(logp, ent, response_masks(ro, width).mask, scored, sum(p_lens) + sum(r_lens))


def needed_scores(cfg: TrainConfig, gen_modes: list[str]) -> dict[str, list[int]]:
    """Which pooled responses each context must be scored on.

    Single-mode algorithms: the normal context on its n rollouts. Policy Split with sharing: both
    contexts on all 2n. Without sharing each context trains on its own rollouts only; the other
    mode's rollouts are scored under a context only where the token signal reads them (α < 1):
    HE rollouts under the normal context for the HE bonus, normal rollouts under the HE context
    (Q4) only when the normal rows carry a bonus too (η₂ ≠ 0).
    """
    own = {mode: [k for k, m in enumerate(gen_modes) if m == mode] for mode in cfg.modes}
    if not cfg.is_policy_split:
        return {"normal": own["normal"]}
    everything = list(range(len(gen_modes)))
    if cfg.rollout_sharing:
        return {"normal": everything, "he": everything}
    cross = cfg.alpha < 1
    return {
        "normal": everything if cross else own["normal"],
        "he": everything if cross and cfg.eta_normal != 0 else own["he"],
    }


def response_masks(ro: StepRollouts, width: int | None = None) -> ContextScores:
    """Only the (S, G, T) mask of the responses: what the advantages of a score-free algorithm read."""
    s, g = len(ro.questions), ro.group_size
    width = width or max(1, max(len(r) for per_q in ro.responses for r in per_q))
    mask = torch.zeros(s, g, width)
    for q in range(s):
        for k in range(g):
            mask[q, k, : len(ro.responses[q][k])] = 1.0
    return ContextScores({}, {}, mask, {})


def scores_from_update(ro: StepRollouts, update: UpdateResult) -> ContextScores:
    """The normal context's scores of a single-mode step, read off the update's first forward
    (rows are in pooled order, question-major; see ``algorithms.single_mode_rows``)."""
    s, g = len(ro.questions), ro.group_size
    mask = response_masks(ro, update.first_logp.shape[1]).mask
    shape = (s, g, mask.shape[-1])
    return ContextScores(
        {"normal": update.first_logp.reshape(shape)},
        {"normal": update.first_entropy.reshape(shape)},
        mask,
        {"normal": torch.ones(g, dtype=torch.bool)},
    )


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
            if not bool(sc.scored[other][sel].all()):
                continue  # that cross score was not needed for training (rollout sharing off)
            m = sc.mask[:, sel]
            kl_tok = algos.kl_estimate(sc.logp[own][:, sel], sc.logp[other][:, sel], kind="k1") * m
            per_seq = kl_tok.sum(-1) / m.sum(-1).clamp(min=1)  # token mean per sequence (docs/method.md §8)
            out[key] = per_seq.mean().item()
    return out


def make_samples(
    state: TrainState, ro: StepRollouts, sc: ContextScores, rewards: torch.Tensor, rows: Any
) -> list[Sample]:
    """All rollouts of the step's first ``samples_per_step`` questions, each under its own context.

    Control tokens (EOS, pad, ``<|im_end|>``) are left out of the shown text, the heatmap's tokens
    and surprisal, the token count and the mean entropy: a reader sees the response, not the markup.
    """
    tok, cfg = state.tokenizer, state.cfg
    hidden = control_token_ids(tok)
    samples = []
    for q in range(min(cfg.samples_per_step, len(ro.questions))):
        question = ro.questions[q]
        for g, mode in enumerate(ro.gen_modes):
            ids = ro.responses[q][g]
            shown = [i for i, t in enumerate(ids) if t not in hidden]
            surprisal = (-sc.logp[mode][q, g, shown]).tolist()
            ent = sc.entropy[mode][q, g, shown]
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
                    num_tokens=len(shown),
                    mean_entropy=float(ent.mean()) if shown else None,
                    surprisal=[round(x, 4) for x in surprisal],
                    tokens=[tok.decode([ids[i]]) for i in shown],
                )
            )
    return samples


def _checkpoint(state: TrainState, cb: Callbacks) -> None:
    """Every rank calls this (sharded checkpoints are written by all); rank 0 reports it."""
    path = save_checkpoint(
        state.cfg.output_dir,
        state.step,
        state.model,
        state.tokenizer,
        state.optimizer,
        state.cfg.to_dict(),
        keep=state.cfg.keep_checkpoints,
        engine=state.engine,
    )
    state.last_checkpoint_step = state.step
    if path is not None:
        cb.on_checkpoint(state.step, str(path))


def _restore(state: TrainState, cb: Callbacks) -> None:
    path = latest_checkpoint(state.cfg.output_dir)
    if path is None:
        cb.on_log("info", "no checkpoint to resume from; starting at step 0")
        return
    state.step = load_checkpoint(path, state.model, state.optimizer, engine=state.engine)
    state.last_checkpoint_step = state.step
    state.backend.sync_weights(state.engine.unwrap(state.model))
    cb.on_log("info", f"resumed from the checkpoint of step {state.step}")


def _step_seed(cfg: TrainConfig, step: int) -> int:
    return cfg.seed * 1_000_003 + step


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
