"""Home (the user's projects), project creation, API tokens and the Workers page."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import path
from django.utils.cache import add_never_cache_headers
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from webapp.http.access import AuthenticatedHttpRequest
from webapp.models import ApiToken, Membership, Project, Role, RunStatus, Team, Worker

# The session key that carries a new token's secret from the POST to the one GET that shows it.
NEW_TOKEN_KEY = "psl_new_token"


@login_required
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    projects = (
        Project.objects.for_user(request.user)
        .select_related("team")
        .annotate(
            n_runs=Count("runs", distinct=True),
            n_active=Count("runs", filter=Q(runs__status__in=[RunStatus.QUEUED, RunStatus.RUNNING]), distinct=True),
        )
        .order_by("team__name", "name")
    )
    teams = Team.objects.filter(memberships__user=request.user, memberships__role__in=[Role.MEMBER, Role.ADMIN])
    return render(request, "webapp/home.html", {"projects": projects, "form": ProjectForm(teams=teams)})


class ProjectForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none())
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: object, teams: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]


@login_required
@require_POST
def project_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    teams = Team.objects.filter(memberships__user=request.user, memberships__role__in=[Role.MEMBER, Role.ADMIN])
    form = ProjectForm(request.POST, teams=teams)
    if not form.is_valid():
        projects = Project.objects.for_user(request.user).select_related("team")
        return render(request, "webapp/home.html", {"projects": projects, "form": form}, status=400)
    team, name = form.cleaned_data["team"], form.cleaned_data["name"]
    slug = slugify(name) or "project"
    if Project.objects.filter(team=team, slug=slug).exists():
        form.add_error("name", f"{team} already has a project called {name!r}")
        projects = Project.objects.for_user(request.user).select_related("team")
        return render(request, "webapp/home.html", {"projects": projects, "form": form}, status=400)
    project = Project.objects.create(team=team, name=name, slug=slug, description=form.cleaned_data["description"])
    return redirect(project)


@login_required
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Post/redirect/get: a POST creates one token and redirects; the GET that follows shows its secret
    once (taken out of the session as it is shown), so a refresh neither repeats the POST nor shows it again."""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100] or "token"
        _, raw = ApiToken.issue(user=request.user, name=name)
        request.session[NEW_TOKEN_KEY] = raw
        messages.success(request, "Token created. Copy it now: it is shown only once.")
        return redirect("webapp-tokens")
    raw = request.session.pop(NEW_TOKEN_KEY, None)
    rows = ApiToken.objects.filter(user=request.user).order_by("-created_at")
    response = render(request, "webapp/tokens.html", {"tokens": rows, "raw": raw, "nav": "tokens"})
    add_never_cache_headers(response)  # the page with the secret must not be kept by a cache or the history
    return response


@login_required
@require_POST
def token_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(ApiToken, user=request.user, pk=pk).delete()  # another user's token: 404 like any object
    return redirect("webapp-tokens")


@login_required
def workers(request: AuthenticatedHttpRequest) -> HttpResponse:
    # Workers are shared infrastructure; only runs of the user's own teams are linked.
    visible = set(Membership.objects.filter(user=request.user).values_list("team_id", flat=True))
    rows = Worker.objects.select_related("current_run__project").order_by("-last_seen_at")
    return render(request, "webapp/workers.html", {"workers": rows, "visible_teams": visible, "nav": "workers"})


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """For browsers and tools that ask for /favicon.ico without reading the page's <link rel="icon">."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


urlpatterns = [
    path("", home, name="webapp-home"),
    path("favicon.ico", favicon),
    path("projects/new/", project_create, name="webapp-project-create"),
    path("tokens/", tokens, name="webapp-tokens"),
    path("tokens/<int:pk>/delete/", token_delete, name="webapp-token-delete"),
    path("workers/", workers, name="webapp-workers"),
]
