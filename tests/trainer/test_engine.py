"""The training engine in one process: precision, chunked scoring, micro-batching, wasted passes.

Every update test here trains rows with non-zero advantages (±1), so its gradient is non-zero by
construction, and each first checks that the weights moved (without weight decay, so only the
gradient can move them).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from trainer.config import TrainConfig
from trainer.data.datasets import Question, get_task
from trainer.engine.parallel import prepare
from trainer.loop import needed_scores
from trainer.registry import load_model, load_tokenizer
from trainer.rl.batch import RowCollector, TrainRows, plan_micro_batches
from trainer.rl.scoring import (
    SharedPacked,
    calls_are_collective,
    can_share_prompts,
    chunk_logprob_entropy,
    pack,
    pack_rows,
    score,
    token_logprob_entropy,
)
from trainer.rl.update import ppo_update

CPU = torch.device("cpu")


def _rows(lengths: list[tuple[int, int]], *, seed: int = 0) -> TrainRows:
    """Rows of random tokens with the given (prompt, response) lengths and alternating ±1 advantages."""
    gen = torch.Generator().manual_seed(seed)
    width = max(r for _, r in lengths)
    rows = RowCollector()
    for i, (p, r) in enumerate(lengths):
        adv, mask = torch.zeros(width), torch.zeros(width)
        adv[:r], mask[:r] = (1.0 if i % 2 else -1.0), 1.0
        prompt = torch.randint(10, 1000, (p,), generator=gen).tolist()
        rows.add(prompt, torch.randint(10, 1000, (r,), generator=gen).tolist(), None, adv, mask, "normal")
    return rows.build()


def _update(rows: TrainRows, *, sgd: bool = False, **cfg_overrides: Any) -> tuple[torch.Tensor, TrainConfig]:
    """One optimizer step on tiny-random; returns every parameter's change, flattened (float32).

    ``sgd``: plain SGD (lr 1), so the change is minus the gradient itself; AdamW's first step,
    ±lr·g/(|g|+ε), would magnify float noise on gradients near ε into visible differences.
    """
    # No weight decay: a weight that changed at all then changed through the gradient.
    base: dict[str, Any] = dict(
        model="tiny-random",
        algorithm="grpo",
        n=len(rows),
        questions_per_step=1,
        samples_per_step=1,
        lr=3e-6,
        weight_decay=0.0,
    )
    cfg = TrainConfig(**{**base, **cfg_overrides})
    torch.manual_seed(0)
    model, engine = prepare(load_model("tiny-random", dtype=cfg.master_dtype), cfg, device=CPU, dist=None)
    before = {k: v.detach().float().clone() for k, v in model.named_parameters()}
    if sgd:
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pad = load_tokenizer("tiny-random").pad_token_id
    ppo_update(model, opt, rows, cfg, pad_id=pad, generator=torch.Generator().manual_seed(1), engine=engine)
    return torch.cat([(p.detach().float() - before[k]).reshape(-1) for k, p in model.named_parameters()]), cfg


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


ROWS = [(12, 10), (12, 3), (20, 7), (20, 10), (12, 1), (20, 5), (12, 8), (20, 2)]


# --- precision ---------------------------------------------------------------------------------


def test_bf16_with_fp32_masters_moves_every_weight_in_the_float32_direction_at_the_paper_lr() -> None:
    d32, _ = _update(_rows(ROWS))
    mixed, _ = _update(_rows(ROWS), dtype="bfloat16")  # master_dtype stays float32
    assert float((d32 != 0).float().mean()) > 0.99  # a real, dense update
    assert float((mixed != 0).float().mean()) > 0.99
    assert _cosine(mixed, d32) >= 0.99


def test_pure_bf16_training_loses_most_updates_at_the_paper_lr() -> None:
    # Why master weights matter: a bf16 weight cannot absorb a 3e-6 step (its spacing near 0.02 is ~1e-4).
    d32, _ = _update(_rows(ROWS))
    pure, _ = _update(_rows(ROWS), dtype="bfloat16", master_dtype="bfloat16")
    assert float((pure != 0).float().mean()) < 0.2
    assert _cosine(pure, d32) < 0.5


# --- scoring at the sampling temperature, in chunks ------------------------------------------


def test_a_chunk_scores_the_tokens_under_softmax_of_logits_over_temperature() -> None:
    # h = [1, 0] and W's rows [1, 0], [0, 0], [-1, 0] give logits z = [1, 0, -1]; at T = 0.5, z/T = [2, 0, -2].
    hidden = torch.tensor([[[1.0, 0.0]]])
    weight = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    logp, entropy = chunk_logprob_entropy(hidden, weight, None, torch.tensor([[0]]), 0.5)
    lse = math.log(math.exp(2) + 1 + math.exp(-2))
    p = [math.exp(2 - lse), math.exp(0 - lse), math.exp(-2 - lse)]
    assert_close(logp, torch.tensor([[2 - lse]]))
    assert_close(entropy, torch.tensor([[-sum(x * math.log(x) for x in p)]]))
    at_one, _ = chunk_logprob_entropy(hidden, weight, None, torch.tensor([[0]]), 1.0)
    assert abs(float(at_one) - float(logp)) > 0.1  # the temperature really enters


@pytest.mark.parametrize("chunk", [1, 3, 0])
def test_chunked_log_probs_equal_those_of_the_full_logits(chunk: int) -> None:
    model = load_model("tiny-random")
    packed = pack([[5, 6, 7], [8, 9]], [[11, 12, 13, 14, 15], [16, 17]], pad_id=0)
    logp, entropy = token_logprob_entropy(model, packed, temperature=0.7, chunk_tokens=chunk, grad=False)
    with torch.no_grad():
        logits = (
            model(
                input_ids=packed.input_ids, attention_mask=packed.attention_mask, position_ids=packed.position_ids
            ).logits[:, packed.prompt_width - 1 : -1]
            / 0.7
        )
    full = torch.log_softmax(logits.float(), -1)
    m = packed.response_mask
    assert_close(logp * m, full.gather(-1, packed.responses.unsqueeze(-1)).squeeze(-1) * m, atol=1e-5, rtol=1e-5)
    assert_close(entropy * m, -(full.exp() * full).sum(-1) * m, atol=1e-5, rtol=1e-5)


def test_gradients_through_checkpointed_chunks_equal_those_of_one_chunk() -> None:
    packed = pack([[5, 6, 7], [8, 9]], [[11, 12, 13, 14, 15], [16, 17]], pad_id=0)
    grads = []
    for chunk in (2, 0):
        model = load_model("tiny-random")
        logp, entropy = token_logprob_entropy(model, packed, temperature=0.7, chunk_tokens=chunk, grad=True)
        ((logp + 0.3 * entropy) * packed.response_mask).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert grads[1].abs().sum() > 0
    assert _relative_error(grads[0], grads[1]) < 1e-5


def test_an_entropy_without_gradient_has_the_same_values_and_leaves_the_log_prob_gradients_alone() -> None:
    packed = pack([[5, 6, 7], [8, 9]], [[11, 12, 13, 14, 15], [16, 17]], pad_id=0)
    out = []
    for entropy_grad in (True, False):
        model = load_model("tiny-random")
        logp, entropy = token_logprob_entropy(
            model, packed, temperature=0.7, chunk_tokens=2, grad=True, entropy_grad=entropy_grad
        )
        assert entropy.requires_grad == entropy_grad
        (logp * packed.response_mask).sum().backward()
        out.append((logp.detach(), entropy.detach(), torch.cat([p.grad.reshape(-1) for p in model.parameters()])))
    (lp0, en0, g0), (lp1, en1, g1) = out
    assert_close(lp1, lp0) and assert_close(en1, en0)
    assert g0.abs().sum() > 0 and _relative_error(g1, g0) < 1e-6


def test_the_updates_log_prob_memory_does_not_grow_with_the_response_beyond_its_activations() -> None:
    # Before the entropy was computed without gradient, each checkpointed chunk's recomputation
    # left 2.25 (rows, chunk, V) float32 copies behind until the backward ended: +2.3 logit rows
    # per extra response position (measured 589 of them from 256 to 512 tokens at chunk 64).
    from trainer.memprobe import measure

    extra = []
    for response in (256, 512):
        cfg = TrainConfig(
            model="tiny-random",
            algorithm="grpo",
            n=2,
            questions_per_step=1,
            samples_per_step=1,
            micro_batch_size=2,
            max_prompt_length=32,
            max_new_tokens=response,
            logprob_chunk_tokens=64,
            parallelism="none",
        )
        peaks = measure(cfg)
        extra.append(peaks.update - peaks.state)
    logit_row = 2 * 49152 * 4  # rows × vocabulary × float32, one position
    assert (extra[1] - extra[0]) / logit_row < 64  # was ≈ 2.3 × 256 = 589


def test_rows_that_share_a_prompt_score_and_train_as_if_each_had_its_own_copy() -> None:
    # Three responses continue prompt A, two continue prompt B (shorter, so it is left-padded).
    prompts = [[5, 6, 7, 8]] * 3 + [[9, 10]] * 2
    responses = [[11, 12, 13], [14], [15, 16, 17, 18, 19], [20, 21], [22, 23, 24]]
    results = []
    for shared in (False, True):
        model = load_model("tiny-random")
        packed = pack_rows(prompts, responses, pad_id=0, share_prompts=shared)
        assert isinstance(packed, SharedPacked) == shared
        logp, entropy = token_logprob_entropy(model, packed, temperature=0.8, chunk_tokens=2, grad=True)
        mask = packed.response_mask
        ((logp + 0.5 * entropy) * mask).sum().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        results.append((logp * mask, entropy * mask, grad))
    (lp0, en0, g0), (lp1, en1, g1) = results
    assert_close(lp1, lp0, atol=1e-5, rtol=1e-5)
    assert_close(en1, en0, atol=1e-5, rtol=1e-5)
    assert g0.abs().sum() > 0 and _relative_error(g1, g0) < 1e-5


def test_a_uniform_layout_shares_prompts_that_do_not_repeat_and_scores_them_the_same() -> None:
    # Under FSDP every rank must call the model as often as the others, whatever its rows hold.
    prompts, responses = [[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15]]
    model = load_model("tiny-random")
    assert not calls_are_collective(model)  # one process: the layout may follow the rows
    plain = pack_rows(prompts, responses, pad_id=0, share_prompts=True)
    uniform = pack_rows(prompts, responses, pad_id=0, share_prompts=True, uniform=True)
    assert not isinstance(plain, SharedPacked) and isinstance(uniform, SharedPacked)
    # Sharing off (activation checkpointing): one call per pass already, whatever the rows.
    assert not isinstance(pack_rows(prompts, responses, pad_id=0, share_prompts=False, uniform=True), SharedPacked)
    with torch.no_grad():
        (lp0, en0), (lp1, en1) = (
            token_logprob_entropy(model, p, temperature=0.8, chunk_tokens=2, grad=False) for p in (plain, uniform)
        )
    mask = plain.response_mask
    assert_close(lp1 * mask, lp0 * mask, atol=1e-5, rtol=1e-5)
    assert_close(en1 * mask, en0 * mask, atol=1e-5, rtol=1e-5)


def test_prompts_are_not_shared_under_activation_checkpointing_with_gradients() -> None:
    model = load_model("tiny-random")
    assert can_share_prompts(model, grad=True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert not can_share_prompts(model, grad=True)
    assert can_share_prompts(model, grad=False)  # no backward, nothing re-runs


# --- micro-batches ---------------------------------------------------------------------------


def test_a_token_budget_groups_similar_lengths_and_covers_every_row_once() -> None:
    prompts, responses = [12, 40, 12, 40, 12, 40], [30, 5, 2, 30, 10, 6]
    passes = plan_micro_batches(prompts, responses, max_rows=99, max_tokens=120)
    assert sorted(i for p in passes for i in p) == list(range(6))
    for p in passes:
        assert len(p) * (max(prompts[i] for i in p) + max(responses[i] for i in p)) <= 120
        assert len({prompts[i] for i in p}) == 1  # the two contexts never share a pass here
    by_rows = plan_micro_batches(prompts, responses, max_rows=4, max_tokens=0)
    assert [len(p) for p in by_rows] == [4, 2]


def test_passes_are_split_until_every_rank_runs_as_many() -> None:
    passes = plan_micro_batches([10] * 5, [4] * 5, max_rows=8, max_tokens=0, min_count=3)
    assert len(passes) == 3 and sorted(i for p in passes for i in p) == list(range(5))


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_how_a_mini_batch_is_cut_into_passes_does_not_change_its_update(agg: str) -> None:
    kw: dict[str, Any] = {"sgd": True, "loss_agg": agg, "max_prompt_length": 32, "max_new_tokens": 16}
    one, _ = _update(_rows(ROWS), micro_batch_size=8, **kw)
    assert float(one.abs().max()) > 1e-4
    rows_of_one, _ = _update(_rows(ROWS), micro_batch_size=1, **kw)
    budget, _ = _update(_rows(ROWS), max_tokens_per_micro_batch=64, **kw)
    assert _relative_error(rows_of_one, one) < 1e-5
    assert _relative_error(budget, one) < 1e-5


# --- no wasted passes ------------------------------------------------------------------------


def test_the_on_policy_shortcut_trains_exactly_as_a_separate_scoring_pass_would() -> None:
    rows = _rows(ROWS)
    model = load_model("tiny-random")
    pad = load_tokenizer("tiny-random").pad_token_id
    passes = plan_micro_batches(
        [len(p) for p in rows.prompts], [len(r) for r in rows.responses], max_rows=8, max_tokens=0
    )
    old, _, _ = score(
        model,
        rows.prompts,
        rows.responses,
        pad_id=pad,
        micro_batches=passes,
        response_width=rows.mask.shape[1],
        temperature=1.0,
        chunk_tokens=1024,
    )
    scored = TrainRows(rows.prompts, rows.responses, old, rows.advantages, rows.mask, rows.contexts)
    fused, _ = _update(rows, sgd=True)
    separate, _ = _update(scored, sgd=True)
    assert float(fused.abs().max()) > 1e-4
    assert _relative_error(fused, separate) < 1e-5


def test_without_rollout_sharing_only_the_scores_the_advantages_read_are_computed() -> None:
    gen_modes = ["normal", "normal", "he", "he"]
    off = dict(algorithm="policy_split", n=2, rollout_sharing=False)
    # The HE bonus reads the normal context's log-probs of the HE rollouts (α < 1); nothing reads Q4.
    assert needed_scores(TrainConfig(**off), gen_modes) == {"normal": [0, 1, 2, 3], "he": [2, 3]}
    assert needed_scores(TrainConfig(**off, alpha=1.0), gen_modes) == {"normal": [0, 1], "he": [2, 3]}
    assert needed_scores(TrainConfig(**off, eta_normal=0.01), gen_modes) == {"normal": [0, 1, 2, 3], "he": [0, 1, 2, 3]}
    assert needed_scores(TrainConfig(algorithm="policy_split", n=2), gen_modes)["he"] == [0, 1, 2, 3]
    assert needed_scores(TrainConfig(algorithm="grpo", n=2), ["normal", "normal"]) == {"normal": [0, 1]}


# --- rewards ---------------------------------------------------------------------------------


def test_training_rewards_of_a_thinking_model_need_the_closing_think_tag() -> None:
    question = Question(id="q", prompt="What is 2 + 3?", answer="5")
    gated, open_ = get_task("arith", require_think=True), get_task("arith")
    assert open_.grade(question, "The answer is \\boxed{5}.") == 1.0
    assert gated.grade(question, "<think>2 + 3 = 5, so \\boxed{5}") == 0.0  # cut inside the thinking block
    assert gated.grade(question, "<think>maybe 4</think> The answer is \\boxed{5}.") == 1.0
    assert gated.grade(question, "<think>it is \\boxed{5}</think> so \\boxed{4}") == 0.0  # graded after </think>
