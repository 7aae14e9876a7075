"""Paired significance tests for evaluation tables: two methods answered the same questions.

Both tests pair the two methods question by question and test "no difference in accuracy":

* ``permutation`` (the default): a paired sign-flip permutation test on per-question mean
  accuracy over the k samples. Under the null hypothesis each question's difference is as
  likely to be positive as negative, so flipping signs at random gives the null distribution
  of the mean difference. It uses all k samples (a question 6/8 vs 2/8 counts more than
  5/8 vs 4/8), makes no normality assumption, and is exact for up to 16 questions. The
  effect size is the mean difference with a percentile paired-bootstrap 95 % CI.
* ``mcnemar``: the exact (binomial) McNemar test on per-question correctness binarised by
  majority vote over the k samples; it only sees the discordant questions.

Scores are in [0, 1]; a sample counts as correct when its score is > 0.5 (as ``Sample.is_correct``).
With ``strata`` (e.g. the benchmark of each question) the statistic is the mean over strata of
the per-stratum mean difference, matching the unweighted "Average" column of the paper's table.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054
# Significance marks, strictest first: the paper-style † / ‡ legend.
SIG_LEVELS: tuple[tuple[float, str], ...] = ((0.01, "‡"), (0.05, "†"))

PERMUTATION = "permutation"
MCNEMAR = "mcnemar"
DEFAULT_TEST = PERMUTATION
TESTS: dict[str, str] = {
    PERMUTATION: "paired sign-flip permutation test on per-question mean accuracy over the k samples "
    "(two-sided; 95 % CI from a paired bootstrap over questions)",
    MCNEMAR: "exact McNemar test on per-question correctness (majority of the k samples; two-sided; "
    "95 % Wald CI for paired proportions)",
}
TEST_LABELS: dict[str, str] = {PERMUTATION: "Permutation (sign-flip)", MCNEMAR: "McNemar (exact)"}


@dataclass(frozen=True)
class PairedResult:
    """Method A vs method B over ``n`` paired questions; ``diff`` = accuracy(A) − accuracy(B) in [−1, 1]."""

    test: str
    n: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def mark(self) -> str:
        return significance_mark(self.p_value)


def significance_mark(p: float | None) -> str:
    """‡ for p < 0.01, † for p < 0.05, else ""."""
    if p is None:
        return ""
    return next((mark for level, mark in SIG_LEVELS if p < level), "")


def is_correct(score: float) -> bool:
    return score > 0.5


def majority_correct(scores: Sequence[float]) -> bool:
    """A question is solved when more than half of its k samples are correct."""
    return sum(is_correct(s) for s in scores) * 2 > len(scores)


# --- McNemar ----------------------------------------------------------------------------------------


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b`` = questions only A solved, ``c`` = only B solved. Under H0 each discordant question
    is a fair coin, so p = 2 · P(Binomial(b + c, ½) ≤ min(b, c)), capped at 1.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be ≥ 0")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_test(a: Sequence[bool], b: Sequence[bool]) -> PairedResult:
    """Exact McNemar test on paired binary outcomes (per question, or per sample pair)."""
    if len(a) != len(b) or not a:
        raise ValueError("need two non-empty sequences of the same length")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = len(a)
    diff = (only_a - only_b) / n
    se = math.sqrt(max(0.0, only_a + only_b - (only_a - only_b) ** 2 / n)) / n
    return PairedResult(MCNEMAR, n, diff, diff - Z_95 * se, diff + Z_95 * se, mcnemar_exact_p(only_a, only_b))


# --- sign-flip permutation ----------------------------------------------------------------------


def _weights(n: int, strata: Sequence[Hashable] | None) -> np.ndarray:
    """Per-item weights so that ``weights @ d`` is the mean over strata of per-stratum means."""
    if strata is None:
        return np.full(n, 1.0 / n)
    if len(strata) != n:
        raise ValueError("strata must have one label per item")
    counts: dict[Hashable, int] = {}
    for s in strata:
        counts[s] = counts.get(s, 0) + 1
    return np.array([1.0 / (counts[s] * len(counts)) for s in strata])


def _sign_matrix_exact(n: int) -> np.ndarray:
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # (2^n, n)
    return (1 - 2 * bits).astype(np.float64)


def permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    strata: Sequence[Hashable] | None = None,
    resamples: int = 5_000,
    bootstrap: int = 1_000,
    seed: int = 0,
    exact_up_to: int = 16,
) -> PairedResult:
    """Two-sided paired sign-flip permutation test of mean(a − b) = 0, with a bootstrap 95 % CI.

    ``a[i]`` and ``b[i]`` are the two methods' accuracies on question i (e.g. the fraction of
    the k samples that were correct). Exact over all 2^n sign patterns when n ≤ ``exact_up_to``;
    otherwise Monte Carlo with the (count + 1) / (resamples + 1) estimate, which is never 0.
    """
    if len(a) != len(b) or not a:
        raise ValueError("need two non-empty sequences of the same length")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.size
    wd = _weights(n, strata) * d
    observed = float(wd.sum())
    # Ties with the observed statistic count as "at least as extreme" (float noise aside).
    threshold = abs(observed) - 1e-12
    if n <= exact_up_to:
        stats = _sign_matrix_exact(n) @ wd
        p = float(np.mean(np.abs(stats) >= threshold))
    else:
        hits = _monte_carlo_hits(wd, threshold, resamples=resamples, seed=seed)
        p = (hits + 1) / (resamples + 1)
    low, high = bootstrap_ci(d, strata=strata, resamples=bootstrap, seed=seed)
    return PairedResult(PERMUTATION, n, observed, low, high, min(1.0, p))


def _monte_carlo_hits(wd: np.ndarray, threshold: float, *, resamples: int, seed: int) -> int:
    """How many random sign patterns give |Σ ±wd| ≥ threshold.

    Signs come from random bits (``unpackbits`` of random bytes, far cheaper than drawing
    integers), and Σ ±wd = Σ wd − 2·(bits @ wd) is one float32 matrix product per chunk.
    """
    rng = np.random.default_rng(seed)
    n = wd.size
    total = float(wd.sum())
    w32 = wd.astype(np.float32)
    # float32 rounding must not turn a tie with the observed value into a miss.
    threshold = threshold - 1e-5 * max(abs(threshold), float(np.abs(wd).sum()))
    chunk = max(1, min(resamples, 4_000_000 // n))
    hits = done = 0
    while done < resamples:
        rows = min(chunk, resamples - done)
        raw = np.frombuffer(rng.bytes(rows * ((n + 7) // 8)), dtype=np.uint8).reshape(rows, -1)
        bits = np.unpackbits(raw, axis=1, count=n).astype(np.float32)  # (rows, n)
        hits += int(np.count_nonzero(np.abs(total - 2.0 * (bits @ w32)) >= threshold))
        done += rows
    return hits


def bootstrap_ci(
    d: Sequence[float] | np.ndarray,
    *,
    strata: Sequence[Hashable] | None = None,
    resamples: int = 2_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of the (stratified) mean of paired differences, resampling questions within strata."""
    d = np.asarray(d, dtype=np.float64)
    groups: dict[Hashable, list[int]] = {}
    for i, s in enumerate(strata if strata is not None else [None] * d.size):
        groups.setdefault(s, []).append(i)
    rng = np.random.default_rng(seed + 1)
    means = np.zeros(resamples)
    for idx in groups.values():
        values = d[idx]
        m = len(idx)
        chunk = max(1, min(resamples, 2_000_000 // m))
        for start in range(0, resamples, chunk):
            rows = min(chunk, resamples - start)
            draws = rng.integers(0, m, size=(rows, m))
            means[start : start + rows] += values[draws].mean(axis=1)
    means /= len(groups)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


# --- per-question pairing ----------------------------------------------------------------------------


def paired_question_test(
    a: Mapping[tuple[str, str], float], b: Mapping[tuple[str, str], float], *, test: str = DEFAULT_TEST, seed: int = 0
) -> PairedResult | None:
    """Test A vs B on the questions both answered; keys are (benchmark, question_id).

    Values are per-question accuracies in [0, 1] (mean correctness over the k samples, averaged
    over seeds for a group). Benchmarks are strata of the permutation test. None when no question
    is shared.
    """
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    xs = [a[k] for k in keys]
    ys = [b[k] for k in keys]
    if test == MCNEMAR:
        return mcnemar_test([x > 0.5 for x in xs], [y > 0.5 for y in ys])
    if test != PERMUTATION:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    strata = [k[0] for k in keys]
    # The test is deterministic (seeded), so a page reload can reuse it: keyed by the data itself.
    digest = hashlib.blake2b(
        np.asarray(xs).tobytes() + np.asarray(ys).tobytes() + "\x1f".join(strata).encode() + f"|{seed}".encode(),
        digest_size=16,
    ).digest()
    with _RESULTS_LOCK:
        if (cached := _RESULTS.get(digest)) is not None:
            _RESULTS.move_to_end(digest)
            return cached
    result = permutation_test(xs, ys, strata=strata, seed=seed)
    with _RESULTS_LOCK:
        _RESULTS[digest] = result
        if len(_RESULTS) > _RESULTS_MAX:
            _RESULTS.popitem(last=False)
    return result


# Recent permutation results (an LRU): large benchmarks take a fraction of a second per test.
_RESULTS: OrderedDict[bytes, PairedResult] = OrderedDict()
_RESULTS_MAX = 1024
_RESULTS_LOCK = threading.Lock()
