"""Finding 5 of the security review: teams are managed in the app, not only in Django admin.

Lab: Alice admin, Bob member, Vera viewer; Eve is the admin of Rivals. Every action lands in the
team's activity feed (and the feed of its projects); each one is checked for every role and from
the other team, in the pages and in the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from webapp.models import Activity, ApiToken, Invitation, Membership, Role, Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(django_user_model: Any) -> Any:
    """A user in no team yet."""
    return django_user_model.objects.create_user(username="carol", password="password-carol", email="carol@lab.org")


def feed(team: Team) -> list[str]:
    return [f"{a.actor.username if a.actor else '-'} {a.verb} {a.target}" for a in Activity.objects.filter(team=team)]


def member(team: Team, user: Any) -> Membership:
    return Membership.objects.get(team=team, user=user)


# --- pages ---------------------------------------------------------------------------------------------


def test_anyone_creates_a_team_and_becomes_its_admin(client_for: Callable[[Any], Any], carol: Any) -> None:
    response = client_for(carol).post(reverse("webapp-teams"), {"name": "Theory group"})
    team = Team.objects.get(name="Theory group")
    assert response.status_code == 302 and response["Location"] == reverse("webapp-team", args=[team.pk])
    assert member(team, carol).role == Role.ADMIN
    assert feed(team) == ["carol created the team Theory group"]


def test_an_admin_adds_a_user_by_username_and_changes_their_role(
    client_for: Callable[[Any], Any], alice: Any, carol: Any, team: Team
) -> None:
    client = client_for(alice)
    client.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "carol", "role": "viewer"})
    carol_in_lab = member(team, carol)
    assert carol_in_lab.role == Role.VIEWER
    client.post(reverse("webapp-team-member-role", args=[team.pk, carol_in_lab.pk]), {"role": "member"})
    assert member(team, carol).role == Role.MEMBER
    assert feed(team) == ["alice changed the role (viewer → member) of carol", "alice added (viewer) carol"]


def test_an_email_invitation_is_a_link_shown_once_that_works_once(
    client_for: Callable[[Any], Any], alice: Any, carol: Any, team: Team
) -> None:
    admin = client_for(alice)
    response = admin.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "carol@lab.org", "role": "member"})
    assert response.status_code == 302
    link = admin.get(reverse("webapp-team", args=[team.pk])).context["invitation_url"]
    assert link and "/invitations/" in link
    assert admin.get(reverse("webapp-team", args=[team.pk])).context["invitation_url"] is None  # once
    path = link.split("testserver", 1)[1]
    guest = Client()
    guest.force_login(carol)
    assert "Join Lab" in guest.get(path).content.decode()
    assert guest.post(path).status_code == 302
    assert member(team, carol).role == Role.MEMBER
    assert guest.get(path).status_code == 404  # used
    assert Invitation.objects.get().accepted_by == carol
    assert feed(team)[0] == "carol joined (member) by the invitation to carol@lab.org"


def test_with_mail_configured_the_invitation_link_is_mailed(
    client_for: Callable[[Any], Any], alice: Any, team: Team, settings: Any, mailoutbox: list[Any]
) -> None:
    settings.EMAIL_HOST = "smtp.lab.org"
    admin = client_for(alice)
    admin.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "dan@lab.org", "role": "viewer"})
    link = admin.get(reverse("webapp-team", args=[team.pk])).context["invitation_url"]
    (mail,) = mailoutbox
    assert mail.to == ["dan@lab.org"] and link in mail.body and "as viewer" in mail.body


def test_a_mail_server_that_fails_leaves_the_link_on_the_page(
    client_for: Callable[[Any], Any], alice: Any, team: Team, settings: Any
) -> None:
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_PORT = 9  # nothing listens there: connection refused
    admin = client_for(alice)
    response = admin.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "dan@lab.org", "role": "viewer"})
    assert response.status_code == 302
    assert admin.get(reverse("webapp-team", args=[team.pk])).context["invitation_url"]


def test_an_admin_removes_a_member_and_anyone_may_leave(
    client_for: Callable[[Any], Any], alice: Any, bob: Any, vera: Any, team: Team
) -> None:
    client_for(alice).post(reverse("webapp-team-member-remove", args=[team.pk, member(team, bob).pk]))
    assert not Membership.objects.filter(team=team, user=bob).exists()
    response = client_for(vera).post(reverse("webapp-team-leave", args=[team.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("webapp-teams")
    assert not Membership.objects.filter(team=team, user=vera).exists()
    assert feed(team) == ["vera left the team Lab", "alice removed bob"]


def test_the_last_admin_can_neither_leave_nor_be_demoted(
    client_for: Callable[[Any], Any], alice: Any, team: Team
) -> None:
    client = client_for(alice)
    client.post(reverse("webapp-team-leave", args=[team.pk]))
    client.post(reverse("webapp-team-member-role", args=[team.pk, member(team, alice).pk]), {"role": "member"})
    assert member(team, alice).role == Role.ADMIN
    assert feed(team) == []


@pytest.mark.parametrize("persona", ["bob", "vera"])
def test_members_and_viewers_cannot_manage_the_team(
    request: pytest.FixtureRequest, client_for: Callable[[Any], Any], persona: str, alice: Any, carol: Any, team: Team
) -> None:
    user = request.getfixturevalue(persona)
    client = client_for(user)
    target = member(team, alice).pk
    answers = [
        client.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "carol", "role": "admin"}),
        client.post(reverse("webapp-team-member-role", args=[team.pk, target]), {"role": "viewer"}),
        client.post(reverse("webapp-team-member-remove", args=[team.pk, target])),
    ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    page = client.get(reverse("webapp-team", args=[team.pk]))
    assert page.status_code == 200 and "Change role" not in page.content.decode()
    assert member(team, alice).role == Role.ADMIN and not Membership.objects.filter(user=carol).exists()


def test_another_teams_admin_gets_404_for_every_team_page_and_action(
    client_for: Callable[[Any], Any], eve: Any, alice: Any, team: Team
) -> None:
    client = client_for(eve)
    target = member(team, alice).pk
    invitation, _ = Invitation.issue(team=team, email="x@y.org", role="member", user=alice)
    answers = [
        client.get(reverse("webapp-team", args=[team.pk])),
        client.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "eve", "role": "admin"}),
        client.post(reverse("webapp-team-member-role", args=[team.pk, target]), {"role": "viewer"}),
        client.post(reverse("webapp-team-member-remove", args=[team.pk, target])),
        client.post(reverse("webapp-team-leave", args=[team.pk])),
        client.post(reverse("webapp-team-invitation-revoke", args=[team.pk, invitation.pk])),
    ]
    assert [a.status_code for a in answers] == [404] * 6
    assert [m.team.name for m in client.get(reverse("webapp-teams")).context["memberships"]] == ["Rivals"]
    assert not Membership.objects.filter(team=team, user=eve).exists() and feed(team) == []


def test_an_admin_of_one_team_cannot_reach_a_member_of_another_through_their_own_team(
    client_for: Callable[[Any], Any], eve: Any, bob: Any, team: Team, other_team: Team
) -> None:
    # Eve is admin of Rivals: the membership id of Bob in Lab does not exist inside Rivals.
    url = reverse("webapp-team-member-remove", args=[other_team.pk, member(team, bob).pk])
    assert client_for(eve).post(url).status_code == 404
    assert Membership.objects.filter(team=team, user=bob).exists()


def test_team_events_show_in_the_projects_activity_feed(
    client_for: Callable[[Any], Any], alice: Any, carol: Any, project: Any, team: Team
) -> None:
    client = client_for(alice)
    client.post(reverse("webapp-team-invite", args=[team.pk]), {"who": "carol", "role": "viewer"})
    page = client.get(reverse("webapp-activity", args=[project.pk]))
    assert "added (viewer)" in page.content.decode() and "carol" in page.content.decode()


# --- API -----------------------------------------------------------------------------------------------


def api(user: Any, method: str, url: str, body: Any = None) -> Any:
    raw = ApiToken.issue(user=user, name="t")[1]
    headers = {"Authorization": f"Bearer {raw}"}
    data = json.dumps(body) if body is not None else None
    return getattr(Client(), method)(url, data, content_type="application/json", headers=headers)


ROLE_MATRIX = {
    # action: expected status for (viewer, member, admin, outsider)
    "list members": (200, 200, 200, 404),
    "add a member": (403, 403, 201, 404),
    "change a role": (403, 403, 200, 404),
    "remove a member": (403, 403, 204, 404),
}


def call(action: str, user: Any, members_url: str, member_url: str) -> Any:
    if action == "list members":
        return api(user, "get", members_url)
    if action == "add a member":
        return api(user, "post", members_url, {"username": "carol", "role": "member"})
    if action == "change a role":
        return api(user, "post", member_url, {"role": "member"})
    return api(user, "delete", member_url)


@pytest.mark.parametrize("action", list(ROLE_MATRIX))
def test_the_team_api_follows_the_role_matrix(
    action: str, alice: Any, bob: Any, vera: Any, eve: Any, carol: Any, team: Team, django_user_model: Any
) -> None:
    statuses = []
    for user in (vera, bob, alice, eve):
        dave = django_user_model.objects.create_user(username=f"dave-{user.username}", password="x")
        target = Membership.objects.create(team=team, user=dave, role=Role.VIEWER)
        members_url = reverse("api-team-members", args=[team.pk])
        member_url = reverse("api-team-member", args=[team.pk, target.pk])
        response = call(action, user, members_url, member_url)
        statuses.append(response.status_code)
        Membership.objects.filter(user=carol).delete()
    assert tuple(statuses) == ROLE_MATRIX[action]


def test_the_api_lists_only_the_users_teams_and_lets_a_member_leave(bob: Any, eve: Any, team: Team) -> None:
    assert [t["name"] for t in api(bob, "get", reverse("api-teams")).json()["results"]] == ["Lab"]
    mine = member(team, bob)
    assert api(bob, "delete", reverse("api-team-member", args=[team.pk, mine.pk])).status_code == 204
    assert not Membership.objects.filter(team=team, user=bob).exists()
    assert feed(team) == ["bob left the team Lab"]


def test_users_in_no_team_see_no_team(carol: Any) -> None:
    assert get_user_model().objects.filter(username="carol").exists()
    assert api(carol, "get", reverse("api-teams")).json() == {"results": []}
