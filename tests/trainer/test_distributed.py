"""Data parallel training under torchrun, on CPU with the gloo backend and two processes.

The update must be non-zero for a comparison to mean anything: tiny-random never earns a reward
on arith (every GRPO advantage is 0), so these runs train Policy Split on the ``sanity`` task,
whose reward it earns about half of the time, and each test first checks that the weights moved
beyond what weight decay alone would move them. The direction tests check that the update under
torchrun also moves the policy the right way (tests/trainer/learning.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.learning import LEARNING, STEPS, Direction, assert_learns, weights_beyond_decay
from tests.trainer.test_learning import measure_run
from trainer.config import TrainConfig
from trainer.registry import resolve

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("fsdp_shards_probe.py")
STOP_PROBE = Path(__file__).with_name("fsdp_stop_probe.py")
LEARNING_PROBE = Path(__file__).with_name("learning_probe.py")
pytestmark = pytest.mark.slow

DENSE = ["task=sanity", "algorithm=policy_split", "lr=1e-3"]
LR, WD = 1e-3, TrainConfig().weight_decay
SMALL = ["model=tiny-random", "n=2", "questions_per_step=2", "max_new_tokens=8", "samples_per_step=1"]


def torchrun(args: list[str], *, sets: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``args`` under torchrun with 2 processes; a run still going after ``timeout`` seconds
    (ranks deadlocked in a collective) fails the test, and its workers are killed with it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args]
    for item in sets:
        cmd += ["--set", item]
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PSL_TORCH_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun starts each worker in its own session: only torchrun itself can stop them
        # (SIGTERM, then SIGKILL after its grace period). Killing torchrun would orphan them.
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=120)
        raise AssertionError(f"torchrun still running after {timeout} s (deadlocked?): {stderr[-4000:]}") from None
    assert proc.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def train(out: Path, *sets: str, resume: bool = False, events: Path | None = None, timeout: int = 600) -> None:
    args = ["-m", "trainer", "train", "--no-progress", *(["--resume"] if resume else [])]
    args += ["--events", str(events)] if events else []
    torchrun(args, sets=[*SMALL, *sets, f"output_dir={out}"], timeout=timeout)


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def initial_weights() -> dict[str, torch.Tensor]:
    return load_file(Path(resolve("tiny-random")) / "model.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_it_trains_with_two_processes_and_only_rank_zero_reports(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    train(tmp_path / "out", "steps=2", "checkpoint_every=0", "parallelism=ddp", events=events)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [e["kind"] for e in lines]
    assert kinds.count("metrics") == 2  # one per step: rank 1 writes nothing
    assert kinds.count("samples") == 2
    assert "data parallel over 2 processes (cpu, ddp)" in [e["message"] for e in lines if e["kind"] == "log"]
    assert (tmp_path / "out" / "checkpoints" / "step_000002" / "model.safetensors").is_file()


@pytest.mark.parametrize("sharding", [["parallelism=fsdp"], ["parallelism=fsdp", "cpu_offload=true"]], ids=str)
def test_the_fsdp_update_equals_the_ddp_update_at_the_same_seed(tmp_path: Path, sharding: list[str]) -> None:
    # cpu_offload keeps the parameter shards and their optimizer state in host memory between uses.
    train(tmp_path / "ddp", "steps=2", "checkpoint_every=0", "parallelism=ddp", *DENSE)
    train(tmp_path / "fsdp", "steps=2", "checkpoint_every=0", *sharding, *DENSE)
    ddp, fsdp = weights(tmp_path / "ddp", 2), weights(tmp_path / "fsdp", 2)
    # Adam moves every weight with a non-zero gradient by ~lr per step; weight decay alone by lr·wd·|w|.
    assert weights_beyond_decay(initial_weights(), ddp, lr=LR, wd=WD, steps=2) > 1e-4
    assert max_diff(fsdp, ddp) < 1e-5


def test_a_sharded_checkpoint_written_by_two_ranks_resumes_exactly_and_exports_for_from_pretrained(
    tmp_path: Path,
) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["parallelism=fsdp", "checkpoint_every=1", "keep_checkpoints=3", *DENSE]
    train(straight, "steps=3", *common)
    train(resumed, "steps=2", *common)
    assert (resumed / "checkpoints" / "step_000002" / "distcp" / ".metadata").is_file()  # shards of every rank
    train(resumed, "steps=3", *common, resume=True)
    assert (
        weights_beyond_decay(weights(straight, 2), weights(straight, 3), lr=LR, wd=WD, steps=1) > 1e-4
    )  # step 3 moved
    assert max_diff(weights(resumed, 3), weights(straight, 3)) < 1e-6

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resumed / "checkpoints" / "step_000003")
    assert next(model.parameters()).dtype == torch.float32  # the fp32 master weights, not a low-precision copy
    exported = dict(model.state_dict())
    assert max(float((exported[k] - v).abs().max()) for k, v in weights(straight, 3).items()) < 1e-6


def test_an_fsdp_run_that_evaluates_samples_and_checkpoints_every_step_completes_on_both_ranks(
    tmp_path: Path,
) -> None:
    # Two-row passes over 4 responses per question under two contexts: at step 3 one rank's pass
    # held two prompts where the other's held one repeated prompt, the ranks called the sharded
    # model a different number of times, and the backward deadlocked (scoring.calls_are_collective).
    out, events = tmp_path / "out", tmp_path / "events.jsonl"
    sets = [f"{k}={v}" for k, v in LEARNING.items()] + [*DENSE, "parallelism=fsdp", "micro_batch_size=2"]
    sets += ["eval_every=1", "eval_questions=4", "checkpoint_every=1", f"keep_checkpoints={STEPS}"]
    train(out, *sets, events=events, timeout=300)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    metrics = [e for e in lines if e["kind"] == "metrics"]
    assert [e["step"] for e in metrics] == list(range(1, STEPS + 1))
    for e in metrics:  # the held-out evaluation ran between the steps
        assert {"eval/normal/accuracy", "eval/he/accuracy"} <= e["values"].keys()
    assert [e["step"] for e in lines if e["kind"] == "samples"] == list(range(1, STEPS + 1))
    assert [e["step"] for e in lines if e["kind"] == "checkpoint"] == list(range(1, STEPS + 1))
    assert weights_beyond_decay(initial_weights(), weights(out, STEPS), lr=LR, wd=WD, steps=STEPS) > 1e-4


def test_fsdp_ranks_whose_responses_stop_at_different_lengths_generate_evaluate_and_train_without_deadlock() -> None:
    out = torchrun([str(STOP_PROBE)], sets=[], timeout=300)
    reports = {r["rank"]: r for r in (json.loads(m) for m in re.findall(r"\{[^{}]*\}", out.stdout))}
    assert sorted(reports) == [0, 1]
    assert set(reports[0]["lengths"]) == {1}  # stopped at its first token
    assert max(reports[1]["lengths"]) == 8  # ran to max_new_tokens meanwhile
    assert reports[0]["evaluated"] and reports[1]["evaluated"]


def test_every_fsdp_rank_holds_only_its_shard_of_the_parameters_and_optimizer_state(tmp_path: Path) -> None:
    out = torchrun([str(PROBE)], sets=[])
    # Both ranks print to one pipe, so their lines may interleave: find the JSON objects themselves.
    reports = [json.loads(m) for m in re.findall(r"\{[^{}]*\}", out.stdout)]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    total = reports[0]["full_numel"]
    assert sum(r["local_numel"] for r in reports) == total
    for r in reports:
        assert r["local_numel"] <= 0.55 * total  # about half each (dim-0 shards round up)
        assert r["optimizer_state_numel"] == 2 * r["local_numel"]  # AdamW exp_avg + exp_avg_sq of the shard


@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_every_algorithm_under_torchrun_raises_the_log_probability_of_each_ranks_rewarded_responses(
    tmp_path: Path, parallelism: str
) -> None:
    # Under FSDP: GRPO and Policy Split with and without rollout sharing (learning_probe.RUNS).
    torchrun([str(LEARNING_PROBE), str(tmp_path), parallelism], sets=[])
    reports = [
        json.loads(line) for rank in (0, 1) for line in (tmp_path / f"rank{rank}.jsonl").read_text().splitlines()
    ]
    from tests.trainer.learning_probe import RUNS

    cases = RUNS[parallelism]
    assert sorted((r["case"], r["rank"]) for r in reports) == sorted((case, rank) for case in cases for rank in (0, 1))
    for r in reports:
        assert min(r["grad_norms"]) > 0, r
        directions = {m: Direction(d["per_step"], d["p_value"]) for m, d in r["directions"].items()}
        modes = ("normal", "he") if r["case"].startswith("policy_split") else ("normal",)
        try:
            assert_learns(directions, modes)
        except AssertionError as exc:
            raise AssertionError(f"{r['case']}, rank {r['rank']}: {exc}") from None


def test_policy_split_trained_by_the_cli_under_torchrun_raises_the_log_probability_of_rewarded_responses(
    tmp_path: Path,
) -> None:
    out, events = tmp_path / "out", tmp_path / "events.jsonl"
    sets = [f"{k}={v}" for k, v in LEARNING.items()] + ["algorithm=policy_split", "parallelism=ddp"]
    train(out, *sets, "lr=1e-3", "checkpoint_every=1", f"keep_checkpoints={STEPS}", events=events)
    cfg = TrainConfig(
        model="tiny-random",
        algorithm="policy_split",
        max_new_tokens=8,
        samples_per_step=1,
        lr=1e-3,
        output_dir=str(out),
        **LEARNING,
    )
    assert weights_beyond_decay(initial_weights(), weights(out, STEPS), lr=LR, wd=WD, steps=STEPS) > 1e-4
    assert_learns(measure_run(cfg, events, world_size=2).result(), cfg.modes)
