"""Memory and time planner: will a config fit the GPUs of a pool, before any model is loaded?

Pure and torch-free (the web tier calls it to show "fits: 61 of 80 GiB per GPU" next to the chosen
pool and to refuse a launch that cannot fit). From a ``TrainConfig``, a model shape (a table of
known architectures, or a local folder's ``config.json``) and a GPU type/count it estimates the
per-GPU bytes of each phase of a training step:

- **generate**: trainer state (master weights, AdamW state, the gradients the last optimizer step
  left) + the rollout engine (vLLM's reserved fraction, or transformers generate's working memory:
  the prefill's full-sequence logits, the KV cache, the per-step full-vocabulary logits and
  sampling temporaries; ``transformers_generate_bytes``);
- **score**: the no-grad forward (all hidden states are returned, then the LM head chunk by chunk);
  absent when the step has no scoring pass (on-policy GRPO and the other score-free algorithms:
  ``TrainConfig.needs_scoring_pass``);
- **update**: the forward/backward of one micro-batch: saved activations (per layer, or only the
  layer inputs with gradient checkpointing plus one recomputed layer), the checkpointed log-prob
  chunk, the low-precision copy of the weights (autocast cache, or FSDP2's gathered units) and the
  optimizer step's temporaries; plus vLLM's reservation unless it sleeps.

The activation model counts the tensors autograd saves in a Llama/Qwen3 decoder layer as
transformers 5 runs it with SDPA (``ACT_*`` constants below, all in one place) and the tensors the
engine's chunked log-prob/entropy keeps (``trainer/rl/scoring.py``). It was validated against the
live-tensor peak measured on CPU (``torch.distributed._tools.mem_tracker.MemTracker``, the CPU
analogue of ``torch.cuda.max_memory_allocated``) for tiny-random and SmolLM2-135M
(tests/trainer/test_planner_measured.py, figures in docs/results/planner.md). GPU-only terms
(CUDA context, allocator fragmentation, AdamW's foreach temporaries, vLLM) cannot be measured here
and are marked as such.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from trainer.choices import ENTROPY_GRAD_ALGORITHMS
from trainer.config import TrainConfig

GiB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# --- the activation model (bytes are per token; h hidden, I intermediate, a/kv heads, hd head dim) ---
ACT_NORM_BYTES_PER_HIDDEN = 12
"""An RMSNorm saves its fp32 input, the fp32 normalised tensor, and the (cast) output the next
matmul saves: 4h + 4h + 4h in float32, 4h + 4h + 2h + 2h in bfloat16. Two norms per layer."""
ACT_ATTN_Q_TENSORS = 7
"""(a·hd)-sized tensors an attention block saves: q, rotate_half(q), q·cos+…, the repeated k and v
(transformers repeats GQA heads when a padding mask is passed), the SDPA output, o_proj's input."""
ACT_ATTN_KV_TENSORS = 2
"""(kv·hd)-sized: k and rotate_half(k) for RoPE."""
ACT_QK_NORM_BYTES = 8
"""Qwen3's per-head q/k RMSNorm: fp32 input and fp32 normalised copy of q and k (per element)."""
ACT_MLP_TENSORS = 4
"""I-sized tensors a SwiGLU MLP saves: gate, up, silu(gate), silu(gate)·up."""
ACT_MASK_BYTES = 1
"""SDPA turns the (B, 1, L, L) boolean padding mask into an additive mask in the compute dtype per
layer call and saves it for backward; the boolean mask itself (1 byte) is shared."""
LOGIT_COPIES_GRAD = 5.25
"""(B, C, V) float32 tensors alive at once while one checkpointed log-prob chunk is recomputed and
back-propagated when the loss differentiates the entropy (entropy_reg; trainer/rl/scoring.py:
logits/T, log-softmax, p, p·log p and their gradients, and the boolean p == 0 mask at a quarter).
Measured 5.2-5.3 on CPU (tiny-random; docs/results/2026-12-03-gpu-hosts.md)."""
LOGIT_COPIES_GRAD_NO_ENTROPY = 5.0
"""The same for every other loss, whose entropy is computed without gradient (nothing of its branch
is saved, so nothing is left over from the chunks already back-propagated). Measured 4.55-5.04 on
CPU (tiny-random, 1-4 micro-batches, with and without checkpointing)."""
LOGIT_COPIES_NOGRAD = 5
"""The same chunk without gradient (scoring pass): logits/T, log-softmax, p, masked log p, p·log p."""
LOGIT_ROWS_OUT = 2
"""(B, T) float32 log-prob and entropy outputs per scored row and position (kept for the step)."""

# --- GPU-only terms (not measurable on CPU; from the libraries' documented behaviour) --------------
CUDA_CONTEXT_BYTES = int(0.75 * GiB)
"""CUDA context + cuBLAS/NCCL workspaces per process."""
ALLOCATOR_FRAGMENTATION = 1.10
"""PyTorch's caching allocator reserves more than it hands out (reserved / allocated)."""
ADAMW_FOREACH_TEMP = 1.0
"""torch's foreach AdamW (the CUDA default) materialises one parameter-sized temporary (sqrt of v)."""
VLLM_SLEEP_RESIDUAL_BYTES = int(1.0 * GiB)
"""What a sleeping vLLM engine keeps on the GPU (CUDA graphs, its allocator pool) at level 1."""
VLLM_ACTIVATION_BYTES = int(1.5 * GiB)
"""vLLM's profiled activation peak + CUDA graphs, taken from its fraction before the KV cache."""
TRANSFORMERS_GENERATE_ROWS = 32
"""Sequences per transformers generate call (TransformersBackend's batch_size): ``32 // n`` prompts
per call, each with its n rollouts."""

# --- transformers generate's working memory (trainer/rollout/backend.py, transformers' sample loop) --
GENERATE_HIDDEN_COPIES = 3
"""(rows, length, h) tensors in the residual stream's dtype next to a prefill's logits, an upper bound:
inside the final norm its input, float32 normalised copy and output are alive together, at the LM
head two of them (the surplus covers the CPU kernels' scratch buffers, about 25 KB measured on
tiny-random); under autocast the LM head's low-precision input is added."""
GENERATE_ID_COPIES = 3
"""(rows, prompt + response) int64 tensors of the sample loop: input_ids and the attention mask, one
of them rebuilt by a torch.cat at a time (old and new alive)."""
GENERATE_HELD_LOGIT_COPIES = 3
"""(rows, V) float32 tensors the sample loop still holds during a decoding forward: the previous
step's logits, processed scores and probabilities (freed only when their names are rebound)."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that memory depends on."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    qk_norm: bool = False

    @property
    def layer_params(self) -> int:
        h, hd = self.hidden_size, self.head_dim
        attn = h * self.num_heads * hd * 2 + h * self.num_kv_heads * hd * 2
        mlp = 3 * h * self.intermediate_size
        norms = 2 * h + (2 * hd if self.qk_norm else 0)
        return attn + mlp + norms

    @property
    def embedding_params(self) -> int:
        """Input embeddings + LM head (one matrix when tied) + final norm."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2) + self.hidden_size

    @property
    def n_params(self) -> int:
        return self.num_layers * self.layer_params + self.embedding_params

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim * dtype_bytes

    @classmethod
    def from_config(cls, name: str, config: dict[str, Any]) -> ModelShape:
        """From a Hugging Face ``config.json`` mapping (Llama, Qwen2/3, Mistral naming)."""
        try:
            heads = int(config["num_attention_heads"])
            hidden = int(config["hidden_size"])
            return cls(
                name=name,
                vocab_size=int(config["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(config["intermediate_size"]),
                num_layers=int(config["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                qk_norm=str(config.get("model_type", "")).startswith("qwen3"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{name}: config.json lacks a decoder-only transformer's shape ({exc})") from None


# Shapes of the registry's models (config.json of each), so the web host plans without the files.
KNOWN_SHAPES: dict[str, ModelShape] = {
    "tiny-random": ModelShape("tiny-random", 49152, 64, 128, 2, 4, 2, 16, True),
    "smollm2-135m": ModelShape("smollm2-135m", 49152, 576, 1536, 30, 9, 3, 64, True),
    "qwen3-1.7b": ModelShape("qwen3-1.7b", 151936, 2048, 6144, 28, 16, 8, 128, True, qk_norm=True),
    "qwen3-4b": ModelShape("qwen3-4b", 151936, 2560, 9728, 36, 32, 8, 128, True, qk_norm=True),
    "qwen3-8b": ModelShape("qwen3-8b", 151936, 4096, 12288, 36, 32, 8, 128, False, qk_norm=True),
}
_HUB_ALIASES = {"Qwen/Qwen3-1.7B": "qwen3-1.7b", "Qwen/Qwen3-4B": "qwen3-4b", "Qwen/Qwen3-8B": "qwen3-8b"}


def model_shape(model: str) -> ModelShape | None:
    """The shape of a registry name, a known hub id or a folder with a config.json (a path, or a
    ``local:``/``run:`` reference resolved on this host); None if unknown. A hub id is never read
    from the filesystem."""
    from trainer.references import NotFound, parse_model, resolve_model_path

    name = _HUB_ALIASES.get(model, model)
    if name in KNOWN_SHAPES:
        return KNOWN_SHAPES[name]
    ref = parse_model(model)
    if ref is None or ref.kind not in ("local", "run", "path"):
        return None
    try:
        config = resolve_model_path(model) / "config.json"
    except NotFound:
        return None
    return ModelShape.from_config(model, json.loads(config.read_text()))


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_bytes: int
    bf16_tflops: float  # dense peak
    hbm_tb_s: float


def _gpu(name: str, gib: float, tflops: float, tb_s: float) -> GpuType:
    return GpuType(name, int(gib * GiB), tflops, tb_s)


GPU_TYPES: dict[str, GpuType] = {
    g.name: g
    for g in (
        _gpu("a100-40gb", 40, 312, 1.555),
        _gpu("a100-80gb", 80, 312, 2.039),
        _gpu("h100-80gb", 79.6, 989, 3.35),
        _gpu("h200", 140.4, 989, 4.8),
        _gpu("l40s", 45, 362, 0.864),
        _gpu("b200", 178, 2250, 8.0),
    )
}


def gpu_type_from_inventory(name: str, memory_total_mb: int) -> GpuType:
    """A GPU as a worker's heartbeat reports it (nvidia-smi name and MiB): the table's speeds when the
    name matches a known type, its own memory always."""
    lowered = name.lower().replace(" ", "")
    known = next(
        (g for key, g in sorted(GPU_TYPES.items(), key=lambda kv: -len(kv[0])) if key.split("-")[0] in lowered),
        None,
    )
    base = known or GpuType(name, 0, 0.0, 0.0)
    return replace(base, name=name, memory_bytes=memory_total_mb * 2**20)


@dataclass(frozen=True)
class StepTokens:
    """Token counts of one training step (per rank; ``questions_per_step`` is per rank)."""

    generated_rows: int
    max_generated_tokens: int
    trained_rows: int
    trained_tokens: int  # worst case: every row at max_prompt_length + max_new_tokens, all epochs
    scored_tokens: int  # the no-grad scoring pass (0 when the update's first forward replaces it)
    micro_batch_rows: int
    micro_batch_tokens: int


@dataclass
class MemoryPlan:
    device: str  # "cuda" or "cpu"
    gpu: GpuType | None
    gpus: int
    components: dict[str, int]  # the update phase's parts, bytes per GPU
    phases: dict[str, int]  # generate / score / update peak, bytes per GPU
    tokens: StepTokens
    sharded: bool = False
    step_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return max(self.phases.values())

    @property
    def state_bytes(self) -> int:
        """Trainer state per GPU: master weights, gradients and optimizer state (in every phase)."""
        return sum(self.components[k] for k in ("weights", "gradients", "optimizer"))

    @property
    def capacity_bytes(self) -> int | None:
        return self.gpu.memory_bytes if self.gpu else None

    @property
    def fits(self) -> bool | None:
        if self.problems:
            return False
        cap = self.capacity_bytes
        return None if cap is None else self.peak_bytes <= cap

    def summary(self) -> str:
        """One line for the run form: 'fits: 61 of 80 GiB per GPU' or 'does not fit: <reason>'."""
        peak = _gib(self.peak_bytes)
        if self.problems:
            return "does not fit: " + "; ".join(self.problems)
        cap = self.capacity_bytes
        if cap is None:
            return f"needs about {peak} GiB per {'GPU' if self.device == 'cuda' else 'process'} (no pool memory known)"
        if self.fits:
            return f"fits: {peak} of {_gib(cap)} GiB per GPU"
        return f"does not fit: {self.reason()}"

    def reason(self) -> str:
        cap = self.capacity_bytes or 0
        name, biggest = max(self.components.items(), key=lambda kv: kv[1])
        hint = _HINTS.get(name, "")
        state = sum(self.components[k] for k in ("weights", "gradients", "optimizer"))
        if biggest <= cap < state:
            more = "use more GPUs or cpu_offload" if self.sharded else "use fsdp or more GPUs"
            return f"weights, gradients and optimizer state alone need {_gib(state)} GiB of {_gib(cap)}; {more}"
        if biggest > cap:
            return f"{_LABELS[name]} alone needs {_gib(biggest)} GiB of {_gib(cap)}; {hint}"
        phase = max(self.phases, key=lambda k: self.phases[k])
        need = _gib(self.phases[phase])
        return f"the {phase} phase needs {need} of {_gib(cap)} GiB (largest: {_LABELS[name]}); {hint}"

    def rows(self) -> list[tuple[str, str]]:
        """(label, GiB) per component, largest first, for the form's breakdown."""
        items = sorted(self.components.items(), key=lambda kv: -kv[1])
        return [(_LABELS[k], _gib(v)) for k, v in items if v > 0]


_LABELS = {
    "weights": "master weights",
    "compute_weights": "low-precision weight copy",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "optimizer_temp": "optimizer step temporaries",
    "activations": "activations",
    "logprob_chunk": "log-prob chunk",
    "rollout_engine": "rollout engine",
    "runtime": "CUDA context",
}
_HINTS = {
    "weights": "use fsdp or more GPUs",
    "optimizer": "use fsdp or more GPUs",
    "gradients": "use fsdp or more GPUs",
    "optimizer_temp": "use fsdp or more GPUs",
    "compute_weights": "use fsdp or more GPUs",
    "activations": "turn on gradient_checkpointing or lower max_tokens_per_micro_batch / micro_batch_size",
    "logprob_chunk": "lower logprob_chunk_tokens or the rows per micro-batch",
    "rollout_engine": "lower vllm_gpu_memory_utilization or turn on vllm_sleep",
    "runtime": "",
}


def _gib(n: float) -> str:
    value = n / GiB
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}" if value >= 0.1 else f"{value:.2f}"


def step_tokens(cfg: TrainConfig) -> StepTokens:
    longest = cfg.max_prompt_length + cfg.max_new_tokens
    gen_rows = cfg.questions_per_step * cfg.generated_per_question
    if cfg.max_tokens_per_micro_batch:
        micro_rows = max(1, cfg.max_tokens_per_micro_batch // longest)
    else:
        micro_rows = min(cfg.micro_batch_size, cfg.rows_per_step)
    scored_rows = gen_rows * len(cfg.modes) if cfg.needs_scoring_pass else 0
    return StepTokens(
        generated_rows=gen_rows,
        max_generated_tokens=gen_rows * cfg.max_new_tokens,
        trained_rows=cfg.rows_per_step,
        trained_tokens=cfg.rows_per_step * longest * cfg.ppo_epochs,
        scored_tokens=scored_rows * longest,
        micro_batch_rows=micro_rows,
        micro_batch_tokens=micro_rows * longest,
    )


def layer_activation_bytes(shape: ModelShape, dtype_bytes: int, rows: int, length: int) -> int:
    """Bytes one decoder layer saves for backward for ``rows`` sequences of ``length`` tokens."""
    h, i, hd = shape.hidden_size, shape.intermediate_size, shape.head_dim
    q, kv = shape.num_heads * hd, shape.num_kv_heads * hd
    per_token = 2 * ACT_NORM_BYTES_PER_HIDDEN * h
    per_token += (ACT_ATTN_Q_TENSORS * q + ACT_ATTN_KV_TENSORS * kv + ACT_MLP_TENSORS * i) * dtype_bytes
    if shape.qk_norm:
        per_token += ACT_QK_NORM_BYTES * (q + kv)
    mask = rows * length * length * dtype_bytes  # the additive mask SDPA saves
    return rows * length * per_token + mask


def plan_memory(
    cfg: TrainConfig,
    *,
    shape: ModelShape | None = None,
    gpu: GpuType | None = None,
    gpus: int | None = None,
    gpus_per_host: int | None = None,
    device: str | None = None,
) -> MemoryPlan:
    """Per-GPU memory of each phase of a step, and whether it fits ``gpu`` (None: no verdict).

    ``gpus`` defaults to ``cfg.gpus``; ``device`` to cuda when the run asks for GPUs. On ``cpu``
    the GPU-only terms (CUDA context, fragmentation, foreach temporaries, vLLM) are left out, which
    is what the CPU validation measures.
    """
    shape = shape or model_shape(cfg.model)
    if shape is None:
        raise ValueError(f"no shape known for model {cfg.model!r}: give a registry name or a folder with config.json")
    world = max(1, cfg.gpus if gpus is None else gpus)
    device = device or ("cuda" if cfg.gpus else "cpu")
    cuda = device == "cuda"
    d, m = DTYPE_BYTES[cfg.dtype], DTYPE_BYTES[cfg.master_dtype]
    fsdp = cfg.parallelism == "fsdp" and world > 1
    ddp = cfg.parallelism == "ddp" and world > 1
    shard = world if fsdp else 1
    n = shape.n_params
    tokens = step_tokens(cfg)
    length = cfg.max_prompt_length + cfg.max_new_tokens
    rows = tokens.micro_batch_rows

    on_gpu = 0 if (fsdp and cfg.cpu_offload) else 1  # FSDP2 CPU offload keeps shards in host memory
    weights = on_gpu * n * m // shard
    optimizer = on_gpu * 2 * n * m // shard
    gradients = on_gpu * n * m // shard * (2 if ddp else 1)  # DDP's reducer buckets are a second copy
    optimizer_temp = int(ADAMW_FOREACH_TEMP * n * m // shard) if cuda and on_gpu else 0
    # FSDP2: gathered units in the compute dtype, the root (embeddings, head) + a layer and its
    # prefetch; otherwise autocast's cache of cast weights for one forward/backward.
    compute_weights = (shape.embedding_params + 2 * shape.layer_params) * d if fsdp else n * d if d != m else 0

    layer = layer_activation_bytes(shape, d, rows, length)
    hidden = rows * length * shape.hidden_size * d
    if cfg.gradient_checkpointing:
        # each layer keeps its input; backward recomputes one layer at a time
        activations = shape.num_layers * hidden + layer
    else:
        activations = shape.num_layers * layer
        if d != 4:  # the returned hidden states are extra copies when the norms saved fp32 casts
            activations += shape.num_layers * hidden
    activations += hidden + rows * length * length * ACT_MASK_BYTES  # embedding output + boolean mask
    chunk = cfg.logprob_chunk_tokens or cfg.max_new_tokens
    chunk = min(chunk, cfg.max_new_tokens)
    copies = LOGIT_COPIES_GRAD if cfg.algorithm in ENTROPY_GRAD_ALGORITHMS else LOGIT_COPIES_GRAD_NO_ENTROPY
    logprob_chunk = int(rows * chunk * shape.vocab_size * 4 * copies)
    logprob_chunk += rows * cfg.max_new_tokens * (shape.hidden_size * d + 4 * LOGIT_ROWS_OUT)

    score_pass = (
        (shape.num_layers + 1) * hidden
        + layer // max(1, shape.num_layers)
        + (rows * chunk * shape.vocab_size * 4 * LOGIT_COPIES_NOGRAD)
    )
    score_pass += rows * length * length * (ACT_MASK_BYTES + d)

    engine_awake, engine_asleep, gen_extra, kv_tokens, notes, problems = _rollout_engine(cfg, shape, gpu, cuda, d)
    runtime = CUDA_CONTEXT_BYTES if cuda else 0
    frag = ALLOCATOR_FRAGMENTATION if cuda else 1.0

    static = weights + optimizer + gradients
    components = {
        "weights": weights,
        "compute_weights": compute_weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "optimizer_temp": optimizer_temp,
        "activations": activations,
        "logprob_chunk": logprob_chunk,
        "rollout_engine": engine_asleep,
        "runtime": runtime,
    }
    # The update frees the previous step's gradients first. With one pass per optimizer step, its
    # log-prob/activation peak comes at the start of the backward, when only the LM head's gradient
    # exists; from a second pass on, the first pass's gradients are all there.
    passes = math.ceil(cfg.rows_per_mini_batch / max(1, rows))
    grads_at_peak = gradients if passes > 1 else gradients * shape.embedding_params // n
    update = int(
        max(
            weights + optimizer + grads_at_peak + compute_weights + activations + logprob_chunk,
            static + optimizer_temp,
        )
        * frag
        + engine_asleep
        + runtime
    )
    score = int((static + score_pass + (compute_weights if not fsdp else 0)) * frag + engine_asleep + runtime)
    # transformers generate runs under the engine's autocast, which keeps its cast weights for the call
    gen_weights = compute_weights if cfg.rollout_backend == "transformers" and not fsdp else 0
    generate = int((static + gen_weights + gen_extra) * frag + engine_awake + runtime)
    # A step without a scoring pass (TrainConfig.needs_scoring_pass, the loop's own rule) has no score phase.
    phases = {"generate": generate, "score": score, "update": update}
    if not cfg.needs_scoring_pass:
        del phases["score"]
    plan = MemoryPlan(
        device=device,
        gpu=gpu,
        gpus=world,
        components=components,
        phases=phases,
        tokens=tokens,
        sharded=fsdp,
        notes=notes,
        problems=problems,
    )
    if gpus_per_host is not None and world > gpus_per_host:
        plan.problems.append(
            f"the run asks for {world} GPUs but a host of this pool has {gpus_per_host}: runs are launched "
            f"on one host (torchrun --standalone); use at most {gpus_per_host} GPUs"
        )
    if gpu is not None and cuda:
        plan.step_seconds = _step_seconds(cfg, shape, gpu, tokens, kv_tokens)
    return plan


def _rollout_engine(
    cfg: TrainConfig, shape: ModelShape, gpu: GpuType | None, cuda: bool, d: int
) -> tuple[int, int, int, int, list[str], list[str]]:
    """Engine bytes while generating and while the trainer works, the trainer's extra bytes while
    generating, the tokens the KV cache holds at once, notes, problems."""
    notes: list[str] = []
    problems: list[str] = []
    kv_token = shape.kv_bytes_per_token(d)
    if cfg.rollout_backend == "vllm":
        if not cuda or gpu is None:
            return 0, 0, 0, 0, ["vLLM's memory depends on the GPU: choose a GPU pool to plan it"], problems
        reserved = int(cfg.vllm_gpu_memory_utilization * gpu.memory_bytes)
        weights = shape.n_params * d // cfg.vllm_tensor_parallel_size
        kv_capacity = reserved - weights - VLLM_ACTIVATION_BYTES
        kv_tokens = max(0, kv_capacity) * cfg.vllm_tensor_parallel_size // kv_token
        notes.append(
            f"vLLM reserves {_gib(reserved)} GiB; its KV cache holds about {kv_tokens:,} tokens "
            f"(max model length {cfg.vllm_model_len:,})"
        )
        if kv_tokens < cfg.vllm_model_len:
            problems.append(
                f"vLLM's KV cache at vllm_gpu_memory_utilization={cfg.vllm_gpu_memory_utilization} holds "
                f"{kv_tokens:,} tokens, less than one sequence of {cfg.vllm_model_len:,}: raise the fraction"
            )
        asleep = VLLM_SLEEP_RESIDUAL_BYTES if cfg.vllm_sleep else reserved
        return reserved, asleep, 0, kv_tokens, notes, problems
    # transformers generate on the training model
    rows, working = transformers_generate_bytes(cfg, shape, d, DTYPE_BYTES[cfg.master_dtype])
    return 0, 0, working, rows * (cfg.max_prompt_length + cfg.max_new_tokens), notes, problems


def sampling_logit_copies(cfg: TrainConfig) -> float:
    """(rows, V) float32 tensors alive at once while one step of transformers' sample loop samples.

    Each step copies the last position's logits to float32, runs the logits processors and takes
    the softmax; the previous step's scores and probabilities are still referenced until their
    names are rebound, so a step's peak holds the new logits, the old scores and probabilities
    and the processors' temporaries:

    - no processor (T = 1, no top-k/top-p): the scores are the logits: 3 (new logits, old and new
      probabilities);
    - temperature: + the scaled scores = 4;
    - top-k: its output and a boolean mask (¼) = 4.25, + its input when a processor ran before it;
    - top-p: the sorted scores, their int64 indices (2), the cumulative softmax, two boolean masks
      (¼ each) and its output = 8.5, + its input when a processor ran before it.

    Measured on CPU (tiny-random, the profiler's live bytes): within 3 % for each of these.
    """
    before = cfg.temperature != 1.0
    if cfg.top_p < 1.0:
        return 8.5 + (1 if before or cfg.top_k else 0)
    if cfg.top_k:
        return 4.25 + (1 if before else 0)
    return 4.0 if before else 3.0


def transformers_generate_bytes(cfg: TrainConfig, shape: ModelShape, d: int, m: int) -> tuple[int, int]:
    """(sequences per call, working bytes) of one ``TransformersBackend`` generate call, the largest
    of its moments (``d``: the compute dtype's bytes, ``m``: the weights' dtype's):

    1. the shared prefill: one forward over each prompt but its last token. A plain forward returns
       the logits of every position, (prompts, prompt_len − 1, V): on a small model with a large
       vocabulary this, not the KV cache, is the phase's peak (tiny-random, one 32-token prompt:
       6 MiB of logits, 16 KiB of cache). transformers' own prefill keeps only the last position
       (``logits_to_keep=1``), which is the path without sharing (n = 1);
    2. the prefill's cache repeated n times (``batch_repeat_interleave``, one tensor at a time);
    3. the last decoding step, at the full KV cache: its forward (one layer's keys or values
       twice while ``torch.cat`` grows them; the previous step's logits still held) or its
       sampling (the last position's logits in the compute dtype and ``sampling_logit_copies``
       float32 copies over the full vocabulary), plus the growing int64 ids and attention mask.

    The KV cache is in the weights' dtype even under autocast: RoPE multiplies the bf16 keys by
    float32 cos/sin tables, the cache's first (empty) tensors take the keys' dtype and torch.cat
    promotes the values to it (measured: an all-float32 cache with bf16 compute and fp32 masters).
    A call takes ``32 // n`` prompts (at least one) with their n rollouts; every prompt is planned at
    ``max_prompt_length`` and every response at ``max_new_tokens`` (worst case). The bf16 copies of
    the weights that autocast keeps for the call are added by ``plan_memory`` (compute_weights).
    """
    n, prompts = cfg.n, cfg.questions_per_step * len(cfg.modes)
    per_call = min(prompts, max(1, TRANSFORMERS_GENERATE_ROWS // n))
    rows = per_call * n
    w, length, v = cfg.max_prompt_length, cfg.max_prompt_length + cfg.max_new_tokens, shape.vocab_size
    kv_token = shape.kv_bytes_per_token(m)
    kv_tensor = kv_token // max(1, 2 * shape.num_layers)  # one layer's keys (or values)
    hidden = (GENERATE_HIDDEN_COPIES * m + (d if d != m else 0)) * shape.hidden_size
    if n > 1 and w > 1:  # TransformersBackend._shared_prefill
        prefill = per_call * (w - 1) * (v * d + kv_token + hidden)
        repeat = rows * (w - 1) * kv_token + per_call * (w - 1) * kv_tensor
    else:
        prefill = rows * w * (kv_token + hidden) + rows * v * d
        repeat = 0
    kv = rows * length * kv_token
    forward = kv + rows * length * kv_tensor + rows * v * 4 * GENERATE_HELD_LOGIT_COPIES
    sampling = kv + int(rows * v * (d + 4 * sampling_logit_copies(cfg)))
    decode = rows * length * 8 * GENERATE_ID_COPIES + max(forward, sampling)
    return rows, max(prefill, repeat, decode)


def _step_seconds(cfg: TrainConfig, shape: ModelShape, gpu: GpuType, t: StepTokens, kv_tokens: int) -> dict[str, float]:
    """Rough seconds per phase: FLOPs at an assumed MFU for the forward passes, HBM bandwidth for decoding."""
    train_mfu, score_mfu, decode_eff = 0.35, 0.45, 0.5  # assumptions, not measurements
    n = shape.n_params
    length = cfg.max_prompt_length + cfg.max_new_tokens
    attn = 2 * shape.num_layers * length * shape.num_heads * shape.head_dim  # causal QKᵀ + AV per token
    flops_per_token = 2 * n + attn
    recompute = 1 if cfg.gradient_checkpointing else 0
    peak = gpu.bf16_tflops * 1e12
    update = t.trained_tokens * flops_per_token * (3 + recompute) / (peak * train_mfu)
    score = t.scored_tokens * flops_per_token / (peak * score_mfu)
    # Decoding reads the weights once per step of the sequences in flight, plus their KV cache; the
    # KV cache bounds how many are in flight, so the rollouts run in waves.
    avg_len = cfg.max_prompt_length + cfg.max_new_tokens / 2
    wanted = t.generated_rows * avg_len
    in_flight = min(wanted, max(kv_tokens, avg_len))
    waves = math.ceil(wanted / in_flight)
    per_token_step = (n * 2 + in_flight * shape.kv_bytes_per_token(2)) / (gpu.hbm_tb_s * 1e12 * decode_eff)
    generate = waves * cfg.max_new_tokens * per_token_step
    return {"generate": generate, "score": score, "update": update, "step": generate + score + update}


def pool_gpus(spec: str) -> dict[str, tuple[GpuType, int]]:
    """Parse ``PSL_POOLS`` = ``queue=gpu_type:gpus_per_host,…`` (e.g. ``gpu-h100=h100-80gb:8``)."""
    pools: dict[str, tuple[GpuType, int]] = {}
    for item in (p.strip() for p in spec.split(",") if p.strip()):
        queue, sep, rest = item.partition("=")
        kind, _, count = rest.partition(":")
        if not sep or kind.strip() not in GPU_TYPES:
            kinds = ", ".join(GPU_TYPES)
            raise ValueError(f"PSL_POOLS entry {item!r}: expected queue=gpu_type:gpus_per_host, gpu_type in {kinds}")
        try:
            per_host = int(count) if count else 1
        except ValueError:
            raise ValueError(f"PSL_POOLS entry {item!r}: gpus_per_host must be a whole number") from None
        pools[queue.strip()] = (GPU_TYPES[kind.strip()], per_host)
    return pools


def describe(plan: MemoryPlan) -> str:
    """A multi-line report (CLI ``python -m trainer plan``)."""
    lines = [plan.summary()]
    for name, value in plan.phases.items():
        lines.append(f"  {name:<9} {_gib(value):>7} GiB per {'GPU' if plan.device == 'cuda' else 'process'}")
    lines.append("  update phase parts:")
    lines.extend(f"    {label:<28} {gib:>7} GiB" for label, gib in plan.rows())
    t = plan.tokens
    lines.append(
        f"  tokens per step: {t.generated_rows} rollouts × up to {t.max_generated_tokens // max(1, t.generated_rows):,}"
        " "
        f"new tokens; {t.trained_rows} trained rows ({t.trained_tokens:,} tokens); "
        f"{t.micro_batch_rows} rows per micro-batch"
    )
    if plan.step_seconds:
        s = plan.step_seconds
        lines.append(
            f"  rough step time: {s['step']:.0f} s (generate {s['generate']:.0f}, score {s['score']:.0f}, "
            f"update {s['update']:.0f}; assumed MFU, not measured)"
        )
    lines.extend(f"  note: {note}" for note in plan.notes)
    return "\n".join(lines)


def gib(n: float) -> float:
    return math.floor(n / GiB * 10) / 10
