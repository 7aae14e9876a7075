"""Property: whatever a client sends the API, it never answers 5xx, and every answer is JSON.

A seeded random generator (hypothesis is not installed) builds malformed run-creation bodies
(out-of-range and non-finite numbers, NaN/Infinity tokens, NUL bytes, lone surrogates, huge
strings, wrong types, deep nesting) and malformed query strings for every read endpoint. A failure
prints the seed and the request, so it replays.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from trainer.config import TrainConfig
from webapp.models import ApiToken, Run
from webapp.views.api import RUN_META_FIELDS

SEED = 20261203
CASES = 300
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
NASTY: list[Any] = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    0.5,
    "",
    "tiny-random",
    "a\x00b",
    "\ud800",
    "x" * 5000,
    "é" * 300,
    "../../etc/passwd",
    [],
    [1, "a", None],
    {},
    {"a": {"b": [None, "\x00"]}},
    {"n": float("nan")},
]
RAW_BODIES = [b"{", b"[1, 2]", b'"text"', b"[" * 50_000, b"\xff\xfe{}", b'{"steps": 1e999}', b"NaN", b"{" + b" " * 1000]
QUERY_VALUES = ["", "1", "-1", "0", "9" * 40, str(2**63), "1e3", "abc", "%00", "a%00b", "%ED%A0%80", "x" * 2000]


def _value(rng: random.Random) -> Any:
    value = rng.choice(NASTY)
    return [value] * rng.randint(1, 3) if rng.random() < 0.1 else value


def _body(rng: random.Random) -> bytes:
    if rng.random() < 0.1:
        return rng.choice(RAW_BODIES)
    keys = rng.sample([*FIELDS, *RUN_META_FIELDS, "junk", "\x00", "schema_version"], rng.randint(0, 6))
    body = {"model": "tiny-random", "steps": 2, "n": 2, "questions_per_step": 2} if rng.random() < 0.5 else {}
    body.update({key: _value(rng) for key in keys})
    return json.dumps(body).encode()  # NaN and Infinity become the JSON tokens a client may send


def _query(rng: random.Random, names: list[str]) -> str:
    pairs = [(rng.choice([*names, "junk", "offset"]), rng.choice(QUERY_VALUES)) for _ in range(rng.randint(1, 4))]
    return "&".join(f"{quote(n)}={v}" for n, v in pairs)


@pytest.mark.django_db
def test_random_malformed_requests_never_get_a_5xx_and_always_get_json(
    alice: Any, project: Any, make_run: Any, settings: Any
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    token = ApiToken.issue(user=alice, name="fuzz")[1]
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")
    run = make_run(status="running")
    reads = {
        f"/api/projects/{project.pk}/runs/": ["page", "limit", "status", "algorithm", "tag"],
        f"/api/runs/{run.pk}/samples/": ["page", "limit", "step", "question_id", "mode", "tokens"],
        f"/api/runs/{run.pk}/metrics/": ["key", "min_step", "max_step", "points"],
        f"/api/runs/{run.pk}/evaluations/": ["benchmark", "mode"],
        f"/api/runs/{run.pk}/logs/": ["level", "attempt", "after", "tail"],
        f"/api/runs/{run.pk}/": ["x"],
    }
    rng = random.Random(SEED)
    created = 0
    for case in range(CASES):
        if rng.random() < 0.6:
            body = _body(rng)
            key = {"HTTP_IDEMPOTENCY_KEY": rng.choice(["k", "\x00", "é", "x" * 300])} if rng.random() < 0.2 else {}
            response = client.post(
                f"/api/projects/{project.pk}/runs/", data=body, content_type="application/json", **key
            )
            request = f"POST body={body[:300]!r} headers={key}"
            created += response.status_code == 201
        else:
            path, names = rng.choice(list(reads.items()))
            url = f"{path}?{_query(rng, names)}"
            response = client.get(url)
            request = f"GET {url[:300]}"
        where = f"case {case} (seed {SEED}): {request} -> {response.status_code} {response.content[:300]!r}"
        assert response.status_code < 500, where
        assert response["Content-Type"].startswith("application/json"), where
    assert created and Run.objects.count() == created + 1  # some bodies were valid, and only those made runs


BAD_BODIES = [
    ({"steps": 10**20}, "steps"),
    ({"seed": 10**20}, "seed"),
    ({"gpus": 10**6}, "gpus"),
    ({"eta": 1e308}, "eta"),
    ({"max_new_tokens": 10**9}, "max_new_tokens"),
    ({"model": "m" * 1_000_000}, "model"),
    ({"name": "a\x00b"}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"tags": ["ok", "a\x00b"]}, "tags"),
    ({"tags": ["x" * 51]}, "tags"),
    ({"extra": {"note": "a\x00b"}}, "extra"),
    ({"study": 10**30}, "study"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_each_malformed_field_is_a_400_naming_it(alice: Any, project: Any, body: dict[str, Any], field: str) -> None:
    token = ApiToken.issue(user=alice, name="t")[1]
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.post(f"/api/projects/{project.pk}/runs/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == field
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_tokens_are_a_400_naming_the_field(alice: Any, project: Any, token: str) -> None:
    api_token = ApiToken.issue(user=alice, name="t")[1]
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {api_token}")
    body = '{"eta": ' + token + "}"
    response = client.post(f"/api/projects/{project.pk}/runs/", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "eta"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [("page=" + "9" * 25, "page"), ("page=99999999999", "page"), ("tag=a%00b", "tag"), ("status=%ED%A0%80", "status")],
)
def test_a_malformed_query_parameter_is_a_400_naming_it(alice: Any, project: Any, query: str, field: str) -> None:
    token = ApiToken.issue(user=alice, name="t")[1]
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get(f"/api/projects/{project.pk}/runs/?{query}")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == field
