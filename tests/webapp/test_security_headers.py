"""Finding 3 of the security review: a strict Content-Security-Policy and the usual security headers on every
response, no inline script or style in any template (so the policy needs no 'unsafe-inline'), and plotly.js
finding the stylesheet it writes its CSS into (tests/e2e/test_content_security_policy.py checks it in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
PLOTLY_STYLES = TEMPLATES / "webapp" / "partials" / "plotly_styles.html"


@pytest.mark.parametrize("url", ["/login/", "/static/css/app.css", "/api/projects/"])
def test_every_response_carries_the_security_headers(url: str) -> None:
    response = Client().get(url)
    csp = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'self'"  # no inline script, no eval
    assert csp["object-src"] == "'none'" and csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert csp["style-src"] == "'self'"  # no inline <style>, no style attribute (plotly.js included)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_hsts_is_sent_over_https_when_debug_is_off(settings: Any) -> None:
    # What settings.py derives when DEBUG and the demo are off (test_settings checks the derivation).
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = settings.SECURE_HSTS_PRELOAD = True
    response = Client().get("/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_no_template_holds_an_inline_script_event_handler_or_style() -> None:
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"\sstyle\s*=", text), f"{path.name}: inline style attribute (use a CSS class)"
        assert "<style" not in text, f"{path.name}: inline <style> (move it to static/css)"
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"{path.name}: inline <script> (move it to static/js): {tag}"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{path.name}: inline event handler attribute"
        assert "javascript:" not in text, f"{path.name}: javascript: URL"


def test_plotly_finds_an_element_for_each_style_element_it_would_create_and_writes_into_its_sheet() -> None:
    # The ids plotly.js looks up before it appends a <style> (its own rules; the maplibre CSS bundled with it,
    # whose id changes with each release): each must already be on the page, as a stylesheet <link>.
    import plotly

    bundle = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    looked_up = re.findall(r'getElementById\("([0-9a-f]{64})"\)\)\{var \w+=document\.createElement\("style"\)', bundle)
    assert len(looked_up) == 1, "the bundle's inline style elements changed: see plotly_styles.html"
    assert '"plotly.js-style-"+' in bundle and ".sheet;" in bundle and "insertRule(" in bundle
    links = dict(re.findall(r'<link rel="stylesheet" id="([^"]+)" href="([^"]+)">', PLOTLY_STYLES.read_text()))
    assert set(links) == {"plotly.js-style-global", looked_up[0]}
    assert "webapp/partials/plotly_styles.html" in (TEMPLATES / "base.html").read_text()
