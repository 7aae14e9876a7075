"""The scaling layer: precision, activation checkpointing and data parallelism, each one small step.

One entry point, ``prepare(model, cfg, dist)``, applies the techniques in a fixed order (as
torchtitan does: activation checkpointing before sharding) and returns the model to train plus an
``Engine`` that the update calls for the few things that differ between set-ups: the autocast
context, gradient accumulation under DDP, backward with loss scaling, the optimizer step with
gradient clipping, and agreeing on a count across ranks. The training loop is the same for all.

Precision (docs/method.md §12): parameters and AdamW state stay in ``master_dtype`` (float32 unless
pure low-precision training is asked for); forward and backward run in ``dtype``:
- FSDP2: ``MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=float32)`` casts the gathered
  parameters for compute and reduces gradients in float32; the sharded parameters are the masters.
- one process or DDP: ``torch.autocast`` in ``dtype`` over float32 parameters.
float16 compute scales the loss (``GradScaler``) so small gradients do not underflow; bfloat16
needs no scaling.

Everything here runs on CPU with the gloo backend (tests use 2 processes); on GPUs the same code
uses NCCL. Fused kernels and flash attention are not used: CPU and GPU take the same path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from trainer.config import TrainConfig
from trainer.engine.distributed import DistContext


def apply_activation_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in the backward pass (transformers' own wrapper, non-reentrant)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False  # a KV cache is useless in a checkpointed training forward


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks of a causal LM (Llama/Qwen/Mistral-style ``model.model.layers``)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no model.layers: cannot shard it layer by layer")
    return list(layers)


def apply_fsdp(model: Any, *, param_dtype: torch.dtype, reduce_dtype: torch.dtype, cpu_offload: bool) -> Any:
    """FSDP2: shard every decoder layer, then the root (embeddings, final norm, LM head).

    Per-layer units bound the memory of gathered parameters to about one layer at a time. The
    embeddings and the (often tied) LM head stay in the root unit: tied weights must share a unit.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kw: dict[str, Any] = {"mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)}
    if cpu_offload:
        kw["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    for layer in decoder_layers(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    return model


def apply_ddp(model: Any, device: torch.device) -> Any:
    """Replicas with gradients averaged by DistributedDataParallel (bucketed, overlapped with backward)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


@dataclass
class Engine:
    device: torch.device
    dist: DistContext | None
    parallelism: str  # what is in effect: none with one process
    autocast_dtype: torch.dtype | None  # None: compute in the parameters' own dtype
    scaler: Any = None  # torch.amp.GradScaler for float16 compute

    @property
    def world_size(self) -> int:
        return self.dist.world_size if self.dist else 1

    @property
    def is_sharded(self) -> bool:
        return self.parallelism == "fsdp"

    def unwrap(self, model: Any) -> Any:
        """The Hugging Face model inside (for generate, configs, saving)."""
        return model.module if self.parallelism == "ddp" else model

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @contextlib.contextmanager
    def accumulate(self, model: Any, *, last: bool) -> Iterator[None]:
        """DDP reduces gradients only on a mini-batch's last pass (FSDP2 reduce-scatters each pass)."""
        if self.parallelism == "ddp" and not last:
            with model.no_sync():
                yield
        else:
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: Any, model: Any, grad_clip: float) -> float:
        """Unscale, clip (``grad_clip`` = 0: measure only), step; returns the gradient norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2: the norm over all shards
            norm = norm.full_tensor()
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return float(norm)

    def reshard(self, model: Any) -> None:
        """Free the gathered parameters FSDP2 keeps after a forward of its root (no-op otherwise)."""
        if self.is_sharded:
            model.reshard()

    def agree_max(self, value: int) -> int:
        """The largest ``value`` over all ranks (e.g. forward passes: every rank must run as many)."""
        return self.dist.max_int(value) if self.dist else value


def prepare(model: Any, cfg: TrainConfig, *, device: torch.device, dist: DistContext | None) -> tuple[Any, Engine]:
    """Apply the configured techniques to a loaded model (parameters in ``cfg.master_dtype``).

    Order: activation checkpointing, then FSDP2 sharding or DDP replication. Build the optimizer
    from the returned model's parameters afterwards (FSDP2 replaces them with sharded DTensors).
    """
    compute = getattr(torch, cfg.dtype)
    master = getattr(torch, cfg.master_dtype)
    if cfg.gradient_checkpointing:
        apply_activation_checkpointing(model)
    parallelism = cfg.parallelism if dist is not None and dist.world_size > 1 else "none"
    if dist is not None and dist.world_size > 1 and cfg.parallelism == "none":
        raise ValueError(f"parallelism=none cannot run {dist.world_size} processes: choose ddp or fsdp")
    autocast: torch.dtype | None = compute if compute != master else None
    if parallelism == "fsdp":
        model = apply_fsdp(model, param_dtype=compute, reduce_dtype=torch.float32, cpu_offload=cfg.cpu_offload)
        autocast = None  # FSDP2 casts the gathered parameters itself
    elif parallelism == "ddp":
        model = apply_ddp(model, device)
    scaler = None
    if compute == torch.float16 and master == torch.float32:
        scaler = _grad_scaler(device, sharded=parallelism == "fsdp")
    return model, Engine(device, dist, parallelism, autocast, scaler)


def _grad_scaler(device: torch.device, *, sharded: bool) -> Any:
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type)
