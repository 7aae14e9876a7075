"""Calibrate the ``arith`` task on the bundled SmolLM2-135M-Instruct: accuracy per level and temperature.

Run (CPU, ~1 minute per 16 prompts × 96 tokens on 2 busy cores):

    HF_HUB_OFFLINE=1 python bench/arith_calibration.py --per-level 64 --temperatures 0,0.6,1.0 \\
        --dump /tmp/arith_responses.json

Temperature 0 means greedy decoding. Prints one row per (temperature, level) with the strict
accuracy (``math_reward``: a filled-in ``\\boxed{}``) and the lenient accuracy (``arith_grade``),
then the accuracy of the default level mix. ``--regrade FILE`` re-grades a dump without a model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from trainer.data.datasets import ARITH_DEFAULT_MIX, ARITH_LEVELS, Question, arith_grade, arith_level_questions
from trainer.data.rewards import math_reward


def generate(
    model: Any, tok: Any, prompts: Sequence[str], *, temperature: float, max_new_tokens: int, batch_size: int
) -> list[str]:
    """One response per prompt: a single user turn, left-padded batches, pure sampling or greedy."""
    import torch

    tok.padding_side = "left"
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chats = [
            tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in prompts[start : start + batch_size]
        ]
        enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **sampling)
        out.extend(tok.decode(row[enc.input_ids.shape[1] :], skip_special_tokens=True) for row in ids)
    return out


def table(records: list[dict[str, Any]]) -> str:
    """Per (temperature, level) strict and lenient accuracy, then the default mix's weighted accuracy."""
    lines = ["| T | level | n | strict | lenient |", "|---|---|---|---|---|"]
    temps = sorted({r["temperature"] for r in records})
    for t in temps:
        lenient_by_level = {}
        for level in ARITH_LEVELS:
            rows = [r for r in records if r["temperature"] == t and r["level"] == level]
            if not rows:
                continue
            strict = sum(r["strict"] for r in rows) / len(rows)
            lenient_by_level[level] = sum(r["lenient"] for r in rows) / len(rows)
            lines.append(f"| {t:g} | L{level} | {len(rows)} | {strict:.0%} | {lenient_by_level[level]:.0%} |")
        weight = sum(ARITH_DEFAULT_MIX[lvl] for lvl in lenient_by_level)
        mixed = sum(ARITH_DEFAULT_MIX[lvl] * acc for lvl, acc in lenient_by_level.items()) / weight
        lines.append(f"| {t:g} | default mix | | | {mixed:.0%} |")
    return "\n".join(lines)


def grade_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in records:
        q = Question(id=r["id"], prompt=r["prompt"], answer=r["answer"])
        r["strict"] = math_reward(r["response"], r["answer"])
        r["lenient"] = arith_grade(q, r["response"])
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--per-level", type=int, default=64)
    parser.add_argument("--temperatures", default="0.6,1.0")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--levels", default=",".join(map(str, ARITH_LEVELS)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dump", help="write every response to this JSON file")
    parser.add_argument("--regrade", help="re-grade a dump instead of generating")
    args = parser.parse_args()
    if args.regrade:
        with open(args.regrade) as fh:
            print(table(grade_records(json.load(fh))))
        return

    import torch

    from trainer.registry import load_model, load_tokenizer

    torch.set_num_threads(2)
    tok, model = load_tokenizer(args.model), load_model(args.model)
    model.eval()
    records: list[dict[str, Any]] = []
    for temperature in (float(t) for t in args.temperatures.split(",")):
        torch.manual_seed(args.seed)
        for level in (int(lvl) for lvl in args.levels.split(",")):
            started = time.monotonic()
            qs = arith_level_questions(level, args.per_level, split="test", seed=args.seed)
            responses = generate(
                model,
                tok,
                [q.prompt for q in qs],
                temperature=temperature,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
            )
            records += grade_records(
                [
                    {
                        "temperature": temperature,
                        "level": level,
                        "id": q.id,
                        "prompt": q.prompt,
                        "answer": q.answer,
                        "response": r,
                    }
                    for q, r in zip(qs, responses, strict=True)
                ]
            )
            print(f"T={temperature:g} L{level}: {time.monotonic() - started:.0f} s", flush=True)
            if args.dump:
                with open(args.dump, "w") as fh:
                    json.dump(records, fh, indent=1)
    print(table(records))


if __name__ == "__main__":
    main()
