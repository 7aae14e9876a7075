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


# Per plotly chart: its traces as {name, points held in the trace data, points plotly computed and drew}.
PLOT_TRACES = """els => els.map(el => (el.data || []).map((t, i) => ({
  name: t.name || "", points: (t.x || []).length,
  drawn: ((el.calcdata || [])[i] || []).filter(p => p && p.x !== undefined && p.x !== false).length,
})))"""


def plot_traces(page: Page, selector: str) -> list[list[dict[str, Any]]]:
    """The traces of every plotly chart matched by ``selector``, read from the live DOM (see PLOT_TRACES)."""
    return page.eval_on_selector_all(selector, PLOT_TRACES)


def wait_for_drawn_points(
    page: Page,
    selector: str,
    *,
    trace: str,
    points: int,
    timeout_ms: float = 30_000,
) -> list[list[dict[str, Any]]]:
    """Wait until a trace named ``trace`` holds ``points`` points and every trace of every chart is drawn
    in full (plotly computed as many points as the trace holds); returns the traces."""
    condition = f"""() => {{
      const charts = ({PLOT_TRACES})([...document.querySelectorAll({selector!r})]);
      const all = charts.flat();
      return all.some(t => t.name === {trace!r} && t.points === {points})
          && all.every(t => t.drawn === t.points);
    }}"""
    try:
        page.wait_for_function(condition, timeout=timeout_ms)
    except Exception as exc:  # report what the charts hold and draw instead of a bare timeout
        raise AssertionError(f"charts never drew {points} points of {trace!r}: {plot_traces(page, selector)}") from exc
    return plot_traces(page, selector)
