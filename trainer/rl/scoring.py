"""Packing (prompt, response) pairs into tensors and scoring the response tokens.

The same packing and the same scoring function serve the no-grad pass (old log-probs) and the
training forward, so that at ratio = 1 both give bit-identical log-probs. Layout of a packed batch
of B rows:

    input_ids (B, P + T) = [left-padded prompt (P) | right-padded response (T)]

so every response starts at column P and the hidden states at columns P-1 … P-2+T predict the
response tokens.

Log-probs and entropies are those of the *sampling* distribution softmax(z / temperature), as in
verl: the PPO ratio and the HE bonus must describe the distribution that produced the tokens.
They are computed from the final hidden states in chunks of positions, so the full (B, T, V)
logits never exist at once (at T = 12,288 and V = 151,936 they would be ~7.5 GB per row); with
gradient, each chunk is recomputed in the backward pass instead of being stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint


@dataclass
class Packed:
    input_ids: torch.Tensor  # (B, P+T) long
    attention_mask: torch.Tensor  # (B, P+T) long
    position_ids: torch.Tensor  # (B, P+T) long; left padding must not shift positions
    responses: torch.Tensor  # (B, T) long, pad where mask = 0
    response_mask: torch.Tensor  # (B, T) float, 1 on the response's own tokens
    prompt_width: int  # P

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.numel())


def pack(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    response_width: int | None = None,
) -> Packed:
    """Pack pairs; ``response_width`` pads every response to a fixed T (defaults to the longest)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    p_width = max(len(p) for p in prompts)
    t_width = response_width or max(1, max(len(r) for r in responses))
    b = len(prompts)
    ids = torch.full((b, p_width + t_width), pad_id, dtype=torch.long)
    attn = torch.zeros((b, p_width + t_width), dtype=torch.long)
    resp_mask = torch.zeros((b, t_width), dtype=torch.float32)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        r = list(r)[:t_width]
        ids[i, p_width - len(p) : p_width] = torch.tensor(list(p), dtype=torch.long)
        attn[i, p_width - len(p) : p_width] = 1
        if r:
            ids[i, p_width : p_width + len(r)] = torch.tensor(r, dtype=torch.long)
            attn[i, p_width : p_width + len(r)] = 1
            resp_mask[i, : len(r)] = 1.0
    position_ids = (attn.cumsum(dim=1) - 1).clamp(min=0)
    return Packed(ids, attn, position_ids, ids[:, p_width:], resp_mask, p_width)


@dataclass
class SharedPacked:
    """Rows whose prompts repeat (a question's 2n responses under one context): each distinct prompt
    is packed once and its key/value cache is shared by the rows that continue it.

        prompt_ids (U, P) left-padded distinct prompts; row_prompt (B,) which prompt each row continues
        responses (B, T) right-padded; response_attention (B, P + T) = [its prompt's mask | response mask]
    """

    prompt_ids: torch.Tensor  # (U, P) long
    prompt_mask: torch.Tensor  # (U, P) long
    prompt_positions: torch.Tensor  # (U, P) long
    row_prompt: torch.Tensor  # (B,) long, index into the U prompts
    responses: torch.Tensor  # (B, T) long, pad where mask = 0
    response_mask: torch.Tensor  # (B, T) float
    response_attention: torch.Tensor  # (B, P + T) long
    response_positions: torch.Tensor  # (B, T) long: each row continues its own prompt's positions

    @property
    def padded_tokens(self) -> int:
        return int(self.prompt_ids.numel() + self.responses.numel())


def pack_rows(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    share_prompts: bool,
    uniform: bool = False,
) -> Packed | SharedPacked:
    """``SharedPacked`` when ``share_prompts`` and some prompt repeats, else the plain ``Packed`` layout.

    ``uniform``: with ``share_prompts``, ``SharedPacked`` even when no prompt repeats, so the layout
    (and the number of model calls it takes) does not depend on the rows (see ``calls_are_collective``).
    """
    distinct: dict[tuple[int, ...], int] = {}
    row_prompt = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
    if not share_prompts or (len(distinct) == len(prompts) and not uniform):
        return pack(prompts, responses, pad_id=pad_id)
    unique = list(distinct)
    p_width = max(len(p) for p in unique)
    t_width = max(1, max(len(r) for r in responses))
    u, b = len(unique), len(responses)
    prompt_ids = torch.full((u, p_width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((u, p_width), dtype=torch.long)
    for i, p in enumerate(unique):
        prompt_ids[i, p_width - len(p) :] = torch.tensor(p, dtype=torch.long)
        prompt_mask[i, p_width - len(p) :] = 1
    resp_ids = torch.full((b, t_width), pad_id, dtype=torch.long)
    resp_mask = torch.zeros((b, t_width), dtype=torch.float32)
    for i, r in enumerate(responses):
        if r:
            resp_ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
            resp_mask[i, : len(r)] = 1.0
    index = torch.tensor(row_prompt, dtype=torch.long)
    lengths = prompt_mask.sum(1)[index]  # (B,) real prompt lengths
    return SharedPacked(
        prompt_ids,
        prompt_mask,
        (prompt_mask.cumsum(1) - 1).clamp(min=0),
        index,
        resp_ids,
        resp_mask,
        torch.cat([prompt_mask[index], resp_mask.long()], dim=1),
        lengths.unsqueeze(1) + torch.arange(t_width).unsqueeze(0),
    )


def head_of(model: Any) -> torch.nn.Module:
    """The LM head (output embedding) of a causal LM, through a DistributedDataParallel wrapper."""
    inner = getattr(model, "module", model)
    head: torch.nn.Module = inner.get_output_embeddings()
    return head


def response_hidden(model: Any, packed: Packed) -> torch.Tensor:
    """Final (post-norm) hidden states that predict each response token: (B, T, H).

    The model's own forward runs (so FSDP gathers its root parameters and DDP sees the call); the
    LM head is applied to a single position there (``logits_to_keep=1``), and by us, chunk by
    chunk, to the positions that matter.
    """
    device = next(model.parameters()).device
    t = packed.responses.shape[1]
    out = model(
        input_ids=packed.input_ids.to(device),
        attention_mask=packed.attention_mask.to(device),
        position_ids=packed.position_ids.to(device),
        use_cache=False,
        logits_to_keep=1,
        output_hidden_states=True,
    )
    p = packed.prompt_width
    return out.hidden_states[-1][:, p - 1 : p - 1 + t]  # position P-1+j predicts response token j


def can_share_prompts(model: Any, *, grad: bool) -> bool:
    """Prompt sharing works everywhere except under activation checkpointing with gradients: a
    checkpointed layer re-runs in the backward pass, and the re-run would append to the shared
    cache. Long-response runs (where checkpointing matters) have little prompt to share anyway."""
    inner = getattr(model, "module", model)
    return not (grad and getattr(inner, "is_gradient_checkpointing", False))


def calls_are_collective(model: Any) -> bool:
    """True for an FSDP2-sharded model: each call of its root all-gathers every layer's parameters
    and the backward of each call reduce-scatters their gradients, so every rank must call it as
    often as the others whatever rows it holds. A pass laid out by its own rows (``Packed``: one
    call; ``SharedPacked``: a prompt call and a response call) then differs between ranks as soon
    as one rank's pass holds a repeated prompt and another's does not (prompts of other lengths
    sort differently), and the ranks' collectives pair up wrongly: the backward deadlocks with one
    rank in a reduce-scatter and the other in an all-gather. Such a model gets one layout always.
    """
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shared_response_hidden(model: Any, sp: SharedPacked) -> torch.Tensor:
    """``response_hidden`` for rows that share prompts: (B, T, H).

    The distinct prompts go through the model once (with their KV cache kept), the cache is
    gathered to the rows, and the responses go through attending to it; gradients flow through the
    cache into the prompts' forward. The state predicting response token 0 is the prompt's last
    one; token j > 0 is predicted by the response's state at j-1. Under DDP the prompt pass uses
    the module inside (one wrapped forward per backward is what DDP expects); every parameter
    still gets its gradient through the response pass.
    """
    from transformers import DynamicCache

    inner = getattr(model, "module", model)
    device = next(model.parameters()).device
    out = inner(
        input_ids=sp.prompt_ids.to(device),
        attention_mask=sp.prompt_mask.to(device),
        position_ids=sp.prompt_positions.to(device),
        use_cache=True,
        logits_to_keep=1,
        output_hidden_states=True,
    )
    index = sp.row_prompt.to(device)
    cache: Any = out.past_key_values
    if not isinstance(cache, DynamicCache):
        raise TypeError(
            f"{type(inner).__name__} returned a {type(cache).__name__}; prompt sharing needs a DynamicCache"
        )
    layers: list[Any] = list(cache.layers)
    if not all(getattr(layer, "keys", None) is not None for layer in layers):
        raise TypeError(f"{type(inner).__name__}'s cache has layers without keys/values (linear attention?)")
    for layer in layers:  # (U, heads, P, d) -> (B, heads, P, d)
        layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
    res = model(
        input_ids=sp.responses.to(device),
        attention_mask=sp.response_attention.to(device),
        position_ids=sp.response_positions.to(device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
        output_hidden_states=True,
    )
    first = out.hidden_states[-1][:, -1:].index_select(0, index)  # (B, 1, H): predicts response token 0
    return torch.cat([first, res.hidden_states[-1][:, :-1]], dim=1)


def chunk_logprob_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log-prob of ``targets`` and full-vocabulary entropy (nats) under softmax((h·Wᵀ + b) / T).

    hidden (B, C, H), weight (V, H), bias (V,) or None, targets (B, C) long -> two (B, C) float32 tensors.
    Without ``entropy_grad`` the entropy is a plain number: its branch saves nothing for backward
    (under a checkpointed chunk those tensors, p, masked log p and the p == 0 mask, would be
    recomputed in the backward pass and never used: 2.25 (B, C, V) float32 copies per chunk).
    """
    z = torch.nn.functional.linear(hidden, weight, bias).float() / temperature  # (B, C, V), fp32 softmax
    logp_all = torch.log_softmax(z, dim=-1)
    logp = torch.gather(logp_all, -1, targets.unsqueeze(-1)).squeeze(-1)
    with contextlib.nullcontext() if entropy_grad else torch.no_grad():
        p = logp_all.exp()
        # p = 0 where a logit is -inf: 0·(-inf) would be NaN and its true contribution is 0.
        entropy = -(p * logp_all.masked_fill(p == 0, 0.0)).sum(-1)
    return logp, entropy


def token_logprob_entropy(
    model: Any,
    packed: Packed | SharedPacked,
    *,
    temperature: float,
    chunk_tokens: int,
    grad: bool,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | c, y_<t) and H_t of every response position: two (B, T) float32 tensors.

    ``chunk_tokens`` positions at a time (0 = all at once). With ``grad`` each chunk goes through
    ``torch.utils.checkpoint``: its (B, C, V) logits are freed after the forward and recomputed in
    the backward, so memory holds one chunk's logits at a time in both directions. ``entropy_grad``
    False: the entropy comes without gradient (losses that only read it).
    """
    if isinstance(packed, SharedPacked):
        hidden = shared_response_hidden(model, packed)  # (B, T, H)
    else:
        hidden = response_hidden(model, packed)
    head = head_of(model)
    weight: torch.Tensor = head.weight  # type: ignore[assignment]  # nn.Module attributes are untyped
    bias: torch.Tensor | None = getattr(head, "bias", None)
    targets = packed.responses.to(hidden.device)
    t = hidden.shape[1]
    step = chunk_tokens if chunk_tokens > 0 else t
    logps, ents = [], []
    for start in range(0, t, step):
        h, y = hidden[:, start : start + step], targets[:, start : start + step]
        if grad and torch.is_grad_enabled():
            lp, en = checkpoint(
                chunk_logprob_entropy, h, weight, bias, y, temperature, entropy_grad, use_reentrant=False
            )
        else:
            lp, en = chunk_logprob_entropy(h, weight, bias, y, temperature, entropy_grad)
        logps.append(lp)
        ents.append(en)
    return torch.cat(logps, dim=1), torch.cat(ents, dim=1)


@torch.no_grad()
def check_head_reads_last_hidden(model: Any) -> None:
    """Fail at set-up, not with wrong numbers, for an architecture whose logits are not the LM head
    applied to the last hidden state (e.g. logit soft-capping or scaling in the model's forward)."""
    device = next(model.parameters()).device
    ids = torch.arange(1, 5, device=device).unsqueeze(0)  # (1, 4)
    out = model(input_ids=ids, use_cache=False, logits_to_keep=1, output_hidden_states=True)
    mine = head_of(model)(out.hidden_states[-1][:, -1:])
    if not torch.allclose(mine.float(), out.logits.float(), atol=1e-3, rtol=1e-3):
        name = type(getattr(model, "module", model)).__name__
        raise ValueError(
            f"{name}: its logits are not lm_head(last hidden state) (soft-capping or logit scaling?); "
            "chunked scoring cannot be used with this architecture"
        )


@torch.no_grad()
def score(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    micro_batches: Sequence[Sequence[int]],
    response_width: int,
    temperature: float,
    chunk_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Old log-probs, entropies (nats) and masks of the response tokens, under softmax(z / T).

    ``micro_batches`` lists the row indices of each forward pass (see ``batch.plan_micro_batches``:
    similar lengths together, and the same number of passes on every rank). Returns three (N, T)
    tensors with T = ``response_width``, in row order; padding positions are 0.
    """
    was_training = model.training
    model.eval()  # no dropout in the old-policy pass
    n = len(prompts)
    logp = torch.zeros(n, response_width)
    ent = torch.zeros(n, response_width)
    mask = torch.zeros(n, response_width)
    for idx in micro_batches:
        packed = pack_rows(
            [prompts[i] for i in idx],
            [responses[i] for i in idx],
            pad_id=pad_id,
            share_prompts=True,
            uniform=calls_are_collective(model),
        )
        lp, en = token_logprob_entropy(model, packed, temperature=temperature, chunk_tokens=chunk_tokens, grad=False)
        m = packed.response_mask
        width = m.shape[1]
        logp[idx, :width] = lp.cpu() * m
        ent[idx, :width] = en.cpu() * m
        mask[idx, :width] = m
    model.train(was_training)
    return logp, ent, mask
