"""The side-by-side view: both modes' responses to one question, filters, navigation, permalinks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from trainer.data.prompts import HE_SYSTEM_PROMPT
from webapp.models import Comment, Run, Sample, Verdict
from webapp.sample_selectors import prompt_turns, question_text
from webapp.templatetags.psl import SURPRISAL_EDGES, auto_edges, surprisal_bucket
from webapp.views.side_by_side import ViewState
from webapp.worker import ingest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NORMAL_PROMPT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
HE_PROMPT = "<|im_start|>system\n" + HE_SYSTEM_PROMPT + "<|im_end|>\n" + NORMAL_PROMPT


@pytest.fixture
def make_sample() -> Callable[..., Sample]:
    """Create a Sample row: make_sample(run, step=1, question_id="q1", mode="he", reward=1.0, ...)."""

    def factory(
        run: Any,
        *,
        step: int = 1,
        question_id: str = "q1",
        mode: str = "normal",
        index: int = 0,
        reward: float = 0.0,
        response: str = "",
        question: str = "",
        **fields: Any,
    ) -> Sample:
        question = question or f"What is question {question_id}?"
        response = response or f"{mode} answer {index} to {question_id}"
        prompt = (HE_PROMPT if mode == "he" else NORMAL_PROMPT).format(q=question)
        tokens = fields.pop("tokens", response.split(" "))
        return Sample.objects.create(
            run=run,
            step=step,
            question_id=question_id,
            mode=mode,
            context=mode,
            index=index,
            prompt=prompt,
            answer=fields.pop("answer", "42"),
            response=response,
            reward=reward,
            length=len(tokens),
            entropy=fields.pop("entropy", 0.5),
            tokens=tokens,
            surprisal=fields.pop("surprisal", [0.5 * i for i in range(len(tokens))]),
            **fields,
        )

    return factory


@pytest.fixture
def make_run(project: Any, alice: Any) -> Callable[..., Run]:
    """A bare Run row (no trainer config needed to look at samples)."""

    def factory(*, project: Any = project, name: str = "run", algorithm: str = "policy_split") -> Run:
        return Run.objects.create(
            project=project,
            name=name,
            algorithm=algorithm,
            model_name="tiny-random",
            status="succeeded",
            created_by=alice,
        )

    return factory


@pytest.fixture
def run(make_run: Callable[..., Run]) -> Run:
    return make_run(name="policy split")


def url(run: Any, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("webapp-side-by-side", args=[run.pk]) + ("?" + query if query else "")


def question(
    make_sample: Callable[..., Sample], run: Any, qid: str, *, normal: list[float], he: list[float], step: int = 1
) -> None:
    """One question at one step: len(normal) normal-mode and len(he) HE-mode rollouts with these rewards."""
    for mode, rewards in (("normal", normal), ("he", he)):
        for i, r in enumerate(rewards):
            make_sample(run, step=step, question_id=qid, mode=mode, index=i, reward=r)


def question_ids(response: Any) -> list[str]:
    return [r.question_id for r in response.context["rows"]]


# --- rendering ------------------------------------------------------------------------------------


def test_it_renders_both_modes_columns_for_a_question(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    question(make_sample, run, "q1", normal=[1, 0], he=[0, 0])
    r = client_for(alice).get(url(run, step=1, q="q1"))
    assert r.status_code == 200
    html = r.content.decode()
    assert "Normal mode" in html and "High-entropy mode" in html
    assert "normal answer 0 to q1" in html and "normal answer 1 to q1" in html
    assert "he answer 1 to q1" in html
    left, right = r.context["columns"]
    assert [c.sample.mode for c in left.cards] == ["normal", "normal"]
    assert [c.sample.mode for c in right.cards] == ["he", "he"]
    assert (left.stats.correct, left.stats.n, right.stats.correct) == (1, 2, 0)


def test_it_defaults_to_the_latest_step_and_its_first_question(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    question(make_sample, run, "early", normal=[1], he=[1], step=1)
    question(make_sample, run, "late-b", normal=[1], he=[0], step=5)
    question(make_sample, run, "late-a", normal=[0], he=[0], step=5)
    r = client_for(alice).get(url(run))
    assert r.context["state"].step == 5
    # Questions keep the trainer's order (first logged first), not alphabetical order.
    assert question_ids(r) == ["late-b", "late-a"]
    assert r.context["state"].q == "late-b"
    assert r.context["canonical"] == "step=5&q=late-b"


def test_it_shows_per_question_accuracy_badges(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    question(make_sample, run, "q1", normal=[1, 1, 0, 0], he=[1, 0, 0, 0])
    html = client_for(alice).get(url(run)).content.decode()
    assert "N 2/4" in html and "HE 1/4" in html


def test_it_shows_that_the_he_prompt_has_the_system_turn(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    question(make_sample, run, "q1", normal=[1], he=[1])
    r = client_for(alice).get(url(run))
    left, right = r.context["columns"]
    assert not left.cards[0].he_system
    assert right.cards[0].he_system
    assert "HE system turn" in r.content.decode()
    assert r.context["row"].text == "What is question q1?"


def test_it_colours_tokens_by_surprisal(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    make_sample(run, tokens=["The", " answer"], surprisal=[0.05, 3.5], response="The answer")
    make_sample(run, mode="he")
    html = client_for(alice).get(url(run)).content.decode()
    assert '<span class="tok h0" title="0.05 nats">The</span>' in html
    assert '<span class="tok h7" title="3.50 nats"> answer</span>' in html
    assert "heat-on" in html


def test_it_leaves_the_heatmap_to_the_script_when_it_is_off(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    s = make_sample(run, tokens=["Hi"], surprisal=[1.25])
    client = client_for(alice)
    r = client.get(url(run, heat=0))
    html = r.content.decode()
    assert 'class="tok' not in html and "heat-off" in html
    assert "1.25" not in html  # no token data in the page: the script fetches it on toggle
    # With the colour scale of those tokens (one token is too few for percentiles: the fixed edges).
    assert client.get(r.context["tokens_url"]).json() == {str(s.pk): [["Hi"], [1.25]], "edges": list(SURPRISAL_EDGES)}


def test_the_token_data_is_only_served_for_runs_the_user_may_see(
    client_for: Any, alice: Any, eve: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    s = make_sample(run, tokens=["Hi"], surprisal=[1.25])
    tokens_url = reverse("webapp-sample-tokens") + f"?ids={s.pk}"
    assert client_for(eve).get(tokens_url).json() == {}
    assert client_for(alice).get(tokens_url).json() == {str(s.pk): [["Hi"], [1.25]]}


def test_the_page_loads_no_token_data_without_the_heatmap(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    make_sample(run, tokens=["Hi"], surprisal=[1.25])
    with CaptureQueriesContext(connection) as queries:
        client_for(alice).get(url(run, heat=0))
    assert not [q for q in queries.captured_queries if "surprisal_f32" in q["sql"]]


def test_it_shows_comment_counts_and_verdict_buttons_on_each_card(
    client_for: Any, alice: Any, bob: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    s = make_sample(run)
    Comment.objects.create(project=run.project, author=bob, sample=s, body="look")
    Comment.objects.create(project=run.project, author=bob, sample=s, body="again")
    Verdict.objects.create(project=run.project, author=alice, sample=s, verdict="reject")
    r = client_for(alice).get(url(run))
    card = r.context["columns"][0].cards[0]
    assert (card.sample.n_comments, card.sample.my_verdict) == (2, "reject")
    html = r.content.decode()
    assert reverse("webapp-verdict-set", args=["sample", s.pk]) in html
    assert reverse("webapp-sample-review", args=[s.pk]) in html


def test_it_hides_verdict_buttons_from_viewers(
    client_for: Any, vera: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    s = make_sample(run)
    r = client_for(vera).get(url(run))
    assert r.status_code == 200
    assert reverse("webapp-verdict-set", args=["sample", s.pk]) not in r.content.decode()


def test_it_renders_an_empty_state_for_a_run_without_samples(client_for: Any, alice: Any, run: Any) -> None:
    r = client_for(alice).get(url(run))
    assert r.status_code == 200
    assert "No samples yet" in r.content.decode()


# --- filters --------------------------------------------------------------------------------------


@pytest.fixture
def mixed(run: Any, make_sample: Callable[..., Sample]) -> Any:
    question(make_sample, run, "same", normal=[1, 0], he=[0, 1])  # equal means: agree
    question(make_sample, run, "differ", normal=[1, 1], he=[1, 0])  # both found one, means differ
    question(make_sample, run, "only-he", normal=[0, 0], he=[0, 1])  # only HE found a correct answer
    question(make_sample, run, "none", normal=[0, 0], he=[0, 0])
    question(make_sample, run, "all", normal=[1, 1], he=[1, 1])
    return run


def test_it_filters_questions_where_the_modes_disagree(client_for: Any, alice: Any, mixed: Any) -> None:
    r = client_for(alice).get(url(mixed, show="disagree"))
    assert question_ids(r) == ["differ", "only-he"]


def test_it_filters_questions_where_only_one_mode_is_correct(client_for: Any, alice: Any, mixed: Any) -> None:
    r = client_for(alice).get(url(mixed, show="one_correct"))
    assert question_ids(r) == ["only-he"]
    assert "only HE ✓" in r.content.decode()


def test_it_filters_correct_responses(client_for: Any, alice: Any, mixed: Any) -> None:
    r = client_for(alice).get(url(mixed, outcome="correct", q="only-he"))
    assert "none" not in question_ids(r)
    left, right = r.context["columns"]
    assert left.cards == []
    assert [c.sample.reward for c in right.cards] == [1.0]


def test_it_filters_incorrect_responses(client_for: Any, alice: Any, mixed: Any) -> None:
    r = client_for(alice).get(url(mixed, outcome="incorrect", q="differ"))
    assert "all" not in question_ids(r)
    left, right = r.context["columns"]
    assert left.cards == [] and [c.sample.index for c in right.cards] == [1]


def test_it_searches_questions_and_responses(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    make_sample(run, question_id="q1", question="How many primes below ten?")
    make_sample(run, question_id="q2", response="the Riemann zeta function")
    make_sample(run, question_id="q3")
    assert question_ids(client_for(alice).get(url(run, search="PRIMES"))) == ["q1"]
    r = client_for(alice).get(url(run, search="riemann"))
    assert question_ids(r) == ["q2"]
    # Aggregates still count every sample of a matching question, not only the matching ones.
    make_sample(run, question_id="q2", index=1, reward=1.0)
    assert client_for(alice).get(url(run, search="riemann")).context["rows"][0].a.n == 2


def test_it_falls_back_to_the_first_matching_question(client_for: Any, alice: Any, mixed: Any) -> None:
    r = client_for(alice).get(url(mixed, show="one_correct", q="same"))
    assert r.context["state"].q == "only-he"


def test_it_says_when_no_question_matches(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    question(make_sample, run, "q1", normal=[1], he=[1])
    r = client_for(alice).get(url(run, show="disagree"))
    assert r.context["rows"] == [] and "Nothing matches" in r.content.decode()


# --- navigation and permalinks --------------------------------------------------------------------


def test_it_navigates_between_steps(client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]) -> None:
    for step in (0, 10, 20):
        question(make_sample, run, "q1", normal=[1], he=[0], step=step)
    r = client_for(alice).get(url(run, step=10, q="q1"))
    assert r.context["steps"] == [0, 10, 20]
    assert r.context["prev_step_url"] == "?step=0&q=q1"
    assert r.context["next_step_url"] == "?step=20&q=q1"
    # A step without samples snaps to the nearest one that has them (the slider sends any integer).
    assert client_for(alice).get(url(run, step=13)).context["state"].step == 10
    last = client_for(alice).get(url(run, step=20))
    assert last.context["next_step_url"] == ""


def test_it_links_the_previous_and_next_question(client_for: Any, alice: Any, mixed: Any) -> None:
    r = client_for(alice).get(url(mixed, step=1, q="differ"))
    assert r.context["prev_q_url"] == "?step=1&q=same"
    assert r.context["next_q_url"] == "?step=1&q=only-he"
    html = r.content.decode()
    assert 'data-next-q="?step=1&amp;q=only-he"' in html


def test_it_keeps_the_whole_state_in_every_link(
    client_for: Any, alice: Any, make_run: Callable[..., Any], run: Any, make_sample: Callable[..., Sample]
) -> None:
    other = make_run(name="grpo")
    question(make_sample, run, "q1", normal=[1], he=[0], step=3)
    question(make_sample, run, "q2", normal=[0], he=[1], step=3)
    make_sample(other, step=3, question_id="q1", mode="he", reward=1.0)
    params = {
        "step": "3",
        "q": "q1",
        "show": "disagree",
        "outcome": "correct",
        "search": "question",
        "heat": "0",
        "compare": str(other.pk),
        "mode_a": "he",
        "mode_b": "he",
    }
    r = client_for(alice).get(url(run, **params))
    assert r.status_code == 200
    canonical = {k: v[0] for k, v in parse_qs(r.context["canonical"]).items()}
    assert canonical == params
    for row in r.context["rows"]:
        assert {k: v[0] for k, v in parse_qs(urlsplit(row.url).query).items() if k != "q"} == {
            k: v for k, v in params.items() if k != "q"
        }
    # Rendering the canonical query again gives the same view.
    again = client_for(alice).get(url(run) + "?" + r.context["canonical"])
    assert again.context["canonical"] == r.context["canonical"]


def test_it_parses_and_writes_the_state_symmetrically() -> None:
    state = ViewState.from_query(
        QueryDict("step=7&q=a%26b&show=one_correct&outcome=incorrect&search=x+y&heat=0&compare=9&mode_a=he&mode_b=he")
    )
    assert ViewState.from_query(QueryDict(state.query())) == state
    assert ViewState().query() == ""
    assert ViewState(compare=3, mode_b="normal").query() == "compare=3"


def test_it_ignores_malformed_state(client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]) -> None:
    question(make_sample, run, "q1", normal=[1], he=[0])
    bad = {"step": "x", "show": "evil", "outcome": "?", "mode_a": "both", "compare": "abc", "heat": "yes"}
    r = client_for(alice).get(url(run, **bad))
    assert r.status_code == 200
    assert r.context["canonical"] == "step=1&q=q1"


# --- two runs -------------------------------------------------------------------------------------


def test_it_compares_two_runs_on_the_same_question_and_step(
    client_for: Any, alice: Any, run: Any, make_run: Callable[..., Any], make_sample: Callable[..., Sample]
) -> None:
    grpo = make_run(name="grpo baseline", algorithm="grpo")
    question(make_sample, run, "q1", normal=[0, 0], he=[1, 1])
    make_sample(grpo, question_id="q1", reward=1.0, response="grpo says 42")
    r = client_for(alice).get(url(run, compare=grpo.pk, mode_a="he"))
    assert r.status_code == 200
    left, right = r.context["columns"]
    assert (left.side.run, left.side.mode, right.side.run, right.side.mode) == (run, "he", grpo, "normal")
    assert [c.sample.response for c in right.cards] == ["grpo says 42"]
    assert [c.sample.mode for c in left.cards] == ["he", "he"]
    html = r.content.decode()
    assert "grpo baseline · Normal mode" in html and "A 2/2" in html and "B 1/1" in html


def test_it_compares_a_mode_of_each_run(
    client_for: Any, alice: Any, run: Any, make_run: Callable[..., Any], make_sample: Callable[..., Sample]
) -> None:
    other = make_run(name="eta 0.1")
    question(make_sample, run, "q1", normal=[1], he=[0])
    question(make_sample, other, "q1", normal=[0], he=[1])
    r = client_for(alice).get(url(run, compare=other.pk, mode_a="normal", mode_b="he"))
    right = r.context["columns"][1]
    assert [c.sample.run_id for c in right.cards] == [other.pk]
    assert right.cards[0].sample.mode == "he" and r.context["rows"][0].one_correct is False


def test_it_404s_when_run_b_belongs_to_another_team(
    client_for: Any, alice: Any, run: Any, make_run: Callable[..., Any], other_project: Any
) -> None:
    secret = make_run(project=other_project, name="secret")
    assert client_for(alice).get(url(run, compare=secret.pk)).status_code == 404
    assert client_for(alice).get(url(run, compare=999_999)).status_code == 404


def test_it_404s_for_outsiders_and_lets_viewers_read(client_for: Any, eve: Any, vera: Any, run: Any) -> None:
    assert client_for(eve).get(url(run)).status_code == 404
    assert client_for(vera).get(url(run)).status_code == 200


def test_it_requires_login(client: Any, run: Any) -> None:
    r = client.get(url(run))
    assert r.status_code == 302 and "/login/" in r["Location"]


# --- efficiency -----------------------------------------------------------------------------------


def _populate(make_sample: Callable[..., Sample], run: Any, n_questions: int) -> None:
    for i in range(n_questions):
        question(make_sample, run, f"q{i}", normal=[1, 0], he=[i % 2, 0])


def test_it_makes_a_constant_number_of_queries(
    client_for: Any,
    alice: Any,
    bob: Any,
    run: Any,
    make_run: Callable[..., Any],
    make_sample: Callable[..., Sample],
    django_assert_num_queries: Any,
) -> None:
    other = make_run(name="other")
    _populate(make_sample, run, 2)
    _populate(make_sample, other, 2)
    client = client_for(alice)
    first = url(run, q="q0", compare=other.pk)
    client.get(first)  # warm up the session
    with CaptureQueriesContext(connection) as few:
        assert client.get(first).status_code == 200
    for i in range(2, 20):
        question(make_sample, run, f"q{i}", normal=[1, 0, 1, 1], he=[0, 0, 1, 0])
        question(make_sample, other, f"q{i}", normal=[1, 1, 1, 1], he=[0, 0, 0, 0])
    for s in Sample.objects.filter(run=run, question_id="q0"):
        Comment.objects.create(project=run.project, author=bob, sample=s, body="hm")
        Verdict.objects.create(project=run.project, author=alice, sample=s, verdict="approve")
    with django_assert_num_queries(len(few)):
        r = client.get(first)
    assert len(r.context["rows"]) == 20


def test_the_run_picker_offers_the_newest_runs_and_searches_for_others(
    client_for: Any, alice: Any, run: Any, make_run: Callable[..., Any]
) -> None:
    old = make_run(name="the old baseline")
    for i in range(25):
        make_run(name=f"sweep {i}")
    client = client_for(alice)
    picker = client.get(url(run)).context["compare_runs"]
    assert len(picker) == 20 and run not in picker and old not in picker
    # A compared run outside the newest twenty is still offered (and selected) in the picker.
    page = client.get(url(run, compare=old.pk)).content.decode()
    assert f'<option value="{old.pk}" selected>the old baseline</option>' in page
    search = reverse("webapp-run-search", args=[run.project_id])
    assert [r["name"] for r in client.get(search + "?q=baseline").json()["results"]] == ["the old baseline"]


# --- escaping -------------------------------------------------------------------------------------

XSS = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"


@pytest.mark.parametrize("heat", ["1", "0"])
def test_it_escapes_untrusted_responses_and_tokens(
    client_for: Any, alice: Any, run: Any, heat: str, make_sample: Callable[..., Sample]
) -> None:
    tokens = ["<script>", "alert(1)", "</script>", "<img src=x onerror=alert(1)>"]
    make_sample(
        run,
        question_id="<b>q</b>",
        question="<script>alert(2)</script>",
        response=XSS,
        answer="<i>42</i>",
        tokens=tokens,
    )
    client = client_for(alice)
    response = client.get(url(run, heat=heat))
    html = response.content.decode()
    for raw in ("<script>alert", "</script> and", "<img src=x", "<b>q</b>", "<i>42</i>", "<script>alert(2)"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and &lt;img src=x onerror=alert(1)&gt;" in html
    if heat == "1":
        assert "&lt;img src=x onerror=alert(1)&gt;</span>" in html
    else:  # fetched as JSON; side_by_side.js puts each token in with textContent
        tokens_data = client.get(response.context["tokens_url"])
        assert tokens_data["Content-Type"] == "application/json"
        assert tokens in [entry[0] for entry in tokens_data.json().values()]


# --- helpers --------------------------------------------------------------------------------------


def test_it_splits_a_chatml_prompt_into_turns() -> None:
    turns = prompt_turns(HE_PROMPT.format(q="2+2?"))
    assert [(role, he) for role, _, he in turns] == [("system", True), ("user", False), ("assistant", False)]
    assert question_text(HE_PROMPT.format(q="2+2?")) == "2+2?"
    assert question_text("plain question") == "plain question"
    llama = "<|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>"
    assert question_text(llama) == "Why?"


@pytest.mark.parametrize(
    ("nats", "bucket"), [(None, 0), (-1.0, 0), (0.0, 0), (0.1, 1), (0.99, 3), (5.0, 8), (50.0, 9), (float("nan"), 0)]
)
def test_it_buckets_surprisal_for_the_heatmap(nats: float | None, bucket: int) -> None:
    assert surprisal_bucket(nats) == bucket


def test_the_auto_scale_spreads_the_colours_over_the_surprisals_in_view() -> None:
    untrained = [8.0 + i / 10 for i in range(40)]  # every token at 8–12 nats
    edges = auto_edges(untrained)
    assert len(edges) == 9 and list(edges) == sorted(set(edges))
    assert 8.0 < edges[0] < edges[-1] < 12.0
    assert {surprisal_bucket(v, edges) for v in untrained} == set(range(10))  # all ten colours used
    assert {surprisal_bucket(v) for v in untrained} == {9}  # the fixed 0–6 nats scale: one saturated red
    assert auto_edges([0.5] * 5) == SURPRISAL_EDGES  # too few tokens to take percentiles of
    assert len(set(auto_edges([1.0] * 50))) == 9  # bunched values still give increasing edges


def test_the_heatmap_scale_is_auto_per_view_by_default_and_fixed_on_request(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    surprisal = [8.0 + i / 10 for i in range(30)]
    make_sample(
        run, tokens=[f"t{i}" for i in range(30)], surprisal=surprisal, response="".join(f"t{i}" for i in range(30))
    )
    make_sample(run, mode="he", surprisal=[9.5] * 5)  # both columns share the view's scale
    client = client_for(alice)
    auto = client.get(url(run))
    edges = auto.context["heat_edges"]
    assert edges[0] > 8.0 and auto.context["state"].scale == "auto"
    html = auto.content.decode()
    assert '<span class="tok h0" title="8.00 nats">t0</span>' in html
    assert '<span class="tok h9" title="10.90 nats">t29</span>' in html
    assert 'data-scale="fixed"' in html and "scale=fixed" in html
    fixed = client.get(url(run, scale="fixed"))
    assert fixed.context["heat_edges"] == list(SURPRISAL_EDGES)
    assert '<span class="tok h9" title="8.00 nats">t0</span>' in fixed.content.decode()
    assert "scale=fixed" in fixed.context["canonical"]  # the permalink keeps the choice


def test_without_the_heatmap_the_token_data_brings_the_auto_scale(
    client_for: Any, alice: Any, run: Any, make_sample: Callable[..., Sample]
) -> None:
    s = make_sample(run, tokens=[f"t{i}" for i in range(30)], surprisal=[8.0 + i / 10 for i in range(30)])
    client = client_for(alice)
    page = client.get(url(run, heat=0))
    assert page.context["tokens_url"].endswith("&scale=auto")
    data = client.get(page.context["tokens_url"]).json()
    assert list(data["edges"]) == list(auto_edges(data[str(s.pk)][1]))


def test_a_real_smollm2_sample_shows_no_control_tokens_in_text_heatmap_count_or_api(
    client_for: Any, alice: Any, run: Any
) -> None:
    # What the trainer emitted for SmolLM2-135M-Instruct (tests/trainer/test_samples.py makes it live):
    # 21 generated ids, the last one <|im_end|>, shown as 20 tokens.
    sample = json.loads((FIXTURES / "smollm2_sample.json").read_text())
    ingest.samples_record(run.pk, 1, [sample])
    page = client_for(alice).get(url(run)).content.decode()
    cards = page[page.index('class="response') :]
    assert "<|im_end|>" not in sample["response"] and "&lt;|im_end|&gt;" not in cards and "<|im_end|>" not in cards
    assert f"{sample['num_tokens']} tok" in page and sample["num_tokens"] == 20
    assert page.count('<span class="tok h') == 20  # every shown token coloured, the control token not
    api = client_for(alice).get(reverse("api-run-samples", args=[run.pk]), {"tokens": "1"}).json()["results"][0]
    assert api["length"] == 20 and len(api["tokens"]) == 20 and "<|im_end|>" not in "".join(api["tokens"])
    assert "".join(api["tokens"]) == api["response"] == sample["response"]
