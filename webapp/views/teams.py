"""Team pages: the user's teams, a team's members, roles, invitations and activity (webapp.teams does the work)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from webapp import teams as service
from webapp.http.access import AuthenticatedHttpRequest, team_for
from webapp.models import Activity, Invitation, Membership, Role, Team
from webapp.services import ServiceError

NEW_INVITATION_KEY = "psl_new_invitation"
ACTIVITY_SHOWN = 30


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)


class InviteForm(forms.Form):
    who = forms.CharField(max_length=254, label="Username or email")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


@login_required
def team_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    memberships = Membership.objects.filter(user=request.user).select_related("team").order_by("team__name")
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = service.team_create(user=request.user, name=form.cleaned_data["name"])
        messages.success(request, f"Created team {team.name}; you are its admin.")
        return redirect("webapp-team", team.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "webapp/teams.html", {"memberships": memberships, "form": form}, status=status)


@login_required
def team_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    team, mine = team_for(request.user, pk)
    members = team.memberships.select_related("user").order_by("user__username")
    invitations = (
        [i for i in team.invitations.filter(accepted_at__isnull=True) if i.is_open] if mine.can(Role.ADMIN) else []
    )
    context = {
        "team": team,
        "mine": mine,
        "is_admin": mine.can(Role.ADMIN),
        "members": members,
        "invitations": invitations,
        "roles": Role.choices,
        "invite_form": InviteForm(),
        "activity": Activity.objects.filter(team=team).select_related("actor")[:ACTIVITY_SHOWN],
        "invitation_url": _shown_once(request),
    }
    response = render(request, "webapp/team_detail.html", context)
    add_never_cache_headers(response)  # it may show an invitation link once
    return response


def _shown_once(request: AuthenticatedHttpRequest) -> str | None:
    raw = request.session.pop(NEW_INVITATION_KEY, None)
    return request.build_absolute_uri(reverse("webapp-invitation", args=[raw])) if raw else None


@login_required
@require_POST
def team_invite(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    team, _ = team_for(request.user, pk, role=Role.ADMIN)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a username or an email address, and a role.")
        return redirect("webapp-team", team.pk)
    who, role = form.cleaned_data["who"].strip(), form.cleaned_data["role"]
    try:
        if "@" in who:
            forms.EmailField().clean(who)
            invitation, raw = service.invitation_create(team=team, actor=request.user, email=who, role=role)
            request.session[NEW_INVITATION_KEY] = raw  # post/redirect/get: the link is shown once
            url = request.build_absolute_uri(reverse("webapp-invitation", args=[raw]))
            sent = service.invitation_send(invitation=invitation, url=url)
            how = f"mailed to {who}; the link is also below" if sent else "send them the link below"
            messages.success(request, f"Invitation for {who} created: {how} (shown once).")
        else:
            service.member_add(team=team, actor=request.user, username=who, role=role)
            messages.success(request, f"Added {who} as {role}.")
    except (ServiceError, forms.ValidationError) as exc:
        messages.error(request, exc.messages[0] if isinstance(exc, forms.ValidationError) else str(exc))
    return redirect("webapp-team", team.pk)


def _member(team: Team, member_id: int) -> Membership:
    return get_object_or_404(Membership.objects.select_related("user"), team=team, pk=member_id)


@login_required
@require_POST
def member_role(request: AuthenticatedHttpRequest, pk: int, member_id: int) -> HttpResponse:
    team, _ = team_for(request.user, pk, role=Role.ADMIN)
    membership = _member(team, member_id)
    role = request.POST.get("role", "")
    if role not in Role.values:
        messages.error(request, f"unknown role {role!r}")
        return redirect("webapp-team", team.pk)
    try:
        service.member_set_role(membership=membership, actor=request.user, role=role)
        messages.success(request, f"{membership.user} is now {role}.")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("webapp-team", team.pk)


@login_required
@require_POST
def member_remove(request: AuthenticatedHttpRequest, pk: int, member_id: int) -> HttpResponse:
    team, _ = team_for(request.user, pk, role=Role.ADMIN)
    membership = _member(team, member_id)
    try:
        service.member_remove(membership=membership, actor=request.user)
        messages.success(request, f"Removed {membership.user} from {team}.")
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("webapp-team", team.pk)
    return redirect("webapp-team", team.pk) if membership.user_id != request.user.pk else redirect("webapp-teams")


@login_required
@require_POST
def team_leave(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    team, mine = team_for(request.user, pk)
    try:
        service.member_remove(membership=mine, actor=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("webapp-team", team.pk)
    messages.success(request, f"You left {team}.")
    return redirect("webapp-teams")


@login_required
@require_POST
def invitation_revoke(request: AuthenticatedHttpRequest, pk: int, invitation_id: int) -> HttpResponse:
    team, _ = team_for(request.user, pk, role=Role.ADMIN)
    invitation = get_object_or_404(Invitation, team=team, pk=invitation_id)
    try:
        service.invitation_revoke(invitation=invitation, actor=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("webapp-team", team.pk)


@login_required
def invitation(request: AuthenticatedHttpRequest, token: str) -> HttpResponse:
    """The invitation link: the signed-in user sees the team and the role, and joins with one click."""
    found = service.invitation_for(token)
    if found is None:
        raise Http404("this invitation link is unknown, used or expired")
    if request.method == "POST":
        try:
            service.invitation_accept(invitation=found, user=request.user)
        except ServiceError as exc:
            messages.error(request, str(exc))
            return redirect("webapp-teams")
        messages.success(request, f"You joined {found.team} as {found.role}.")
        return redirect("webapp-team", found.team_id)
    response = render(request, "webapp/invitation.html", {"invitation": found})
    add_never_cache_headers(response)
    return response


urlpatterns = [
    path("teams/", team_list, name="webapp-teams"),
    path("teams/<int:pk>/", team_detail, name="webapp-team"),
    path("teams/<int:pk>/invite/", team_invite, name="webapp-team-invite"),
    path("teams/<int:pk>/leave/", team_leave, name="webapp-team-leave"),
    path("teams/<int:pk>/members/<int:member_id>/role/", member_role, name="webapp-team-member-role"),
    path("teams/<int:pk>/members/<int:member_id>/remove/", member_remove, name="webapp-team-member-remove"),
    path(
        "teams/<int:pk>/invitations/<int:invitation_id>/revoke/",
        invitation_revoke,
        name="webapp-team-invitation-revoke",
    ),
    path("invitations/<str:token>/", invitation, name="webapp-invitation"),
]
