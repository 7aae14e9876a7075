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


def chunk_logprob_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """log-prob of ``targets`` and full-vocabulary entropy (nats) under softmax((h·Wᵀ + b) / T).

    hidden (B, C, H), weight (V, H), bias (V,) or None, targets (B, C) long -> two (B, C) float32 tensors.
    """
    z = torch.nn.functional.linear(hidden, weight, bias).float() / temperature  # (B, C, V), fp32 softmax
    logp_all = torch.log_softmax(z, dim=-1)
    logp = torch.gather(logp_all, -1, targets.unsqueeze(-1)).squeeze(-1)
    p = logp_all.exp()
    # p = 0 where a logit is -inf: 0·(-inf) would be NaN and its true contribution is 0.
    entropy = -(p * logp_all.masked_fill(p == 0, 0.0)).sum(-1)
    return logp, entropy


def token_logprob_entropy(
    model: Any, packed: Packed, *, temperature: float, chunk_tokens: int, grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | c, y_<t) and H_t of every response position: two (B, T) float32 tensors.

    ``chunk_tokens`` positions at a time (0 = all at once). With ``grad`` each chunk goes through
    ``torch.utils.checkpoint``: its (B, C, V) logits are freed after the forward and recomputed in
    the backward, so memory holds one chunk's logits at a time in both directions.
    """
    hidden = response_hidden(model, packed)  # (B, T, H)
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
            lp, en = checkpoint(chunk_logprob_entropy, h, weight, bias, y, temperature, use_reentrant=False)
        else:
            lp, en = chunk_logprob_entropy(h, weight, bias, y, temperature)
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
        packed = pack([prompts[i] for i in idx], [responses[i] for i in idx], pad_id=pad_id)
        lp, en = token_logprob_entropy(model, packed, temperature=temperature, chunk_tokens=chunk_tokens, grad=False)
        m = packed.response_mask
        width = m.shape[1]
        logp[idx, :width] = lp.cpu() * m
        ent[idx, :width] = en.cpu() * m
        mask[idx, :width] = m
    model.train(was_training)
    return logp, ent, mask
