"""Template helpers (``{% load psl %}``): ``|markdown``, the surprisal colour scale, small formatters."""

from __future__ import annotations

import bisect

from django import template
from django.utils.safestring import SafeString

from webapp.markdown import render_markdown

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


def surprisal_bucket(value: float | None) -> int:
    """Heatmap bucket 0…9 of a surprisal in nats (None or negative counts as 0)."""
    if value is None or value != value or value <= 0:  # value != value: NaN
        return 0
    return bisect.bisect_right(SURPRISAL_EDGES, value)


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
