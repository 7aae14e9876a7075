"""The RL math of the project as small, pure tensor functions (docs/method.md §4, §5, §10).

Nothing here takes ``self``, reads a global, or does I/O: every function maps tensors to tensors
(plus a ``dict[str, float]`` of metrics for the losses), so each step can be unit-tested on tiny
hand-made inputs (tests/trainer/test_algos.py). Hyperparameters are required keywords: their
defaults live in ``trainer.config.TrainConfig`` only. ``trainer.rl.algorithms`` composes these
pieces into each algorithm and is what the training loop dispatches through.

Shape letters used in the docstrings:
    N  responses in a flat batch            B  rows of a (micro-)batch
    T  response tokens (right-padded)       V  vocabulary size
    S  questions of a step                  G  responses pooled per question (2n for Policy Split)

Masks are 1 (or True) on a response's own tokens and 0 on padding; every function accepts float,
integer or bool masks. Outputs are 0 on padding, and no function returns NaN for a zero std, an
empty mask or an all-padding row.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, overload

import torch
from torch import Tensor

from trainer.choices import CLAMP_ORDERS, ESTIMATORS, KL_KINDS, LOSS_AGGS, NORMALIZERS

__all__ = [
    "agg_loss",
    "clamped_bonus",
    "clip_cov_loss",
    "eda_advantages",
    "entropy_advantage",
    "entropy_bonus_loss",
    "entropy_from_logits",
    "forking_token_mask",
    "group_normalize_tokens",
    "grpo_advantages",
    "kl_cov_loss",
    "kl_estimate",
    "masked_mean",
    "policy_split_advantages",
    "policy_split_token_signal",
    "ppo_clip_loss",
    "token_covariance",
]


# verl clamps the log-ratio before exp so that a stale token cannot overflow the ratio (docs/method.md §5).
_LOG_RATIO_CLAMP = 20.0
# verl's low_var_kl (k3) clamps the estimate itself to ±10.
_K3_CLAMP = 10.0


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}")


def _valid(mask: Tensor) -> Tensor:
    """Bool view of a float/int/bool mask."""
    return mask if mask.dtype == torch.bool else mask != 0


def _weights(mask: Tensor, like: Tensor) -> Tensor:
    """Mask as weights in ``like``'s float dtype (bool → 0/1)."""
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    return mask.to(dtype)


def _ratio_count(ratio: float, n: int, *, ceil: bool) -> int:
    # Round before ceil/floor so float noise (0.2·15 = 3.0000000000000004) cannot add or drop a token.
    x = round(ratio * n, 9)
    return math.ceil(x) if ceil else math.floor(x)


# ---------------------------------------------------------------------------------------------
# Small building blocks
# ---------------------------------------------------------------------------------------------


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is non-zero.

    Args:
        x: (...) values; anything (even NaN) at masked-out positions is ignored.
        mask: same shape as ``x``; 0 = ignore, non-zero = weight (normally 1).
        dim: dimension(s) to reduce; None reduces everything to a scalar.

    Returns:
        () if ``dim`` is None, else ``x``'s shape without ``dim``. An empty selection gives 0, not NaN.
    """
    w = _weights(mask, x)
    # where() rather than x·mask: 0·NaN or 0·inf at padding would poison the sum.
    num = torch.where(_valid(mask), x * w, torch.zeros_like(x))
    if dim is None:
        return num.sum() / w.sum().clamp_min(1e-8)
    return num.sum(dim) / w.sum(dim).clamp_min(1e-8)


def agg_loss(loss_mat: Tensor, mask: Tensor, agg: str) -> Tensor:
    """Aggregate a per-token loss into a scalar, as verl's ``agg_loss`` (style guide B4, docs/method.md §5).

    Args:
        loss_mat: (B, T) per-token loss.
        mask: (B, T) valid-token mask.
        agg: ``token-mean`` (mean over all valid tokens of the batch; verl's default),
            ``seq-mean-token-sum`` (sum over each row's tokens, mean over rows) or
            ``seq-mean-token-mean`` (mean over each row's tokens, mean over rows).

    Returns:
        () scalar. Rows without a valid token are left out of the sequence means (as recent verl
        does) so that padding rows do not dilute the loss; an all-padding batch gives 0.
    """
    _check_choice("agg", agg, LOSS_AGGS)
    if agg == "token-mean":
        return masked_mean(loss_mat, mask)
    w = _weights(mask, loss_mat)
    per_token = torch.where(_valid(mask), loss_mat * w, torch.zeros_like(loss_mat))
    seq = per_token.sum(-1)  # (B,)
    if agg == "seq-mean-token-mean":
        seq = seq / w.sum(-1).clamp_min(1e-8)
    has_tokens = _valid(mask).any(-1)  # (B,)
    return masked_mean(seq, has_tokens)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Full-vocabulary Shannon entropy H = −Σ p·log p, in nats (docs/method.md §0: training logs nats).

    Args:
        logits: (..., V) unnormalised scores; −inf entries (filtered vocabulary) are allowed.

    Returns:
        (...) entropy in the logits' float dtype (float32 for half-precision input).
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        # bf16 log-softmax is off by ~1 % on entropy; the upcast is cheap next to the forward pass.
        logits = logits.float()
    # log_softmax subtracts the logsumexp, so large logits cannot overflow and −Σp·logp does not
    # suffer the cancellation of logsumexp − Σp·z.
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    # p = 0 where the logit is −inf: 0·(−inf) would be NaN, and the true contribution is 0.
    return -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k1") -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from samples of π (Schulman's k1/k2/k3; verl ``kl_penalty``).

    Args:
        logp: (...) log π(y_t) of the sampled tokens.
        ref_logp: (...) log π_ref(y_t) of the same tokens.
        kind: ``k1`` = logp − ref_logp (unbiased, can be negative);
            ``k2`` = ½·(logp − ref_logp)² (verl "mse");
            ``k3`` = exp(ref − logp) − (ref − logp) − 1 ≥ 0 (verl "low_var_kl"), with the log-ratio
            clamped to ±20 and the result to ±10 as verl does.

    Returns:
        (...) per-token estimate (no masking; take ``masked_mean`` yourself).
    """
    _check_choice("kind", kind, KL_KINDS)
    diff = logp - ref_logp
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    log_ratio = (-diff).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)  # log π_ref/π
    return (log_ratio.exp() - log_ratio - 1).clamp(-_K3_CLAMP, _K3_CLAMP)


# ---------------------------------------------------------------------------------------------
# Advantages: GRPO (docs/method.md §4.2) and Policy Split (docs/method.md §4.3–§4.5)
# ---------------------------------------------------------------------------------------------


def grpo_advantages(rewards: Tensor, group_ids: Tensor, *, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO outcome advantage A_i = (r_i − mean_g r) / (std_g r + eps) per group (docs/method.md §4.2).

    Args:
        rewards: (N,) scalar reward per response.
        group_ids: (N,) integer group of each response (any values, any order).
        scale_by_std: divide by the std (GRPO); False gives the Dr. GRPO form r − mean.
        eps: added to the std (docs/method.md §0), so a zero-std group cannot divide by 0.

    Returns:
        (N,) advantages in the rewards' float dtype. The std is the unbiased (Bessel) sample std
        (docs/method.md §0). A singleton group gets 0, since it holds no relative information (docs/method.md §0: verl's
        r/(1+ε) is not copied), and a group whose rewards are all equal gets exactly 0.
    """
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    r = rewards.reshape(-1).to(torch.float64)  # float64: the mean of equal rewards must equal them
    _, inv, counts = torch.unique(group_ids.reshape(-1), return_inverse=True, return_counts=True)
    n_groups = counts.numel()
    cnt = counts.to(torch.float64)
    mean = torch.zeros(n_groups, dtype=torch.float64, device=r.device).index_add_(0, inv, r) / cnt
    dev = r - mean[inv]  # (N,)
    sq = torch.zeros_like(mean).index_add_(0, inv, dev.square())
    std = (sq / (cnt - 1).clamp_min(1)).sqrt()  # Bessel; clamp only avoids 0/0 for singletons
    hi = torch.full_like(mean, -math.inf).scatter_reduce(0, inv, r, reduce="amax")
    lo = torch.full_like(mean, math.inf).scatter_reduce(0, inv, r, reduce="amin")
    informative = (counts > 1) & (hi > lo)  # (groups,) singleton or all-equal → 0 exactly
    adv = dev / (std[inv] + eps) if scale_by_std else dev
    adv = torch.where(informative[inv], adv, torch.zeros_like(adv))
    return adv.to(out_dtype).reshape(rewards.shape)


def policy_split_token_signal(
    logp_normal: Tensor,
    logp_he: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    estimator: str,
    entropy_normal: Tensor | None = None,
    entropy_he: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Raw token signals b^N and b^H of docs/method.md §4.3 (before the group normalisation of §4.4).

    b^H_t = α·s_H(t) + (1−α)·s_N(t) on HE-context rows and b^N_t = α·s_N(t) + (1−α)·s_H(t) on
    normal-context rows, where the surprisal s is −ℓ (``estimator="logprob"``, the paper's
    single-sample estimate) or the full-vocabulary entropy of that context (``"entropy"``).

    Args:
        logp_normal: (..., T) old log-probs of the response tokens under the normal context.
        logp_he: (..., T) old log-probs of the same tokens under the HE context, positions aligned.
        mask: (..., T) valid tokens.
        alpha: weight of the row's own context (paper 0.5).
        estimator: ``logprob`` | ``entropy``.
        entropy_normal, entropy_he: (..., T) token entropies, required for ``estimator="entropy"``.

    Returns:
        ``(b_normal_ctx, b_he_ctx)``, each (..., T), 0 on padding.
    """
    _check_choice("estimator", estimator, ESTIMATORS)
    if estimator == "logprob":
        s_normal, s_he = -logp_normal, -logp_he
    else:
        if entropy_normal is None or entropy_he is None:
            raise ValueError('estimator="entropy" needs entropy_normal and entropy_he')
        s_normal, s_he = entropy_normal, entropy_he
    valid = _valid(mask)
    zero = torch.zeros_like(s_he)
    b_he = torch.where(valid, alpha * s_he + (1 - alpha) * s_normal, zero)
    b_normal = torch.where(valid, alpha * s_normal + (1 - alpha) * s_he, zero)
    return b_normal.detach(), b_he.detach()  # the bonus is a constant in the loss (sg in eq. 3)


def group_normalize_tokens(
    b: Tensor,
    mask: Tensor,
    *,
    normalize: str,
    lowest_ratio: float,
    eps: float = 1e-6,
) -> Tensor:
    """Normalise the token signal within each group, pooling all valid tokens of the group (docs/method.md §4.4).

    Args:
        b: (S, ...) raw signal; group s is ``b[s]`` (e.g. (S, G, T): G responses × T tokens).
        mask: same shape; only valid tokens enter the statistics.
        normalize: ``zscore`` = (b − μ)/(σ + eps) with σ the unbiased std over the pooled tokens;
            ``mean`` = (b − μ)/(max − min + eps); ``none`` = raw b. A pool of ≤ 1 token uses μ = 0 and
            a unit denominator (docs/method.md §4.4), for ``mean`` as for ``zscore``.
        lowest_ratio: ρ in [0, 1]; τ = ``torch.quantile(pooled raw b, ρ)`` (linear interpolation,
            docs/method.md §0); tokens with b < τ get 0, tokens with b ≥ τ keep their value. 0 masks nothing.
        eps: added to the denominator.

    Returns:
        (S, ...) normalised signal, 0 on padding.
    """
    _check_choice("normalize", normalize, NORMALIZERS)
    if not 0.0 <= lowest_ratio <= 1.0:
        raise ValueError(f"lowest_ratio must be in [0, 1], got {lowest_ratio}")
    valid = _valid(mask)
    s = b.shape[0]
    flat_b = b.reshape(s, -1)  # (S, M) pooled tokens of each group
    flat_v = valid.reshape(s, -1)
    zero = torch.zeros_like(flat_b)
    vals = torch.where(flat_v, flat_b, zero)
    count = flat_v.sum(-1, keepdim=True)  # (S, 1)
    pooled = count > 1  # docs/method.md §4.4: a pool of ≤ 1 token keeps μ = 0 and a unit denominator
    cnt = count.to(flat_b.dtype)
    mu = torch.where(pooled, vals.sum(-1, keepdim=True) / cnt.clamp_min(1), torch.zeros_like(cnt))
    if normalize == "zscore":
        var = torch.where(flat_v, (flat_b - mu).square(), zero).sum(-1, keepdim=True) / (cnt - 1).clamp_min(1)
        denom = torch.where(pooled, var.sqrt(), torch.ones_like(var)) + eps
        out = (flat_b - mu) / denom
    elif normalize == "mean":
        hi = torch.where(flat_v, flat_b, torch.full_like(flat_b, -math.inf)).amax(-1, keepdim=True)
        lo = torch.where(flat_v, flat_b, torch.full_like(flat_b, math.inf)).amin(-1, keepdim=True)
        spread = torch.where(pooled, hi - lo, torch.ones_like(cnt)) + eps
        out = (flat_b - mu) / spread
    else:
        out = flat_b
    keep = flat_v
    if lowest_ratio > 0:
        keep = flat_v.clone()  # never write into the caller's mask
        # Per group, exactly as docs/method.md §0 words it; S is small (questions per step).
        for g in range(s):
            if flat_v[g].any():
                tau = torch.quantile(flat_b[g][flat_v[g]], lowest_ratio)
                keep[g] = flat_v[g] & (flat_b[g] >= tau)
    return torch.where(keep, out, zero).reshape(b.shape)


def clamped_bonus(
    signal: Tensor,
    advantages: Tensor,
    *,
    eta: float,
    kappa: float,
    clamp_order: str,
) -> Tensor:
    """Scaled and clamped internal reward Ĩ of docs/method.md §4.5.

    Args:
        signal: (...) normalised token signal B.
        advantages: (...) the token's GRPO advantage A (broadcastable to ``signal``).
        eta: bonus scale; pass −η₂ for normal-context rows (docs/method.md §4.5: I = −η₂·B^N there).
        kappa: clamp bound |Ĩ| ≤ |A|/κ; 0 disables the clamp.
        clamp_order: ``scale_then_clip`` = clip(η·B, ±|A|/κ) (released code, the default, docs/method.md §0);
            ``clip_then_scale`` = η·clip(B, ±|A|/κ) (paper eq. 3).

    Returns:
        (...) Ĩ; with κ > 0 it is 0 wherever A = 0. |Ĩ| ≤ |A|/κ for ``scale_then_clip`` (so κ ≥ 1 never
        flips the sign of A) and |Ĩ| ≤ |η|·|A|/κ for ``clip_then_scale`` (sign kept while |η| ≤ κ).
    """
    _check_choice("clamp_order", clamp_order, CLAMP_ORDERS)
    if kappa < 0:
        raise ValueError(f"kappa must be ≥ 0 (0 = no clamp), got {kappa}")
    if kappa == 0:
        return eta * signal
    bound = advantages.abs() / kappa
    if clamp_order == "scale_then_clip":
        return torch.minimum(torch.maximum(eta * signal, -bound), bound)
    return eta * torch.minimum(torch.maximum(signal, -bound), bound)


def _clamp_binds(signal: Tensor, advantages: Tensor, *, eta: float, kappa: float, clamp_order: str) -> Tensor:
    """(...) bool: where the clamp of ``clamped_bonus`` changes the value."""
    if kappa == 0:
        return torch.zeros_like(signal, dtype=torch.bool)
    bound = advantages.abs() / kappa
    raw = eta * signal if clamp_order == "scale_then_clip" else signal
    return raw.abs() > bound


class _PolicySplitParts(NamedTuple):
    adv_normal_ctx: Tensor  # (S, 2n, T)
    adv_he_ctx: Tensor  # (S, 2n, T)
    stats: dict[str, float]


def _policy_split(
    rewards: Tensor,
    logp_normal: Tensor,
    logp_he: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    eta: float,
    eta_normal: float,
    kappa: float,
    clamp_order: str,
    normalize: str,
    lowest_ratio: float,
    estimator: str,
    entropy_normal: Tensor | None,
    entropy_he: Tensor | None,
    eps: float,
    share_rollouts: bool,
) -> _PolicySplitParts:
    if rewards.dim() != 2 or logp_normal.dim() != 3 or logp_normal.shape[:2] != rewards.shape:
        raise ValueError(
            f"expected rewards (S, 2n) and token tensors (S, 2n, T); got {tuple(rewards.shape)} "
            f"and {tuple(logp_normal.shape)}"
        )
    if logp_he.shape != logp_normal.shape or mask.shape != logp_normal.shape:
        raise ValueError("logp_normal, logp_he and mask must have the same (S, 2n, T) shape")
    _check_choice("clamp_order", clamp_order, CLAMP_ORDERS)
    s, g = rewards.shape
    if not share_rollouts and g % 2:
        raise ValueError(f"share_rollouts=False needs an even number of responses (n + n), got {g}")
    n = g // 2
    valid = _valid(mask)
    dtype = logp_normal.dtype if logp_normal.is_floating_point() else torch.get_default_dtype()
    device = rewards.device

    # docs/method.md §4.2 / §3.4: one group of 2n per question (both contexts hold the same rewards, so one
    # GRPO call serves both). Without sharing (docs/method.md §0) each mode is its own group of n.
    if share_rollouts:
        group_ids = torch.arange(s, device=device).repeat_interleave(g)
    else:
        group_ids = torch.arange(2 * s, device=device).repeat_interleave(n)
    adv = grpo_advantages(rewards.reshape(-1).to(dtype), group_ids, eps=eps).reshape(s, g)  # (S, 2n)
    adv_tok = adv.unsqueeze(-1).expand_as(logp_normal)  # (S, 2n, T): A is sequence-level (§4.7)

    # Which rows each context trains on: all 2n with sharing, its own mode's n rows without.
    rows = torch.arange(g, device=device)
    he_rows = torch.ones(g, dtype=torch.bool, device=device) if share_rollouts else rows >= n
    normal_rows = torch.ones(g, dtype=torch.bool, device=device) if share_rollouts else rows < n
    valid_he = valid & he_rows.view(1, g, 1)  # (S, 2n, T)
    valid_normal = valid & normal_rows.view(1, g, 1)

    # docs/method.md §4.3: raw signals; docs/method.md §4.4: z-score per (question, context) over that context's tokens.
    b_normal, b_he = policy_split_token_signal(
        logp_normal,
        logp_he,
        mask,
        alpha=alpha,
        estimator=estimator,
        entropy_normal=entropy_normal,
        entropy_he=entropy_he,
    )
    big_b_he = group_normalize_tokens(b_he, valid_he, normalize=normalize, lowest_ratio=lowest_ratio, eps=eps)
    big_b_normal = group_normalize_tokens(
        b_normal, valid_normal, normalize=normalize, lowest_ratio=lowest_ratio, eps=eps
    )

    # docs/method.md §4.5: I = η·B^H on HE rows, −η₂·B^N on normal rows, clamped to ±|A|/κ, added once (§0).
    bonus_he = clamped_bonus(big_b_he, adv_tok, eta=eta, kappa=kappa, clamp_order=clamp_order)
    bonus_normal = clamped_bonus(big_b_normal, adv_tok, eta=-eta_normal, kappa=kappa, clamp_order=clamp_order)
    zero = torch.zeros_like(adv_tok)
    adv_he_ctx = torch.where(valid_he, adv_tok + bonus_he, zero)
    adv_normal_ctx = torch.where(valid_normal, adv_tok + bonus_normal, zero)

    with torch.no_grad():
        binds = _clamp_binds(big_b_he, adv_tok, eta=eta, kappa=kappa, clamp_order=clamp_order)
        group_zero = (adv == 0).reshape(-1, g if share_rollouts else n).all(-1)  # (groups,)
        stats = {
            # Share of valid HE-context tokens where the clamp changes the bonus (docs/method.md §8.2).
            "clamp_binding_frac": masked_mean(binds.to(dtype), valid_he).item(),
            # Same, restricted to tokens with A ≠ 0 (where A = 0 the bound is 0 and always "binds").
            "clamp_binding_frac_nonzero_adv": masked_mean(binds.to(dtype), valid_he & (adv_tok != 0)).item(),
            "bonus_abs_mean_he": masked_mean(bonus_he.abs(), valid_he).item(),
            "bonus_abs_mean_normal": masked_mean(bonus_normal.abs(), valid_normal).item(),
            # Raw b^H is an estimate of H(π^HE) + (1−α)·KL(π^HE‖π) on HE rollouts (docs/method.md §4.3).
            "signal_he_mean": masked_mean(b_he, valid_he).item(),
            "zero_adv_group_frac": group_zero.to(dtype).mean().item(),
        }
    return _PolicySplitParts(adv_normal_ctx.detach(), adv_he_ctx.detach(), stats)


@overload
def policy_split_advantages(
    rewards: Tensor,
    logp_normal: Tensor,
    logp_he: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    eta: float,
    eta_normal: float,
    kappa: float,
    clamp_order: str,
    normalize: str,
    lowest_ratio: float,
    estimator: str,
    entropy_normal: Tensor | None = ...,
    entropy_he: Tensor | None = ...,
    eps: float = ...,
    share_rollouts: bool,
    return_stats: Literal[False] = ...,
) -> tuple[Tensor, Tensor]: ...


@overload
def policy_split_advantages(
    rewards: Tensor,
    logp_normal: Tensor,
    logp_he: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    eta: float,
    eta_normal: float,
    kappa: float,
    clamp_order: str,
    normalize: str,
    lowest_ratio: float,
    estimator: str,
    entropy_normal: Tensor | None = ...,
    entropy_he: Tensor | None = ...,
    eps: float = ...,
    share_rollouts: bool,
    return_stats: Literal[True],
) -> tuple[Tensor, Tensor, dict[str, float]]: ...


def policy_split_advantages(
    rewards: Tensor,
    logp_normal: Tensor,
    logp_he: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    eta: float,
    eta_normal: float,
    kappa: float,
    clamp_order: str,
    normalize: str,
    lowest_ratio: float,
    estimator: str,
    entropy_normal: Tensor | None = None,
    entropy_he: Tensor | None = None,
    eps: float = 1e-6,
    share_rollouts: bool,
    return_stats: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, float]]:
    """Token advantages of every pooled response under both contexts (docs/method.md §4.2–§4.6).

    Per question, the 2n pooled responses are the n normal-mode rollouts followed by the n HE-mode
    rollouts. Each is trained under the normal context with the GRPO advantage A − η₂·B^N (pure GRPO
    for the paper's η₂ = 0) and under the HE context with A + Ĩ, Ĩ = the clamped η·B^H bonus.

    Args:
        rewards: (S, 2n) reward of each pooled response.
        logp_normal: (S, 2n, T) old log-probs of each response's tokens under the normal context.
        logp_he: (S, 2n, T) old log-probs of the same tokens under the HE context, positions aligned.
        mask: (S, 2n, T) valid response tokens.
        alpha: own-context weight α in b (docs/method.md §4.3).
        eta: HE bonus scale η (η₁).
        eta_normal: η₂; normal-context rows get −η₂·B^N (code sign; paper η′ = −η₂).
        kappa: clamp |Ĩ| ≤ |A|/κ; 0 = no clamp.
        clamp_order: ``scale_then_clip`` (default, released code) | ``clip_then_scale`` (paper eq. 3).
        normalize: ``zscore`` | ``mean`` | ``none`` (docs/method.md §4.4, see ``group_normalize_tokens``).
        lowest_ratio: ρ of the quantile mask on raw b (docs/method.md §0, §4.4); 0 = off.
        estimator: ``logprob`` (surprisal −ℓ) | ``entropy`` (uses the two entropy tensors).
        entropy_normal, entropy_he: (S, 2n, T) full-vocab entropies under each context.
        eps: added to the GRPO std and to the §4.4 denominator.
        share_rollouts: True (docs/method.md §3.3) trains all 2n under both contexts, one GRPO group of 2n.
            False (docs/method.md §0 "rollout sharing off"): each mode is its own group of n and trains only on
            its own rollouts: ``adv_normal_ctx`` is meaningful for rows [:n] only and ``adv_he_ctx``
            for rows [n:] only; the other rows are set to 0 (they must not be trained). B^H is then
            z-scored over the HE rows' tokens only (still using their normal-context log-probs).
        return_stats: also return a dict of diagnostics (floats): ``clamp_binding_frac``,
            ``clamp_binding_frac_nonzero_adv``, ``bonus_abs_mean_he``, ``bonus_abs_mean_normal``,
            ``signal_he_mean``, ``zero_adv_group_frac`` (share of GRPO groups with A ≡ 0).

    Returns:
        ``(adv_normal_ctx, adv_he_ctx)``, each (S, 2n, T), detached, 0 on padding; plus the stats
        dict when ``return_stats=True``.
    """
    parts = _policy_split(
        rewards,
        logp_normal,
        logp_he,
        mask,
        alpha=alpha,
        eta=eta,
        eta_normal=eta_normal,
        kappa=kappa,
        clamp_order=clamp_order,
        normalize=normalize,
        lowest_ratio=lowest_ratio,
        estimator=estimator,
        entropy_normal=entropy_normal,
        entropy_he=entropy_he,
        eps=eps,
        share_rollouts=share_rollouts,
    )
    if return_stats:
        return parts.adv_normal_ctx, parts.adv_he_ctx, parts.stats
    return parts.adv_normal_ctx, parts.adv_he_ctx


# ---------------------------------------------------------------------------------------------
# Policy loss (docs/method.md §5)
# ---------------------------------------------------------------------------------------------


def _log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """(B, T) log ρ clamped to ±20 (docs/method.md §5); 0 on padding so padding ratios are exactly 1."""
    log_ratio = (logp - old_logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    return torch.where(_valid(mask), log_ratio, torch.zeros_like(log_ratio))


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
    agg: str,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate with verl's dual clip (docs/method.md §5).

    ℓ_t = max(−A·ρ, −A·clip(ρ, 1 − clip_low, 1 + clip_high)); where A < 0 additionally
    ℓ_t ← min(ℓ_t, −A·c) with c = ``dual_clip`` (so a huge ratio cannot blow up a negative-A token).

    Args:
        logp: (B, T) current log-probs (with gradient).
        old_logp: (B, T) log-probs at sampling time (constant).
        advantages: (B, T) token advantages.
        mask: (B, T) valid tokens.
        clip_low, clip_high: ε of the lower / upper ratio bound.
        dual_clip: c > 1; None or 0 disables the dual clip.
        agg: ``token-mean`` | ``seq-mean-token-sum`` | ``seq-mean-token-mean`` (see ``agg_loss``).

    Returns:
        ``(loss, metrics)``: loss () with gradient; metrics over valid tokens:
        ``clip_frac`` (the clipped term is the larger loss; verl pg_clipfrac),
        ``clip_frac_high`` (ρ > 1 + ε with A > 0), ``clip_frac_low`` (ρ < 1 − ε with A < 0),
        ``clip_frac_lower`` (the dual clip binds; verl pg_clipfrac_lower),
        ``approx_kl`` (mean of −log ρ, verl ppo_kl) and ``ratio_mean``.
    """
    log_ratio = _log_ratio(logp, old_logp, mask)
    ratio = log_ratio.exp()
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * ratio.clamp(1 - clip_low, 1 + clip_high)
    loss_ppo = torch.maximum(loss_unclipped, loss_clipped)  # pessimistic bound
    loss_mat = loss_ppo
    negative = advantages < 0
    if dual_clip:
        loss_dual = -advantages * dual_clip
        loss_mat = torch.where(negative, torch.minimum(loss_ppo, loss_dual), loss_ppo)
    loss = agg_loss(loss_mat, mask, agg)

    with torch.no_grad():
        dual_binds = negative & (loss_ppo > loss_dual) if dual_clip else torch.zeros_like(negative)
        fdt = loss_mat.dtype
        metrics = {
            "clip_frac": masked_mean((loss_clipped > loss_unclipped).to(fdt), mask).item(),
            "clip_frac_high": masked_mean(((advantages > 0) & (ratio > 1 + clip_high)).to(fdt), mask).item(),
            "clip_frac_low": masked_mean((negative & (ratio < 1 - clip_low)).to(fdt), mask).item(),
            "clip_frac_lower": masked_mean(dual_binds.to(fdt), mask).item(),
            "approx_kl": masked_mean(-log_ratio, mask).item(),
            "ratio_mean": masked_mean(ratio, mask).item(),
        }
    return loss, metrics


# ---------------------------------------------------------------------------------------------
# Baselines (docs/method.md §10)
# ---------------------------------------------------------------------------------------------


def forking_token_mask(entropy: Tensor, mask: Tensor, *, top_ratio: float) -> Tensor:
    """Keep the top ⌈top_ratio·N⌉ highest-entropy valid tokens of the micro-batch (docs/method.md §10.2).

    The selection is global over all rows (Wang et al. 2025, "Beyond the 80/20 rule"); multiply the
    loss mask by the result so the PPO loss averages over the selected tokens only.

    Args:
        entropy: (B, T) token entropy of the current policy (only its order is used; detached).
        mask: (B, T) valid tokens, N = their count.
        top_ratio: fraction of tokens to keep, in (0, 1].

    Returns:
        (B, T) mask in ``mask``'s dtype with exactly ⌈top_ratio·N⌉ ones (ties broken by ``topk``).
    """
    if not 0.0 < top_ratio <= 1.0:
        raise ValueError(f"top_ratio must be in (0, 1], got {top_ratio}")
    valid = _valid(mask)
    n = int(valid.sum().item())
    k = min(n, _ratio_count(top_ratio, n, ceil=True))
    keep = torch.zeros(valid.numel(), dtype=torch.bool, device=valid.device)
    if k > 0:
        scores = torch.where(valid, entropy.detach(), torch.full_like(entropy, -math.inf)).reshape(-1)
        keep[torch.topk(scores, k).indices] = True
    return keep.reshape(mask.shape).to(mask.dtype)


def token_covariance(logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Cov_t = (A_t − Ā)·(logp_t − mean logp) over the valid tokens of a micro-batch (docs/method.md §10.3).

    Args:
        logp: (B, T) current log-probs (detached here: the covariance only selects tokens).
        advantages: (B, T) token advantages.
        mask: (B, T) valid tokens; the means run over them.

    Returns:
        (B, T) covariance term, 0 on padding.
    """
    lp = logp.detach()
    adv = advantages.detach()
    cov = (adv - masked_mean(adv, mask)) * (lp - masked_mean(lp, mask))
    return torch.where(_valid(mask), cov, torch.zeros_like(cov))


def clip_cov_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ratio: float,
    lb: float,
    ub: float,
    clip_low: float,
    clip_high: float,
    generator: torch.Generator | None = None,
    agg: str,
) -> tuple[Tensor, dict[str, float]]:
    """Clip-Cov policy loss (Cui et al. 2025; verl ``clip_cov``; docs/method.md §10.3).

    Among valid tokens not already clipped by PPO with lb < Cov < ub, k = max(1, ⌊ratio·N⌋) are
    picked uniformly at random (``torch.randperm`` with ``generator``) and their loss is zeroed (no
    gradient). Other tokens get the PPO loss max(−A·ρ, −A·clip(ρ, 1 ± ε)) without dual clip. Picked
    tokens stay in the aggregation's denominator. The log-ratio is clamped to ±20 as in
    ``ppo_clip_loss``.

    Args:
        logp, old_logp, advantages, mask: (B, T) as in ``ppo_clip_loss``.
        ratio: r, fraction of valid tokens to detach.
        lb, ub: open covariance window of the candidates.
        clip_low, clip_high: PPO ε.
        generator: RNG for the random pick (seed it for reproducible runs and tests).
        agg: aggregation mode (``agg_loss``).

    Returns:
        ``(loss, metrics)``: ``clip_frac`` (share of valid tokens detached; verl pg_clipfrac),
        ``ppo_clip_frac``, ``approx_kl``, ``cov_candidates_frac``.
    """
    valid = _valid(mask)
    log_ratio = _log_ratio(logp, old_logp, mask)
    rho = log_ratio.exp()
    loss_unclipped = -advantages * rho
    loss_clipped = -advantages * rho.clamp(1 - clip_low, 1 + clip_high)
    with torch.no_grad():
        ppo_clipped = (loss_clipped > loss_unclipped) & valid
        cov = token_covariance(logp, advantages, mask)
        candidates = valid & ~ppo_clipped & (cov > lb) & (cov < ub)
        cand_idx = torch.nonzero(candidates.reshape(-1)).squeeze(-1)  # row-major order
        k = max(1, _ratio_count(ratio, int(valid.sum().item()), ceil=False))
        # Draw on the generator's device so a seeded CPU generator reproduces the same pick anywhere.
        rng_device = generator.device if generator is not None else torch.device("cpu")
        perm = torch.randperm(cand_idx.numel(), generator=generator, device=rng_device).to(cand_idx.device)
        picked = torch.zeros(candidates.numel(), dtype=torch.bool, device=candidates.device)
        picked[cand_idx[perm[:k]]] = True
        picked = picked.reshape(candidates.shape)
    loss_ppo = torch.maximum(loss_unclipped, loss_clipped)
    loss_mat = torch.where(picked, torch.zeros_like(loss_ppo), loss_ppo)  # picked: no gradient
    loss = agg_loss(loss_mat, mask, agg)
    with torch.no_grad():
        fdt = loss_mat.dtype
        metrics = {
            "clip_frac": masked_mean(picked.to(fdt), mask).item(),
            "ppo_clip_frac": masked_mean(ppo_clipped.to(fdt), mask).item(),
            "approx_kl": masked_mean(-log_ratio, mask).item(),
            "cov_candidates_frac": masked_mean(candidates.to(fdt), mask).item(),
        }
    return loss, metrics


def kl_cov_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ratio: float,
    coef: float,
    agg: str,
) -> tuple[Tensor, dict[str, float]]:
    """KL-Cov policy loss (Cui et al. 2025; verl ``kl_cov``; docs/method.md §10.4).

    The k = max(1, ⌊ratio·N⌋) valid tokens with the largest Cov get −A·ρ + coef·|log ρ|; all other
    tokens get the **unclipped** −A·ρ. The log-ratio is clamped to ±20.

    Args:
        logp, old_logp, advantages, mask: (B, T) as in ``ppo_clip_loss``.
        ratio: r, fraction of valid tokens penalised.
        coef: β of the |log ρ| penalty (verl ``ppo_kl_coef``).
        agg: aggregation mode (``agg_loss``).

    Returns:
        ``(loss, metrics)``: ``approx_kl``, ``abs_kl`` (mean |log ρ|), ``kl_cov_frac`` (share of
        valid tokens penalised).
    """
    valid = _valid(mask)
    log_ratio = _log_ratio(logp, old_logp, mask)
    rho = log_ratio.exp()
    loss_pg = -advantages * rho
    with torch.no_grad():
        n = int(valid.sum().item())
        penalised = torch.zeros(valid.numel(), dtype=torch.bool, device=valid.device)
        if n > 0:
            k = max(1, _ratio_count(ratio, n, ceil=False))
            cov = token_covariance(logp, advantages, mask)
            cov = torch.where(valid, cov, torch.full_like(cov, -math.inf))  # padding never selected
            penalised[torch.topk(cov.reshape(-1), min(k, n)).indices] = True
        penalised = penalised.reshape(valid.shape)
    loss_mat = torch.where(penalised, loss_pg + coef * log_ratio.abs(), loss_pg)
    loss = agg_loss(loss_mat, mask, agg)
    with torch.no_grad():
        metrics = {
            "approx_kl": masked_mean(-log_ratio, mask).item(),
            "abs_kl": masked_mean(log_ratio.abs(), mask).item(),
            "kl_cov_frac": masked_mean(penalised.to(loss_mat.dtype), mask).item(),
        }
    return loss, metrics


def eda_advantages(advantages: Tensor, seq_entropy: Tensor, group_ids: Tensor, *, eps: float = 1e-6) -> Tensor:
    """EDGE-GRPO's entropy-driven advantage Â_i = A_i / P̂_i, P̂_i = P_i / mean_g P (docs/method.md §10.5).

    Confident (low-entropy) responses get a larger |A|, uncertain ones a smaller |A|.

    Args:
        advantages: (N,) GRPO advantages.
        seq_entropy: (N,) mean token entropy P_i of each response (treated as a constant).
        group_ids: (N,) group of each response; P̄ is the group mean (docs/method.md §13 Q14).
        eps: added to P_i and P̄ so a zero-entropy response cannot divide by 0 (an all-zero group
            keeps P̂ = 1).

    Returns:
        (N,) rescaled advantages; the sign of A is kept and A = 0 stays 0.
    """
    p = seq_entropy.detach().reshape(-1).to(torch.float64)
    _, inv, counts = torch.unique(group_ids.reshape(-1), return_inverse=True, return_counts=True)
    p_bar = torch.zeros(counts.numel(), dtype=torch.float64, device=p.device).index_add_(0, inv, p) / counts
    scale = (p_bar[inv] + eps) / (p + eps)  # 1 / P̂_i
    return (advantages.reshape(-1) * scale.to(advantages.dtype)).reshape(advantages.shape)


def entropy_bonus_loss(entropy: Tensor, mask: Tensor, *, coef: float, agg: str) -> Tensor:
    """Entropy-regularisation term −coef·agg(H) to add to the policy loss (docs/method.md §10.6).

    Args:
        entropy: (B, T) full-vocab token entropy of the current policy, **with** gradient.
        mask: (B, T) valid tokens.
        coef: c_ent (paper 0.003).
        agg: same aggregation mode as the policy loss.

    Returns:
        () scalar; minimising it raises the entropy.
    """
    return -coef * agg_loss(entropy, mask, agg)


def entropy_advantage(
    advantages: Tensor,
    entropy: Tensor,
    mask: Tensor,
    *,
    alpha: float,
    kappa: float,
) -> Tensor:
    """Cheng et al.'s entropy advantage Â = A + min(α·sg(H), |A|/κ) (docs/method.md §10.7).

    Args:
        advantages: (B, T) token GRPO advantages.
        entropy: (B, T) token entropy (detached here; H ≥ 0).
        mask: (B, T) valid tokens.
        alpha: bonus scale α.
        kappa: cap |A|/κ; 0 disables the cap. With κ > 1 the bonus never flips the sign of A, and it
            is 0 where A = 0.

    Returns:
        (B, T) shaped advantages, 0 on padding.
    """
    bonus = alpha * entropy.detach().clamp_min(0)
    if kappa > 0:
        bonus = torch.minimum(bonus, advantages.abs() / kappa)
    return torch.where(_valid(mask), advantages + bonus, torch.zeros_like(advantages))
