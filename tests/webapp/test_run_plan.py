"""The run form's preset picker and memory planner: pre-filled presets, the verdict next to the pool,
a launch that cannot fit refused with the reason unless overridden, multi-host refused always."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.webapp.test_forms import form_data
from trainer.presets import load_preset
from webapp.models import Run, Worker
from webapp.services import ServiceError, run_create

pytestmark = pytest.mark.django_db


def preset_data(preset: str, **overrides: Any) -> dict[str, Any]:
    """The run form's POST data after loading a preset (what the pre-filled form sends)."""
    data = form_data(queue="gpu-h100")
    for key, value in load_preset(preset).config().to_dict().items():
        if key in data or isinstance(value, bool):
            if isinstance(value, bool):
                data.pop(key, None) if not value else data.__setitem__(key, "on")
            else:
                data[key] = "{}" if isinstance(value, dict) else str(value)
    data["preset"] = preset
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def new_url(project: Any, query: str = "") -> str:
    return reverse("webapp-run-create", args=[project.pk]) + (f"?{query}" if query else "")


def test_it_prefills_the_form_from_a_preset(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    response = client_for(alice).get(new_url(project, "preset=ps-qwen3-8b"))
    assert response.status_code == 200
    form = response.context["form"]
    assert form["model"].value() == "qwen3-8b" and form["max_new_tokens"].value() == 12288
    body = response.content.decode()
    assert 'name="preset" value="ps-qwen3-8b"' in body
    assert "ps-qwen3-8b (v1)" in body and 'data-testid="run-plan"' in body


def test_it_answers_404_for_an_unknown_preset(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    assert client_for(alice).get(new_url(project, "preset=nope")).status_code == 404


def test_it_launches_a_preset_that_fits_and_keeps_its_name(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    response = client_for(alice).post(new_url(project), preset_data("ps-qwen3-8b", lr="1e-6"))
    assert response.status_code == 302, response.context["form"].errors
    run = Run.objects.get()
    assert run.config["preset"] == "ps-qwen3-8b" and run.config["lr"] == 1e-6  # edited, still the preset's run


def test_it_refuses_a_run_that_cannot_fit_with_the_reason(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    response = client_for(alice).post(new_url(project), preset_data("ps-qwen3-8b", parallelism="ddp"))
    assert response.status_code == 400
    body = response.content.decode()
    assert "does not fit: weights, gradients and optimizer state alone need 153 GiB of 80; use fsdp or more GPUs" in (
        body
    )
    assert not Run.objects.exists()


def test_it_launches_a_run_that_cannot_fit_when_overridden(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    data = preset_data("ps-qwen3-8b", parallelism="ddp", override_fit="on")
    assert client_for(alice).post(new_url(project), data).status_code == 302
    assert Run.objects.get().config["parallelism"] == "ddp"


def test_it_refuses_more_gpus_than_a_host_has_even_when_overridden(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    data = preset_data("ps-qwen3-8b", gpus="16", override_fit="on")
    response = client_for(alice).post(new_url(project), data)
    assert response.status_code == 400
    assert "asks for 16 GPUs but a host of this pool has 8" in response.content.decode()
    assert not Run.objects.exists()


def test_it_plans_with_the_gpus_a_live_worker_reported(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    data = preset_data("ps-qwen3-4b", parallelism="ddp", gpus="4", vllm_gpu_memory_utilization="0.3")  # H200 only
    assert client_for(alice).post(new_url(project), data).status_code == 400
    gpus = [{"index": i, "name": "NVIDIA H200", "memory_total_mb": 143771, "memory_free_mb": 143000} for i in range(4)]
    Worker.objects.create(
        name="gpu-h100@h1", hostname="h1", queues=["gpu-h100"], gpus=gpus, last_seen_at=timezone.now()
    )
    response = client_for(alice).post(new_url(project), data)
    assert response.status_code == 302, response.context["form"].errors


def test_the_service_refuses_what_does_not_fit_for_api_callers_too(alice: Any, project: Any) -> None:
    cfg = load_preset("ps-qwen3-8b").config(parallelism="ddp")
    with pytest.raises(ServiceError, match=r"gpu-h100: does not fit: weights, gradients and optimizer state"):
        run_create(project=project, user=alice, config=cfg, queue="gpu-h100", enqueue=False)
    run_create(project=project, user=alice, config=cfg, queue="gpu-h100", enqueue=False, override_fit=True)
    assert Run.objects.count() == 1


def test_the_grid_preview_shows_each_cells_memory_verdict(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    data = preset_data("ps-qwen3-8b", name="par", factors="parallelism = fsdp, ddp", preview="1")
    response = client_for(alice).post(reverse("webapp-grid-create", args=[project.pk]), data)
    body = response.content.decode()
    assert response.status_code == 400
    assert "fits: " in body and "1 of 2 runs do not fit; run 2: does not fit" in body


def test_the_estimate_lists_a_score_phase_only_for_runs_that_score(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    ps = client_for(alice).get(new_url(project, "preset=ps-qwen3-8b")).content.decode()
    grpo = client_for(alice).get(new_url(project, "preset=grpo-qwen3-8b")).content.decode()
    assert "<td>generate phase</td>" in ps and "<td>score phase</td>" in ps and "<td>update phase</td>" in ps
    # on-policy GRPO takes its old log-probs from the update's first forward: no scoring pass
    assert "<td>generate phase</td>" in grpo and "<td>score phase</td>" not in grpo and "<td>update phase</td>" in grpo
