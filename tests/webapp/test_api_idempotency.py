"""A retried run creation never duplicates: the API's Idempotency-Key header, on the test client and
on a real web server answering the same request many times at once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.test import Client

from tests.workers import WebProcess, free_port
from webapp.models import ApiToken, Run

BODY = {"model": "tiny-random", "steps": 2, "n": 2, "questions_per_step": 2, "name": "retried"}


@pytest.fixture
def post(alice: Any, project: Any, settings: Any) -> Any:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    token = ApiToken.issue(user=alice, name="t")[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def send(body: dict[str, Any], key: str | None = None) -> Any:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
        url = f"/api/projects/{project.pk}/runs/"
        return client.post(url, data=json.dumps(body), content_type="application/json", **headers)

    return send


@pytest.mark.django_db
def test_a_post_repeated_with_its_idempotency_key_answers_the_first_run(post: Any) -> None:
    first = post(BODY, key="9b1d0c1e-retry")
    again = post(BODY, key="9b1d0c1e-retry")
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Run.objects.count() == 1

    other = post(BODY, key="another-key")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert post(BODY).json()["id"] not in (first.json()["id"], other.json()["id"])  # no key: a new run each time


@pytest.mark.django_db
def test_an_idempotency_key_reused_for_another_request_is_refused(post: Any) -> None:
    assert post(BODY, key="k1").status_code == 201
    refused = post({**BODY, "steps": 3}, key="k1")
    assert refused.status_code == 422
    assert refused.json()["field"] == "Idempotency-Key"
    assert Run.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["x" * 201, "tab\there", "nul\x00"])
def test_a_malformed_idempotency_key_is_a_400_naming_the_header(post: Any, key: str) -> None:
    response = post(BODY, key=key)
    assert response.status_code == 400 and response.json()["field"] == "Idempotency-Key"
    assert not Run.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_same_post_sent_eight_times_at_once_to_a_real_server_creates_one_run(
    alice: Any, project: Any, broker: Any
) -> None:
    token = ApiToken.issue(user=alice, name="t")[1]
    web = WebProcess(free_port())
    try:
        path = f"/api/projects/{project.pk}/runs/"

        def send(_: int) -> tuple[int, Any]:
            status, _ctype, body, _headers = web.raw(
                "POST", path, token=token, data=json.dumps(BODY).encode(), headers={"Idempotency-Key": "client-retry-1"}
            )
            return status, body

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(8)))
    finally:
        web.stop()
    assert {status for status, _ in answers} == {201}, answers
    assert len({body["id"] for _, body in answers}) == 1
    assert Run.objects.count() == 1
