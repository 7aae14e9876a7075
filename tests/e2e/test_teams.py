"""Team management in the browser: an admin adds a user and changes their role, a viewer sees no
management controls, another team's admin gets the 404 page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login, logout
from webapp.models import Membership

pytestmark = pytest.mark.e2e


def test_an_admin_manages_members_a_viewer_only_reads_and_an_outsider_sees_nothing(
    page: Page,
    browser_log: BrowserLog,
    shot: Callable[[str], Any],
    team: Any,
    alice: Any,
    vera: Any,
    eve: Any,
    django_user_model: Any,
) -> None:
    django_user_model.objects.create_user(username="carol", password="password-carol")
    browser_log.allow(r"status of 404")  # Eve's deliberate 404 below

    login(page, alice)
    page.get_by_role("link", name="Teams", exact=True).click()
    page.locator("#my-teams").get_by_role("link", name="Lab", exact=True).click()
    page.get_by_label("Username or email").fill("carol")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_text("Added carol as viewer.")).to_be_visible()
    page.get_by_label("Role of carol").select_option("member")
    page.locator("tr[data-member=carol]").get_by_role("button", name="Change role").click()
    expect(page.get_by_text("carol is now member.")).to_be_visible()
    expect(page.locator("#team-activity")).to_contain_text("changed the role (viewer → member) of carol")
    shot("admin")
    assert Membership.objects.get(team=team, user__username="carol").role == "member"
    logout(page)

    login(page, vera)
    page.goto(f"/teams/{team.pk}/")
    expect(page.locator("#members")).to_contain_text("carol")
    expect(page.get_by_role("button", name="Change role")).to_have_count(0)
    expect(page.get_by_role("button", name="Invite")).to_have_count(0)
    logout(page)

    login(page, eve)
    response = page.goto(f"/teams/{team.pk}/")
    assert response is not None and response.status == 404
