"""Query-string parameters, read one way by the pages' JSON endpoints and by the API (docs/api.md).

An absent or empty parameter means its default; anything else must be well formed, or the reader
raises ``ParamError`` naming the parameter (the API answers 400 with ``field``, the pages 400 too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.http import QueryDict

from trainer.choices import parse_bool

T = TypeVar("T")


class ParamError(ValueError):
    """A malformed query parameter; ``field`` is its name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def int_param(
    query: QueryDict, name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """``?name=`` as a whole number within [minimum, maximum]; ``default`` when absent or empty."""
    raw = query.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(name, f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if minimum is not None and maximum is not None else ""
        bounds = bounds or (f"≥ {minimum}" if minimum is not None else f"≤ {maximum}")
        raise ParamError(name, f"{name} must be {bounds}, got {value}")
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
