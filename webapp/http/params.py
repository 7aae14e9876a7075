"""Query-string parameters, read one way by the pages' JSON endpoints and by the API (docs/api.md).

An absent or empty parameter means its default; anything else must be well formed, or the reader
raises ``ParamError`` naming the parameter (the API answers 400 with ``field``, the pages 400 too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.http import QueryDict

from trainer.choices import parse_bool
from trainer.config import MAX_BIGINT, text_problem

T = TypeVar("T")


class ParamError(ValueError):
    """A malformed query parameter; ``field`` is its name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def int_param(
    query: QueryDict, name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """``?name=`` as a whole number within [minimum, maximum] (at most a bigint either way);
    ``default`` when absent or empty."""
    raw = query.get(name, "").strip()
    if raw == "":
        return default
    if len(raw) > 30:  # longer than any bigint: int() of a huge string is slow, and it cannot fit
        raise ParamError(name, f"{name} must be an integer between {-MAX_BIGINT} and {MAX_BIGINT}")
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(name, f"{name} must be an integer, got {raw!r}") from None
    low = -MAX_BIGINT if minimum is None else minimum
    high = MAX_BIGINT if maximum is None else maximum
    if value < low or value > high:
        bounds = f"between {minimum} and {maximum}" if minimum is not None and maximum is not None else ""
        bounds = bounds or (f"≥ {minimum}" if minimum is not None else f"≤ {maximum}" if maximum is not None else "")
        raise ParamError(name, f"{name} must be {bounds or f'between {low} and {high}'}, got {value}")
    return value


def check_query(query: QueryDict) -> None:
    """Every query parameter's name and values must be storable text of at most MAX_TEXT characters
    (trainer.config.text_problem: no NUL, no lone surrogate), whatever reads it later."""
    for name, values in query.lists():
        for text in (name, *values):
            if problem := text_problem(text):
                raise ParamError(name if text_problem(name) is None else "query", f"{name[:50]}: {problem}")


def check_text(field: str, value: object, *, max_length: int) -> str:
    """``value`` as text for ``field`` (a run name, a tag, …), else ParamError naming the field."""
    if not isinstance(value, str):
        raise ParamError(field, f"{field} must be a string, got {type(value).__name__}")
    if problem := text_problem(value, max_length=max_length):
        raise ParamError(field, f"{field} {problem}")
    return value


def bool_param(query: QueryDict, name: str, default: bool = False) -> bool:
    """``?name=`` as a boolean (trainer.choices.BOOL_WORDS); ``default`` when absent or empty."""
    raw = query.get(name, "").strip()
    if raw == "":
        return default
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise ParamError(name, f"{name} must be a boolean: {exc}") from None


def or_default(read: Callable[[QueryDict, str, T], T], query: QueryDict, name: str, default: T) -> T:
    """``read(query, name, default)``, with a malformed value read as the default (permalink state)."""
    try:
        return read(query, name, default)
    except ParamError:
        return default


def choice_param(query: QueryDict, name: str, choices: tuple[str, ...], default: str) -> str:
    """``?name=`` as one of ``choices``; ``default`` when absent or empty."""
    raw = query.get(name, "").strip()
    if raw == "":
        return default
    if raw not in choices:
        raise ParamError(name, f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw
