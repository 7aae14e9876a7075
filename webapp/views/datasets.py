"""A team's Datasets page: upload, list, preview, download and delete (webapp.datasets does the work)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from webapp import datasets as service
from webapp.http.access import AuthenticatedHttpRequest, team_for
from webapp.models import Dataset, Membership, Role, Team
from webapp.selectors import team_datasets
from webapp.services import FieldError, ServiceError


class UploadForm(forms.Form):
    name = forms.CharField(
        max_length=90, help_text="Runs name it data:<name>.jsonl. Datasets are immutable: a new version is a new name."
    )
    description = forms.CharField(max_length=300, required=False)
    file = forms.FileField(
        help_text="JSONL (one object per line) or a JSON list: question, answer, optional id, kind (math | choice "
        "| creative) and choices; MATH-500, AIME, DeepMath, GPQA and MMLU-Pro spellings load as published."
    )


@login_required
def dataset_list(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    team, mine = team_for(request.user, pk, role=Role.MEMBER if request.method == "POST" else Role.VIEWER)
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            dataset = service.dataset_upload(
                team=team,
                actor=request.user,
                name=form.cleaned_data["name"],
                upload=upload,
                filename=upload.name,
                description=form.cleaned_data["description"],
            )
        except FieldError as exc:
            form.add_error(exc.field, exc.message)
        else:
            messages.success(request, f"Uploaded {dataset.rows} questions; runs name them {dataset.reference}.")
            return redirect("webapp-dataset", team.pk, dataset.pk)
    context = {
        "team": team,
        "can_upload": mine.can(Role.MEMBER),
        "datasets": team_datasets(team_id=team.pk),
        "form": form,
        "max_mb": service.max_bytes() >> 20,
    }
    return render(request, "webapp/datasets.html", context, status=400 if form.errors else 200)


def _dataset(
    request: AuthenticatedHttpRequest, pk: int, dataset_id: int, *, role: str = Role.VIEWER
) -> tuple[Team, Membership, Dataset]:
    team, mine = team_for(request.user, pk, role=role)
    return team, mine, get_object_or_404(Dataset.objects.select_related("created_by"), team=team, pk=dataset_id)


@login_required
def dataset_detail(request: AuthenticatedHttpRequest, pk: int, dataset_id: int) -> HttpResponse:
    team, mine, dataset = _dataset(request, pk, dataset_id)
    context = {
        "team": team,
        "dataset": dataset,
        "preview": service.dataset_preview(dataset),
        "can_delete": mine.can(Role.ADMIN) or dataset.created_by_id == request.user.pk,
    }
    return render(request, "webapp/dataset_detail.html", context)


@login_required
def dataset_download(request: AuthenticatedHttpRequest, pk: int, dataset_id: int) -> HttpResponse:
    _, _, dataset = _dataset(request, pk, dataset_id)
    response = HttpResponse(service.dataset_jsonl(dataset), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{dataset.file_name}"'
    return response


@login_required
@require_POST
def dataset_delete(request: AuthenticatedHttpRequest, pk: int, dataset_id: int) -> HttpResponse:
    team, mine, dataset = _dataset(request, pk, dataset_id, role=Role.MEMBER)
    try:
        service.dataset_delete(dataset=dataset, actor=request.user, membership=mine)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("webapp-dataset", team.pk, dataset.pk)
    messages.success(request, f"Deleted {dataset.reference}.")
    return redirect("webapp-datasets", team.pk)


urlpatterns = [
    path("teams/<int:pk>/datasets/", dataset_list, name="webapp-datasets"),
    path("teams/<int:pk>/datasets/<int:dataset_id>/", dataset_detail, name="webapp-dataset"),
    path("teams/<int:pk>/datasets/<int:dataset_id>/download/", dataset_download, name="webapp-dataset-download"),
    path("teams/<int:pk>/datasets/<int:dataset_id>/delete/", dataset_delete, name="webapp-dataset-delete"),
]
