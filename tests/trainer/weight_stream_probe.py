"""Run under torchrun: FSDP2-shard tiny-random, stream its full weights one parameter at a time
(trainer.rollout.vllm_engine.stream_full_weights, what the vLLM sync feeds reload_weights) and
report, per rank, whether every streamed tensor equals the unsharded model's parameter and how
many gathered tensors were alive at once."""

from __future__ import annotations

import gc
import json
import weakref

import torch

from trainer.engine.distributed import DistContext
from trainer.engine.parallel import apply_fsdp
from trainer.registry import load_model
from trainer.rollout.vllm_engine import stream_full_weights

if __name__ == "__main__":
    dist = DistContext.from_env()
    assert dist is not None, "run me under torchrun"
    reference = {k: v.clone() for k, v in load_model("tiny-random").named_parameters()}
    model = apply_fsdp(
        load_model("tiny-random"), param_dtype=torch.float32, reduce_dtype=torch.float32, cpu_offload=False
    )
    sharded = all(hasattr(p, "full_tensor") for p in model.parameters())
    alive: list[weakref.ref[torch.Tensor]] = []
    most_alive, equal, names = 0, True, []
    for name, tensor in stream_full_weights(model, torch.bfloat16):
        alive.append(weakref.ref(tensor))
        gc.collect()
        most_alive = max(most_alive, sum(1 for r in alive if r() is not None))
        equal &= tensor.dtype == torch.bfloat16 and torch.equal(tensor, reference[name].to(torch.bfloat16))
        names.append(name)
        del tensor  # a consumer (vLLM's loader) copies it into its own parameter and drops it
    print(
        json.dumps(
            {
                "rank": dist.rank,
                "sharded": sharded,
                "equal": bool(equal),
                "names": names,
                "expected": sorted(reference),
                "most_alive": most_alive,
            }
        )
    )
    dist.close()
