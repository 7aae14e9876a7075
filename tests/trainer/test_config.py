"""TrainConfig rejects impossible runs before any model is loaded, naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import (
    _MIGRATIONS,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    ConfigError,
    StoredConfig,
    TrainConfig,
    apply_overrides,
    check_resources,
    config_errors,
    migrate_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("alpha", 1.5, "must be in [0.0, 1.0]"),
        ("alpha", -0.1, "must be in [0.0, 1.0]"),
        ("kappa", -1.0, "must be ≥ 0"),
        ("eta", -0.03, "must be ≥ 0"),
        ("lr", -1e-5, "must be ≥ 0"),
        ("algorithm", "ppo-magic", "unknown value 'ppo-magic'"),
        ("model", "no such model!", "unknown model"),
        ("task", "no-such-task", "unknown task"),
        ("task", "file:", "file: needs a path"),
        ("max_new_tokens", 0, "must be > 0"),
        ("max_prompt_length", -5, "must be > 0"),
        ("n", 0, "must be > 0"),
        ("steps", 0, "must be > 0"),
        ("clamp_order", "sideways", "valid: scale_then_clip, clip_then_scale"),
        ("estimator", "vibes", "unknown value"),
        ("temperature", 0.0, "must be > 0"),
        ("top_p", 0.0, "must be in (0.0, 1.0]"),
        ("lowest_ratio", 2.0, "must be in [0.0, 1.0]"),
        ("rollout_backend", "tensorrt", "valid: transformers, vllm"),
    ],
)
def test_it_rejects_an_impossible_value_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    assert err.value.field == field
    assert message in err.value.message


def test_it_checks_files_only_where_they_are_read(tmp_path: Path) -> None:
    # The web host validates syntax only: the dataset and model folder live on the worker host.
    cfg = TrainConfig(task=f"file:{tmp_path / 'missing.jsonl'}", model=str(tmp_path / "no-model"))
    with pytest.raises(ConfigError) as err:
        check_resources(cfg)
    assert err.value.field == "task"
    assert "does not exist" in err.value.message
    (tmp_path / "missing.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    with pytest.raises(ConfigError) as err:
        check_resources(cfg)
    assert err.value.field == "model"
    assert "does not exist on this machine" in err.value.message
    (tmp_path / "no-model").mkdir()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        check_resources(cfg)
    (tmp_path / "no-model" / "config.json").write_text("{}")
    check_resources(cfg)
    check_resources(TrainConfig(model="Qwen/Qwen3-1.7B"))  # hub ids resolve at load time


def test_it_rejects_a_mini_batch_that_does_not_divide_the_trained_rows() -> None:
    # Policy Split with sharing trains 4n rows per question: 4 questions × 16 rows = 64.
    with pytest.raises(ConfigError) as err:
        TrainConfig(algorithm="policy_split", n=4, questions_per_step=4, mini_batches=24)
    assert err.value.field == "mini_batches"
    assert "64 trained rows" in err.value.message


def test_policy_split_and_grpo_take_the_same_optimizer_steps_at_equal_generation() -> None:
    ps = TrainConfig(algorithm="policy_split", n=4, mini_batches=2)
    grpo = TrainConfig(algorithm="grpo", n=8, mini_batches=2)
    assert ps.generated_per_question == grpo.generated_per_question == 8
    assert ps.rows_per_step == 2 * grpo.rows_per_step  # Policy Split trains every response under both contexts
    assert ps.optimizer_steps_per_step == grpo.optimizer_steps_per_step == 2


def test_it_migrates_the_legacy_rows_per_mini_batch_field() -> None:
    # mini_batch_size=16 rows of Policy Split's 64 (4 questions × 4n) meant 4 optimizer steps.
    assert TrainConfig.from_dict({"algorithm": "policy_split", "n": 4, "mini_batch_size": 16}).mini_batches == 4
    assert TrainConfig.from_dict({"algorithm": "grpo", "n": 8, "mini_batch_size": 16}).mini_batches == 2
    assert TrainConfig.from_dict({"mini_batch_size": 16, "mini_batches": 1}).mini_batches == 1  # explicit wins


def test_stored_configs_carry_the_schema_version_and_read_back_unchanged() -> None:
    cfg = TrainConfig(eta=0.06, kappa=1.0)
    assert cfg.to_dict()[SCHEMA_KEY] == SCHEMA_VERSION
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_stored(cfg.to_dict()) == StoredConfig(cfg, [])


def test_user_input_with_an_unknown_field_is_still_rejected_by_name() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"etaa": 0.1})
    assert err.value.field == "etaa"


def test_a_stored_config_with_an_unknown_field_is_read_with_a_notice_that_it_was_dropped() -> None:
    stored = TrainConfig.from_stored({**TrainConfig(eta=0.1).to_dict(), "warmup_ratio": 0.1})
    assert stored.config == TrainConfig(eta=0.1)
    assert stored.notices == ["warmup_ratio=0.1 dropped: not a field of this version"]


def test_a_version_1_config_is_migrated_with_a_notice_of_the_rename() -> None:
    stored = TrainConfig.from_stored({"algorithm": "policy_split", "n": 4, "mini_batch_size": 16})
    assert stored.config.mini_batches == 4
    assert stored.notices == ["mini_batch_size=16 became mini_batches=4 (optimizer steps per epoch)"]


def test_the_legacy_migration_picks_a_mini_batch_count_that_divides_the_rows() -> None:
    # 40 rows (GRPO, 5 questions × 8) in mini-batches of 12 rows: 3 does not divide 40, 2 does.
    cfg = TrainConfig.from_dict({"algorithm": "grpo", "n": 8, "questions_per_step": 5, "mini_batch_size": 12})
    assert cfg.rows_per_step == 40 and cfg.mini_batches == 2


def test_a_stored_value_this_version_rejects_is_set_back_to_its_default_with_a_notice() -> None:
    stored = TrainConfig.from_stored({**TrainConfig().to_dict(), "estimator": "oracle", "eta": 0.2})
    assert (stored.config.estimator, stored.config.eta) == ("logprob", 0.2)
    assert stored.notices == [
        "estimator: unknown value 'oracle'; valid: logprob, entropy: set back to the default 'logprob'"
    ]


def test_a_config_from_a_newer_schema_is_refused_as_input_and_read_leniently_when_stored() -> None:
    newer = {**TrainConfig(seed=3).to_dict(), SCHEMA_KEY: SCHEMA_VERSION + 1, "future_knob": 1}
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(newer)
    assert err.value.field == SCHEMA_KEY
    stored = TrainConfig.from_stored(newer)
    assert stored.config == TrainConfig(seed=3)
    assert len(stored.notices) == 2 and "future_knob=1 dropped" in stored.notices[1]


def test_every_schema_version_below_the_current_one_has_a_migration() -> None:
    assert sorted(_MIGRATIONS) == list(range(1, SCHEMA_VERSION))


def test_migrate_config_leaves_the_web_apps_bookkeeping_keys_out() -> None:
    values, notices = migrate_config({"_resumed_from_step": 4, "eta": 0.1}, drop_unknown=False)
    assert values == {"eta": 0.1, SCHEMA_KEY: SCHEMA_VERSION} and notices == []


def test_it_rejects_grpo_with_a_single_rollout() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(algorithm="grpo", n=1, questions_per_step=4, micro_batch_size=4)
    assert err.value.field == "n"


def test_it_counts_trained_rows_per_algorithm() -> None:
    assert TrainConfig(algorithm="policy_split", n=4).rows_per_question == 16  # Q1–Q4
    assert TrainConfig(algorithm="policy_split", n=4, rollout_sharing=False).rows_per_question == 8
    assert TrainConfig(algorithm="grpo", n=8).rows_per_question == 8
    assert TrainConfig(algorithm="grpo", n=8).generated_per_question == TrainConfig(n=4).generated_per_question


def test_it_round_trips_through_json_and_yaml(tmp_path: Path) -> None:
    cfg = TrainConfig(eta=0.1, rollout_sharing=False, mini_batches=2, seed=7, extra={"note": "ablation"})
    (tmp_path / "c.json").write_text(cfg.to_json())
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    assert TrainConfig.load(tmp_path / "c.yaml") == cfg


def test_it_rejects_unknown_fields_and_wrong_types_by_name() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"etaa": 0.1})
    assert err.value.field == "etaa"
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"steps": "many"})
    assert err.value.field == "steps"
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"rollout_sharing": "perhaps"})
    assert err.value.field == "rollout_sharing"


def test_it_applies_command_line_overrides_as_yaml_scalars() -> None:
    cfg = apply_overrides(TrainConfig(), ["eta=0.06", "kappa=1", "rollout_sharing=false", "algorithm=policy_split"])
    assert (cfg.eta, cfg.kappa, cfg.rollout_sharing) == (0.06, 1.0, False)


def test_it_exposes_field_help_for_forms() -> None:
    help_texts = TrainConfig.field_help()
    assert "released code added the bonus twice" in help_texts["eta"]
    assert help_texts["n"].startswith("Rollouts per mode")


def test_the_cli_rejects_a_bad_config_before_loading_a_model(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--set", "alpha=3", "--set", f"output_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "alpha: must be in [0.0, 1.0], got 3" in out.stderr
    assert not list(tmp_path.iterdir())


def test_it_reports_every_invalid_field_at_once() -> None:
    errors = config_errors({"alpha": 1.5, "kappa": -1, "steps": 0})
    assert [e.field for e in errors] == ["alpha", "kappa", "steps"]  # in the order the config checks them
    assert config_errors({"alpha": 0.2}) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eta", float("nan"), "must be a finite number, got nan"),
        ("lr", float("inf"), "must be a finite number"),
        ("eta", 1e308, "must be ≤ 1000"),
        ("kappa", -1e300, "must be ≥ -1000000"),
        ("max_new_tokens", 10**9, "must be ≤ 1048576"),
        ("steps", 10**12, "must be ≤ 10000000"),
        ("seed", 2**40, "must be ≤ 2147483647"),
        ("gpus", 10**6, "must be ≤ 1024"),
        ("model", "m" * 1_000_000, "at most 200 characters"),
        ("task", "file:a\x00b", "NUL"),
        ("output_dir", "runs/\ud800", "lone surrogate"),
        ("extra", {"note": "a\x00b"}, "NUL"),
        ("extra", {"ratio": float("nan")}, "plain JSON"),
        ("extra", {"blob": "x" * 20_000}, "at most 16384 bytes"),
        ("extra", ["not", "an", "object"], "must be an object"),
    ],
)
def test_it_rejects_non_finite_absurd_or_unstorable_values_naming_the_field(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({field: value})
    assert err.value.field == field
    assert message in err.value.message


def test_the_cli_refuses_eta_nan(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eta: must be a finite number"):
        apply_overrides(TrainConfig(), ["eta=.nan"])
