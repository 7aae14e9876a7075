"""Template helpers (``{% load psl %}``): ``|markdown``, the surprisal colour scale, small formatters."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from django import template
from django.utils.safestring import SafeString

from webapp.review.markdown import render_markdown

register = template.Library()

# Upper edges (nats) of the heatmap buckets h0…h9. Most tokens of a trained model sit below 1 nat,
# so the scale is roughly logarithmic: fine steps where the mass is, coarse ones in the tail.
SURPRISAL_EDGES = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Background of each bucket (the CSS classes .h0…h9 use the same colours).
SURPRISAL_COLORS = (
    "transparent",
    "#fff9db",
    "#fff3bf",
    "#ffec99",
    "#ffd8a8",
    "#ffc078",
    "#ffa94d",
    "#ff8787",
    "#fa5252",
    "#e03131",
)


@register.filter(name="markdown")
def markdown_filter(value: str) -> SafeString:
    """Render a comment body: ``{{ comment.body|markdown }}`` (sanitised, safe to output)."""
    return render_markdown(str(value or ""))


# The auto scale: bucket edges at these percentiles of the surprisals in view, so a view whose
# tokens all sit at 8–10 nats (an untrained model) is not one saturated red, nor a trained model's
# 0–1 nats one pale yellow. Fewer tokens than AUTO_MIN_TOKENS keep the fixed edges.
AUTO_PERCENTILES = (10, 25, 40, 55, 70, 80, 88, 94, 98)
AUTO_MIN_TOKENS = 20
HEAT_SCALES = ("auto", "fixed")


def surprisal_bucket(value: float | None, edges: Sequence[float] = SURPRISAL_EDGES) -> int:
    """Heatmap bucket 0…9 of a surprisal in nats (None or negative counts as 0)."""
    if value is None or value != value or value <= 0:  # value != value: NaN
        return 0
    return bisect.bisect_right(edges, value)


def auto_edges(values: Iterable[float]) -> tuple[float, ...]:
    """Nine increasing bucket edges at AUTO_PERCENTILES of ``values`` (the fixed ones when too few)."""
    data = sorted(v for v in values if v == v and v > 0)
    if len(data) < AUTO_MIN_TOKENS:
        return SURPRISAL_EDGES
    edges: list[float] = []
    for p in AUTO_PERCENTILES:
        at = (len(data) - 1) * p / 100
        lo = int(at)
        value = data[lo] + (data[min(lo + 1, len(data) - 1)] - data[lo]) * (at - lo)
        # Rounded for the legend, and kept strictly increasing when the values bunch up.
        edge = round(max(value, edges[-1] + 0.01 if edges else 0.01), 2)
        edges.append(edge)
    return tuple(edges)


@register.filter(name="surprisal_bucket")
def surprisal_bucket_filter(value: float | None) -> int:
    return surprisal_bucket(value)


@register.filter
def surprisal_color(value: float | None) -> str:
    """Background colour of a token with this surprisal (nats), for inline use outside the heatmap."""
    return SURPRISAL_COLORS[surprisal_bucket(value)]


@register.filter
def signed(value: float | None, digits: int = 2) -> str:
    """+0.52 / −1.30: a number with an explicit sign (advantages)."""
    if value is None:
        return "–"
    text = f"{abs(value):.{int(digits)}f}"
    return ("+" if value >= 0 else "−") + text


@register.filter
def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"
