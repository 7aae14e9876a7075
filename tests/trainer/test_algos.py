"""Unit tests for trainer/rl/algos.py: hand-computed values on tiny tensors plus invariants.

Pure pytest and torch (no Django, no database). Expected numbers carry a comment saying where they
come from; § numbers are sections of docs/method.md.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from trainer.choices import CLAMP_ORDERS, LOSS_AGGS, NORMALIZERS
from trainer.config import TrainConfig
from trainer.rl import algos
from trainer.rl.algos import (
    agg_loss,
    eda_advantages,
    entropy_from_logits,
    grpo_advantages,
    kl_estimate,
    masked_mean,
    token_covariance,
)

# The math takes its hyperparameters as required keywords; their defaults have one home, the
# config. These wrappers fill in whatever a test does not set, so each test names only what it varies.
D = TrainConfig()
_DEFAULTS = {
    "policy_split_token_signal": {"alpha": D.alpha, "estimator": D.estimator},
    "group_normalize_tokens": {"normalize": D.normalize, "lowest_ratio": D.lowest_ratio},
    "clamped_bonus": {"kappa": D.kappa, "clamp_order": D.clamp_order},
    "policy_split_advantages": {
        "alpha": D.alpha,
        "eta": D.eta,
        "eta_normal": D.eta_normal,
        "kappa": D.kappa,
        "clamp_order": D.clamp_order,
        "normalize": D.normalize,
        "lowest_ratio": D.lowest_ratio,
        "estimator": D.estimator,
        "share_rollouts": D.rollout_sharing,
    },
    "ppo_clip_loss": {"clip_low": D.clip_low, "clip_high": D.clip_high, "dual_clip": D.dual_clip, "agg": D.loss_agg},
    "forking_token_mask": {"top_ratio": D.forking_top_ratio},
    "clip_cov_loss": {
        "ratio": D.cov_ratio,
        "lb": D.cov_lb,
        "ub": D.cov_ub,
        "clip_low": D.clip_low,
        "clip_high": D.clip_high,
        "agg": D.loss_agg,
    },
    "kl_cov_loss": {"ratio": D.cov_ratio, "coef": D.kl_cov_coef, "agg": D.loss_agg},
    "entropy_bonus_loss": {"coef": D.entropy_coef, "agg": D.loss_agg},
    "entropy_advantage": {"alpha": D.entropy_adv_alpha, "kappa": D.kappa},
}


def _with_config_defaults(name: str) -> Any:
    fn = getattr(algos, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **{**_DEFAULTS[name], **kwargs})

    return call


policy_split_token_signal = _with_config_defaults("policy_split_token_signal")
group_normalize_tokens = _with_config_defaults("group_normalize_tokens")
clamped_bonus = _with_config_defaults("clamped_bonus")
policy_split_advantages = _with_config_defaults("policy_split_advantages")
ppo_clip_loss = _with_config_defaults("ppo_clip_loss")
forking_token_mask = _with_config_defaults("forking_token_mask")
clip_cov_loss = _with_config_defaults("clip_cov_loss")
kl_cov_loss = _with_config_defaults("kl_cov_loss")
entropy_bonus_loss = _with_config_defaults("entropy_bonus_loss")
entropy_advantage = _with_config_defaults("entropy_advantage")

SQRT_HALF = math.sqrt(0.5)  # GRPO advantage of a {1, 0} pair: ±0.5 / std, std = sqrt(0.5)


def t(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# masked_mean, agg_loss
# ---------------------------------------------------------------------------------------------


def test_masked_mean_ignores_padding_even_when_it_holds_nan() -> None:
    x = t([[1.0, 3.0, float("nan")], [5.0, float("inf"), 0.0]])
    mask = t([[1, 1, 0], [1, 0, 0]])
    # (1 + 3 + 5) / 3 valid tokens
    assert_close(masked_mean(x, mask), t(3.0))


def test_masked_mean_of_an_empty_mask_is_zero_not_nan() -> None:
    assert_close(masked_mean(t([1.0, 2.0]), t([0, 0])), t(0.0))


def test_masked_mean_reduces_along_a_dim() -> None:
    x = t([[1.0, 3.0, 9.0], [5.0, 7.0, 9.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    # row 0: (1 + 3) / 2 = 2; row 1: no valid token → 0
    assert_close(masked_mean(x, mask, dim=-1), t([2.0, 0.0]))


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("token-mean", -2.5),  # −(1 + 2 + 3 + 4) / 4 valid tokens
        ("seq-mean-token-sum", -5.0),  # rows sum to −6 and −4; mean over 2 rows
        ("seq-mean-token-mean", -3.0),  # row means −2 and −4; mean over 2 rows
    ],
)
def test_agg_loss_aggregates_each_mode_as_verl(agg: str, expected: float) -> None:
    loss_mat = t([[-1.0, -2.0, -3.0], [-4.0, 99.0, 99.0]])  # 99 sits on padding
    mask = t([[1, 1, 1], [1, 0, 0]])
    assert_close(agg_loss(loss_mat, mask, agg), t(expected))


@pytest.mark.parametrize("agg", LOSS_AGGS)
def test_agg_loss_leaves_all_padding_rows_out(agg: str) -> None:
    loss_mat = t([[2.0, 4.0], [7.0, 7.0]])
    with_padding_row = agg_loss(loss_mat, t([[1, 1], [0, 0]]), agg)
    alone = agg_loss(loss_mat[:1], t([[1, 1]]), agg)
    # the all-padding row neither adds tokens nor a sequence to the mean
    assert_close(with_padding_row, alone)


@pytest.mark.parametrize("agg", LOSS_AGGS)
def test_agg_loss_of_an_all_padding_batch_is_zero(agg: str) -> None:
    assert_close(agg_loss(t([[1.0, 2.0]]), t([[0, 0]]), agg), t(0.0))


def test_agg_loss_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        agg_loss(t([[1.0]]), t([[1]]), "seq-sum")


# ---------------------------------------------------------------------------------------------
# entropy_from_logits, kl_estimate
# ---------------------------------------------------------------------------------------------


def test_entropy_of_uniform_logits_is_log_v() -> None:
    # uniform over V = 8: H = log 8 nats
    assert_close(entropy_from_logits(torch.zeros(2, 3, 8)), torch.full((2, 3), math.log(8)))


def test_entropy_of_a_one_hot_ish_distribution_is_nearly_zero() -> None:
    logits = t([[30.0, 0.0, 0.0]])
    # p_other = e^-30 / (1 + 2e^-30); H ≈ 2·e^-30·(30 + 1) ≈ 5.8e-12
    h = entropy_from_logits(logits)
    assert_close(h, t([2 * math.exp(-30) * 31]), atol=1e-12, rtol=1e-3)


def test_entropy_matches_the_definition_on_a_two_point_distribution() -> None:
    logits = t([math.log(0.25), math.log(0.75)])
    # H = −0.25·log 0.25 − 0.75·log 0.75 = 0.562335
    assert_close(entropy_from_logits(logits), t(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))))


def test_entropy_handles_minus_inf_logits_and_keeps_finite_gradients() -> None:
    logits = t([[0.0, 0.0, float("-inf"), float("-inf")]]).requires_grad_()
    h = entropy_from_logits(logits)
    # two finite logits, equal: H = log 2
    assert_close(h.detach(), t([math.log(2)]))
    h.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_entropy_is_stable_for_huge_logits() -> None:
    logits = t([[1e4, 1e4 + math.log(3.0)]])
    # shift-invariant: same as p = (1/4, 3/4)
    assert_close(entropy_from_logits(logits), t([-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]))


def test_entropy_of_bf16_logits_is_computed_in_float32() -> None:
    h = entropy_from_logits(torch.zeros(1, 4, dtype=torch.bfloat16))
    assert h.dtype == torch.float32
    assert_close(h, t([math.log(4)]))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("k1", math.log(2)),  # log 0.5 − log 0.25 = log 2 = 0.693147
        ("k2", 0.5 * math.log(2) ** 2),  # ½·(log 2)² = 0.240227
        ("k3", 0.5 + math.log(2) - 1),  # d = log(π_ref/π) = −log 2: e^d − d − 1 = 0.5 + log 2 − 1 = 0.193147
    ],
)
def test_kl_estimate_computes_each_estimator_by_hand(kind: str, expected: float) -> None:
    assert_close(kl_estimate(t([math.log(0.5)]), t([math.log(0.25)]), kind), t([expected]))


def test_kl_estimate_k3_is_clamped_to_ten_as_verl_low_var_kl() -> None:
    # d = ref − logp = 50 is clamped to 20, then e^20 − 21 ≈ 4.9e8 is clamped to 10
    assert_close(kl_estimate(t([0.0]), t([50.0]), "k3"), t([10.0]))


def test_kl_estimate_k3_is_zero_for_identical_policies() -> None:
    assert_close(kl_estimate(t([-1.3, -0.2]), t([-1.3, -0.2]), "k3"), t([0.0, 0.0]))


def test_kl_estimate_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(t([0.0]), t([0.0]), "k4")


# ---------------------------------------------------------------------------------------------
# grpo_advantages (docs/method.md §4.2)
# ---------------------------------------------------------------------------------------------


def test_grpo_advantages_match_hand_computed_values() -> None:
    rewards = t([1.0, 0.0, 0.0, 1.0, 0.0])
    groups = torch.tensor([7, 7, 7, 3, 3])  # arbitrary ids, any order
    # group 7: mean 1/3, unbiased std = sqrt(((2/3)² + 2·(1/3)²)/2) = sqrt(1/3)
    #   A = (2/3)/sqrt(1/3) = 1.154701, (−1/3)/sqrt(1/3) = −0.577350
    # group 3: mean 1/2, std = sqrt(0.5): A = ±0.707107
    expected = t([1.1547005, -0.5773503, -0.5773503, SQRT_HALF, -SQRT_HALF])
    assert_close(grpo_advantages(rewards, groups), expected)


def test_it_gives_zero_advantage_to_a_singleton_group() -> None:
    # docs/method.md §0: a group of one has no relative information (verl's r/(1+ε) is not copied)
    adv = grpo_advantages(t([1.0, 1.0, 0.0]), torch.tensor([0, 1, 1]))
    assert adv[0].item() == 0.0


def test_it_gives_zero_advantage_to_a_singleton_group_without_std_scaling() -> None:
    adv = grpo_advantages(t([5.0]), torch.tensor([0]), scale_by_std=False)
    assert adv.item() == 0.0


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 0.7])
def test_all_equal_rewards_give_exactly_zero_advantage(value: float) -> None:
    # 0.1 and 0.7 are not exact in binary: the float64 mean plus the max == min check keep A at 0
    adv = grpo_advantages(torch.full((3,), value), torch.zeros(3, dtype=torch.long))
    assert torch.equal(adv, torch.zeros(3))


def test_grpo_advantages_have_no_nan_when_the_std_is_zero() -> None:
    adv = grpo_advantages(t([1.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(adv).all()
    assert torch.equal(adv, torch.zeros(4))


@pytest.mark.parametrize("seed", range(5))
def test_grpo_advantages_have_zero_mean_and_unit_std_in_every_group(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.rand(24, generator=gen)
    groups = torch.arange(6).repeat_interleave(4)
    adv = grpo_advantages(rewards, groups).reshape(6, 4)
    assert_close(adv.mean(-1), torch.zeros(6), atol=1e-6, rtol=0)
    assert_close(adv.std(-1), torch.ones(6), atol=1e-4, rtol=0)  # std/(std + 1e-6) ≈ 1


def test_grpo_without_std_scaling_only_subtracts_the_group_mean() -> None:
    # Dr. GRPO: mean of {1, 0, 0} is 1/3
    adv = grpo_advantages(t([1.0, 0.0, 0.0]), torch.zeros(3, dtype=torch.long), scale_by_std=False)
    assert_close(adv, t([2 / 3, -1 / 3, -1 / 3]))


def test_grpo_adds_eps_to_the_std() -> None:
    # {1, 0}: std = sqrt(0.5); with eps = 0.5 the advantage is 0.5 / (0.707107 + 0.5) = 0.414214
    adv = grpo_advantages(t([1.0, 0.0]), torch.zeros(2, dtype=torch.long), eps=0.5)
    assert_close(adv, t([0.5 / (SQRT_HALF + 0.5), -0.5 / (SQRT_HALF + 0.5)]))


# ---------------------------------------------------------------------------------------------
# Policy Split pieces: token signal (§4.3), group normalisation (§4.4), clamp (§4.5)
# ---------------------------------------------------------------------------------------------

# One question, 2n = 2 responses of T = 2 tokens, all valid (used by several tests below).
LOGP_HE = t([[[-1.0, -3.0], [-2.0, -2.0]]])
LOGP_NORMAL = t([[[-1.0, -1.0], [-2.0, -4.0]]])
FULL_MASK = torch.ones(1, 2, 2)


def test_token_signal_mixes_the_two_surprisals_with_alpha() -> None:
    b_normal, b_he = policy_split_token_signal(LOGP_NORMAL, LOGP_HE, FULL_MASK, alpha=0.75)
    # b^H = 0.75·(−ℓ_H) + 0.25·(−ℓ_N): 0.75·1 + 0.25·1 = 1, 0.75·3 + 0.25·1 = 2.5, 2, 0.75·2 + 0.25·4 = 2.5
    assert_close(b_he, t([[[1.0, 2.5], [2.0, 2.5]]]))
    # b^N = 0.75·(−ℓ_N) + 0.25·(−ℓ_H): 1, 0.75 + 0.75 = 1.5, 2, 3 + 0.5 = 3.5
    assert_close(b_normal, t([[[1.0, 1.5], [2.0, 3.5]]]))


def test_token_signal_uses_entropies_with_the_entropy_estimator() -> None:
    h_normal = t([[[0.2, 0.4]]])
    h_he = t([[[1.0, 2.0]]])
    logp = torch.full((1, 1, 2), -50.0)  # must be ignored
    b_normal, b_he = policy_split_token_signal(
        logp,
        logp,
        torch.ones(1, 1, 2),
        alpha=0.5,
        estimator="entropy",
        entropy_normal=h_normal,
        entropy_he=h_he,
    )
    # ½·H_H + ½·H_N for both contexts when α = ½: (1 + 0.2)/2 = 0.6, (2 + 0.4)/2 = 1.2
    assert_close(b_he, t([[[0.6, 1.2]]]))
    assert_close(b_normal, t([[[0.6, 1.2]]]))


def test_token_signal_needs_entropies_for_the_entropy_estimator() -> None:
    with pytest.raises(ValueError, match="entropy_normal"):
        policy_split_token_signal(LOGP_NORMAL, LOGP_HE, FULL_MASK, estimator="entropy")


def test_token_signal_is_zero_on_padding() -> None:
    mask = t([[[1, 0], [1, 0]]])
    b_normal, b_he = policy_split_token_signal(LOGP_NORMAL, LOGP_HE, mask)
    assert (b_he[..., 1] == 0).all() and (b_normal[..., 1] == 0).all()


B4 = t([[[1.0, 2.0, 3.0, 4.0]]])  # one group, one response of four tokens
M4 = torch.ones(1, 1, 4)
# z-scores of 1..4: mean 2.5, unbiased std sqrt(5/3) = 1.290994
Z4 = [-1.1618950, -0.3872983, 0.3872983, 1.1618950]


def test_group_zscore_pools_all_tokens_of_the_group() -> None:
    assert_close(group_normalize_tokens(B4, M4), t([[Z4]]))


def test_group_zscore_pools_tokens_across_responses_and_ignores_padding() -> None:
    b = t([[[1.0, 2.0, 77.0], [3.0, 4.0, 77.0]]])  # 77 on padding must not enter μ, σ
    mask = t([[[1, 1, 0], [1, 1, 0]]])
    # pooled {1, 2, 3, 4}: same z-scores as above, padding stays 0
    assert_close(group_normalize_tokens(b, mask), t([[[Z4[0], Z4[1], 0.0], [Z4[2], Z4[3], 0.0]]]))


def test_groups_are_normalised_independently() -> None:
    b = torch.cat([B4, 10 * B4])
    out = group_normalize_tokens(b, torch.ones(2, 1, 4))
    # z-scores are scale-free: both groups give the same values
    assert_close(out, t([[Z4], [Z4]]))


def test_mean_normalisation_divides_by_the_range() -> None:
    # (b − 2.5) / (4 − 1): −0.5, −1/6, 1/6, 0.5
    assert_close(group_normalize_tokens(B4, M4, normalize="mean"), t([[[-0.5, -1 / 6, 1 / 6, 0.5]]]))


def test_none_normalisation_keeps_raw_b() -> None:
    assert_close(group_normalize_tokens(B4, M4, normalize="none"), B4)


def test_lowest_ratio_zeroes_tokens_below_the_group_quantile() -> None:
    # τ = quantile({1, 2, 3, 4}, 0.5) = 2.5 (linear): tokens 1, 2 → 0; 3, 4 keep their z-score
    out = group_normalize_tokens(B4, M4, lowest_ratio=0.5)
    assert_close(out, t([[[0.0, 0.0, Z4[2], Z4[3]]]]))


def test_lowest_ratio_keeps_a_token_equal_to_the_threshold() -> None:
    # τ = quantile({1, 2, 3, 4}, 1/3): position 1/3·3 = 1 → τ = 2 exactly; b = 2 ≥ τ is kept
    out = group_normalize_tokens(B4, M4, lowest_ratio=1 / 3)
    assert_close(out, t([[[0.0, Z4[1], Z4[2], Z4[3]]]]))


def test_lowest_ratio_zero_masks_nothing() -> None:
    assert_close(group_normalize_tokens(B4, M4, lowest_ratio=0.0), t([[Z4]]))


@pytest.mark.parametrize("seed", range(3))
def test_lowest_ratio_threshold_is_torch_quantile_of_the_raw_pooled_b(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(3, 4, 6, generator=gen)
    mask = torch.rand(3, 4, 6, generator=gen) > 0.3
    out = group_normalize_tokens(b, mask, normalize="none", lowest_ratio=0.3)
    for g in range(3):
        tau = torch.quantile(b[g][mask[g]], 0.3)
        assert torch.equal(out[g] != 0, mask[g] & (b[g] >= tau))


def test_lowest_ratio_does_not_modify_the_callers_mask() -> None:
    mask = torch.ones(1, 1, 4, dtype=torch.bool)
    group_normalize_tokens(B4, mask, lowest_ratio=0.5)
    assert mask.all()


def test_a_single_token_pool_uses_zero_mean_and_unit_std() -> None:
    # docs/method.md §4.4: pool of ≤ 1 token → μ = 0, σ = 1, so B = 5 / (1 + 1e-6)
    out = group_normalize_tokens(t([[[5.0, 9.0]]]), t([[[1, 0]]]))
    assert_close(out, t([[[5.0, 0.0]]]))


@pytest.mark.parametrize("normalize", NORMALIZERS)
def test_group_normalisation_has_no_nan_for_constant_or_empty_groups(normalize: str) -> None:
    b = t([[[2.0, 2.0, 2.0]], [[1.0, 2.0, 3.0]]])
    mask = t([[[1, 1, 1]], [[0, 0, 0]]])  # group 0 constant (σ = 0), group 1 empty
    out = group_normalize_tokens(b, mask, normalize=normalize, lowest_ratio=0.5)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all()
    if normalize != "none":
        assert (out[0] == 0).all()  # constant b − μ = 0


def test_clamp_orders_differ_as_computed_by_hand() -> None:
    signal = t([2.0, -2.0, 0.2])
    adv = t([1.0, 1.0, 1.0])  # bound |A|/κ = 0.5 with κ = 2
    stc = clamped_bonus(signal, adv, eta=0.5, kappa=2.0, clamp_order="scale_then_clip")
    cts = clamped_bonus(signal, adv, eta=0.5, kappa=2.0, clamp_order="clip_then_scale")
    # scale then clip: clip(1, ±0.5) = 0.5, clip(−1) = −0.5, clip(0.1) = 0.1
    assert_close(stc, t([0.5, -0.5, 0.1]))
    # clip then scale: 0.5·clip(2, ±0.5) = 0.25, −0.25, 0.5·0.2 = 0.1
    assert_close(cts, t([0.25, -0.25, 0.1]))


def test_kappa_zero_means_no_clamp() -> None:
    # η·B = 0.5·10 = 5, far above |A|/κ for any κ, and kept as is
    assert_close(clamped_bonus(t([10.0]), t([0.0]), eta=0.5, kappa=0.0), t([5.0]))


def test_clamped_bonus_rejects_a_negative_kappa_and_an_unknown_order() -> None:
    with pytest.raises(ValueError, match="kappa"):
        clamped_bonus(t([1.0]), t([1.0]), eta=1.0, kappa=-1.0)
    with pytest.raises(ValueError, match="scale_then_clip"):
        clamped_bonus(t([1.0]), t([1.0]), eta=1.0, clamp_order="paper")


# ---------------------------------------------------------------------------------------------
# policy_split_advantages (docs/method.md §4.2–§4.6)
# ---------------------------------------------------------------------------------------------

# Rewards {1, 0}: A = ±0.707107. With α = ½, b^H = −(ℓ_H + ℓ_N)/2 = [[1, 2], [2, 3]]:
# μ = 2, σ = sqrt(2/3) = 0.816497, B^H = [[−1.224745, 0], [0, 1.224745]]; bound |A|/κ = 0.353553.
REWARDS = t([[1.0, 0.0]])
BH = 1.2247449
BOUND = SQRT_HALF / 2


def test_policy_split_matches_a_hand_computed_example() -> None:
    adv_normal, adv_he = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK)
    # normal context: pure GRPO (η₂ = 0), A broadcast to every token
    assert_close(adv_normal, t([[[SQRT_HALF, SQRT_HALF], [-SQRT_HALF, -SQRT_HALF]]]))
    # HE context: A + 0.03·B^H (|0.036742| < 0.353553, the clamp does not bind)
    assert_close(
        adv_he,
        t([[[SQRT_HALF - 0.03 * BH, SQRT_HALF], [-SQRT_HALF, -SQRT_HALF + 0.03 * BH]]]),
    )


def test_policy_split_clamp_orders_differ_as_computed_by_hand() -> None:
    _, stc = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, eta=0.5)
    _, cts = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, eta=0.5, clamp_order="clip_then_scale")
    # scale then clip: 0.5·1.224745 = 0.612372 > 0.353553 → the bonus is ±0.353553
    assert_close(stc, t([[[SQRT_HALF - BOUND, SQRT_HALF], [-SQRT_HALF, -SQRT_HALF + BOUND]]]))
    # clip then scale (paper eq. 3): 0.5·clip(1.224745, ±0.353553) = ±0.176777
    assert_close(cts, t([[[SQRT_HALF - BOUND / 2, SQRT_HALF], [-SQRT_HALF, -SQRT_HALF + BOUND / 2]]]))


def test_policy_split_adds_the_bonus_once_not_twice() -> None:
    _, adv_he = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, eta=0.1, kappa=0.0)
    # docs/method.md §0: A + η·B (the released code's A + 2·η·B is not reproduced): 0.707107 − 0.1·1.224745
    assert_close(adv_he[0, 0, 0], t(SQRT_HALF - 0.1 * BH))


def test_normal_context_gets_minus_eta_normal_times_b_normal() -> None:
    adv_normal, _ = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, alpha=1.0, eta_normal=0.1)
    # α = 1: b^N = −ℓ_N = [[1, 1], [2, 4]]; μ = 2, σ = sqrt(2) → B^N = [[−0.707107, −0.707107], [0, 1.414214]]
    # I = −0.1·B^N = [[0.070711, 0.070711], [0, −0.141421]] (all within the 0.353553 bound)
    expected = t([[[SQRT_HALF + 0.0707107, SQRT_HALF + 0.0707107], [-SQRT_HALF, -SQRT_HALF - 0.1414214]]])
    assert_close(adv_normal, expected)


def test_policy_split_with_eta_zero_equals_grpo_on_the_pooled_group() -> None:
    gen = torch.Generator().manual_seed(0)
    s, g, length = 4, 6, 5
    rewards = (torch.rand(s, g, generator=gen) > 0.5).float()
    logp_n = -5 * torch.rand(s, g, length, generator=gen)
    logp_h = -5 * torch.rand(s, g, length, generator=gen)
    mask = (torch.rand(s, g, length, generator=gen) > 0.2).float()
    adv_normal, adv_he = policy_split_advantages(rewards, logp_n, logp_h, mask, eta=0.0, kappa=0.0)
    grpo = grpo_advantages(rewards.reshape(-1), torch.arange(s).repeat_interleave(g)).reshape(s, g)
    expected = grpo[..., None] * mask  # one group of 2n per question, broadcast to valid tokens
    assert_close(adv_normal, expected)
    assert_close(adv_he, expected)


@pytest.mark.parametrize("seed", range(50))
def test_the_bonus_never_flips_the_sign_of_a_and_respects_the_clamp(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    s, n, length = 3, 2, 6
    rewards = (torch.rand(s, 2 * n, generator=gen) > 0.5).float()
    logp_n = -6 * torch.rand(s, 2 * n, length, generator=gen)
    logp_h = -6 * torch.rand(s, 2 * n, length, generator=gen)
    mask = torch.rand(s, 2 * n, length, generator=gen) > 0.3
    eta = [0.03, 0.5, 5.0][seed % 3]
    kappa = [1.0, 2.0, 4.0][(seed // 2) % 3]
    eta_normal = [0.0, 0.5, -2.0][(seed // 3) % 3]
    order = CLAMP_ORDERS[seed % 2]
    adv_normal, adv_he = policy_split_advantages(
        rewards,
        logp_n,
        logp_h,
        mask,
        eta=eta,
        eta_normal=eta_normal,
        kappa=kappa,
        clamp_order=order,
        normalize=NORMALIZERS[seed % 3],
        lowest_ratio=[0.0, 0.4][seed % 2],
    )
    grpo = grpo_advantages(rewards.reshape(-1), torch.arange(s).repeat_interleave(2 * n)).reshape(s, 2 * n)
    a = grpo[..., None].expand_as(adv_he)
    for adv, scale in ((adv_he, eta), (adv_normal, -eta_normal)):
        bonus = adv - a
        # |bonus| ≤ |A|/κ for scale_then_clip; η·clip(B, ±|A|/κ) is bounded by |η|·|A|/κ instead
        factor = 1.0 if order == "scale_then_clip" else abs(scale)
        assert torch.isfinite(adv).all()
        assert (adv[~mask] == 0).all()  # padding stays 0
        assert (bonus[mask & (a == 0)] == 0).all()  # 0 where A = 0
        assert (bonus[mask].abs() <= factor * a[mask].abs() / kappa + 1e-6).all()
        if factor <= kappa:  # the bound is at most |A|: the bonus cannot flip the sign of A
            assert (adv[mask] * a[mask] >= -1e-6).all()


def test_padding_stays_zero_even_when_the_log_probs_there_are_garbage() -> None:
    logp_n = LOGP_NORMAL.clone()
    logp_h = LOGP_HE.clone()
    logp_n[..., 1] = float("nan")
    logp_h[..., 1] = float("inf")
    mask = t([[[1, 0], [1, 0]]])
    adv_normal, adv_he = policy_split_advantages(REWARDS, logp_n, logp_h, mask, eta=0.5)
    assert torch.isfinite(adv_normal).all() and torch.isfinite(adv_he).all()
    assert (adv_he[..., 1] == 0).all() and (adv_normal[..., 1] == 0).all()


@pytest.mark.parametrize(
    "mask",
    [
        torch.zeros(2, 2, 3),  # nothing valid at all
        t([[[1, 1, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]),  # all-padding rows and an empty question
    ],
)
def test_policy_split_has_no_nan_for_empty_masks(mask: torch.Tensor) -> None:
    rewards = t([[1.0, 0.0], [1.0, 1.0]])
    logp = -torch.ones(2, 2, 3)
    adv_normal, adv_he, stats = policy_split_advantages(rewards, logp, logp, mask, eta_normal=0.1, return_stats=True)
    assert torch.isfinite(adv_normal).all() and torch.isfinite(adv_he).all()
    assert all(math.isfinite(v) for v in stats.values())
    assert (adv_he[mask == 0] == 0).all()


def test_all_equal_rewards_give_zero_advantage_under_both_contexts() -> None:
    rewards = t([[1.0, 1.0]])
    adv_normal, adv_he = policy_split_advantages(rewards, LOGP_NORMAL, LOGP_HE, FULL_MASK, eta=5.0, eta_normal=1.0)
    # A = 0 → clamp bound 0 → bonus 0 (docs/method.md §4.5 (i))
    assert torch.equal(adv_he, torch.zeros(1, 2, 2))
    assert torch.equal(adv_normal, torch.zeros(1, 2, 2))


def test_policy_split_lowest_ratio_keeps_only_the_high_signal_tokens() -> None:
    _, adv_he = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, kappa=0.0, lowest_ratio=0.5)
    # raw b^H = {1, 2, 2, 3}: τ = quantile(·, 0.5) = 2; b = 1 < τ loses its bonus, the rest keep it
    assert_close(adv_he, t([[[SQRT_HALF, SQRT_HALF], [-SQRT_HALF, -SQRT_HALF + 0.03 * BH]]]))


def test_policy_split_uses_entropies_with_the_entropy_estimator() -> None:
    h_he = t([[[1.0, 3.0], [2.0, 2.0]]])  # same numbers as −ℓ_H …
    h_n = t([[[1.0, 1.0], [2.0, 4.0]]])  # … and −ℓ_N, so the result must equal the logprob example
    junk = torch.zeros(1, 2, 2)
    with_entropy = policy_split_advantages(
        REWARDS, junk, junk, FULL_MASK, estimator="entropy", entropy_normal=h_n, entropy_he=h_he
    )
    with_logprob = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK)
    assert_close(with_entropy, with_logprob)


def test_policy_split_returns_a_two_tuple_by_default() -> None:
    out = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == out[1].shape == (1, 2, 2)


def test_policy_split_stats_report_clamp_binding_and_bonus_size() -> None:
    *_, stats = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, eta=0.5, return_stats=True)
    # η·B^H = ±0.612 on 2 of the 4 HE-context tokens exceeds the 0.354 bound; the two B = 0 tokens do not
    assert stats["clamp_binding_frac"] == pytest.approx(0.5)
    assert stats["clamp_binding_frac_nonzero_adv"] == pytest.approx(0.5)
    # |bonus| = 0.353553 on 2 tokens, 0 on 2: mean 0.176777
    assert stats["bonus_abs_mean_he"] == pytest.approx(BOUND / 2, rel=1e-5)
    assert stats["bonus_abs_mean_normal"] == 0.0  # η₂ = 0
    assert stats["signal_he_mean"] == pytest.approx(2.0)  # mean raw b^H of {1, 2, 2, 3}
    assert stats["zero_adv_group_frac"] == 0.0


def test_policy_split_stats_count_zero_advantage_groups() -> None:
    rewards = t([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])  # questions 2 and 3 have A ≡ 0
    logp = -torch.ones(4, 2, 2)
    *_, stats = policy_split_advantages(rewards, logp, logp, torch.ones(4, 2, 2), return_stats=True)
    assert stats["zero_adv_group_frac"] == pytest.approx(0.5)


def test_policy_split_stats_report_no_binding_without_a_clamp() -> None:
    *_, stats = policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE, FULL_MASK, eta=5.0, kappa=0.0, return_stats=True)
    assert stats["clamp_binding_frac"] == 0.0


# share_rollouts=False: one question, n = 2 normal rollouts then n = 2 HE rollouts, T = 2.
UNSHARED_REWARDS = t([[1.0, 0.0, 0.0, 1.0]])
# normal-context log-probs: rows 0–1 are the normal rollouts; rows 2–3 (HE rollouts) are set far away
UNSHARED_LOGP_N = t([[[-1.0, -1.0], [-2.0, -4.0], [-50.0, -50.0], [-50.0, -50.0]]])
# HE-context log-probs: rows 2–3 are the HE rollouts; rows 0–1 far away
UNSHARED_LOGP_H = t([[[-100.0, -100.0], [-100.0, -100.0], [-1.0, -2.0], [-3.0, -4.0]]])


def test_without_rollout_sharing_each_mode_is_its_own_grpo_group() -> None:
    adv_normal, adv_he = policy_split_advantages(
        UNSHARED_REWARDS, UNSHARED_LOGP_N, UNSHARED_LOGP_H, torch.ones(1, 4, 2), eta=0.0, share_rollouts=False
    )
    # normal group {1, 0} → ±0.707107 on rows 0–1; HE group {0, 1} → ∓0.707107 on rows 2–3
    # (pooled over all four, A would be ±0.866025 instead)
    a = SQRT_HALF
    assert_close(adv_normal, t([[[a, a], [-a, -a], [0.0, 0.0], [0.0, 0.0]]]))  # rows 2–3 are not trained
    assert_close(adv_he, t([[[0.0, 0.0], [0.0, 0.0], [-a, -a], [a, a]]]))  # rows 0–1 are not trained


def test_without_rollout_sharing_the_signal_pools_only_over_the_modes_own_tokens() -> None:
    adv_normal, adv_he = policy_split_advantages(
        UNSHARED_REWARDS,
        UNSHARED_LOGP_N,
        UNSHARED_LOGP_H,
        torch.ones(1, 4, 2),
        alpha=1.0,
        eta=0.1,
        eta_normal=0.1,
        kappa=0.0,
        share_rollouts=False,
    )
    a = SQRT_HALF
    # HE rows: α = 1, b^H = −ℓ_H = {1, 2, 3, 4} pooled over rows 2–3 only → z = ∓1.161895, ∓0.387298
    # adv = A + 0.1·z: −0.707107 − 0.116190, −0.707107 − 0.038730, 0.707107 + 0.038730, 0.707107 + 0.116190
    he = t(
        [
            [
                [0.0, 0.0],
                [0.0, 0.0],
                [-a + 0.1 * Z4[0], -a + 0.1 * Z4[1]],
                [a + 0.1 * Z4[2], a + 0.1 * Z4[3]],
            ]
        ]
    )
    assert_close(adv_he, he)
    # normal rows: b^N = −ℓ_N = {1, 1, 2, 4} over rows 0–1 → B^N = −0.707107, −0.707107, 0, 1.414214;
    # adv = A − 0.1·B^N
    normal = t([[[a + 0.0707107, a + 0.0707107], [-a, -a - 0.1414214], [0.0, 0.0], [0.0, 0.0]]])
    assert_close(adv_normal, normal)


def test_without_rollout_sharing_the_he_bonus_still_uses_normal_context_logprobs_of_he_rollouts() -> None:
    def he_adv(logp_n: torch.Tensor) -> torch.Tensor:
        _, adv_he = policy_split_advantages(
            UNSHARED_REWARDS,
            logp_n,
            UNSHARED_LOGP_H,
            torch.ones(1, 4, 2),
            eta=0.1,
            kappa=0.0,
            share_rollouts=False,
        )
        return adv_he

    base = he_adv(UNSHARED_LOGP_N)
    changed_normal_rows = UNSHARED_LOGP_N.clone()
    changed_normal_rows[0, :2] = -7.0
    changed_he_rows = UNSHARED_LOGP_N.clone()
    changed_he_rows[0, 2, 0] = -9.0
    # b^H = −α·ℓ_H − (1−α)·ℓ_N on the HE rows: their ℓ_N matters, the normal rows' does not
    assert_close(he_adv(changed_normal_rows), base)
    assert not torch.allclose(he_adv(changed_he_rows), base)


def test_without_rollout_sharing_an_odd_pool_is_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        logp = -torch.ones(1, 3, 2)
        policy_split_advantages(t([[1.0, 0.0, 1.0]]), logp, logp, torch.ones(1, 3, 2), share_rollouts=False)


def test_policy_split_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="S, 2n"):
        policy_split_advantages(t([1.0, 0.0]), LOGP_NORMAL, LOGP_HE, FULL_MASK)
    with pytest.raises(ValueError, match="same"):
        policy_split_advantages(REWARDS, LOGP_NORMAL, LOGP_HE[..., :1], FULL_MASK)


# ---------------------------------------------------------------------------------------------
# ppo_clip_loss (docs/method.md §5)
# ---------------------------------------------------------------------------------------------


def _one_token_loss(ratio: float, adv: float, **kwargs: object) -> tuple[float, float]:
    """Loss and d loss / d logp of a single token with the given ratio and advantage."""
    logp = t([[math.log(ratio)]]).requires_grad_()
    loss, _ = ppo_clip_loss(logp, t([[0.0]]), t([[adv]]), t([[1]]), **kwargs)  # type: ignore[arg-type]
    loss.backward()
    assert logp.grad is not None
    return loss.item(), logp.grad.item()


@pytest.mark.parametrize(
    ("ratio", "adv", "expected_loss", "expected_grad"),
    [
        (1.1, 1.0, -1.1, -1.1),  # inside [0.8, 1.2]: −A·ρ; d/dlogp = −A·ρ
        (1.5, 2.0, -2.4, 0.0),  # A > 0, ρ > 1.2: max(−3, −2·1.2) = −2.4, clipped → no gradient
        (0.5, 1.0, -0.5, -0.5),  # A > 0, ρ < 0.8: max(−0.5, −0.8) = −0.5, pessimistic unclipped term
        (0.5, -1.0, 0.8, 0.0),  # A < 0, ρ < 0.8: max(0.5, 0.8) = 0.8, clipped low → no gradient
        (1.5, -1.0, 1.5, 1.5),  # A < 0, 1.2 < ρ < 3: max(1.5, 1.2) = 1.5 unclipped
        (5.0, -1.0, 3.0, 0.0),  # A < 0, ρ > 3: max(5, 1.2) = 5, dual clip min(5, −A·3) = 3 → no gradient
        (0.1, 1.0, -0.1, -0.1),  # A > 0: no dual clip (min(−0.1, −3) would give −3)
    ],
)
def test_ppo_clip_loss_takes_each_branch_by_hand(
    ratio: float, adv: float, expected_loss: float, expected_grad: float
) -> None:
    loss, grad = _one_token_loss(ratio, adv)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert grad == pytest.approx(expected_grad, rel=1e-5, abs=1e-7)


def test_ppo_clip_loss_without_dual_clip_keeps_the_large_negative_advantage_loss() -> None:
    # ρ = 5, A = −1: max(5, 1.2) = 5 with no dual clip
    assert _one_token_loss(5.0, -1.0, dual_clip=None)[0] == pytest.approx(5.0)
    assert _one_token_loss(5.0, -1.0, dual_clip=0.0)[0] == pytest.approx(5.0)


def test_ppo_clip_loss_uses_separate_low_and_high_clip() -> None:
    # clip_high = 0.28: ρ = 1.5, A = 1 → max(−1.5, −1.28) = −1.28
    assert _one_token_loss(1.5, 1.0, clip_high=0.28)[0] == pytest.approx(-1.28)
    # clip_low = 0.1: ρ = 0.5, A = −1 → max(0.5, 0.9) = 0.9
    assert _one_token_loss(0.5, -1.0, clip_low=0.1)[0] == pytest.approx(0.9)


def test_ppo_clip_loss_averages_branches_and_reports_clip_metrics() -> None:
    ratios = [1.1, 1.5, 0.5, 5.0]
    logp = t([[math.log(r) for r in ratios] + [0.0]])
    adv = t([[1.0, 2.0, -1.0, -1.0, 9.0]])
    mask = t([[1, 1, 1, 1, 0]])  # last token is padding
    loss, m = ppo_clip_loss(logp, torch.zeros(1, 5), adv, mask)
    # token-mean of −1.1, −2.4, 0.8, 3.0 = 0.3/4 = 0.075
    assert loss.item() == pytest.approx(0.075, rel=1e-5)
    assert m["clip_frac"] == pytest.approx(0.5)  # tokens 2 and 3: clipped term larger
    assert m["clip_frac_high"] == pytest.approx(0.25)  # token 2: ρ > 1.2, A > 0
    assert m["clip_frac_low"] == pytest.approx(0.25)  # token 3: ρ < 0.8, A < 0
    assert m["clip_frac_lower"] == pytest.approx(0.25)  # token 4: dual clip binds
    # approx_kl = mean(−log ρ) = −(log 1.1 + log 1.5 + log 0.5 + log 5)/4 = −0.354267
    assert m["approx_kl"] == pytest.approx(-0.3542665, rel=1e-5)
    assert m["ratio_mean"] == pytest.approx((1.1 + 1.5 + 0.5 + 5.0) / 4, rel=1e-5)


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("token-mean", -2.5),  # ρ = 1 → ℓ = −A: −(1 + 2 + 3 + 4)/4
        ("seq-mean-token-sum", -5.0),  # rows −6, −4 → mean −5
        ("seq-mean-token-mean", -3.0),  # rows −2, −4 → mean −3
    ],
)
def test_ppo_clip_loss_supports_each_aggregation(agg: str, expected: float) -> None:
    adv = t([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    loss, _ = ppo_clip_loss(torch.zeros(2, 3), torch.zeros(2, 3), adv, mask, agg=agg)
    assert loss.item() == pytest.approx(expected)


def test_ppo_clip_loss_clamps_the_log_ratio_before_exp() -> None:
    # log ρ = 100 → clamped to 20: ρ = e^20 = 4.85e8 stays finite (A = −1, no dual clip)
    loss, m = ppo_clip_loss(t([[100.0]]), t([[0.0]]), t([[-1.0]]), t([[1]]), dual_clip=None)
    assert loss.item() == pytest.approx(math.exp(20), rel=1e-5)
    assert m["approx_kl"] == pytest.approx(-20.0)


def test_ppo_clip_loss_of_an_all_padding_batch_is_zero_without_nan() -> None:
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, m = ppo_clip_loss(logp, torch.full((2, 3), float("nan")), torch.ones(2, 3), torch.zeros(2, 3))
    loss.backward()
    assert loss.item() == 0.0
    assert all(math.isfinite(v) for v in m.values())
    assert logp.grad is not None and torch.isfinite(logp.grad).all()


# ---------------------------------------------------------------------------------------------
# Baselines (docs/method.md §10)
# ---------------------------------------------------------------------------------------------


def test_forking_mask_keeps_the_top_fifth_of_tokens_globally() -> None:
    entropy = t([[0.1, 0.9, 0.3, 50.0, 0.0], [0.8, 0.2, 0.5, 0.0, 0.0]])
    mask = t([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])  # 7 valid tokens; 50.0 sits on padding
    out = forking_token_mask(entropy, mask)
    # k = ⌈0.2·7⌉ = 2: the two highest valid entropies are 0.9 (row 0) and 0.8 (row 1)
    assert_close(out, t([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]))
    assert out.dtype == mask.dtype


@pytest.mark.parametrize(("n_valid", "top_ratio", "k"), [(15, 0.2, 3), (10, 0.2, 2), (11, 0.2, 3), (3, 1.0, 3)])
def test_forking_mask_keeps_exactly_ceil_ratio_times_n_tokens(n_valid: int, top_ratio: float, k: int) -> None:
    # 0.2·15 = 3.0000000000000004 in floats must still give 3, not 4
    entropy = torch.rand(2, 10, generator=torch.Generator().manual_seed(n_valid))
    mask = (torch.arange(20) < n_valid).reshape(2, 10)
    assert int(forking_token_mask(entropy, mask, top_ratio=top_ratio).sum()) == k


def test_forking_mask_of_an_empty_batch_is_empty_and_rejects_a_bad_ratio() -> None:
    assert forking_token_mask(torch.rand(2, 3), torch.zeros(2, 3)).sum() == 0
    with pytest.raises(ValueError, match="top_ratio"):
        forking_token_mask(torch.rand(2, 3), torch.ones(2, 3), top_ratio=0.0)


# Clip-Cov / KL-Cov fixture: A̅ = 0 and mean logp = −1.2, so Cov = A·(logp + 1.2):
#   row 0 (A = 2):  2·1.1 = 2.2, 2·0.7 = 1.4, 2·(−1.8) = −3.6
#   row 1 (A = −2): −2·(−1.8) = 3.6, −2·0.7 = −1.4, −2·1.1 = −2.2
# Candidates with 1 < Cov < 5: (0, 0), (0, 1), (1, 0).
COV_ADV = t([[2.0, 2.0, 2.0], [-2.0, -2.0, -2.0]])
COV_LOGP = t([[-0.1, -0.5, -3.0], [-3.0, -0.5, -0.1]])
COV_MASK = torch.ones(2, 3)


def test_token_covariance_matches_hand_values() -> None:
    expected = t([[2.2, 1.4, -3.6], [3.6, -1.4, -2.2]])
    assert_close(token_covariance(COV_LOGP, COV_ADV, COV_MASK), expected)


def _clip_cov(ratio: float, old_logp: torch.Tensor, seed: int = 0) -> tuple[float, torch.Tensor, dict[str, float]]:
    logp = COV_LOGP.clone().requires_grad_()
    gen = torch.Generator().manual_seed(seed)
    loss, metrics = clip_cov_loss(logp, old_logp, COV_ADV, COV_MASK, ratio=ratio, generator=gen)
    loss.backward()
    assert logp.grad is not None
    return loss.item(), logp.grad, metrics


def test_clip_cov_detaches_all_candidates_when_k_covers_them() -> None:
    loss, grad, m = _clip_cov(0.5, COV_LOGP)  # k = ⌊0.5·6⌋ = 3 = all candidates; ρ = 1
    # remaining tokens (0, 2), (1, 1), (1, 2) give −A = −2, 2, 2; the 3 zeroed tokens stay in the
    # denominator: (−2 + 2 + 2)/6 = 1/3
    assert loss == pytest.approx(1 / 3, rel=1e-5)
    # d/dlogp of −A·ρ/6 at ρ = 1 is −A/6; picked tokens get none
    assert_close(grad, t([[0.0, 0.0, -1 / 3], [0.0, 1 / 3, 1 / 3]]))
    assert m["clip_frac"] == pytest.approx(0.5)
    assert m["cov_candidates_frac"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(4))
def test_clip_cov_zeroes_exactly_the_tokens_the_seeded_generator_picks(seed: int) -> None:
    _, grad, m = _clip_cov(0.34, COV_LOGP, seed)  # k = ⌊0.34·6⌋ = 2 of the 3 candidates
    candidates = [(0, 0), (0, 1), (1, 0)]  # row-major order, as torch.nonzero lists them
    perm = torch.randperm(3, generator=torch.Generator().manual_seed(seed))
    picked = {candidates[int(i)] for i in perm[:2]}
    for i in range(2):
        for j in range(3):
            expected = 0.0 if (i, j) in picked else -COV_ADV[i, j].item() / 6  # denominator stays 6
            assert grad[i, j].item() == pytest.approx(expected, abs=1e-7)
    assert m["clip_frac"] == pytest.approx(2 / 6)


def test_clip_cov_never_picks_a_token_already_clipped_by_ppo() -> None:
    old = COV_LOGP.clone()
    old[0, 0] -= math.log(1.5)  # token (0, 0): ρ = 1.5 with A = 2 → PPO-clipped, loss −2.4
    loss, grad, m = _clip_cov(0.5, old)  # k = 3 but only (0, 1) and (1, 0) remain candidates
    # (−2.4 − 2 + 2 + 2)/6 = −0.4/6
    assert loss == pytest.approx(-0.4 / 6, rel=1e-5)
    assert grad[0, 1].item() == 0.0 and grad[1, 0].item() == 0.0
    assert m["clip_frac"] == pytest.approx(2 / 6) and m["ppo_clip_frac"] == pytest.approx(1 / 6)


def test_clip_cov_detaches_at_least_one_token() -> None:
    _, _, m = _clip_cov(2e-4, COV_LOGP)  # ⌊2e-4·6⌋ = 0 → max(1, 0) = 1
    assert m["clip_frac"] == pytest.approx(1 / 6)


def test_kl_cov_penalises_only_the_top_covariance_tokens() -> None:
    logp = COV_LOGP.clone().requires_grad_()
    old = COV_LOGP - 0.1  # log ρ = 0.1 everywhere; Cov is unchanged
    loss, m = kl_cov_loss(logp, old, COV_ADV, COV_MASK, ratio=0.1, coef=2.0)  # k = max(1, ⌊0.6⌋) = 1
    loss.backward()
    # Σ −A·e^0.1 = 0 (A sums to 0), plus 2·|0.1| on the top-Cov token (1, 0) only: 0.2/6
    assert loss.item() == pytest.approx(0.2 / 6, rel=1e-4)
    # gradients: −A·e^0.1/6 everywhere, plus 2·sign(0.1)/6 on token (1, 0)
    e = math.exp(0.1)
    expected = t([[-2 * e, -2 * e, -2 * e], [2 * e + 2, 2 * e, 2 * e]]) / 6
    assert logp.grad is not None
    assert_close(logp.grad, expected)
    assert m["kl_cov_frac"] == pytest.approx(1 / 6)
    assert m["abs_kl"] == pytest.approx(0.1, rel=1e-5)


def test_kl_cov_leaves_the_other_tokens_unclipped() -> None:
    # ρ = 2, A = 1: −A·ρ = −2 (PPO would clip it to −1.2); coef = 0 removes the penalty term
    loss, _ = kl_cov_loss(t([[math.log(2.0)]]), t([[0.0]]), t([[1.0]]), t([[1]]), coef=0.0)
    assert loss.item() == pytest.approx(-2.0)


def test_kl_cov_of_an_all_padding_batch_is_zero() -> None:
    loss, m = kl_cov_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2))
    assert loss.item() == 0.0 and m["kl_cov_frac"] == 0.0


def test_eda_rescales_advantages_by_relative_response_entropy() -> None:
    adv = t([1.0, -1.0, 0.5, -0.5, 0.0])
    entropy = t([1.0, 3.0, 2.0, 2.0, 4.0])
    groups = torch.tensor([0, 0, 1, 1, 1])
    # group 0: P̄ = 2 → P̂ = 0.5, 1.5 → Â = 1/0.5 = 2, −1/1.5 = −0.666667
    # group 1: P̄ = 8/3 → P̂ = 0.75, 0.75, 1.5 → Â = 0.5/0.75 = 0.666667, −0.666667, 0 stays 0
    expected = t([2.0, -2 / 3, 2 / 3, -2 / 3, 0.0])
    assert_close(eda_advantages(adv, entropy, groups), expected, atol=1e-5, rtol=1e-5)


def test_eda_has_no_nan_for_zero_entropy() -> None:
    out = eda_advantages(t([1.0, -1.0]), t([0.0, 0.0]), torch.tensor([0, 0]))
    # P̂ = (0 + ε)/(0 + ε) = 1: advantages unchanged
    assert_close(out, t([1.0, -1.0]))


def test_entropy_bonus_loss_is_minus_coef_times_mean_entropy() -> None:
    entropy = t([[1.0, 2.0], [3.0, 99.0]]).requires_grad_()
    mask = t([[1, 1], [1, 0]])
    loss = entropy_bonus_loss(entropy, mask, coef=0.1)
    # −0.1·(1 + 2 + 3)/3 = −0.2
    assert loss.item() == pytest.approx(-0.2)
    loss.backward()
    # raising any valid token's entropy lowers the loss: d/dH = −0.1/3; padding gets none
    assert entropy.grad is not None
    assert_close(entropy.grad, t([[-0.1 / 3, -0.1 / 3], [-0.1 / 3, 0.0]]))


def test_entropy_bonus_loss_follows_the_aggregation_mode() -> None:
    entropy = t([[1.0, 2.0], [3.0, 0.0]])
    mask = t([[1, 1], [1, 0]])
    # seq-mean-token-sum: rows sum to 3 and 3 → −0.1·3 = −0.3
    assert entropy_bonus_loss(entropy, mask, coef=0.1, agg="seq-mean-token-sum").item() == pytest.approx(-0.3)


def test_entropy_advantage_adds_a_capped_entropy_bonus() -> None:
    adv = t([[1.0, 1.0], [-1.0, 0.0]])
    entropy = t([[0.5, 5.0], [5.0, 3.0]])
    out = entropy_advantage(adv, entropy, torch.ones(2, 2))
    # min(0.4·0.5, 1/2) = 0.2 → 1.2; min(2, 0.5) = 0.5 → 1.5;
    # min(2, 0.5) = 0.5 → −1 + 0.5 = −0.5 (sign kept); A = 0: min(1.2, 0) = 0 → 0
    assert_close(out, t([[1.2, 1.5], [-0.5, 0.0]]))


@pytest.mark.parametrize("seed", range(10))
def test_entropy_advantage_never_flips_the_sign_of_a(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    adv = torch.randn(4, 6, generator=gen) * (torch.rand(4, 6, generator=gen) > 0.3)
    entropy = 10 * torch.rand(4, 6, generator=gen)
    mask = torch.rand(4, 6, generator=gen) > 0.2
    out = entropy_advantage(adv, entropy, mask)
    assert (out[mask] * adv[mask] >= 0).all()
    assert (out[mask & (adv == 0)] == 0).all()
    assert (out[~mask] == 0).all()
