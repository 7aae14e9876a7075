"""Markdown in comments: rendered, and never a way to run script in a teammate's browser."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.template import Context, Template

from webapp.review.markdown import render_markdown


def test_it_renders_bold_code_and_lists() -> None:
    html = render_markdown("**bold** and `x < 1`\n\n- one\n- two")
    assert "<strong>bold</strong>" in html
    assert "<code>x &lt; 1</code>" in html
    assert "<li>one</li>" in html


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "  javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
    ],
)
def test_it_renders_dangerous_links_inert(link: str) -> None:
    html = render_markdown(f"[x]({link})")
    assert "href" not in html
    assert "javascript:" not in html.lower()


def test_it_keeps_http_https_mailto_and_relative_links_with_rel() -> None:
    html = render_markdown("[a](https://example.com) [b](http://x.org) [c](mailto:a@b.c) [d](/runs/3/)")
    for href in ("https://example.com", "http://x.org", "mailto:a@b.c", "/runs/3/"):
        assert f'href="{href}"' in html
    assert html.count('rel="nofollow noopener noreferrer"') == 4


def test_it_escapes_raw_html() -> None:
    html = render_markdown("<script>alert(1)</script>\n\n<img src=x onerror=alert(1)> <b onclick=x>hi</b>")
    assert "<script" not in html and "<img" not in html and "<b " not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_it_escapes_html_blocks_and_code_blocks() -> None:
    html = render_markdown("<div>\n<iframe src=//evil></iframe>\n</div>\n\n```\n<b>x</b> & y\n```")
    assert "<div" not in html and "<iframe" not in html
    assert "<pre><code>&lt;b&gt;x&lt;/b&gt; &amp; y" in html


class _Attrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen += [(tag, name) for name, _ in attrs] or [(tag, "")]


def test_it_drops_images_and_event_attributes() -> None:
    parser = _Attrs()
    text = '![a](https://example.com/x.png) [x](https://e.com "a\\" onmouseover=\\"alert(1)")'
    parser.feed(render_markdown(text))
    assert ("img", "src") not in parser.seen and ("img", "") not in parser.seen
    assert {name for _, name in parser.seen} <= {"", "href", "title", "rel"}


def test_the_markdown_filter_renders_safe_html_in_templates() -> None:
    out = Template("{% load psl %}{{ body|markdown }}").render(Context({"body": "**hi** <script>x</script>"}))
    assert "<strong>hi</strong>" in out
    assert "&lt;script&gt;" in out and "<script>" not in out


def test_it_handles_empty_text() -> None:
    assert render_markdown("") == ""
