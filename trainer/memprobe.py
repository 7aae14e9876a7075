"""Measure the real memory peak of a training step's phases, to check the planner against.

On CPU the peak is that of live tensor bytes, read from the profiler's allocation events (the CPU
analogue of ``torch.cuda.max_memory_allocated``; RSS would add the allocator's and the libraries'
own memory). On CUDA it is ``torch.cuda.max_memory_allocated``. The step runs through the engine's
own code (``trainer.loop.setup``, ``trainer.rl.update.ppo_update``, ``trainer.rl.scoring.score``, the
rollout backend's ``generate``) on rows of the config's worst case: every row at max_prompt_length +
max_new_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.config import TrainConfig


@dataclass
class MeasuredPeaks:
    score: int  # bytes: trainer state + the no-grad scoring pass
    update: int  # bytes: trainer state + one PPO update
    state: int  # bytes: weights, gradients and optimizer state before the measured passes
    generate: int = 0  # bytes: trainer state + one step's rollouts (transformers generate)


class CpuPeak:
    """Peak of live CPU tensor bytes allocated inside the block, above what was live at its start."""

    def __enter__(self) -> CpuPeak:
        self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        self.prof.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.prof.__exit__(None, None, None)
        profiler: Any = self.prof.profiler  # typed narrowly; its memory events carry nbytes()
        results = profiler.kineto_results
        events = [e for e in results.events() if e.name() == "[memory]"]
        current = self.peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            current += e.nbytes()
            self.peak = max(self.peak, current)


def worst_case_rows(cfg: TrainConfig, vocab: int, *, seed: int = 0) -> Any:
    """``cfg.rows_per_step`` rows of full length with distinct prompts (no prompt sharing) and
    random advantages, so that the gradient is not zero."""
    from trainer.rl.batch import TrainRows

    g = torch.Generator().manual_seed(seed)
    r, p, t = cfg.rows_per_step, cfg.max_prompt_length, cfg.max_new_tokens
    prompts = [torch.randint(3, vocab, (p,), generator=g).tolist() for _ in range(r)]
    responses = [torch.randint(3, vocab, (t,), generator=g).tolist() for _ in range(r)]
    return TrainRows(
        prompts, responses, torch.full((r, t), -5.0), torch.randn(r, t, generator=g), torch.ones(r, t), ["normal"] * r
    )


def worst_case_prompts(cfg: TrainConfig, vocab: int, *, seed: int = 0) -> list[list[int]]:
    """The prompts of one step's generate call (every question in every mode, as the loop sends
    them), each at ``max_prompt_length`` distinct random ids (no left padding to spare)."""
    g = torch.Generator().manual_seed(seed)
    count = cfg.questions_per_step * len(cfg.modes)
    return [torch.randint(3, vocab, (cfg.max_prompt_length,), generator=g).tolist() for _ in range(count)]


def state_bytes(model: Any, optimizer: Any) -> int:
    tensors = [p for p in model.parameters()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(cfg: TrainConfig) -> MeasuredPeaks:
    """Set the engine up for ``cfg``, run one update to create the optimizer state, then measure
    one scoring pass and one update."""
    from trainer.loop import setup
    from trainer.rl.batch import plan_micro_batches
    from trainer.rl.scoring import score
    from trainer.rl.update import ppo_update

    state = setup(cfg)
    rows = worst_case_rows(cfg, state.model.config.vocab_size)
    gen = torch.Generator().manual_seed(1)

    def update() -> None:
        ppo_update(state.model, state.optimizer, rows, cfg, pad_id=state.pad_id, generator=gen, engine=state.engine)

    update()  # AdamW state exists from here on; like the loop, the step's gradients stay until the next update
    cuda = state.engine.device.type == "cuda"
    base = state_bytes(state.model, state.optimizer)
    passes = plan_micro_batches(
        [len(p) for p in rows.prompts],
        [len(r) for r in rows.responses],
        max_rows=cfg.micro_batch_size,
        max_tokens=cfg.max_tokens_per_micro_batch,
    )

    def scoring() -> None:
        with state.engine.autocast():
            score(
                state.model,
                rows.prompts,
                rows.responses,
                pad_id=state.pad_id,
                micro_batches=passes,
                response_width=cfg.max_new_tokens,
                temperature=cfg.temperature,
                chunk_tokens=cfg.logprob_chunk_tokens,
            )

    score_peak = _peak(scoring, cuda, base)
    generate_peak = _peak(lambda: _generate(state, cfg), cuda, base) if cfg.rollout_backend == "transformers" else 0
    # The update's first act is zero_grad(set_to_none=True): the previous step's gradients go
    # before its own are allocated. Drop them here, outside the measured window, because the CPU
    # profiler does not report the free of a tensor allocated before the window: counting them in
    # the base would count the gradients twice (measured: one fp32 copy of the parameters too many
    # from the second micro-batch on).
    state.optimizer.zero_grad(set_to_none=True)
    update_peak = _peak(update, cuda, state_bytes(state.model, state.optimizer))
    return MeasuredPeaks(score=score_peak, update=update_peak, state=base, generate=generate_peak)


def _generate(state: Any, cfg: TrainConfig) -> None:
    """The loop's rollout call (``trainer.loop.generate``: every prompt of the step in one backend call,
    under the engine's autocast) on worst-case prompts; a random model seldom stops early, so the
    responses run to about ``max_new_tokens``."""
    from trainer.rollout.backend import SamplingParams

    prompts = worst_case_prompts(cfg, state.model.config.vocab_size)
    params = SamplingParams(
        n=cfg.n, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
    )
    with state.engine.autocast():
        state.backend.generate(prompts, params)


def _peak(fn: Any, cuda: bool, base: int) -> int:
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    with CpuPeak() as tracker:
        fn()
    return base + tracker.peak
