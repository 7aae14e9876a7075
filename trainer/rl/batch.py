"""One step's rollouts, their scores under each context, and the rows the update trains on.

Shapes, for S questions and G pooled responses per question (G = 2n for Policy Split, the first
n from the normal mode; G = n for single-mode algorithms), T = longest response of the step:

    rewards (S, G); logp[ctx], entropy[ctx], mask (S, G, T)

A *row* is one (context, response) pair with its token advantages and old log-probs; Policy
Split with rollout sharing trains 4n rows per question (docs/method.md §3.3), without sharing 2n, and
single-mode algorithms n.
"""

from __future__ import annotations

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
    logp: dict[str, torch.Tensor]  # context -> (S, G, T) old log-probs
    entropy: dict[str, torch.Tensor]  # context -> (S, G, T) full-vocabulary entropies (nats)
    mask: torch.Tensor  # (S, G, T)


@dataclass
class TrainRows:
    prompts: list[list[int]]  # R prompts
    responses: list[list[int]]  # R responses
    old_logp: torch.Tensor  # (R, T)
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
        self.logp: list[torch.Tensor] = []
        self.adv: list[torch.Tensor] = []
        self.mask: list[torch.Tensor] = []
        self.contexts: list[str] = []

    def add(
        self,
        prompt: list[int],
        response: list[int],
        logp: torch.Tensor,
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
        return TrainRows(
            self.prompts,
            self.responses,
            torch.stack(self.logp),
            torch.stack(self.adv),
            torch.stack(self.mask),
            self.contexts,
        )
