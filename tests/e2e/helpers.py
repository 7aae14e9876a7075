"""What the browser tests do over and over: log in through the real form, log out, read plotly charts."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect


def login(page: Page, user: Any, password: str | None = None) -> None:
    """Log ``user`` in with the login form (passwords of the personas are ``password-<username>``)."""
    page.goto("/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password or f"password-{user.username}")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=f"Log out {user.username}")).to_be_visible()


def logout(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def plot_traces(page: Page, selector: str) -> list[list[dict[str, Any]]]:
    """Per plotly chart matched by ``selector``: its traces as [{"name", "points"}] (from the live DOM)."""
    return page.eval_on_selector_all(
        selector,
        """els => els.map(el => (el.data || []).map(t => ({name: t.name || "", points: (t.x || []).length})))""",
    )
