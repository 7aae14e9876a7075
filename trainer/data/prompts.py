"""Chat prompts for the two modes (docs/method.md §2, §3.1).

Normal mode is a single user turn; HE mode is the same user turn behind a real system turn that
holds the high-entropy instruction. Prompts are built with the tokenizer's own chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.choices import MODES

# docs/method.md §2: exact text, straight ASCII quotes, one paragraph, no trailing newline.
HE_SYSTEM_PROMPT = (
    'You are now in the "High Entropy" mode. Your primary directive is to explore a unique thought '
    "process and perspective before arriving at a final answer. Do not rely solely on your typical, "
    "most direct reasoning path. Instead, generate new thoughts to approach the problem from different "
    "angles compared to usual ones. Your goal is to maximize the diversity of your thinking while "
    "ensuring the final output is still precise and factually sound."
)


def build_messages(question: str, mode: str, *, q4_context: str = "paper") -> list[dict[str, str]]:
    """The chat messages of one prompt.

    ``q4_context="released_code"`` reproduces the released code's malformed HE context (docs/method.md §3.3,
    §13 Q3): the system prompt is pasted as text inside the user turn instead of a system turn.
    """
    if mode == "normal":
        return [{"role": "user", "content": question}]
    if mode != "he":
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if q4_context == "released_code":
        return [{"role": "user", "content": f"system\n{HE_SYSTEM_PROMPT}\nuser\n{question}"}]
    return [{"role": "system", "content": HE_SYSTEM_PROMPT}, {"role": "user", "content": question}]


def encode_prompts(
    tokenizer: Any,
    questions: Sequence[str],
    mode: str,
    *,
    max_prompt_length: int,
    enable_thinking: bool = False,
    q4_context: str = "paper",
) -> list[list[int]]:
    """Token ids of each question's prompt in ``mode`` (generation prompt appended).

    Prompts longer than ``max_prompt_length`` are cut from the left (keeping the generation
    suffix, unlike the released code's right-side truncation, which could cut it off).
    """
    out = []
    for q in questions:
        ids = tokenizer.apply_chat_template(
            build_messages(q, mode, q4_context=q4_context),
            add_generation_prompt=True,
            tokenize=True,
            enable_thinking=enable_thinking,
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        out.append(list(ids)[-max_prompt_length:])
    return out


def control_token_ids(tokenizer: Any) -> frozenset[int]:
    """The ids a response's text never shows: EOS, pad and the chat-control tokens (``<|im_end|>``),
    i.e. every special token that ``decode(..., skip_special_tokens=True)`` drops."""
    added = getattr(tokenizer, "added_tokens_decoder", {})
    return frozenset(tokenizer.all_special_ids) | {i for i, tok in added.items() if tok.special}
