"""RunForm, GridForm and RunListForm: conversion to TrainConfig and filters, errors on the right field."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.http import QueryDict

from trainer.config import TrainConfig
from webapp.forms import GridForm, RunForm, RunListForm, parse_factor_lines


def form_data(**overrides: Any) -> dict[str, Any]:
    """POST data of a valid run form: every config field at its default, as a browser sends it."""
    data: dict[str, Any] = {}
    for name, bound in RunForm().fields.items():
        initial = bound.initial
        if isinstance(initial, bool):
            if initial:
                data[name] = "on"
        elif initial is not None:
            data[name] = "{}" if isinstance(initial, dict) else str(initial)
    data.update(queue="cpu", name="", tags="")
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def test_it_converts_valid_input_to_a_train_config() -> None:
    form = RunForm(form_data(eta="0.06", kappa="1", rollout_sharing=None, seed="7"))
    assert form.is_valid(), form.errors
    config = form.to_config()
    assert isinstance(config, TrainConfig)
    assert (config.eta, config.kappa, config.rollout_sharing, config.seed) == (0.06, 1.0, False, 7)


def test_it_gives_one_config_per_seed() -> None:
    form = RunForm(form_data(seed="1, 2, 3"))
    assert form.is_valid(), form.errors
    assert [c.seed for c in form.to_configs()] == [1, 2, 3]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eta", "-0.1"),
        ("alpha", "1.5"),
        ("kappa", "-1"),
        ("n", "0"),
        ("temperature", "0"),
        ("lr", "-1e-5"),
        ("steps", "0"),
        ("max_new_tokens", "0"),
        ("micro_batch_size", "0"),
        ("mini_batches", "7"),
        ("model", "not a model!"),
        ("task", "no-such-task"),
        ("top_p", "0"),
        ("dual_clip", "0.5"),
        ("cov_lb", "9"),
        ("samples_per_step", "99"),
    ],
)
def test_it_reports_the_trainer_rule_on_the_offending_field(field: str, value: str) -> None:
    form = RunForm(form_data(**{field: value}))
    assert not form.is_valid()
    assert field in form.errors, form.errors


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eta", "abc"),
        ("n", "2.5"),
        ("seed", "one"),
        ("algorithm", "ppo"),
        ("clamp_order", "sideways"),
        ("queue", "gpu-z"),
    ],
)
def test_it_rejects_values_that_do_not_convert(field: str, value: str) -> None:
    form = RunForm(form_data(**{field: value}))
    assert not form.is_valid()
    assert field in form.errors


def test_it_mentions_the_released_codes_double_bonus_in_the_eta_help() -> None:
    help_text = RunForm().fields["eta"].help_text
    assert "η=0.06" in help_text and "κ=1" in help_text


def test_it_offers_every_algorithm_with_a_human_label() -> None:
    field = RunForm().fields["algorithm"]
    assert isinstance(field, forms.ChoiceField)
    labels = dict(field.choices)  # type: ignore[arg-type]
    assert labels["policy_split"] == "Policy Split"
    assert labels["eda"] == "Entropy-driven advantage"
    assert len(labels) == 8


def test_it_puts_every_remaining_config_field_in_advanced() -> None:
    form = RunForm()
    shown = {f.name for _, fields in form.sections() for f in fields} | {f.name for f in form.launch_fields()}
    advanced = {f.name for f in form.advanced_fields()}
    assert {"normalize", "clip_low", "dual_clip", "checkpoint_every", "eval_every", "extra"} <= advanced
    assert not shown & advanced
    assert "output_dir" not in shown | advanced


def test_it_parses_factor_lines_into_typed_values() -> None:
    text = "eta = 0.01, 0.03, 0.1\nrollout_sharing = true, false\nlr = 1e-5\n# note"
    factors, errors = parse_factor_lines(text)
    assert errors == []
    assert factors == {"eta": [0.01, 0.03, 0.1], "rollout_sharing": [True, False], "lr": [1e-5]}


def test_it_reports_bad_factor_lines_by_line_number() -> None:
    _, errors = parse_factor_lines("eta = 0.1\nbogus = 1\neta = 0.2\nno equals sign")
    assert len(errors) == 3
    assert [e.split(":")[0] for e in errors] == ["Line 2", "Line 3", "Line 4"]


def test_it_builds_every_grid_cell() -> None:
    form = GridForm(form_data(name="sweep", factors="eta = 0.01, 0.03\nseed = 1, 2, 3"))
    assert form.is_valid(), form.errors
    assert len(form.cells or []) == 6
    assert form.cleaned_data["factors"] == {"eta": [0.01, 0.03], "seed": [1, 2, 3]}


def test_the_factors_help_follows_the_search_mode() -> None:
    assert "every combination" in GridForm().fields["factors"].help_text
    grid = GridForm(form_data(name="sweep", search="grid", factors="eta = 0.01, 0.03"))
    assert "every combination" in grid.fields["factors"].help_text
    random = GridForm(form_data(name="sweep", search="random", samples="4", factors="lr = loguniform(1e-6, 1e-4)"))
    assert "every combination" not in random.fields["factors"].help_text
    assert "each of the samples draws" in random.fields["factors"].help_text
    assert "loguniform" in random.fields["factors"].widget.attrs["placeholder"]


def test_it_turns_several_base_seeds_into_a_seed_factor() -> None:
    form = GridForm(form_data(name="sweep", factors="eta = 0.01, 0.03", seed="4, 5"))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["factors"]["seed"] == [4, 5]


def test_it_reports_an_invalid_factor_value_on_the_factors_field() -> None:
    form = GridForm(form_data(name="sweep", factors="eta = 0.01, -1"))
    assert not form.is_valid()
    assert any("eta = -1" in e for e in form.errors["factors"])


def test_it_flags_invalid_combinations_cell_by_cell() -> None:
    # n=3 makes 4·3·4 = 48 rows per step, which mini_batches=32 does not divide; n=4 is fine.
    form = GridForm(form_data(name="sweep", factors="n = 3, 4", mini_batches="32", micro_batch_size="8"))
    assert not form.is_valid()
    assert [bool(c.error) for c in form.cells or []] == [True, False]
    assert "mini_batches" in (form.cells or [])[0].error


def test_it_caps_the_grid_size() -> None:
    values = ", ".join(str(i) for i in range(300))
    form = GridForm(form_data(name="huge", factors=f"seed = {values}"))
    assert not form.is_valid()
    assert "limit is 200" in form.errors["factors"][0]


def test_it_requires_a_study_name_for_a_grid() -> None:
    form = GridForm(form_data(factors="eta = 0.1"))
    assert not form.is_valid()
    assert "name" in form.errors


def query(text: str) -> QueryDict:
    return QueryDict(text)


def test_it_converts_list_filters_to_typed_config_values() -> None:
    form = RunListForm(query("cfg.eta=0.03,0.1&where=rollout_sharing%3Dfalse+seed%3D2&status=running"))
    filters = form.filters()
    assert filters.status == "running"
    assert filters.config == {"eta": [0.03, 0.1], "rollout_sharing": [False], "seed": [2]}


def test_it_reports_unknown_config_filters_instead_of_crashing() -> None:
    form = RunListForm(query("cfg.bogus=1&where=eta%3Dhigh"))
    assert not form.is_valid()
    assert form.filters().config == {}


def test_it_falls_back_to_newest_first_on_an_unknown_sort() -> None:
    assert RunListForm(query("sort=-password")).sort_value() == "-created"
    assert RunListForm(query("sort=-m.he/accuracy")).sort_value() == "-m.he/accuracy"


def test_it_keeps_chosen_columns_in_order_with_name_first() -> None:
    form = RunListForm(query("cols=m.train/reward,cfg.kappa,bogus,status"))
    assert form.columns() == ["name", "m.train/reward", "cfg.kappa", "status"]
    assert RunListForm(query("")).columns()[0] == "name"


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", str(10**20)), ("seed", str(10**20)), ("max_new_tokens", str(10**9)), ("eta", "1e308"), ("eta", "nan")],
)
def test_it_puts_an_absurd_value_on_its_field_as_the_api_and_the_cli_do(field: str, value: str) -> None:
    form = RunForm(form_data(**{field: value}))
    assert not form.is_valid()
    assert field in form.errors
