"""Checkpoints: model + optimizer + RNG + step, enough to continue exactly where a run stopped.

Layout (``trainer.paths``): ``output_dir/checkpoints/step_NNNNNN/`` is a Hugging Face folder that
``from_pretrained`` loads, holding the float32 master weights (so evaluation and serving read it
directly and a resumed run continues from the exact weights), plus ``trainer_state.pt`` (step,
RNG, and the optimizer state of an unsharded run). A sharded (FSDP2) run also writes
``distcp/``, a ``torch.distributed.checkpoint`` folder where every rank saves its own shards of
the parameters and of the AdamW state; resuming loads them shard by shard, never the full state
on one rank. The HF export gathers the full state dict to rank 0's CPU, one collective.

Data position needs no state of its own: the questions of step s are a pure function of
(seed, s) (see ``loop.questions_for_step``), so restoring the step restores the data position.
A checkpoint is written into a temp folder and renamed, so a crash never leaves half of one;
``trainer_state.pt`` is written last and marks the checkpoint complete.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.engine.parallel import Engine
from trainer.paths import STATE_FILE, checkpoint_dir

SHARDED_DIR = "distcp"


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: Any,
    config: dict[str, Any],
    *,
    keep: int,
    engine: Engine,
) -> Path | None:
    """Write the checkpoint of ``step``; a collective under data parallelism (every rank calls it).

    Returns the folder on rank 0, None on the other ranks.
    """
    target = checkpoint_dir(output_dir, step)
    tmp = target.with_name(target.name + ".tmp")
    is_main = engine.dist is None or engine.dist.rank == 0
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(engine)
    state: dict[str, Any] = {"step": step, "config": config, "rng": _rng_state()}
    if engine.is_sharded:
        _save_sharded(tmp / SHARDED_DIR, model, optimizer)
        full = _full_state_dict(model)  # collective; tensors on rank 0 only
        if is_main:
            # Tied weights (lm_head = embed_tokens) are written once, as save_pretrained does by itself.
            tied = getattr(model, "all_tied_weights_keys", None) or {}
            engine.unwrap(model).save_pretrained(tmp, state_dict={k: v for k, v in full.items() if k not in tied})
    elif is_main:
        engine.unwrap(model).save_pretrained(tmp)
        state["optimizer"] = optimizer.state_dict()
    if is_main:
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        _prune(Path(output_dir) / "checkpoints", keep=keep)
    _barrier(engine)
    return target if is_main else None


def load_checkpoint(path: str | Path, model: Any, optimizer: Any, *, engine: Engine) -> int:
    """Restore weights, optimizer and RNG from a checkpoint folder (every rank calls it); returns its step."""
    path = Path(path)
    state = torch.load(path / STATE_FILE, weights_only=False)
    if engine.is_sharded:
        _load_sharded(path / SHARDED_DIR, model, optimizer)
    else:
        from transformers import AutoModelForCausalLM

        inner = engine.unwrap(model)
        dtype = next(inner.parameters()).dtype
        saved = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)  # ties and renames handled by HF
        inner.load_state_dict(saved.state_dict())
        del saved
        optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    return int(state["step"])


def _save_sharded(folder: Path, model: Any, optimizer: Any) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(folder))


def _load_sharded(folder: Path, model: Any, optimizer: Any) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.load({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(folder))  # loads in place
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)


def _full_state_dict(model: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])


def _barrier(engine: Engine) -> None:
    if engine.dist is not None:
        engine.dist.barrier()


def _prune(root: Path, *, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if p.name.startswith("step_") and not p.name.endswith(".tmp"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
