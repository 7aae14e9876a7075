"""Rollout backends: turn prompt token ids into sampled response token ids.

Both backends return the same schema, ``Generations``: for each prompt, ``n`` responses as token
id lists that end with the EOS token when the model stopped by itself (docs/method.md §0: shared
responses reuse these ids verbatim). The vLLM backend (``trainer/rollout/vllm_engine.py``) is imported
lazily and only when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    n: int
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0


@dataclass
class Generations:
    """responses[i][j] = token ids of the j-th response to prompt i (EOS kept when produced)."""

    responses: list[list[list[int]]]
    truncated: list[list[bool]]

    def flat(self) -> list[list[int]]:
        return [r for per_prompt in self.responses for r in per_prompt]

    @property
    def num_tokens(self) -> int:
        return sum(len(r) for r in self.flat())


class RolloutBackend(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Generations: ...

    def sync_weights(self, model: Any) -> None:
        """Make the engine sample from ``model``'s current weights (called after each optimizer step)."""


class TransformersBackend:
    """``model.generate`` on the training model itself: no weight sync needed."""

    def __init__(
        self, model: Any, tokenizer: Any, *, batch_size: int = 32, synced: bool = False, share_prefill: bool = True
    ) -> None:
        self.model = model
        self.share_prefill = share_prefill
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # Under FSDP every rank must run the same number of forwards: ranks that finish early keep
        # stepping (transformers' synced_gpus) until the slowest rank is done.
        self.synced = synced
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def sync_weights(self, model: Any) -> None:
        self.model = model

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Generations:
        torch.manual_seed(params.seed)
        per_chunk = max(1, self.batch_size // params.n)
        # Chunks of similar prompt length: an HE prompt is ~85 tokens longer than a normal one,
        # and mixing them would make every normal row carry that much left padding.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        responses: list[list[list[int]]] = [[] for _ in prompts]
        truncated: list[list[bool]] = [[] for _ in prompts]
        for start in range(0, len(order), per_chunk):
            idx = order[start : start + per_chunk]
            r, t = self._generate_chunk([prompts[i] for i in idx], params)
            for i, ri, ti in zip(idx, r, t, strict=True):
                responses[i], truncated[i] = ri, ti
        return Generations(responses, truncated)

    def _generate_chunk(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams
    ) -> tuple[list[list[list[int]]], list[list[bool]]]:
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, p in enumerate(prompts):  # left padding: every generation starts at column `width`
            input_ids[i, width - len(p) :] = torch.tensor(p)
            attention[i, width - len(p) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        was_training = self.model.training
        self.model.eval()
        n = params.n
        cache = None
        if self.share_prefill and n > 1 and width > 1:
            cache = self._shared_prefill(input_ids, attention, n)
            input_ids, attention, n = input_ids.repeat_interleave(n, 0), attention.repeat_interleave(n, 0), 1
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            past_key_values=cache,
            do_sample=True,
            temperature=params.temperature,
            top_k=params.top_k or None,
            top_p=params.top_p,
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=n,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
            synced_gpus=self.synced,
        )
        self.model.train(was_training)
        new_tokens = out[:, width:].tolist()  # (len(prompts)·n, ≤ max_new_tokens)
        responses, truncated = [], []
        for i in range(len(prompts)):
            rows = [_cut_at_eos(new_tokens[i * params.n + j], self.eos_ids) for j in range(params.n)]
            responses.append([ids for ids, _ in rows])
            truncated.append([cut for _, cut in rows])
        return responses, truncated

    def _shared_prefill(self, input_ids: torch.Tensor, attention: torch.Tensor, n: int) -> Any:
        """The KV cache of every prompt but its last token, computed once per prompt and repeated for
        its ``n`` responses (``generate``'s num_return_sequences would run each prompt's prefill ``n``
        times: at 16 rollouts of a 116-token HE prompt that is most of a short rollout's compute).

        ``generate`` then feeds only the last prompt token. Positions follow ``generate``'s own rule
        for left padding (cumulative sum of the attention mask), so the result is the same
        distribution — the same tokens under greedy decoding (tested).
        """
        from transformers import DynamicCache  # transformers is imported by the model already

        cache = DynamicCache(config=self.model.config)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        self.model(
            input_ids=input_ids[:, :-1],
            attention_mask=attention[:, :-1],
            position_ids=positions[:, :-1],
            past_key_values=cache,
            use_cache=True,
        )
        cache.batch_repeat_interleave(n)
        return cache


def _cut_at_eos(ids: list[int], eos_ids: list[int]) -> tuple[list[int], bool]:
    """Keep tokens up to and including the first EOS; report whether the response was truncated."""
    for k, tok in enumerate(ids):
        if tok in eos_ids:
            return ids[: k + 1], False
    return ids, True


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    ids = eos if isinstance(eos, list) else [eos]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return [int(i) for i in ids]


def make_backend(
    name: str, model: Any, tokenizer: Any, *, synced: bool = False, config: Any = None, **kwargs: Any
) -> RolloutBackend:
    """The rollout backend ``name``; vLLM takes its engine knobs from ``config`` (a TrainConfig) when given."""
    if name == "transformers":
        return TransformersBackend(model, tokenizer, synced=synced)
    if name == "vllm":
        from trainer.rollout.vllm_engine import VllmBackend  # lazy: vLLM is an optional GPU extra

        if config is not None:
            return VllmBackend.from_config(model, tokenizer, config)
        return VllmBackend(model, tokenizer, **kwargs)
    raise ValueError(f"unknown rollout backend {name!r}; valid: transformers, vllm")
