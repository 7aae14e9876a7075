"""Team management: create a team, invite (by username, or by an email link), change a member's role,
remove a member, leave. Every action is recorded in the team's activity feed.

Who may do what (the role matrix, tested in tests/webapp/test_teams.py and the browser):

=====================  ======  ======  =====  ========
action                 viewer  member  admin  outsider
=====================  ======  ======  =====  ========
see members and feed   yes     yes     yes    404
invite, change roles   403     403     yes    404
remove a member        403     403     yes    404
leave                  yes     yes     yes*   404
=====================  ======  ======  =====  ========

\\* a team always keeps one admin: its last admin can neither leave, be removed, nor be demoted.
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from webapp.models import Activity, ApiToken, Invitation, Membership, Role, Team
from webapp.services import ServiceError

log = logging.getLogger(__name__)


def team_activity(*, team: Team, actor: Any, verb: str, target: str) -> Activity:
    url = reverse("webapp-team", args=[team.pk])
    return Activity.objects.create(team=team, actor=actor, verb=verb, target=target[:300], url=url)


def record_password_change(*, user: Any) -> None:
    """A password change shows in the feed of each of the user's teams (who changed it, never what to)."""
    for team in Team.objects.filter(memberships__user=user):
        team_activity(team=team, actor=user, verb="changed their password", target=user.username)


def team_create(*, user: Any, name: str) -> Team:
    """A new team with ``user`` as its admin."""
    name = name.strip()
    if not name:
        raise ServiceError("a team needs a name")
    base = slugify(name)[:90] or "team"
    with transaction.atomic():
        slug, n = base, 1
        while Team.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
        team = Team.objects.create(name=name[:100], slug=slug)
        Membership.objects.create(team=team, user=user, role=Role.ADMIN)
        team_activity(team=team, actor=user, verb="created the team", target=team.name)
    return team


def member_add(*, team: Team, actor: Any, username: str, role: str) -> Membership:
    """Invite by username: the user becomes a member at once (they see the team on their next page)."""
    user = get_user_model().objects.filter(username=username.strip(), is_active=True).first()
    if user is None:
        raise ServiceError(f"no user called {username.strip()!r}")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(team=team, user=user, role=Role(role))
    except IntegrityError:
        raise ServiceError(f"{user.username} is already in {team}") from None
    team_activity(team=team, actor=actor, verb=f"added ({membership.role})", target=user.username)
    return membership


def invitation_create(*, team: Team, actor: Any, email: str, role: str) -> tuple[Invitation, str]:
    """An invitation link for ``email``; returns it with its secret (shown once, to send by hand or mail)."""
    invitation, raw = Invitation.issue(team=team, email=email.strip(), role=Role(role), user=actor)
    team_activity(team=team, actor=actor, verb=f"invited ({invitation.role})", target=invitation.email)
    return invitation, raw


def invitation_send(*, invitation: Invitation, url: str) -> bool:
    """Mail the link to the invited address when mail is configured (EMAIL_HOST); True if sent."""
    from django.conf import settings
    from django.core.mail import send_mail

    if not settings.EMAIL_HOST:
        return False
    inviter = invitation.created_by.username if invitation.created_by else "An admin"
    body = (
        f"{inviter} invited you to the team {invitation.team.name} on Policy Split Lab as {invitation.role}.\n\n"
        f"Sign in (or ask for an account), then open this link within {Invitation.INVITATION_DAYS} days; "
        f"it works once:\n\n{url}\n"
    )
    name = " ".join(invitation.team.name.split())  # a header holds no line break
    try:
        send_mail(f"Join {name} on Policy Split Lab", body, None, [invitation.email])
    except (OSError, smtplib.SMTPException):  # the link is on the page anyway
        log.warning("could not mail the invitation to %s", invitation.email, exc_info=True)
        return False
    return True


def invitation_for(raw: str) -> Invitation | None:
    """The open invitation whose secret is ``raw``; None for an unknown, used or expired one."""
    invitation = Invitation.objects.select_related("team").filter(digest=ApiToken.hash(raw)).first()
    return invitation if invitation is not None and invitation.is_open else None


def invitation_accept(*, invitation: Invitation, user: Any) -> Membership:
    with transaction.atomic():
        claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
            accepted_at=timezone.now(), accepted_by=user
        )
        if not claimed:
            raise ServiceError("this invitation was already used")
        membership, created = Membership.objects.get_or_create(
            team=invitation.team, user=user, defaults={"role": invitation.role}
        )
        if not created:
            raise ServiceError(f"you are already in {invitation.team}")
        team_activity(
            team=invitation.team,
            actor=user,
            verb=f"joined ({membership.role}) by the invitation to",
            target=invitation.email,
        )
    return membership


def invitation_revoke(*, invitation: Invitation, actor: Any) -> None:
    if invitation.accepted_at is not None:
        raise ServiceError("this invitation was already used")
    invitation.delete()
    team_activity(team=invitation.team, actor=actor, verb="revoked the invitation of", target=invitation.email)


def _keep_an_admin(membership: Membership, what: str) -> None:
    others = Membership.objects.filter(team_id=membership.team_id, role=Role.ADMIN).exclude(pk=membership.pk)
    if membership.role == Role.ADMIN and not others.exists():
        raise ServiceError(f"{membership.user} is the team's last admin: make someone else admin before {what}")


def member_set_role(*, membership: Membership, actor: Any, role: str) -> Membership:
    role = Role(role)
    if membership.role == role:
        return membership
    with transaction.atomic():
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if role != Role.ADMIN:
            _keep_an_admin(locked, "changing this role")
        old = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        team_activity(
            team=locked.team, actor=actor, verb=f"changed the role ({old} → {role}) of", target=locked.user.username
        )
    return locked


def member_remove(*, membership: Membership, actor: Any) -> None:
    with transaction.atomic():
        locked = Membership.objects.select_for_update().select_related("user", "team").get(pk=membership.pk)
        leaving = locked.user_id == getattr(actor, "pk", None)
        _keep_an_admin(locked, "leaving" if leaving else "removing them")
        locked.delete()
        if leaving:
            team_activity(team=locked.team, actor=actor, verb="left the team", target=locked.team.name)
        else:
            team_activity(team=locked.team, actor=actor, verb="removed", target=locked.user.username)
