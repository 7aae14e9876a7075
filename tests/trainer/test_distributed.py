"""Data parallel training under torchrun, on CPU with the gloo backend and two processes.

The update must be non-zero for a comparison to mean anything: tiny-random never earns a reward
on arith (every GRPO advantage is 0), so these runs use ``entropy_reg`` with ``entropy_coef=1``,
whose entropy term gives every step a dense gradient, and each test first checks that the
weights moved by far more than weight decay alone would move them.
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

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("fsdp_shards_probe.py")
pytestmark = pytest.mark.slow

DENSE = ["algorithm=entropy_reg", "entropy_coef=1", "lr=1e-3"]
SMALL = ["model=tiny-random", "n=2", "questions_per_step=2", "max_new_tokens=8", "samples_per_step=1"]


def torchrun(args: list[str], *, sets: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
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
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def train(out: Path, *sets: str, resume: bool = False, events: Path | None = None) -> None:
    args = ["-m", "trainer", "train", "--no-progress", *(["--resume"] if resume else [])]
    args += ["--events", str(events)] if events else []
    torchrun(args, sets=[*SMALL, *sets, f"output_dir={out}"])


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def initial_weights() -> dict[str, torch.Tensor]:
    from trainer.registry import resolve

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
    assert max_diff(ddp, initial_weights()) > 1e-3
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
    assert max_diff(weights(straight, 3), weights(straight, 2)) > 1e-4  # step 3 did move the weights
    assert max_diff(weights(resumed, 3), weights(straight, 3)) < 1e-6

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resumed / "checkpoints" / "step_000003")
    assert next(model.parameters()).dtype == torch.float32  # the fp32 master weights, not a low-precision copy
    exported = dict(model.state_dict())
    assert max(float((exported[k] - v).abs().max()) for k, v in weights(straight, 3).items()) < 1e-6


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
