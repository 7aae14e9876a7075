"""One step's rollouts, their scores under each context, and the rows the update trains on.

Shapes, for S questions and G pooled responses per question (G = 2n for Policy Split, the first
n from the normal mode; G = n for single-mode algorithms), T = longest response of the step:

    rewards (S, G); logp[ctx], entropy[ctx], mask (S, G, T)

A *row* is one (context, response) pair with its token advantages and old log-probs; Policy
Split with rollout sharing trains 4n rows per question (docs/method.md §3.3), without sharing 2n, and
single-mode algorithms n.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class StepRollouts:
    questions: list  # list[trainer.data.datasets.Question], length S
    prompts: dict[str, list[list[int]]]  # context -> S prompt id lists ("he_q4": HE context for normal rollouts)
    responses: list[list[list[int]]]  # [S][G] token ids (EOS kept)
    gen_modes: list[str]  # length G: the mode that generated pooled response g
    truncated: list[list[bool]]  # [S][G]

    @property
    def group_size(self) -> int:
        return len(self.gen_modes)

    def prompt_for(self, q: int, context: str, g: int) -> list[int]:
        """Prompt ids of question q under ``context`` for pooled response g (Q4 may use its own variant)."""
        if context == "he" and self.gen_modes[g] == "normal" and "he_q4" in self.prompts:
            return self.prompts["he_q4"][q]
        return self.prompts[context][q]


@dataclass
class ContextScores:
    logp: dict[str, torch.Tensor]  # context -> (S, G, T) old log-probs (softmax(z / temperature))
    entropy: dict[str, torch.Tensor]  # context -> (S, G, T) full-vocabulary entropies (nats)
    mask: torch.Tensor  # (S, G, T)
    scored: dict[str, torch.Tensor]  # context -> (G,) bool: which pooled responses were scored under it
    scored_tokens: int = 0  # prompt + response tokens that went through the no-grad pass


@dataclass
class TrainRows:
    prompts: list[list[int]]  # R prompts
    responses: list[list[int]]  # R responses
    old_logp: torch.Tensor | None  # (R, T); None: the update's own first forward provides it
    advantages: torch.Tensor  # (R, T), 0 on padding
    mask: torch.Tensor  # (R, T)
    contexts: list[str]  # R

    def __len__(self) -> int:
        return len(self.prompts)


class RowCollector:
    """Accumulates rows one (context, response) pair at a time; ``build`` stacks them."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.responses: list[list[int]] = []
        self.logp: list[torch.Tensor | None] = []
        self.adv: list[torch.Tensor] = []
        self.mask: list[torch.Tensor] = []
        self.contexts: list[str] = []

    def add(
        self,
        prompt: list[int],
        response: list[int],
        logp: torch.Tensor | None,
        adv: torch.Tensor,
        mask: torch.Tensor,
        context: str,
    ) -> None:
        self.prompts.append(prompt)
        self.responses.append(response)
        self.logp.append(logp)
        self.adv.append(adv)
        self.mask.append(mask)
        self.contexts.append(context)

    def build(self) -> TrainRows:
        known = [lp for lp in self.logp if lp is not None]
        if known and len(known) != len(self.logp):
            raise ValueError("either every row has old log-probs or none does")
        return TrainRows(
            self.prompts,
            self.responses,
            torch.stack(known) if known else None,
            torch.stack(self.adv),
            torch.stack(self.mask),
            self.contexts,
        )


def plan_micro_batches(
    prompt_lens: Sequence[int],
    response_lens: Sequence[int],
    *,
    max_rows: int,
    max_tokens: int,
    min_count: int = 1,
    prompt_keys: Sequence[Hashable] | None = None,
) -> list[list[int]]:
    """Split rows into forward/backward passes of similar length.

    Rows are ordered by (prompt length, prompt, response length), so normal and HE contexts and
    short and long responses stay apart and padding is small, and rows continuing the same prompt
    (``prompt_keys``, e.g. the prompt's token tuple) sit together to share its forward pass
    (``scoring.pack_rows``); then the order is cut into contiguous runs: of at most
    ``max_tokens`` padded tokens (rows × (longest prompt + longest response)) when ``max_tokens`` > 0,
    else of at most ``max_rows`` rows. The largest pass is halved until there are ``min_count``
    passes: under data parallelism every rank must run the same number of forwards (the caller
    agrees on the maximum first). Returns the row indices of each pass; every row appears once.
    """
    n = len(prompt_lens)
    if n == 0:
        return []
    if not 1 <= min_count <= n:
        raise ValueError(f"min_count must be in [1, {n}] for {n} rows, got {min_count}")
    first_seen: dict[Hashable, int] = {}
    group = [first_seen.setdefault(k, len(first_seen)) for k in prompt_keys] if prompt_keys else [0] * n
    order = sorted(range(n), key=lambda i: (prompt_lens[i], group[i], response_lens[i]))
    passes: list[list[int]] = []
    current: list[int] = []
    p_max = t_max = 0
    for i in order:
        p, t = max(p_max, prompt_lens[i]), max(t_max, max(1, response_lens[i]))
        full = len(current) + 1 > max_rows if max_tokens <= 0 else (len(current) + 1) * (p + t) > max_tokens
        if current and full:
            passes.append(current)
            current, p, t = [], prompt_lens[i], max(1, response_lens[i])
        current.append(i)
        p_max, t_max = p, t
    passes.append(current)
    while len(passes) < min_count:
        k = max(range(len(passes)), key=lambda j: len(passes[j]))
        big = passes.pop(k)
        half = len(big) // 2
        passes[k:k] = [big[:half], big[half:]]
    return passes
