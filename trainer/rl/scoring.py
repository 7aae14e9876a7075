"""Packing (prompt, response) pairs into tensors and scoring the response tokens.

The same packing serves the no-grad scoring pass (old log-probs) and the training forward, so
that at ratio = 1 both give bit-identical log-probs. Layout of a packed batch of B rows:

    input_ids (B, P + T) = [left-padded prompt (P) | right-padded response (T)]

so every response starts at column P and ``logits[:, P-1 : P-1+T]`` predict the response tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from trainer.rl.algos import entropy_from_logits


@dataclass
class Packed:
    input_ids: torch.Tensor  # (B, P+T) long
    attention_mask: torch.Tensor  # (B, P+T) long
    position_ids: torch.Tensor  # (B, P+T) long; left padding must not shift positions
    responses: torch.Tensor  # (B, T) long, pad where mask = 0
    response_mask: torch.Tensor  # (B, T) float, 1 on the response's own tokens
    prompt_width: int  # P


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


def response_logits(model: Any, packed: Packed) -> torch.Tensor:
    """Logits that predict each response token: (B, T, V).

    Only the last T+1 positions go through the LM head (``logits_to_keep``): the prompt's logits
    are never needed, and with a 50k vocabulary they would dominate time and memory.
    """
    device = next(model.parameters()).device
    t = packed.responses.shape[1]
    out = model(
        input_ids=packed.input_ids.to(device),
        attention_mask=packed.attention_mask.to(device),
        position_ids=packed.position_ids.to(device),
        use_cache=False,
        logits_to_keep=t + 1,
    )
    return out.logits[:, :t].float()  # (B, T, V): position P-1+j predicts response token j


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log π(token) per position. logits (B, T, V), tokens (B, T) -> (B, T)."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, tokens.unsqueeze(-1).to(logits.device)).squeeze(-1)


@torch.no_grad()
def score(
    model: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_id: int,
    micro_batch_size: int,
    response_width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Old log-probs, full-vocabulary entropies (nats) and masks of the response tokens.

    Returns three (N, T) tensors with T = ``response_width``; padding positions are 0.
    """
    was_training = model.training
    model.eval()  # no dropout in the old-policy pass
    logps, ents, masks = [], [], []
    for start in range(0, len(prompts), micro_batch_size):
        packed = pack(
            prompts[start : start + micro_batch_size],
            responses[start : start + micro_batch_size],
            pad_id=pad_id,
            response_width=response_width,
        )
        logits = response_logits(model, packed)
        mask = packed.response_mask
        logps.append(token_logprobs(logits, packed.responses).cpu() * mask)
        ents.append(entropy_from_logits(logits).cpu() * mask)
        masks.append(mask)
    model.train(was_training)
    return torch.cat(logps), torch.cat(ents), torch.cat(masks)
