"""Review: comments, verdicts and tags on runs, studies and samples; the activity feed; who may do what."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from webapp.models import Activity, Comment, Run, Sample, Study, Tag, Verdict
from webapp.views.review import review_context

KINDS = ("run", "study", "sample")


@pytest.fixture
def run(project: Any, alice: Any) -> Run:
    return Run.objects.create(
        project=project, name="ps eta=0.03", algorithm="policy_split", model_name="tiny-random", created_by=alice
    )


@pytest.fixture
def study(project: Any) -> Study:
    return Study.objects.create(project=project, name="eta sweep")


@pytest.fixture
def make_sample(run: Run) -> Callable[..., Sample]:
    def factory(**fields: Any) -> Sample:
        values = {
            "run": run,
            "step": 3,
            "question_id": "q7",
            "mode": "he",
            "context": "he",
            "index": 0,
            "prompt": "<|im_start|>user\nWhat is 6*7?<|im_end|>\n",
            "response": "42",
            "reward": 1.0,
            "length": 1,
            "tokens": ["42"],
            "surprisal": [0.3],
            **fields,
        }
        return Sample.objects.create(**values)

    return factory


@pytest.fixture
def targets(run: Run, study: Study, make_sample: Callable[..., Sample]) -> dict[str, Any]:
    return {"run": run, "study": study, "sample": make_sample()}


def comment_url(kind: str, target: Any) -> str:
    return reverse("webapp-comment-create", args=[kind, target.pk])


def verdict_url(kind: str, target: Any) -> str:
    return reverse("webapp-verdict-set", args=[kind, target.pk])


def comments_on(kind: str, target: Any) -> list[Comment]:
    return list(Comment.objects.filter(**{kind: target}))


# --- comments -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("persona", ["alice", "bob"])
def test_it_lets_members_comment_on_runs_studies_and_samples(
    request: Any, client_for: Any, targets: dict[str, Any], kind: str, persona: str
) -> None:
    user = request.getfixturevalue(persona)
    target = targets[kind]
    r = client_for(user).post(comment_url(kind, target), {"body": "Looks **good**"})
    [comment] = comments_on(kind, target)
    assert r.status_code == 302 and r["Location"].endswith(f"#comment-{comment.pk}")
    assert (comment.author, comment.body, comment.project) == (user, "Looks **good**", target_project(target))
    activity = Activity.objects.get()
    assert (activity.actor, activity.verb) == (user, "commented on")


def target_project(target: Any) -> Any:
    return target.run.project if isinstance(target, Sample) else target.project


def test_it_returns_to_the_page_the_comment_was_posted_from(client_for: Any, bob: Any, run: Run) -> None:
    page = reverse("webapp-side-by-side", args=[run.pk]) + "?step=3&q=q7"
    r = client_for(bob).post(comment_url("run", run), {"body": "hi", "next": page})
    assert r["Location"] == page + f"#comment-{Comment.objects.get().pk}"
    r = client_for(bob).post(verdict_url("run", run), {"verdict": "approve", "next": page})
    assert r["Location"] == page + "#review"


def test_it_ignores_a_next_url_on_another_host(client_for: Any, bob: Any, run: Run) -> None:
    r = client_for(bob).post(comment_url("run", run), {"body": "hi", "next": "https://evil.example/"})
    assert r["Location"].startswith(run.get_absolute_url())


def test_it_rejects_an_empty_comment(client_for: Any, bob: Any, run: Run) -> None:
    client = client_for(bob)
    r = client.post(comment_url("run", run), {"body": "   "}, follow=False)
    assert r.status_code == 302
    assert Comment.objects.count() == 0
    assert Activity.objects.count() == 0


def test_it_404s_for_an_unknown_target_kind(client_for: Any, bob: Any, run: Run) -> None:
    assert (
        client_for(bob).post(reverse("webapp-comment-create", args=["project", run.pk]), {"body": "x"}).status_code
        == 404
    )


def test_it_only_accepts_posts(client_for: Any, bob: Any, run: Run) -> None:
    assert client_for(bob).get(comment_url("run", run)).status_code == 405
    assert client_for(bob).get(verdict_url("run", run)).status_code == 405
    assert client_for(bob).get(reverse("webapp-run-tags", args=[run.pk])).status_code == 405


def test_it_requires_a_csrf_token(bob: Any, run: Run) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post(comment_url("run", run), {"body": "hi"}).status_code == 403
    assert client.post(verdict_url("run", run), {"verdict": "approve"}).status_code == 403
    assert client.post(reverse("webapp-run-tags", args=[run.pk]), {"name": "x"}).status_code == 403
    assert Comment.objects.count() == Verdict.objects.count() == 0


def test_it_requires_login(client: Any, run: Run) -> None:
    r = client.post(comment_url("run", run), {"body": "hi"})
    assert r.status_code == 302 and "/login/" in r["Location"]
    assert Comment.objects.count() == 0


# --- verdicts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_it_records_verdicts_with_who_and_when(client_for: Any, bob: Any, targets: dict[str, Any], kind: str) -> None:
    target = targets[kind]
    r = client_for(bob).post(verdict_url(kind, target), {"verdict": "needs_work", "note": "check seed 2"})
    assert r.status_code == 302
    verdict = Verdict.objects.get(**{kind: target})
    assert (verdict.author, verdict.verdict, verdict.note) == (bob, "needs_work", "check seed 2")
    assert verdict.created_at is not None
    assert Activity.objects.get().verb == "set verdict “Needs work” on"


def test_it_summarises_the_latest_verdict_of_each_person(
    client_for: Any, alice: Any, bob: Any, run: Run, project: Any
) -> None:
    earlier = timezone.now() - timedelta(hours=1)
    Verdict.objects.create(project=project, run=run, author=alice, verdict="reject", created_at=earlier)
    Verdict.objects.create(project=project, run=run, author=alice, verdict="approve")
    Verdict.objects.create(project=project, run=run, author=bob, verdict="needs_work")
    box = review_context(run, alice)["review"]
    assert box.summary_text == "1 approve, 1 needs work"
    assert [v.author for v in box.latest] == [bob, alice]
    assert len(box.verdicts) == 3 and box.my_verdict == "approve"


def test_it_rejects_an_unknown_verdict(client_for: Any, bob: Any, run: Run) -> None:
    assert client_for(bob).post(verdict_url("run", run), {"verdict": "maybe"}).status_code == 400
    assert Verdict.objects.count() == 0


# --- tags -----------------------------------------------------------------------------------------


def tag(client: Any, run: Run, name: str, action: str = "add") -> Any:
    return client.post(reverse("webapp-run-tags", args=[run.pk]), {"name": name, "action": action})


def test_it_adds_and_removes_run_tags(client_for: Any, bob: Any, run: Run) -> None:
    client = client_for(bob)
    assert tag(client, run, "  baseline  ").status_code == 302
    tag(client, run, "baseline")
    assert [t.name for t in run.tags.all()] == ["baseline"]
    tag(client, run, "baseline", "remove")
    assert list(run.tags.all()) == []
    assert Tag.objects.filter(name="baseline").exists()  # the project keeps the tag for other runs
    assert [a.verb for a in Activity.objects.order_by("id")] == [
        "tagged “baseline”",
        "tagged “baseline”",
        "removed tag “baseline” from",
    ]


def test_it_rejects_empty_and_overlong_tags(client_for: Any, bob: Any, run: Run) -> None:
    client = client_for(bob)
    tag(client, run, "")
    tag(client, run, "x" * 51)
    assert Tag.objects.count() == 0
    assert tag(client, run, "x", action="rename").status_code == 400


def test_it_keeps_tags_within_the_run_project(client_for: Any, bob: Any, run: Run, other_project: Any) -> None:
    Tag.objects.create(project=other_project, name="baseline")
    tag(client_for(bob), run, "baseline")
    assert run.tags.get().project == run.project


# --- permissions ----------------------------------------------------------------------------------


def _write(client: Any, action: str, kind: str, target: Any) -> Any:
    if action == "comment":
        return client.post(comment_url(kind, target), {"body": "hi"})
    if action == "verdict":
        return client.post(verdict_url(kind, target), {"verdict": "approve"})
    return tag(client, target, "hot")


WRITES = [("comment", k) for k in KINDS] + [("verdict", k) for k in KINDS] + [("tag", "run")]


@pytest.mark.parametrize(("action", "kind"), WRITES)
@pytest.mark.parametrize(("persona", "status"), [("alice", 302), ("bob", 302), ("vera", 403), ("eve", 404)])
def test_it_lets_only_members_write(
    request: Any, client_for: Any, targets: dict[str, Any], action: str, kind: str, persona: str, status: int
) -> None:
    client = client_for(request.getfixturevalue(persona))
    assert _write(client, action, kind, targets[kind]).status_code == status
    written = Comment.objects.count() + Verdict.objects.count() + Tag.objects.count()
    assert written == (1 if status == 302 else 0)


@pytest.mark.parametrize(("persona", "status"), [("alice", 200), ("bob", 200), ("vera", 200), ("eve", 404)])
def test_it_shows_review_pages_to_the_team_only(
    request: Any, client_for: Any, targets: dict[str, Any], project: Any, persona: str, status: int
) -> None:
    client = client_for(request.getfixturevalue(persona))
    assert client.get(reverse("webapp-sample-review", args=[targets["sample"].pk])).status_code == status
    assert client.get(reverse("webapp-activity", args=[project.pk])).status_code == status


def test_it_404s_for_missing_objects(client_for: Any, alice: Any) -> None:
    client = client_for(alice)
    assert client.post(comment_url("run", Run(pk=999_999)), {"body": "x"}).status_code == 404
    assert client.get(reverse("webapp-sample-review", args=[999_999])).status_code == 404


# --- the sample page and the reusable partial -----------------------------------------------------


def test_the_sample_page_shows_the_response_and_its_thread(
    client_for: Any, alice: Any, bob: Any, make_sample: Callable[..., Sample], project: Any
) -> None:
    sample = make_sample(response="<script>alert(1)</script>")
    Comment.objects.create(
        project=project,
        author=bob,
        sample=sample,
        body="**wrong** see [x](javascript:alert(1)) <img src=x onerror=alert(1)>",
    )
    Verdict.objects.create(project=project, author=bob, sample=sample, verdict="reject")
    html = client_for(alice).get(reverse("webapp-sample-review", args=[sample.pk])).content.decode()
    assert "<strong>wrong</strong>" in html
    assert "javascript:" not in html and "<img src=x" not in html and "<script>alert" not in html
    assert "1 reject" in html and "bob" in html
    assert reverse("webapp-side-by-side", args=[sample.run_id]) + "?step=3&amp;q=q7" in html


def test_the_sample_page_is_read_only_for_viewers(
    client_for: Any, vera: Any, make_sample: Callable[..., Sample]
) -> None:
    sample = make_sample()
    html = client_for(vera).get(reverse("webapp-sample-review", args=[sample.pk])).content.decode()
    assert comment_url("sample", sample) not in html and verdict_url("sample", sample) not in html
    assert "Read-only access" in html


@pytest.mark.parametrize(("persona", "forms"), [("bob", True), ("vera", False)])
def test_the_review_partial_renders_for_any_target(
    request: Any, rf: RequestFactory, targets: dict[str, Any], persona: str, forms: bool
) -> None:
    user = request.getfixturevalue(persona)
    for kind, target in targets.items():
        req = rf.get("/")
        req.user = user
        context = review_context(target, user)
        html = render_to_string("webapp/partials/review_thread.html", context, request=req)
        assert 'id="review"' in html
        assert (comment_url(kind, target) in html) is forms
        assert ("csrfmiddlewaretoken" in html) is forms


def test_the_tags_partial_lists_and_edits_run_tags(rf: RequestFactory, bob: Any, run: Run, project: Any) -> None:
    run.tags.add(Tag.objects.create(project=project, name="baseline"))
    Tag.objects.create(project=project, name="ablation")
    req = rf.get("/")
    req.user = bob
    context = {"run": run, **review_context(run, bob)}
    assert [t.name for t in context["review"].tag_suggestions] == ["ablation"]
    html = render_to_string("webapp/partials/review_tags.html", context, request=req)
    assert "baseline" in html and reverse("webapp-run-tags", args=[run.pk]) in html
    assert '<option value="ablation">' in html


# --- activity feed --------------------------------------------------------------------------------


def test_the_activity_feed_lists_newest_first_with_links(
    client_for: Any, vera: Any, bob: Any, run: Run, project: Any
) -> None:
    now = timezone.now()
    Activity.objects.create(
        project=project,
        actor=bob,
        verb="launched",
        target="old run",
        url="/runs/1/",
        created_at=now - timedelta(days=2),
    )
    Activity.objects.create(
        project=project, actor=bob, verb="commented on", target="new run", url="/runs/2/", created_at=now
    )
    Activity.objects.create(
        project=project,
        actor=bob,
        verb="evil",
        target="x",
        url="javascript:alert(1)",
        created_at=now - timedelta(days=3),
    )
    html = client_for(vera).get(reverse("webapp-activity", args=[project.pk])).content.decode()
    assert html.index("new run") < html.index("old run")
    assert '<a href="/runs/2/">new run</a>' in html and "javascript:" not in html


def test_the_activity_feed_paginates(client_for: Any, alice: Any, project: Any, other_project: Any) -> None:
    now = timezone.now()
    Activity.objects.bulk_create(
        [
            Activity(
                project=project, actor=alice, verb="launched", target=f"run {i}", created_at=now - timedelta(minutes=i)
            )
            for i in range(60)
        ]
        + [Activity(project=other_project, actor=alice, verb="launched", target="secret")]
    )
    client = client_for(alice)
    first = client.get(reverse("webapp-activity", args=[project.pk]))
    assert [a.target for a in first.context["page"]][:2] == ["run 0", "run 1"]
    assert len(first.context["page"]) == 50
    second = client.get(reverse("webapp-activity", args=[project.pk]) + "?page=2")
    assert len(second.context["page"]) == 10 and "secret" not in second.content.decode()


def test_writes_show_up_in_the_activity_feed(client_for: Any, bob: Any, targets: dict[str, Any], project: Any) -> None:
    client = client_for(bob)
    client.post(comment_url("study", targets["study"]), {"body": "nice sweep"})
    client.post(verdict_url("sample", targets["sample"]), {"verdict": "approve"})
    tag(client, targets["run"], "keep")
    html = client.get(reverse("webapp-activity", args=[project.pk])).content.decode()
    for text in ("commented on", "eta sweep", "set verdict “Approve” on", "tagged “keep”"):
        assert text in html
