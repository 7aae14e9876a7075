"""The compare page: overlay charts, seeds grouped into mean ± band, final metrics with deltas, permalinks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from webapp.models import Run
from webapp.worker import ingest

pytestmark = pytest.mark.django_db

KEY = "normal/accuracy"


def log(run: Run, key: str, values: Sequence[float], *, start: int = 1) -> None:
    ingest.metrics_record([(run.pk, key, start + i, v) for i, v in enumerate(values)])
    run.summary = {**run.summary, key: values[-1]}
    run.save(update_fields=["summary"])


@pytest.fixture
def seeds(make_run: Callable[..., Run]) -> dict[str, Run]:
    """Two GRPO seeds and two Policy Split seeds with hand-made accuracy curves over steps 1–3."""
    runs = {
        "grpo1": make_run(name="grpo s1", algorithm="grpo", seed=1),
        "grpo2": make_run(name="grpo s2", algorithm="grpo", seed=2),
        "ps1": make_run(name="ps s1", algorithm="policy_split", seed=1),
        "ps2": make_run(name="ps s2", algorithm="policy_split", seed=2),
    }
    log(runs["grpo1"], KEY, [0.1, 0.2, 0.3])
    log(runs["grpo2"], KEY, [0.3, 0.4, 0.5])
    log(runs["ps1"], KEY, [0.2, 0.4, 0.6])
    log(runs["ps2"], KEY, [0.4, 0.6, 0.8])
    return runs


def url(project: Any, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("webapp-compare", args=[project.pk]) + ("?" + query if query else "")


def ids(*runs: Run) -> str:
    return ",".join(str(r.pk) for r in runs)


def chart_data(client: Any, response: Any) -> dict[str, Any]:
    """What the page's script fetches: the chart data is not in the HTML."""
    data = client.get(response.context["charts_url"])
    assert data.status_code == 200 and data["Content-Type"] == "application/json"
    return data.json()


def test_it_requires_login(client: Any, project: Any) -> None:
    response = client.get(url(project))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_outsiders_get_404(client_for: Any, eve: Any, project: Any) -> None:
    assert client_for(eve).get(url(project)).status_code == 404


def test_it_shows_an_empty_state_without_runs(client_for: Any, vera: Any, project: Any) -> None:
    response = client_for(vera).get(url(project))
    assert response.status_code == 200
    assert b"Nothing to compare yet" in response.content


def test_it_overlays_one_line_per_run_with_its_own_colour(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    client = client_for(vera)
    response = client.get(url(project, runs=ids(seeds["grpo1"], seeds["ps1"]), keys=KEY))
    assert response.status_code == 200
    (chart,) = chart_data(client, response)["charts"]
    assert chart["key"] == KEY
    grpo, ps = chart["traces"]
    assert (grpo["name"], grpo["steps"], grpo["values"]) == ("grpo s1", [1, 2, 3], [0.1, 0.2, 0.3])
    assert grpo["band"] is None
    assert ps["values"] == [0.2, 0.4, 0.6]
    assert grpo["color"] != ps["color"]
    assert b"data-charts-url" in response.content and b"vendor/plotly/plotly.min.js" in response.content
    assert b"0.1, 0.2" not in response.content and b"traces" not in response.content


def test_grouping_by_algorithm_draws_the_mean_and_min_max_band_across_seeds(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    client = client_for(vera)
    response = client.get(url(project, runs=ids(*seeds.values()), keys=KEY, group="algorithm"))
    (chart,) = chart_data(client, response)["charts"]
    grpo, ps = chart["traces"]
    assert grpo["name"] == "GRPO" and ps["name"] == "Policy Split"
    assert grpo["steps"] == [1, 2, 3]
    assert grpo["values"] == pytest.approx([0.2, 0.3, 0.4])
    assert grpo["band"]["low"] == pytest.approx([0.1, 0.2, 0.3])
    assert grpo["band"]["high"] == pytest.approx([0.3, 0.4, 0.5])
    assert ps["values"] == pytest.approx([0.3, 0.5, 0.7])
    assert grpo["n"] == [2, 2, 2]
    assert b"min\xe2\x80\x93max across seeds" in response.content


def test_the_std_band_is_mean_plus_minus_one_sample_std(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    client = client_for(vera)
    response = client.get(url(project, runs=ids(seeds["ps1"], seeds["ps2"]), keys=KEY, group="algorithm", band="std"))
    (trace,) = chart_data(client, response)["charts"][0]["traces"]
    # Seeds differ by 0.2 at every step: sample std = 0.2 / √2.
    half = 0.2 / 2**0.5
    assert trace["band"]["low"] == pytest.approx([0.3 - half, 0.5 - half, 0.7 - half])
    assert trace["band"]["high"] == pytest.approx([0.3 + half, 0.5 + half, 0.7 + half])


def test_final_metrics_show_group_means_and_deltas_against_the_baseline_group(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    response = client_for(vera).get(
        url(project, runs=ids(*seeds.values()), keys=KEY, group="algorithm", baseline=str(seeds["grpo2"].pk))
    )
    table = response.context["cmp"].table
    grpo, ps = table.rows  # by default each run's mean of its last 5 logged steps (here all 3)
    assert grpo.is_baseline and grpo.cells[0].value == pytest.approx(0.3)
    assert ps.cells[0].value == pytest.approx(0.5)
    assert ps.cells[0].delta == pytest.approx(0.2) and ps.cells[0].tone == "pos"
    content = response.content.decode()
    assert 'class="mt-delta delta-pos">+0.2</div>' in content
    assert "Δ vs <strong>GRPO</strong>" in content
    assert "Final metrics (mean of the last 5 logged steps of each run, mean ± std across seeds)" in content
    assert "{#" not in content and "summary_links" not in content  # template comments stay comments


@pytest.mark.parametrize(
    ("params", "grpo_value", "ps_value", "title"),
    [
        ({"summary": "last"}, 0.4, 0.7, "last logged value"),
        ({"summary": "mean_last", "k": "2"}, 0.35, 0.6, "mean of the last 2 logged steps"),
    ],
)
def test_the_final_metrics_summary_is_named_and_can_be_the_last_value_or_another_k(
    client_for: Any,
    vera: Any,
    project: Any,
    seeds: dict[str, Run],
    params: dict[str, str],
    grpo_value: float,
    ps_value: float,
    title: str,
) -> None:
    base = {"runs": ids(*seeds.values()), "keys": KEY, "group": "algorithm"}
    response = client_for(vera).get(url(project, **base, **params), follow=True)
    grpo, ps = response.context["cmp"].table.rows
    assert (grpo.cells[0].value, ps.cells[0].value) == (pytest.approx(grpo_value), pytest.approx(ps_value))
    assert f"<h2>Final metrics ({title} of each run, mean ± std across seeds)</h2>" in response.content.decode()
    export = client_for(vera).get(
        reverse("webapp-compare-export", args=[project.pk]) + "?" + urlencode({**base, **params, "format": "md"})
    )
    assert f"Final metrics ({title} of each run" in export.content.decode()


def test_a_form_submit_redirects_to_the_canonical_permalink(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    a, b = seeds["grpo1"], seeds["ps1"]
    query = f"runs={a.pk}&runs={b.pk}&keys={KEY}&group=algorithm&band=minmax&baseline="
    response = client_for(vera).get(reverse("webapp-compare", args=[project.pk]) + "?" + query)
    assert response.status_code == 302
    assert response["Location"].endswith(f"?runs={a.pk},{b.pk}&keys={KEY}&group=algorithm")


def test_the_permalink_restores_every_setting(client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]) -> None:
    a, b = seeds["grpo1"], seeds["ps1"]
    response = client_for(vera).get(
        url(project, runs=ids(b, a), keys=KEY, group="algorithm", band="std", baseline=str(a.pk))
    )
    state = response.context["state"]
    assert state.runs == (b.pk, a.pk) and state.keys == (KEY,) and state.group == ("algorithm",)
    assert state.band == "std" and state.baseline == a.pk
    assert response.context["permalink"].endswith(state.query())


def test_runs_of_other_projects_are_ignored(
    client_for: Any,
    alice: Any,
    eve: Any,
    project: Any,
    other_project: Any,
    make_run: Callable[..., Run],
    seeds: dict[str, Run],
) -> None:
    secret = make_run(project=other_project, name="secret run")
    log(secret, KEY, [0.9])
    response = client_for(alice).get(url(project, runs=ids(seeds["grpo1"], secret), keys=KEY))
    assert [r.pk for r in response.context["cmp"].runs] == [seeds["grpo1"].pk]
    assert b"secret run" not in response.content


def test_default_keys_come_from_what_the_runs_logged(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    log(seeds["grpo1"], "actor/pg_loss", [1.0, 0.5])
    response = client_for(vera).get(url(project, runs=ids(seeds["grpo1"])))
    assert response.context["cmp"].keys == [KEY, "actor/pg_loss"]


def test_long_series_are_down_sampled(client_for: Any, vera: Any, project: Any, make_run: Callable[..., Run]) -> None:
    run = make_run(name="long")
    log(run, KEY, [float(i % 7) for i in range(3000)])
    client = client_for(vera)
    response = client.get(url(project, runs=ids(run), keys=KEY))
    (trace,) = chart_data(client, response)["charts"][0]["traces"]
    assert 2 <= len(trace["steps"]) <= 1000
    assert max(trace["values"]) == 6.0  # min/max bucketing keeps the peaks


def test_run_names_are_escaped_in_the_page_and_the_chart_data(
    client_for: Any, vera: Any, project: Any, make_run: Callable[..., Run]
) -> None:
    run = make_run(name="<script>alert(1)</script>")
    log(run, KEY, [0.5])
    client = client_for(vera)
    response = client.get(url(project, runs=ids(run), keys=KEY))
    content = response.content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    # The chart data is JSON (never parsed as HTML); compare.js puts names into Plotly as escaped text.
    assert chart_data(client, response)["charts"][0]["traces"][0]["name"] == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("fmt", "content_type", "needle"),
    [
        ("csv", "text/csv", "Group,Runs,normal/accuracy,normal/accuracy std,normal/accuracy delta"),
        ("md", "text/markdown", "| Group | Runs | normal/accuracy |"),
        ("tex", "application/x-tex", r"\toprule"),
    ],
)
def test_the_final_metrics_table_downloads_in_each_format(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run], fmt: str, content_type: str, needle: str
) -> None:
    export = reverse("webapp-compare-export", args=[project.pk])
    response = client_for(vera).get(f"{export}?runs={ids(*seeds.values())}&keys={KEY}&group=algorithm&format={fmt}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert response["Content-Disposition"] == f'attachment; filename="entropy-compare.{fmt}"'
    assert needle in response.content.decode()


def test_export_rejects_an_unknown_format(client_for: Any, vera: Any, project: Any) -> None:
    export = reverse("webapp-compare-export", args=[project.pk])
    assert client_for(vera).get(export + "?format=xlsx").status_code == 400


def test_the_page_runs_a_bounded_number_of_queries(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run], django_assert_max_num_queries: Any
) -> None:
    client = client_for(vera)
    with django_assert_max_num_queries(12):
        client.get(url(project, runs=ids(*seeds.values()), keys=KEY, group="algorithm"))


KEYS = ["normal/accuracy", "he/accuracy", "train/reward", "normal/entropy", "he/entropy"]


def _count_queries(client: Any, page: str) -> tuple[int, int, list[str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as html:
        response = client.get(page)
    with CaptureQueriesContext(connection) as data:
        chart_data(client, response)
    return len(html), len(data), [q["sql"] for q in data.captured_queries]


def test_the_query_count_does_not_grow_with_runs_or_keys(
    client_for: Any, vera: Any, project: Any, make_run: Callable[..., Run]
) -> None:
    runs = [make_run(name=f"r{i}", seed=i) for i in range(20)]
    for i, run in enumerate(runs):
        for key in KEYS:
            log(run, key, [float((i + s) % 5) for s in range(1500 if key == KEY else 40)])
    client = client_for(vera)
    small = _count_queries(client, url(project, runs=ids(*runs[:2]), keys=f"{KEY},he/accuracy"))
    large = _count_queries(client, url(project, runs=ids(*runs), keys=",".join(KEYS)))
    assert large[:2] == small[:2]  # page and chart data: the same count for 2 × 2 and 20 × 5 lines


def test_long_lines_are_read_from_the_rollups_not_the_point_table(
    client_for: Any, vera: Any, project: Any, make_run: Callable[..., Run]
) -> None:
    from django.db import connection

    runs = [make_run(name=f"r{i}") for i in range(3)]
    for run in runs:
        log(run, KEY, [float(s % 9) for s in range(5000)])
    client = client_for(vera)
    *_, sql = _count_queries(client, url(project, runs=ids(*runs), keys=KEY))
    if connection.vendor == "postgresql":
        assert not [q for q in sql if "webapp_metricpoint" in q]


def test_the_chart_data_grows_with_the_points_drawn_not_the_points_logged(
    client_for: Any, vera: Any, project: Any, make_run: Callable[..., Run]
) -> None:
    short, long = make_run(name="short"), make_run(name="long")
    log(short, KEY, [float(s % 9) for s in range(2000)])
    log(long, KEY, [float(s % 9) for s in range(60_000)])
    client = client_for(vera)
    sizes = []
    for run in (short, long):
        response = client.get(url(project, runs=ids(run), keys=KEY))
        data = client.get(response.context["charts_url"])
        sizes.append((len(response.content), len(data.content)))
    (short_page, short_data), (long_page, long_data) = sizes
    assert abs(long_page - short_page) < 200  # the page holds no chart data
    assert long_data < 1.5 * short_data  # both are drawn with at most 1,000 points


def test_the_run_picker_searches_instead_of_listing_every_run(
    client_for: Any, vera: Any, project: Any, make_run: Callable[..., Run]
) -> None:
    runs = [make_run(name=f"sweep {i}") for i in range(30)]
    target = make_run(name="needle-in-the-haystack")
    client = client_for(vera)
    page = client.get(url(project, runs=ids(runs[0])))
    listed = [r.pk for r, _, _ in page.context["picker"]]
    assert len(listed) == 21 and listed[0] == runs[0].pk  # the selected run, then the 20 newest
    found = client.get(url(project, runs=ids(runs[0]), find="haystack")).context["picker"]
    assert [r.pk for r, _, _ in found] == [runs[0].pk, target.pk]
    search = reverse("webapp-run-search", args=[project.pk])
    assert [r["id"] for r in client.get(search + "?q=needle").json()["results"]] == [target.pk]
    assert [r["id"] for r in client.get(search + f"?q={runs[3].pk}").json()["results"]] == [runs[3].pk]
    assert len(client.get(search).json()["results"]) == 20


def test_smoothing_is_part_of_the_permalink_and_clamped(
    client_for: Any, vera: Any, project: Any, seeds: dict[str, Run]
) -> None:
    client = client_for(vera)
    a = seeds["grpo1"]
    base = reverse("webapp-compare", args=[project.pk])
    response = client.get(f"{base}?runs={a.pk}&runs={a.pk}&smooth=0.6")
    assert response["Location"].endswith(f"?runs={a.pk}&smooth=0.6")
    response = client.get(url(project, runs=ids(a), smooth="5"))
    assert response.context["state"].smooth == 0.99
    assert b'min="0" max="0.99" step="0.01" value="0.99"' in response.content
    assert client.get(url(project, runs=ids(a), smooth="nan")).context["state"].smooth == 0.0
