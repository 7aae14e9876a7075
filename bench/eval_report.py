"""Policy Split vs GRPO vs the untrained model on SmolLM2-135M: per-mode evaluation with p-values.

    HF_HUB_OFFLINE=1 python bench/eval_report.py [--out var/bench/eval_report] [--steps 30]

1. Trains two runs with the CLI (``python -m trainer train``), unless their final checkpoint is
   already in the output folder: Policy Split (n = 4 rollouts per mode) and GRPO (n = 8), so both
   generate the same number of sequences per question (docs/method.md §0); same questions per step, lr,
   max_new_tokens, seed, and one optimizer step per training step for both.
2. Evaluates the untrained model and both final checkpoints with ``python -m trainer.evaluation.evaluate``
   in both modes (T = 0.6, top-k 20, top-p 0.95): the built-in ``arith`` test split and the 13
   creative prompts (reuses result files that are already there).
3. Prints the tables: accuracy with its 95 % CI, entropy (bits), length, pass@k, unique correct,
   inter-mode KL, and for the creative prompts Div-N-Gram, Div-BLEU and embedding diversity, with
   two-sided paired sign-flip permutation p-values per question (per prompt for creative metrics):
   each trained model vs the untrained one, and Policy Split vs GRPO (same mode).

Wall times of every phase go to ``timings.json`` and the printed report to ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from webapp.review.stats import permutation_test  # noqa: E402  (numpy only, no Django)

MODEL = "smollm2-135m"
MODES = ("normal", "he")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "var" / "bench" / "eval_report"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--questions-per-step", type=int, default=2)
    p.add_argument("--n", type=int, default=4, help="Policy Split rollouts per mode; GRPO gets 2n")
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--train-max-new-tokens", type=int, default=64)
    p.add_argument("--arith-questions", type=int, default=64)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--arith-max-new-tokens", type=int, default=96)
    p.add_argument("--creative-max-new-tokens", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=MODEL, help="tiny-random for a quick smoke run of the script")
    return p.parse_args()


def run_logged(cmd: list[str], log: Path) -> float:
    """Run a command with its output in ``log``; returns the wall time; exits on failure."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t0


def train(args: argparse.Namespace, algorithm: str, out: Path, timings: dict[str, Any]) -> Path:
    n = args.n if algorithm == "policy_split" else 2 * args.n
    folder = out / algorithm
    final = folder / "checkpoints" / f"step_{args.steps:06d}"
    settings = {
        "model": args.model,
        "algorithm": algorithm,
        "steps": args.steps,
        "n": n,
        "questions_per_step": args.questions_per_step,
        "mini_batches": 1,
        "micro_batch_size": 8,
        "max_new_tokens": args.train_max_new_tokens,
        "lr": args.lr,
        "checkpoint_every": 0,
        "keep_checkpoints": 1,
        "seed": args.seed,
        "task": "arith",
        "output_dir": str(folder),
    }
    timings.setdefault("train_settings", {})[algorithm] = settings
    if (final / "config.json").is_file():
        print(f"{algorithm}: reusing {final}", flush=True)
        return final
    cmd = [sys.executable, "-m", "trainer", "train", "--no-progress"]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    print(f"{algorithm}: training {args.steps} steps …", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    timings[f"train/{algorithm}_s"] = run_logged(cmd, folder / "train.log")
    print(f"{algorithm}: {timings[f'train/{algorithm}_s']:.0f} s", flush=True)
    return final


def evaluate(
    args: argparse.Namespace, label: str, model: str, benchmark: str, out: Path, timings: dict[str, Any]
) -> dict[str, Any]:
    path = out / "evals" / f"{label}-{benchmark}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        limit = args.arith_questions if benchmark == "arith" else 13
        max_new = args.arith_max_new_tokens if benchmark == "arith" else args.creative_max_new_tokens
        cmd = [
            sys.executable,
            "-m",
            "trainer.evaluation.evaluate",
            "--model",
            model,
            "--benchmark",
            benchmark,
            "--k",
            str(args.k),
            "--limit",
            str(limit),
            "--max-new-tokens",
            str(max_new),
            "--modes",
            "normal,he",
            "--seed",
            str(args.seed),
            "--no-judge",
            "--out",
            str(path),
        ]
        print(f"evaluating {label} on {benchmark} …", flush=True)
        timings[f"eval/{label}/{benchmark}_s"] = run_logged(cmd, path.with_suffix(".log"))
        print(f"  {timings[f'eval/{label}/{benchmark}_s']:.0f} s", flush=True)
    return json.loads(path.read_text())["benchmarks"][benchmark]


# --- tables ------------------------------------------------------------------------------------------


def per_question(report: dict[str, Any], mode: str, field: str) -> dict[str, float]:
    """Per question: mean over its samples of ``field`` (score → accuracy, entropy_bits, kl, length)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for s in report["modes"][mode]["samples"]:
        value = s[field]
        if field == "score":
            value = float((value or 0.0) > 0.5)
        groups[s["question_id"]].append(float(value))
    return {q: statistics.fmean(v) for q, v in groups.items()}


def per_prompt(report: dict[str, Any], mode: str, key: str) -> dict[str, float]:
    return {
        q: v[key] for q, v in report["modes"][mode]["metrics"]["creative_per_prompt"].items() if v.get(key) is not None
    }


def p_value(a: dict[str, float], b: dict[str, float]) -> float | None:
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    return permutation_test([a[k] for k in keys], [b[k] for k in keys], resamples=20_000).p_value


def fmt(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "–"


def fmt_p(p: float | None) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


LABELS = {"untrained": "Untrained SmolLM2-135M", "grpo": "GRPO (n=8)", "policy_split": "Policy Split (n=4/mode)"}


def arith_table(results: dict[str, dict[str, Any]], k: int) -> str:
    header = [
        "model",
        "mode",
        "Acc % [95% CI]",
        "p vs untrained",
        "p PS vs GRPO",
        "Ent (bits)",
        "len",
        f"pass@{k} %",
        "uniq correct",
        "KL (nats)",
    ]
    rows = []
    for label in ("untrained", "grpo", "policy_split"):
        for mode in MODES:
            rep = results[label]
            m = rep["modes"][mode]["metrics"]
            acc = per_question(rep, mode, "score")
            ci = m.get("accuracy_ci") or [None, None]
            p_base = p_value(acc, per_question(results["untrained"], mode, "score")) if label != "untrained" else None
            p_grpo = p_value(acc, per_question(results["grpo"], mode, "score")) if label == "policy_split" else None
            lo, hi = (fmt(100 * c) if c is not None else "–" for c in ci)
            rows.append(
                [
                    LABELS[label],
                    mode,
                    f"{100 * m['accuracy']:.2f} [{lo}, {hi}]",
                    fmt_p(p_base),
                    fmt_p(p_grpo),
                    fmt(m["entropy_bits"], ".3f"),
                    fmt(m["length"], ".1f"),
                    fmt(100 * m["pass_at_k"][str(k)]),
                    fmt(m["unique_correct"]),
                    fmt(m["kl_to_other"], ".4f"),
                ]
            )
    return table(header, rows)


def creative_table(results: dict[str, dict[str, Any]]) -> str:
    header = [
        "model",
        "mode",
        "Div-N-Gram",
        "p vs untr.",
        "Div-BLEU",
        "p vs untr.",
        "p PS vs GRPO",
        "Emb div",
        "p vs untr.",
        "Ent (bits)",
        "len",
        "KL (nats)",
    ]
    rows = []
    for label in ("untrained", "grpo", "policy_split"):
        for mode in MODES:
            rep = results[label]
            m = rep["modes"][mode]["metrics"]

            def p(key: str, other: str, rep: dict[str, Any] = rep, mode: str = mode, label: str = label) -> str:
                if other == label:
                    return "–"
                return fmt_p(p_value(per_prompt(rep, mode, key), per_prompt(results[other], mode, key)))

            rows.append(
                [
                    LABELS[label],
                    mode,
                    fmt(m["div_ngram"]),
                    p("div_ngram", "untrained"),
                    fmt(m["div_bleu"]),
                    p("div_bleu", "untrained"),
                    p("div_bleu", "grpo") if label == "policy_split" else "–",
                    fmt(m.get("embedding_diversity")),
                    p("embedding_diversity", "untrained"),
                    fmt(m["entropy_bits"], ".3f"),
                    fmt(m["length"], ".1f"),
                    fmt(m["kl_to_other"], ".4f"),
                ]
            )
    return table(header, rows)


def mode_table(results: dict[str, dict[str, Any]]) -> str:
    """HE vs normal within each model (paired per question): the behavioural gap between the modes."""
    header = ["model", "benchmark", "Δ Acc HE−normal (pts)", "p", "Δ Ent HE−normal (bits)", "p"]
    rows = []
    for label in ("untrained", "grpo", "policy_split"):
        for bench in ("arith", "creative"):
            rep = results[label] if bench == "arith" else results[f"{label}/creative"]
            ent_n, ent_h = per_question(rep, "normal", "entropy_bits"), per_question(rep, "he", "entropy_bits")
            d_ent = statistics.fmean(ent_h.values()) - statistics.fmean(ent_n.values())
            if bench == "arith":
                acc_n, acc_h = per_question(rep, "normal", "score"), per_question(rep, "he", "score")
                d_acc = 100 * (statistics.fmean(acc_h.values()) - statistics.fmean(acc_n.values()))
                acc_cells = [fmt(d_acc, "+.2f"), fmt_p(p_value(acc_h, acc_n))]
            else:
                acc_cells = ["–", "–"]
            rows.append([LABELS[label], bench, *acc_cells, fmt(d_ent, "+.3f"), fmt_p(p_value(ent_h, ent_n))])
    return table(header, rows)


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    t0 = time.perf_counter()
    models = {"untrained": args.model}
    for algorithm in ("policy_split", "grpo"):
        models[algorithm] = str(train(args, algorithm, out, timings))
        timings_path.write_text(json.dumps(timings, indent=1))
    results: dict[str, dict[str, Any]] = {}
    for label, model in models.items():
        results[label] = evaluate(args, label, model, "arith", out, timings)
        results[f"{label}/creative"] = evaluate(args, label, model, "creative", out, timings)
        timings_path.write_text(json.dumps(timings, indent=1))
    creative = {label: results[f"{label}/creative"] for label in models}
    timings["report_total_s_this_invocation"] = time.perf_counter() - t0
    timings_path.write_text(json.dumps(timings, indent=1))
    report = "\n\n".join(
        [
            f"## arith test split ({args.arith_questions} questions × k={args.k}, T=0.6, top-k 20, top-p 0.95, "
            f"max_new_tokens {args.arith_max_new_tokens})",
            arith_table(results, args.k),
            f"## creative prompts (13 × k={args.k}, max_new_tokens {args.creative_max_new_tokens})",
            creative_table(creative),
            "## HE vs normal within each model (paired per question / prompt)",
            mode_table(results),
            "p-values: two-sided paired sign-flip permutation test over questions (prompts for creative metrics; "
            "exact for ≤ 16 pairs, else 20,000 random sign patterns). KL: KL(normal‖HE) on normal samples, "
            "KL(HE‖normal) on HE samples (token mean per response, then mean).",
            "## wall times (s)",
            "\n".join(f"- {k}: {v:.0f}" for k, v in timings.items() if isinstance(v, float)),
            "## training settings",
            "\n".join(f"- {k}: {json.dumps(v)}" for k, v in timings.get("train_settings", {}).items()),
        ]
    )
    (out / "report.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
