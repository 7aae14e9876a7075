"""Markdown for review comments, rendered safely.

Comments are written by users and shown to their whole team, so they are untrusted. Raw HTML is
never interpreted: Python-Markdown's HTML parsers are switched off, so ``<script>`` comes out as
literal text. The result is then sanitised with nh3 (an allow-list of tags and attributes, links
only to http/https/mailto or relative URLs) as a second line of defence.
"""

from __future__ import annotations

import threading

import markdown as md_lib
import nh3
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "nofollow noopener noreferrer"

_local = threading.local()


def _converter() -> md_lib.Markdown:
    # A Markdown instance keeps state between calls and is not thread-safe: one per thread.
    conv = getattr(_local, "converter", None)
    if conv is None:
        conv = md_lib.Markdown(extensions=["fenced_code", "sane_lists", "tables"])
        conv.preprocessors.deregister("html_block")
        conv.inlinePatterns.deregister("html")
        _local.converter = conv
    return conv


def render_markdown(text: str) -> SafeString:
    """Markdown → sanitised HTML, safe to insert into a page as is."""
    html = _converter().reset().convert(text or "")
    clean = nh3.clean(
        html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES, link_rel=LINK_REL
    )
    return mark_safe(clean)  # sanitised by nh3 just above
