"""Search beyond grids, torch-free: random search over ranges and successive halving (ASHA).

A search space maps config fields to a ``Distribution``: ``uniform(a, b)``, ``loguniform(a, b)``,
``randint(a, b)`` (both ends included) or ``choice(v1, v2, …)`` (a plain list of values is a
choice too). ``sample_space`` draws configurations from it with a seeded generator, so the same
space and seed give the same study.

Successive halving here is the asynchronous variant (ASHA, Li et al. 2020): runs execute one
after another on a worker, so a run reaching a rung (a checkpoint step) is compared with every run
that reached that rung before it, and stopped when its metric is worse than the best
``1 / reduction`` of them. The first run at a rung always continues.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

KINDS = ("uniform", "loguniform", "randint", "choice")
MODES = ("max", "min")
_CALL = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.S)


class SearchError(ValueError):
    """A malformed search space or halving setting; the message is shown to the user as is."""


@dataclass(frozen=True)
class Distribution:
    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.args)
        low, high = self.args
        if self.kind == "randint":
            return rng.randint(low, high)
        if self.kind == "loguniform":
            return _round(math.exp(rng.uniform(math.log(low), math.log(high))))
        return _round(rng.uniform(low, high))

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(_text(a) for a in self.args)})"


def _round(value: float) -> float:
    """Six significant digits: what a person would type, and stable in run names and tables."""
    return float(f"{value:.6g}")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _scalar(raw: str) -> Any:
    value = yaml.safe_load(raw) if raw.strip() else raw
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_distribution(text: str) -> Distribution:
    """``uniform(0.01, 0.1)`` / ``loguniform(1e-6, 1e-4)`` / ``randint(2, 8)`` / ``choice(a, b)`` / ``a, b``."""
    match = _CALL.match(text)
    kind, raw_args = match.groups() if match else ("choice", text)
    if kind not in KINDS:
        raise SearchError(f"unknown distribution {kind!r}; use {', '.join(KINDS)} or a list of values")
    args = tuple(_scalar(a.strip()) for a in raw_args.split(",") if a.strip())
    if kind == "choice":
        if not args:
            raise SearchError("choice needs at least one value")
        return Distribution(kind, args)
    if len(args) != 2 or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise SearchError(f"{kind} needs two numbers: {kind}(low, high)")
    low, high = args
    if low >= high:
        raise SearchError(f"{kind}: low must be below high, got {_text(low)} ≥ {_text(high)}")
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        raise SearchError("randint needs two integers")
    if kind == "loguniform" and low <= 0:
        raise SearchError("loguniform needs low > 0")
    if kind == "randint":
        return Distribution(kind, (int(low), int(high)))
    return Distribution(kind, (float(low), float(high)))


def sample_space(space: Mapping[str, Distribution], samples: int, *, seed: int) -> list[dict[str, Any]]:
    """``samples`` configurations drawn from ``space`` (field order kept), without repeating one."""
    rng = random.Random(seed)
    drawn: list[dict[str, Any]] = []
    for _ in range(samples * 20):  # a small discrete space may hold fewer distinct points
        point = {name: dist.sample(rng) for name, dist in space.items()}
        if point not in drawn:
            drawn.append(point)
        if len(drawn) == samples:
            break
    return drawn


# --- successive halving -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Halving:
    """Stop the worst runs at each rung: ``metric`` (a logged key) at the rung's step, ``mode`` max or
    min is better, the best ``1 / reduction`` of the runs that reached a rung continue."""

    metric: str
    rungs: tuple[int, ...]
    mode: str = "max"
    reduction: int = 2

    def __post_init__(self) -> None:
        if not self.metric.strip():
            raise SearchError("successive halving needs the metric it ranks runs by")
        if self.mode not in MODES:
            raise SearchError(f"mode must be max or min, got {self.mode!r}")
        if self.reduction < 2:
            raise SearchError(f"reduction must be ≥ 2, got {self.reduction}")
        if not self.rungs or any(r <= 0 for r in self.rungs) or list(self.rungs) != sorted(set(self.rungs)):
            raise SearchError("rungs must be increasing positive steps, e.g. 2, 4")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "rungs": list(self.rungs), "mode": self.mode, "reduction": self.reduction}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Halving:
        return cls(str(data["metric"]), tuple(int(r) for r in data["rungs"]), str(data["mode"]), int(data["reduction"]))


def halving_cutoff(recorded: Sequence[float], *, reduction: int, mode: str) -> float | None:
    """The value a run must reach at a rung to continue, given what earlier runs recorded there;
    None when nothing was recorded yet (the first run always continues)."""
    values = sorted((v for v in recorded if math.isfinite(v)), reverse=mode == "max")
    if not values:
        return None
    keep = max(1, len(values) // reduction)  # the best 1/reduction of the runs before it
    return values[keep - 1]


def halving_stops(value: float, recorded: Sequence[float], *, reduction: int, mode: str) -> tuple[bool, float | None]:
    """Whether a run with ``value`` at a rung is stopped, and the cutoff it was compared with."""
    cutoff = halving_cutoff(recorded, reduction=reduction, mode=mode)
    if cutoff is None:
        return False, None
    if not math.isfinite(value):
        return True, cutoff
    return (value < cutoff if mode == "max" else value > cutoff), cutoff
