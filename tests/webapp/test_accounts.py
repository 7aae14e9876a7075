"""Finding 2 of the security review: sign-ins are throttled per account and per client address, and
passwords pass the full set of Django's validators (also on the password change page)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from webapp.models import Activity

pytestmark = pytest.mark.django_db

LOGIN = "/login/"


def sign_in(username: str, password: str, *, address: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post(LOGIN, {"username": username, "password": password})


def test_twenty_wrong_passwords_lock_the_account_and_the_right_one_is_then_refused(bob: Any, settings: Any) -> None:
    answers = [sign_in("bob", f"wrong-{i}").status_code for i in range(20)]
    limit = settings.AXES_FAILURE_LIMIT
    assert answers[: limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(answers[limit - 1 :]) == {429}
    right = sign_in("bob", "password-bob")
    assert right.status_code == 429 and "_auth_user_id" not in right.client.session
    body = right.content.decode()
    assert "Too many failed sign-ins" in body and "locked for 15 minutes" in body


def test_the_account_is_locked_from_every_address(bob: Any, settings: Any) -> None:
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in("bob", "wrong", address=f"10.0.1.{i}")
    assert sign_in("bob", "password-bob", address="10.9.9.9").status_code == 429


def test_one_address_trying_many_accounts_is_locked_out(bob: Any, alice: Any, vera: Any, settings: Any) -> None:
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(f"nobody-{i}", "wrong", address="10.6.6.6")
    assert sign_in("alice", "password-alice", address="10.6.6.6").status_code == 429
    ok = sign_in("alice", "password-alice", address="10.0.0.2")  # another address is not affected
    assert ok.status_code == 302


def test_a_success_resets_the_count(bob: Any, settings: Any) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in("bob", "wrong")
    assert sign_in("bob", "password-bob").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in("bob", "wrong")
    assert sign_in("bob", "password-bob").status_code == 302


def test_behind_the_proxy_the_address_is_the_one_the_proxy_appended(bob: Any, settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    for i in range(settings.AXES_FAILURE_LIMIT):
        # The attacker forges the first entries; the proxy appends the real address last.
        Client(REMOTE_ADDR="10.0.0.254").post(
            LOGIN, {"username": f"x{i}", "password": "w"}, HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 203.0.113.7"
        )
    again = Client(REMOTE_ADDR="10.0.0.254").post(
        LOGIN, {"username": "bob", "password": "password-bob"}, HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7"
    )
    assert again.status_code == 429


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short-pw1", "too short"),
        ("123456789012345", "entirely numeric"),
        ("password12345", "too common"),
        ("bob-the-builder@example.org", "too similar"),
    ],
)
def test_the_password_change_page_applies_every_validator(
    client_for: Callable[[Any], Any], bob: Any, password: str, rule: str
) -> None:
    bob.email = "bob-the-builder@example.org"
    bob.save()
    data = {"old_password": "password-bob", "new_password1": password, "new_password2": password}
    response = client_for(bob).post(reverse("webapp-password-change"), data)
    assert response.status_code == 200
    assert rule in " ".join(response.context["form"].errors["new_password2"])


def test_a_password_change_keeps_this_session_and_ends_the_others(client_for: Callable[[Any], Any], bob: Any) -> None:
    other = Client()
    other.force_login(bob)
    client = client_for(bob)
    new = "a-much-longer-passphrase-42"
    data = {"old_password": "password-bob", "new_password1": new, "new_password2": new}
    response = client.post(reverse("webapp-password-change"), data)
    assert response.status_code == 302 and response["Location"] == reverse("webapp-password-changed")
    assert get_user_model().objects.get(pk=bob.pk).check_password(new)
    assert client.get(reverse("webapp-home")).status_code == 200
    assert other.get(reverse("webapp-home")).status_code == 302  # signed out
    (event,) = Activity.objects.filter(team__memberships__user=bob)
    assert (event.actor, event.verb) == (bob, "changed their password")
