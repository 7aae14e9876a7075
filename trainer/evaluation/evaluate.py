"""Evaluate a model or checkpoint on benchmarks in both modes (docs/method.md §9 protocol, §6.4 creative metrics).

    python -m trainer.evaluation.evaluate --model <name|checkpoint folder> --benchmark arith,creative \\
        [--k 8 --temperature 0.6 --top-k 20 --top-p 0.95 --max-new-tokens N --limit N \\
         --modes normal,he --out results.json]

For each benchmark and mode: k samples per question (paper protocol: T = 0.6, top-k 20, top-p 0.95,
k = 8) from the mode's prompt (normal = user turn; HE = the HE system turn + the same user turn,
``trainer.data.prompts``), graded by the benchmark; then one no-grad scoring pass of every sample under
its own context (log-probs and full-vocabulary entropies) and one under the *other* mode's context
with the same token ids (docs/method.md §0), which gives the inter-mode KL on the same responses:
KL(HE‖normal) on HE samples and KL(normal‖HE) on normal samples. Metrics are in
``trainer.evaluation.diversity`` (definitions and the CI method there); entropies are reported in bits, KLs in
nats. Creative prompts get Div-N-Gram, Div-BLEU, embedding diversity and, with a configured
endpoint, the LLM judge (``trainer.evaluation.judge``).

The output (``--out``) is one JSON document: ``{"model", "settings", "benchmarks": {name: report}}``,
each report holding per-mode ``metrics`` and per-sample ``samples`` (question_id, index, response,
score, length, entropy_bits, kl, truncated, judge). A benchmark that fails (e.g. its data file is
missing) gets an ``error`` instead and the exit status is 1; the others are still written.

``python -m trainer evaluate -- --model …`` reaches the same ``main`` through ``trainer.cli``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.choices import MODES, ROLLOUT_BACKENDS
from trainer.config import EVAL_SAMPLING
from trainer.data.benchmarks import BENCHMARK_NAMES, Benchmark, load_benchmark
from trainer.data.prompts import encode_prompts
from trainer.evaluation import diversity
from trainer.evaluation.judge import JudgeConfig, judge_config_from_env, judge_many, summarize

Log = Callable[[str], None]
SCORING_TOKEN_BUDGET = 2048
"""Rows × response tokens per scoring micro-batch: bounds the (B, T, V) logits tensor's memory."""


@dataclass(frozen=True)
class EvalSettings:
    k: int = EVAL_SAMPLING.k
    """Samples per question and mode (paper: 8)."""
    temperature: float = EVAL_SAMPLING.temperature
    top_k: int = EVAL_SAMPLING.top_k
    top_p: float = EVAL_SAMPLING.top_p
    max_new_tokens: int = EVAL_SAMPLING.max_new_tokens
    """Paper: 32,768; CPU runs need far fewer."""
    max_prompt_length: int = 1024
    limit: int | None = None
    """Questions per benchmark (None = all)."""
    modes: tuple[str, ...] = MODES
    seed: int = 0
    batch_size: int = 32
    """Sequences per generate call."""
    micro_batch_size: int = 8
    """Rows per scoring forward pass (fewer for long responses, see SCORING_TOKEN_BUDGET)."""
    logprob_chunk_tokens: int = 1024
    """Positions per chunk of the scoring pass's LM head (see TrainConfig.logprob_chunk_tokens)."""
    enable_thinking: bool = False
    """Qwen3 thinking mode in the chat template; math grading then requires </think> (docs/method.md §6.1)."""
    embeddings: bool = True
    """Compute the embedding diversity of creative samples (loads all-MiniLM-L6-v2)."""
    backend: str = "transformers"
    """Sampling backend: transformers generate, or vllm (the training rollouts' engine; GPU extra)."""
    vllm_gpu_memory_utilization: float = 0.6
    """vllm: fraction of the GPU for the engine (the scoring pass shares the GPU with it)."""
    vllm_tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k: must be ≥ 1, got {self.k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.max_prompt_length < 1:
            raise ValueError("top_k must be ≥ 0; max_new_tokens and max_prompt_length ≥ 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit: must be ≥ 1, got {self.limit}")
        if self.backend not in ROLLOUT_BACKENDS:
            raise ValueError(f"backend: choose from {', '.join(ROLLOUT_BACKENDS)}, got {self.backend}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(f"vllm_gpu_memory_utilization: must be in (0, 1], got {self.vllm_gpu_memory_utilization}")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes: choose from {', '.join(MODES)}, got {', '.join(self.modes) or 'none'}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "modes": list(self.modes)}


@dataclass
class SampleResult:
    question_id: str
    index: int
    response: str
    score: float | None
    """1.0 / 0.0 (None for creative prompts)."""
    length: int
    """Response tokens, EOS included when the model stopped by itself."""
    entropy_bits: float
    """Mean full-vocabulary token entropy under the generating mode's context, in bits."""
    kl: float
    """Token-mean log π_own − log π_other of this response (nats): its share of the inter-mode KL."""
    truncated: bool
    judge: dict[str, float] | None = None
    judge_error: str = ""


@dataclass
class ModeReport:
    mode: str
    metrics: dict[str, Any]
    samples: list[SampleResult]


@dataclass
class BenchmarkReport:
    benchmark: str
    title: str
    kind: str
    graded: bool
    questions: list[dict[str, str]] = field(default_factory=list)
    modes: dict[str, ModeReport] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- metrics of one mode ----------------------------------------------------------------------------


def _by_question(samples: Sequence[SampleResult]) -> dict[str, list[SampleResult]]:
    out: dict[str, list[SampleResult]] = {}
    for s in samples:
        out.setdefault(s.question_id, []).append(s)
    return out


def mode_metrics(samples: Sequence[SampleResult], *, graded: bool, mode: str) -> dict[str, Any]:
    """Aggregate metrics of one mode's samples (fractions, bits, tokens, nats; see trainer.evaluation.diversity).

    ``accuracy`` is the mean over all Q·k samples (= the mean of per-question accuracies for equal
    k); ``entropy_bits`` is the token-weighted mean over all generated tokens (paper Table 1);
    ``kl_to_other`` is the mean over samples of their token-mean KL (docs/method.md §8); ``pass_at_k`` maps
    k' = 1..k to the unbiased estimator; ``unique_correct`` is the mean per question.
    """
    if not samples:
        return {}
    tokens = sum(s.length for s in samples)
    out: dict[str, Any] = {
        "n_questions": len(_by_question(samples)),
        "n_samples": len(samples),
        "entropy_bits": sum(s.entropy_bits * s.length for s in samples) / max(tokens, 1),
        "length": tokens / len(samples),
        "truncated_frac": statistics.fmean(float(s.truncated) for s in samples),
        "kl_to_other": statistics.fmean(s.kl for s in samples),
        "kl_direction": "KL(HE‖normal) on HE samples" if mode == "he" else "KL(normal‖HE) on normal samples",
        "graded": graded,
    }
    if graded:
        out.update(graded_metrics(samples))
    return out


def graded_metrics(samples: Sequence[SampleResult]) -> dict[str, Any]:
    """Accuracy with its CI, pass@k, best-of-k and unique correct answers of one mode."""
    groups = _by_question(samples)
    per_q = [statistics.fmean(float((s.score or 0.0) > 0.5) for s in g) for g in groups.values()]
    _, low, high = diversity.accuracy_ci(per_q)
    counts = [(len(g), sum((s.score or 0.0) > 0.5 for s in g)) for g in groups.values()]
    unique = [diversity.unique_correct([s.response for s in g], [s.score or 0.0 for s in g]) for g in groups.values()]
    curve = diversity.pass_at_k_curve(counts)
    return {
        "accuracy": statistics.fmean(float((s.score or 0.0) > 0.5) for s in samples),
        "accuracy_ci": [low, high] if low is not None else None,
        "accuracy_ci_method": diversity.CI_METHOD,
        "pass_at_k": {str(k): v for k, v in curve.items()},
        "best_of_k": statistics.fmean(float(c > 0) for _, c in counts),
        "unique_correct": statistics.fmean(unique),
        "unique_correct_total": sum(unique),
        "questions_solved_by_any": sum(c > 0 for _, c in counts),
    }


def creative_metrics(samples: Sequence[SampleResult], embedder: Any = None) -> dict[str, Any]:
    """Div-N-Gram, Div-BLEU and embedding diversity (×100) per prompt, and their means over prompts."""
    per_prompt: dict[str, dict[str, float | None]] = {}
    for qid, group in _by_question(samples).items():
        texts = [s.response for s in group]
        per_prompt[qid] = {
            "div_ngram": diversity.div_ngram(texts),
            "div_bleu": diversity.div_bleu(texts),
            "embedding_diversity": diversity.embedding_diversity(texts, embedder) if embedder else None,
        }
    out: dict[str, Any] = {"creative_per_prompt": per_prompt}
    for key in ("div_ngram", "div_bleu", "embedding_diversity"):
        values = [x for v in per_prompt.values() if (x := v[key]) is not None]
        out[key] = statistics.fmean(values) if values else None
    return out


# --- sampling and scoring ------------------------------------------------------------------------------


def make_sampler(model: Any, tokenizer: Any, settings: EvalSettings) -> Any:
    """The rollout backend of ``settings.backend``, built once per evaluation (a vLLM engine is costly)."""
    from trainer.rollout.backend import TransformersBackend

    if settings.backend == "transformers":
        return TransformersBackend(model, tokenizer, batch_size=settings.batch_size)
    from trainer.rollout.vllm_engine import VllmBackend

    return VllmBackend(
        model,
        tokenizer,
        max_model_len=settings.max_prompt_length + settings.max_new_tokens,
        gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        tensor_parallel_size=settings.vllm_tensor_parallel_size,
        seed=settings.seed,
        sleep=False,  # nothing trains between evaluation calls
    )


def sample_and_score(
    model: Any, tokenizer: Any, bench: Benchmark, mode: str, settings: EvalSettings, *, sampler: Any = None
) -> list[SampleResult]:
    """k samples per question in ``mode``, graded, each scored under both contexts (no grad)."""
    from trainer.rl.batch import plan_micro_batches
    from trainer.rl.scoring import score
    from trainer.rollout.backend import SamplingParams

    texts = [q.prompt for q in bench.questions]
    kw: dict[str, Any] = {"max_prompt_length": settings.max_prompt_length, "enable_thinking": settings.enable_thinking}
    other = "he" if mode == "normal" else "normal"
    own_prompts = encode_prompts(tokenizer, texts, mode, **kw)
    other_prompts = encode_prompts(tokenizer, texts, other, **kw)
    backend = sampler or make_sampler(model, tokenizer, settings)
    params = SamplingParams(
        n=settings.k,
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed * 1_000_003 + MODES.index(mode),
    )
    gens = backend.generate(own_prompts, params)
    flat = gens.flat()  # (Q·k,) question-major
    q_of = [qi for qi in range(len(texts)) for _ in range(settings.k)]
    width = max(1, max(len(r) for r in flat))
    mbs = max(1, min(settings.micro_batch_size, SCORING_TOKEN_BUDGET // width))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    passes = plan_micro_batches([0] * len(flat), [len(r) for r in flat], max_rows=mbs, max_tokens=0)
    # Entropy and KL of the model's own distribution (temperature 1), not of the sampling settings.
    score_kw: dict[str, Any] = {
        "pad_id": pad,
        "micro_batches": passes,
        "response_width": width,
        "temperature": 1.0,
        "chunk_tokens": settings.logprob_chunk_tokens,
    }
    logp_own, ent_own, mask = score(model, [own_prompts[q] for q in q_of], flat, **score_kw)  # (N, T) each
    logp_other, _, _ = score(model, [other_prompts[q] for q in q_of], flat, **score_kw)
    kl = diversity.token_mean_kl(logp_own, logp_other, mask)  # (N,) nats
    ent_bits = (ent_own * mask).sum(-1) / mask.sum(-1).clamp(min=1.0) / diversity.LN2  # (N,)
    truncated = [t for per_q in gens.truncated for t in per_q]
    out = []
    for i, ids in enumerate(flat):
        question = bench.questions[q_of[i]]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        out.append(
            SampleResult(
                question_id=question.id,
                index=i % settings.k,
                response=text,
                score=bench.grade(question, text),
                length=len(ids),
                entropy_bits=float(ent_bits[i]),
                kl=float(kl[i]),
                truncated=bool(truncated[i]),
            )
        )
    return out


def evaluate_benchmark(
    model: Any,
    tokenizer: Any,
    bench: Benchmark,
    settings: EvalSettings,
    *,
    judge: JudgeConfig | None = None,
    embedder: Any = None,
    log: Log | None = None,
    sampler: Any = None,
) -> BenchmarkReport:
    """Both (or the requested) modes of one loaded benchmark on one loaded model."""
    log = log or (lambda msg: None)
    spec = bench.spec
    report = BenchmarkReport(
        spec.name,
        spec.title,
        spec.kind,
        spec.graded,
        questions=[{"id": q.id, "prompt": q.prompt, "answer": q.answer} for q in bench.questions],
    )
    t0 = time.perf_counter()
    prompts = {q.id: q.prompt for q in bench.questions}
    for mode in settings.modes:
        t_mode = time.perf_counter()
        samples = sample_and_score(model, tokenizer, bench, mode, settings, sampler=sampler)
        metrics = mode_metrics(samples, graded=spec.graded, mode=mode)
        if spec.kind == "creative":
            metrics.update(creative_metrics(samples, embedder))
            if judge is not None:
                results = judge_many(judge, [(prompts[s.question_id], s.response) for s in samples])
                for s, r in zip(samples, results, strict=True):
                    s.judge, s.judge_error = r.scores, r.error
                metrics["judge"] = summarize(results)
                metrics["judge_model"] = judge.model
        report.modes[mode] = ModeReport(mode, metrics, samples)
        log(
            f"[{spec.name}/{mode}] {len(samples)} samples in {time.perf_counter() - t_mode:.1f}s: "
            + ", ".join(
                f"{k}={v:.4g}"
                for k, v in metrics.items()
                if isinstance(v, float) and k in ("accuracy", "entropy_bits", "kl_to_other", "div_ngram")
            )
        )
    report.seconds = time.perf_counter() - t0
    return report


def evaluate(
    model_name: str,
    benchmarks: Sequence[str],
    settings: EvalSettings,
    *,
    data_dir: str | Path | None = None,
    judge: JudgeConfig | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Load the model once and evaluate every benchmark; returns the JSON-ready results document."""

    from trainer.registry import apply_thread_limit, load_model, load_tokenizer

    log = log or (lambda msg: None)
    apply_thread_limit()
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name)
    model.eval()
    log(f"loaded {model_name} in {time.perf_counter() - t0:.1f}s")
    sampler = make_sampler(model, tokenizer, settings)
    embedder = None
    doc: dict[str, Any] = {
        "model": model_name,
        "settings": settings.to_dict(),
        "judge": judge.model if judge else None,
        "benchmarks": {},
    }
    for name in benchmarks:
        try:
            bench = load_benchmark(
                name,
                data_dir=data_dir,
                limit=settings.limit,
                seed=settings.seed,
                require_think=settings.enable_thinking,
            )
            if bench.spec.kind == "creative" and settings.embeddings and embedder is None:
                embedder = diversity.load_embedder()
            report = evaluate_benchmark(
                model, tokenizer, bench, settings, judge=judge, embedder=embedder, log=log, sampler=sampler
            )
        except Exception as exc:  # one broken benchmark must not lose the others' results
            log(f"[{name}] failed: {type(exc).__name__}: {exc}")
            doc["benchmarks"][name] = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}"}
            continue
        doc["benchmarks"][name] = report.to_dict()
    doc["seconds"] = time.perf_counter() - t0
    return doc


def write_json(doc: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temp file + rename); NaN/inf become null so the file is strict JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(doc), indent=1, ensure_ascii=False))
    tmp.replace(path)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --- command line --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = EvalSettings()
    p.add_argument("--model", required=True, help="registry name (tiny-random, smollm2-135m, …) or a checkpoint folder")
    p.add_argument("--benchmark", required=True, help=f"comma-separated benchmark names: {', '.join(BENCHMARK_NAMES)}")
    p.add_argument("--k", type=int, default=d.k, help="samples per question and mode (default %(default)s)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--max-prompt-length", type=int, default=d.max_prompt_length)
    p.add_argument("--limit", type=int, default=None, help="questions per benchmark (default: all)")
    p.add_argument("--modes", default=",".join(d.modes), help="normal, he or normal,he (default)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per generate call")
    p.add_argument(
        "--backend", choices=ROLLOUT_BACKENDS, default=d.backend, help="sampling engine (default %(default)s)"
    )
    p.add_argument("--vllm-gpu-memory-utilization", type=float, default=d.vllm_gpu_memory_utilization)
    p.add_argument("--vllm-tensor-parallel-size", type=int, default=d.vllm_tensor_parallel_size)
    p.add_argument(
        "--thinking",
        choices=("auto", "on", "off"),
        default="auto",
        help="Qwen3 thinking mode (auto: on for models that support it)",
    )
    p.add_argument("--no-embeddings", action="store_true", help="skip the embedding diversity of creative samples")
    p.add_argument("--data-dir", help="benchmark data folder (default $PSL_DATA_DIR or var/data)")
    p.add_argument("--judge-url", default="", help="OpenAI-compatible endpoint (default $JUDGE_API_URL)")
    p.add_argument("--judge-key", default="", help="its API key (default $JUDGE_API_KEY)")
    p.add_argument("--judge-model", default="", help="judge model (default $JUDGE_MODEL or gpt-4o)")
    p.add_argument("--no-judge", action="store_true", help="never call a judge, even if JUDGE_API_URL is set")
    p.add_argument("--out", help="write the results JSON here (default: print a summary only)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `python -m trainer evaluate -- --model …` (the CLI's REMAINDER keeps the --)
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    names = [b.strip() for b in args.benchmark.split(",") if b.strip()]
    unknown = [b for b in names if b not in BENCHMARK_NAMES]
    if not names or unknown:
        print(
            f"error: unknown benchmark {', '.join(unknown) or '(none)'}; valid: {', '.join(BENCHMARK_NAMES)}",
            file=sys.stderr,
        )
        return 2
    from trainer.registry import supports_thinking

    thinking = supports_thinking(args.model) if args.thinking == "auto" else args.thinking == "on"
    try:
        settings = EvalSettings(
            k=args.k,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            max_prompt_length=args.max_prompt_length,
            limit=args.limit,
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
            seed=args.seed,
            batch_size=args.batch_size,
            enable_thinking=thinking,
            embeddings=not args.no_embeddings,
            backend=args.backend,
            vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
            vllm_tensor_parallel_size=args.vllm_tensor_parallel_size,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    judge = (
        None
        if args.no_judge
        else judge_config_from_env(url=args.judge_url, api_key=args.judge_key, model=args.judge_model)
    )
    if judge is None and any(b == "creative" for b in names):
        print(
            "note: no LLM judge configured (JUDGE_API_URL); creative samples get diversity metrics only",
            file=sys.stderr,
        )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    doc = evaluate(args.model, names, settings, data_dir=args.data_dir, judge=judge, log=log)
    if args.out:
        write_json(doc, args.out)
    print(summary_table(doc))
    return 1 if any(r.get("error") for r in doc["benchmarks"].values()) else 0


def summary_table(doc: dict[str, Any]) -> str:
    """A plain-text table: one line per benchmark and mode."""
    lines = [
        f"{'benchmark':<14}{'mode':<8}{'acc':>8}{'95% CI':>17}{'ent(bit)':>10}{'len':>8}{'pass@k':>8}"
        f"{'uniq':>7}{'KL':>9}{'divNG':>8}{'divBLEU':>9}{'embDiv':>8}"
    ]

    def f(v: Any, spec: str = ".3f") -> str:
        return format(v, spec) if isinstance(v, int | float) else "–"

    for name, rep in doc["benchmarks"].items():
        if rep.get("error"):
            lines.append(f"{name:<14}error: {rep['error']}")
            continue
        for mode, m in rep["modes"].items():
            mt = m["metrics"]
            ci = mt.get("accuracy_ci")
            ci_text = f"{f(ci[0])}–{f(ci[1])}" if ci else "–"
            pk = mt.get("pass_at_k") or {}
            top = pk[max(pk, key=int)] if pk else None
            lines.append(
                f"{name:<14}{mode:<8}{f(mt.get('accuracy')):>8}{ci_text:>17}"
                f"{f(mt.get('entropy_bits')):>10}{f(mt.get('length'), '.1f'):>8}{f(top):>8}"
                f"{f(mt.get('unique_correct'), '.2f'):>7}{f(mt.get('kl_to_other'), '.4f'):>9}"
                f"{f(mt.get('div_ngram'), '.2f'):>8}{f(mt.get('div_bleu'), '.2f'):>9}"
                f"{f(mt.get('embedding_diversity'), '.2f'):>8}"
            )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m trainer.evaluation.evaluate …
    sys.exit(main())
