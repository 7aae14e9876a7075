"""Evaluation metrics against numbers worked out by hand (trainer/evaluation/diversity.py)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.evaluation import diversity
from trainer.rl.algos import entropy_from_logits

# --- pass@k ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 2, 0.5),  # 1 − C(3,2)/C(4,2) = 1 − 3/6
        (5, 2, 3, 0.9),  # 1 − C(3,3)/C(5,3) = 1 − 1/10
        (8, 0, 8, 0.0),  # nothing correct: never passes
        (8, 3, 1, 3 / 8),  # pass@1 is the plain accuracy c/n
        (4, 3, 2, 1.0),  # n − c = 1 < k = 2: every pair holds a correct sample
        (10, 2, 5, 1 - 56 / 252),  # 1 − C(8,5)/C(10,5)
    ],
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert diversity.pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        diversity.pass_at_k(4, 5, 2)
    with pytest.raises(ValueError):
        diversity.pass_at_k(4, 1, 5)


def test_pass_at_k_curve_averages_over_questions() -> None:
    # q1: n=4, c=1 → pass@1 = 0.25, pass@2 = 0.5, pass@3 = 1 − C(3,3)/C(4,3) = 0.75, pass@4 = 1
    # q2: n=4, c=0 → all 0
    curve = diversity.pass_at_k_curve([(4, 1), (4, 0)])
    assert curve == pytest.approx({1: 0.125, 2: 0.25, 3: 0.375, 4: 0.5})


# --- accuracy CI --------------------------------------------------------------------------------


def test_accuracy_ci_is_the_clustered_normal_interval() -> None:
    # per-question accuracies 0.75, 0.5, 0.5, 0.25: mean 0.5; sample std = √((0.0625+0+0+0.0625)/3)
    # = 0.204124; SE = 0.204124/√4 = 0.102062; half-width = 1.959964·0.102062 = 0.200038.
    acc, low, high = diversity.accuracy_ci([0.75, 0.5, 0.5, 0.25])
    assert acc == pytest.approx(0.5)
    assert low == pytest.approx(0.299962, abs=1e-6)
    assert high == pytest.approx(0.700038, abs=1e-6)


def test_accuracy_ci_is_clipped_to_the_unit_interval_and_needs_two_questions() -> None:
    acc, low, high = diversity.accuracy_ci([1.0, 1.0, 0.0])  # mean 2/3, SE = 0.57735/√3 = 0.3333
    assert (acc, low, high) == pytest.approx((2 / 3, 2 / 3 - 1.959964 / 3, 1.0), abs=1e-6)
    assert diversity.accuracy_ci([0.5]) == (0.5, None, None)


# --- entropy and KL --------------------------------------------------------------------------------


def test_entropy_in_bits_is_nats_over_ln2() -> None:
    assert diversity.nats_to_bits(math.log(2)) == pytest.approx(1.0)
    # uniform over 4 tokens: ln 4 nats = 2 bits
    nats = entropy_from_logits(torch.zeros(4)).item()
    assert diversity.nats_to_bits(nats) == pytest.approx(2.0)


def test_token_mean_kl_averages_the_log_ratio_over_each_rows_tokens() -> None:
    own = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]])
    other = torch.tensor([[-1.5, -2.0, -4.0], [-0.1, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # row 1: (0.5 + 0 + 1) / 3 = 0.5; row 2: only the first token counts: −0.5 − (−0.1) = −0.4
    kl = diversity.token_mean_kl(own, other, mask)
    torch.testing.assert_close(kl, torch.tensor([0.5, -0.4]))


def test_token_mean_kl_of_an_empty_row_is_zero() -> None:
    kl = diversity.token_mean_kl(torch.ones(1, 2), torch.zeros(1, 2), torch.zeros(1, 2))
    assert kl.tolist() == [0.0]


# --- unique correct -----------------------------------------------------------------------------------


def test_reasoning_tokens_normalise_case_number_formatting_and_punctuation() -> None:
    assert diversity.reasoning_tokens("So 1,000 * 2.0 = 2,000!") == ["so", "1000", "×", "2", "=", "2000"]


def test_unique_correct_merges_responses_that_differ_only_in_formatting() -> None:
    texts = [
        "The answer is 12.",  # correct
        "the answer is   12",  # correct, same reasoning after normalisation
        "First 3 x 4 = 12, so the answer is 12.",  # correct, a different derivation
        "The answer is 13.",  # wrong: never counted
    ]
    assert diversity.unique_correct(texts, [1, 1, 1, 0]) == 2


def test_unique_correct_uses_the_jaccard_threshold() -> None:
    a = "we add five and seven to get twelve so the answer is twelve"
    b = "we add five and seven to get twelve so the answer is 12"
    # 13 tokens each → 12 distinct 2-grams each; b swaps the last one, "is twelve", for "is 12":
    # |a ∩ b| = 11, |a ∪ b| = 13 → Jaccard 0.846 ≥ 0.8: one solution (but not at threshold 0.9).
    assert diversity.jaccard(
        diversity.shingles(diversity.reasoning_tokens(a)), diversity.shingles(diversity.reasoning_tokens(b))
    ) == pytest.approx(11 / 13)
    assert diversity.unique_correct([a, b], [1, 1]) == 1
    assert diversity.unique_correct([a, b], [1, 1], threshold=0.9) == 2


def test_clusters_are_connected_components_whatever_the_order() -> None:
    texts = ["a b c d e f g h i j", "a b c d e f g h i k", "x y z"]
    assert diversity.cluster_responses(texts) == [0, 0, 1]
    assert diversity.cluster_responses(list(reversed(texts))) == [0, 1, 1]


def test_no_correct_response_means_no_unique_correct() -> None:
    assert diversity.unique_correct(["a", "b"], [0.0, 0.0]) == 0


# --- creative writing ----------------------------------------------------------------------------------

T1, T2, T3 = "the cat sat on the mat", "the cat sat on the hat", "go go go"


def test_div_ngram_on_three_texts() -> None:
    # T1: 2-grams (the cat)(cat sat)(sat on)(on the)(the mat): 5 distinct / 5 = 1
    # T2: likewise 5 / 5 = 1
    # T3: (go go)(go go): 1 distinct / 2 = 0.5
    # mean = (1 + 1 + 0.5) / 3 = 0.8333 → ×100
    assert diversity.div_ngram([T1, T2, T3]) == pytest.approx(250 / 3)


def test_div_ngram_counts_repeats_within_a_sample() -> None:
    # "the cat the cat sat": (the cat)(cat the)(the cat)(cat sat) → 3/4; "a dog ran" 2/2;
    # "go go go go" 1/3; "hi" has no 2-gram and is left out: mean(0.75, 1, 1/3) = 0.69444
    assert diversity.div_ngram(["the cat the cat sat", "a dog ran", "go go go go", "hi"]) == pytest.approx(
        100 * (0.75 + 1 + 1 / 3) / 3
    )
    assert diversity.div_ngram(["hi"]) is None


def test_div_bleu_on_three_texts() -> None:
    # BLEU-4(T1, refs [T2, T3]) with sacrebleu's defaults (13a tokens, exp smoothing):
    #   1-grams: the×2 cat sat on mat → clipped matches against T2: the 2, cat, sat, on = 5 / 6
    #   2-grams: the cat, cat sat, sat on, on the, the mat → 4 / 5
    #   3-grams: the cat sat, cat sat on, sat on the, on the mat → 3 / 4
    #   4-grams: the cat sat on, cat sat on the, sat on the mat → 2 / 3
    #   closest reference length 6 = hypothesis length → brevity penalty 1
    #   BLEU = (5/6 · 4/5 · 3/4 · 2/3)^(1/4) = (1/3)^(1/4) = 0.759836
    # BLEU-4(T2, [T1, T3]) is the same by symmetry; BLEU-4(T3, [T1, T2]) = 0 (no matching word).
    # Div-BLEU = (1 − (2 · 0.759836 + 0) / 3) · 100 = 49.3443
    assert diversity.div_bleu([T1, T2, T3]) == pytest.approx(100 * (1 - 2 * (1 / 3) ** 0.25 / 3))
    assert diversity.div_bleu([T1]) is None


def test_identical_samples_have_no_diversity() -> None:
    assert diversity.div_bleu([T1, T1, T1]) == pytest.approx(0.0)


def test_mean_pairwise_cosine_distance() -> None:
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # pairs: (1,2) cos 0 → 1; (1,3) and (2,3) cos 1/√2 → 1 − 0.70711 = 0.29289 each
    # mean = (1 + 2 · 0.29289) / 3 = 0.52860
    assert diversity.mean_pairwise_cosine_distance(e) == pytest.approx((1 + 2 * (1 - 2**-0.5)) / 3)
    assert diversity.mean_pairwise_cosine_distance(e[:1]) is None


class FakeEmbedder:
    def encode(self, texts: list[str], **kwargs: object) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0] if "cat" in t else [0.0, 1.0] for t in texts])


def test_embedding_diversity_scales_the_mean_distance_by_100() -> None:
    # T1, T2 embed to the same vector (distance 0); T3 is orthogonal to both (distance 1 twice)
    assert diversity.embedding_diversity([T1, T2, T3], FakeEmbedder()) == pytest.approx(200 / 3)


@pytest.mark.slow
def test_the_offline_embedding_model_separates_unrelated_texts() -> None:
    embedder = diversity.load_embedder()
    same = diversity.embedding_diversity([T1, T1], embedder)
    different = diversity.embedding_diversity([T1, "Quarterly revenue rose by four percent."], embedder)
    assert same == pytest.approx(0.0, abs=1e-4)
    assert different is not None and different > 50
