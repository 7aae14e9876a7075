"""Finding 4 of the security review: the API tokens page follows post/redirect/get, the secret is shown once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from webapp.models import ApiToken

pytestmark = pytest.mark.django_db


def test_creating_a_token_redirects_and_the_secret_is_shown_on_the_next_page_only(
    client_for: Callable[[Any], Any], bob: Any
) -> None:
    client = client_for(bob)
    url = reverse("webapp-tokens")
    response = client.post(url, {"name": "notebook"})
    assert response.status_code == 302 and response["Location"] == url
    assert "psl_" not in response.content.decode()
    page = client.get(url)
    raw = page.context["raw"]
    assert raw.startswith("psl_") and raw in page.content.decode()
    assert ApiToken.objects.get(user=bob).digest == ApiToken.hash(raw)
    assert "no-store" in page["Cache-Control"]
    again = client.get(url)  # a refresh: no new token, and the secret is gone
    assert again.context["raw"] is None and raw not in again.content.decode()
    assert ApiToken.objects.filter(user=bob).count() == 1


def test_one_users_new_token_is_never_shown_to_another(client_for: Callable[[Any], Any], bob: Any, eve: Any) -> None:
    client_for(bob).post(reverse("webapp-tokens"), {"name": "mine"})
    assert client_for(eve).get(reverse("webapp-tokens")).context["raw"] is None
