"""Peak memory of scoring and of the update at long responses, with and without the engine's
long-sequence techniques, side by side in one process.

    python bench/long_sequence_memory.py [--model smollm2-135m] [--response-tokens 2048] [--rows 1]

Three set-ups on the same rows (random tokens, ±1 advantages, one optimizer step):
- full logits: log-probs and entropies from the whole (B, T, V) logits at once (logprob_chunk_tokens=0),
  no activation checkpointing: what the trainer did before;
- chunked: the LM head applied to 256 positions at a time from the hidden states, each chunk
  recomputed in the backward pass (logprob_chunk_tokens=256);
- chunked + checkpointing: also gradient_checkpointing (decoder layers recomputed in the backward).
Peak memory is the highest resident set size sampled during the phase above the resident size
before it (after handing freed memory back to the OS), as in bench/trainer_overhead.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.trainer_overhead import PeakRss
from trainer.config import TrainConfig
from trainer.engine.parallel import prepare
from trainer.registry import load_model, load_tokenizer
from trainer.rl.batch import RowCollector, TrainRows, plan_micro_batches
from trainer.rl.scoring import score
from trainer.rl.update import ppo_update

SETUPS = {
    "full logits": {"logprob_chunk_tokens": 0, "gradient_checkpointing": False},
    "chunked": {"logprob_chunk_tokens": 256, "gradient_checkpointing": False},
    "chunked + checkpointing": {"logprob_chunk_tokens": 256, "gradient_checkpointing": True},
}


def make_rows(n: int, prompt: int, response: int) -> TrainRows:
    gen = torch.Generator().manual_seed(0)
    rows = RowCollector()
    for i in range(n):
        rows.add(
            torch.randint(10, 1000, (prompt,), generator=gen).tolist(),
            torch.randint(10, 1000, (response,), generator=gen).tolist(),
            None,
            torch.full((response,), 1.0 if i % 2 else -1.0),
            torch.ones(response),
            "normal",
        )
    return rows.build()


def measure(model_name: str, rows: TrainRows, response: int, **engine: object) -> dict[str, float]:
    cfg = TrainConfig(
        model=model_name,
        algorithm="grpo",
        n=max(2, len(rows)),
        questions_per_step=1,
        samples_per_step=1,
        micro_batch_size=len(rows),
        max_new_tokens=response,
        max_prompt_length=64,
        lr=1e-6,
        **engine,
    )  # type: ignore[arg-type]
    model, eng = prepare(load_model(model_name), cfg, device=torch.device("cpu"), dist=None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    pad = load_tokenizer(model_name).pad_token_id
    passes = plan_micro_batches(
        [len(p) for p in rows.prompts], [len(r) for r in rows.responses], max_rows=len(rows), max_tokens=0
    )
    with PeakRss() as rss_score:
        t0 = time.perf_counter()
        score(
            model,
            rows.prompts,
            rows.responses,
            pad_id=pad,
            micro_batches=passes,
            response_width=response,
            temperature=1.0,
            chunk_tokens=cfg.logprob_chunk_tokens,
        )
        t_score = time.perf_counter() - t0
    with PeakRss() as rss_update:
        t0 = time.perf_counter()
        ppo_update(model, opt, rows, cfg, pad_id=pad, generator=torch.Generator().manual_seed(0), engine=eng)
        t_update = time.perf_counter() - t0
    del model, opt
    return {"score_mb": rss_score.delta_mb, "update_mb": rss_update.delta_mb, "score_s": t_score, "update_s": t_update}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--response-tokens", type=int, default=2048)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("PSL_TORCH_THREADS", "2")))
    rows = make_rows(args.rows, args.prompt_tokens, args.response_tokens)
    print(
        f"## {args.model}: {args.rows} row(s) × ({args.prompt_tokens} prompt + {args.response_tokens} response) "
        f"tokens, fp32, CPU"
    )
    print(f"{'':26}{'score peak MB':>14}{'update peak MB':>16}{'score s':>9}{'update s':>10}")
    results = {}
    for name, engine in SETUPS.items():
        results[name] = r = measure(args.model, rows, args.response_tokens, **engine)
        print(
            f"{name:26}{r['score_mb']:>14.0f}{r['update_mb']:>16.0f}{r['score_s']:>9.1f}{r['update_s']:>10.1f}",
            flush=True,
        )
    base = results["full logits"]
    for name in list(SETUPS)[1:]:
        r = results[name]
        print(
            f"{name} vs full logits: scoring {r['score_mb'] / base['score_mb']:.2f}x memory, "
            f"update {r['update_mb'] / base['update_mb']:.2f}x memory, "
            f"update {r['update_s'] / base['update_s']:.2f}x time"
        )


if __name__ == "__main__":
    main()
