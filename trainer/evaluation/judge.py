"""LLM-as-judge for creative writing (docs/method.md §6.4): five criteria, 0–10 each, scaled ×10.

Any OpenAI-compatible ``/v1/chat/completions`` endpoint works (OpenAI, vLLM, llama.cpp server…).
The endpoint comes from arguments or the environment (``JUDGE_API_URL``, ``JUDGE_API_KEY``,
``JUDGE_MODEL``, the same names as the web app's settings). Without a URL the judge is *not
configured*: :func:`judge_config_from_env` returns None and callers report that, never a score.

The judge must answer with exactly the five lines of :data:`CRITERIA` ("Creativity: 7" …).
:func:`parse_judge_output` accepts harmless variations (bold, numbering, "/10", decimals, any
order, a preamble line, a short comment after a score) but rejects anything missing, duplicated,
unparseable or out of range with :class:`JudgeError`, which the
evaluation records as that sample's error; no number is ever invented.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# (key, label as the judge writes it): docs/method.md §6.4 and Table 2's column order.
CRITERIA: tuple[tuple[str, str], ...] = (
    ("creativity", "Creativity"),
    ("originality", "Originality"),
    ("narrative_flow", "Narrative Flow"),
    ("emotional_impact", "Emotional Impact"),
    ("imagery", "Imagery"),
)
CRITERION_KEYS = tuple(k for k, _ in CRITERIA)

# docs/method.md §6.4 (Appendix C of the paper), in our own words.
SYSTEM_PROMPT = "You are an expert literary critic. You grade short stories strictly and consistently."
RUBRIC_TEMPLATE = (
    "Read the writing prompt and the story written for it, then grade the story on five criteria, "
    "each an integer from 0 (very poor) to 10 (outstanding):\n"
    """
- Creativity: how novel and imaginative the ideas are.
- Originality: how fresh the interpretation of the prompt is, avoiding clichés.
- Narrative Flow: coherence, structure and pacing.
- Emotional Impact: how strongly the story makes the reader feel something.
- Imagery: vivid, concrete sensory detail.

Answer with exactly these five lines and nothing else (no explanation):
Creativity: <score>
Originality: <score>
Narrative Flow: <score>
Emotional Impact: <score>
Imagery: <score>

### Writing prompt
{prompt}

### Story
{story}"""
)


class JudgeError(RuntimeError):
    """The judge could not score a sample (HTTP failure or an answer that does not parse)."""


class JudgeNotConfigured(RuntimeError):
    """No judge endpoint is configured (JUDGE_API_URL is empty)."""


@dataclass(frozen=True)
class JudgeConfig:
    url: str
    """The endpoint: a base URL (``https://host``, ``https://host/v1``) or the full ``…/chat/completions``."""
    api_key: str = ""
    model: str = "gpt-4o"
    timeout: float = 60.0
    max_tokens: int = 64

    @property
    def endpoint(self) -> str:
        """``…/chat/completions`` as given, ``…/v1`` + ``/chat/completions``, else + ``/v1/chat/completions``."""
        url = self.url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        if url.endswith("/v1"):
            return url + "/chat/completions"
        return url + "/v1/chat/completions"


def judge_config_from_env(
    env: Mapping[str, str] | None = None, *, url: str = "", api_key: str = "", model: str = ""
) -> JudgeConfig | None:
    """Arguments first, then ``JUDGE_API_URL`` / ``JUDGE_API_KEY`` / ``JUDGE_MODEL``; None without a URL."""
    import os

    env = os.environ if env is None else env
    url = url or env.get("JUDGE_API_URL", "")
    if not url:
        return None
    return JudgeConfig(
        url=url, api_key=api_key or env.get("JUDGE_API_KEY", ""), model=model or env.get("JUDGE_MODEL", "") or "gpt-4o"
    )


def build_messages(prompt: str, story: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": RUBRIC_TEMPLATE.format(prompt=prompt.strip(), story=story.strip())},
    ]


_LABELS = {re.sub(r"\s+", " ", label.lower()): key for key, label in CRITERIA}
_LINE = re.compile(
    r"^\s*(?:[-*•]\s*|\d+[.)]\s*)?[*_]*\s*(?P<label>[A-Za-z][A-Za-z ]*?)\s*[*_]*\s*[:=\-–]\s*[*_]*\s*"
    r"(?P<score>\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*[*_]*\s*\.?(?:\s+[-–(].*)?\s*$"
)


def parse_judge_output(text: str) -> dict[str, float]:
    """The five criterion scores scaled ×10 (0–100), from the judge's five-line answer.

    Lines that name no criterion (a preamble, "Overall: 8") are ignored. Raises JudgeError when a
    criterion is missing or repeated, its line does not parse, or a score is outside 0–10.
    """
    found: dict[str, float] = {}
    for raw in text.strip().splitlines():
        m = _LINE.match(raw)
        key = _LABELS.get(re.sub(r"\s+", " ", m.group("label").strip().lower())) if m else None
        if m is None or key is None:
            if any(label in raw.lower() for label in _LABELS):
                raise JudgeError(f"unparseable judge line: {raw.strip()[:80]!r}")
            continue
        if key in found:
            raise JudgeError(f"criterion {key} appears twice")
        score = float(m.group("score"))
        if not 0.0 <= score <= 10.0:
            raise JudgeError(f"{key} score {score:g} is outside 0–10")
        found[key] = 10.0 * score
    missing = [k for k in CRITERION_KEYS if k not in found]
    if missing:
        raise JudgeError(f"judge answer lacks {', '.join(missing)}")
    return {k: found[k] for k in CRITERION_KEYS}


def chat_completion(cfg: JudgeConfig, messages: list[dict[str, str]]) -> str:
    """POST one chat completion (temperature 0) and return the first choice's text."""
    body = json.dumps(
        {"model": cfg.model, "messages": messages, "temperature": 0.0, "max_tokens": cfg.max_tokens}
    ).encode()
    headers = {"Content-Type": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    request = urllib.request.Request(cfg.endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=cfg.timeout) as resp:
            payload: Any = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:200]
        raise JudgeError(f"judge endpoint returned HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise JudgeError(f"judge endpoint unreachable: {exc}") from None
    except json.JSONDecodeError:
        raise JudgeError("judge endpoint returned invalid JSON") from None
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError("judge response has no choices[0].message.content") from None
    if not isinstance(content, str):
        raise JudgeError("judge message content is not text")
    return content


def judge_story(cfg: JudgeConfig | None, prompt: str, story: str) -> dict[str, float]:
    """Scores (×10) of one story; JudgeNotConfigured without a config, JudgeError on any failure."""
    if cfg is None:
        raise JudgeNotConfigured("no LLM judge is configured (set JUDGE_API_URL, JUDGE_API_KEY, JUDGE_MODEL)")
    return parse_judge_output(chat_completion(cfg, build_messages(prompt, story)))


@dataclass(frozen=True)
class JudgeResult:
    scores: dict[str, float] | None
    error: str = ""


def judge_many(cfg: JudgeConfig, items: list[tuple[str, str]], *, workers: int = 4) -> list[JudgeResult]:
    """Judge (prompt, story) pairs concurrently; each failure becomes that item's error."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[str, str]) -> JudgeResult:
        try:
            return JudgeResult(judge_story(cfg, *item))
        except JudgeError as exc:
            return JudgeResult(None, str(exc))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, items))


def summarize(results: list[JudgeResult]) -> dict[str, Any]:
    """Per-criterion means (×10) over the scored samples, their overall mean, and the error count."""
    scored = [r.scores for r in results if r.scores]
    out: dict[str, Any] = {"judged": len(scored), "errors": len(results) - len(scored)}
    if scored:
        for key in CRITERION_KEYS:
            out[key] = sum(s[key] for s in scored) / len(scored)
        out["overall"] = sum(out[k] for k in CRITERION_KEYS) / len(CRITERION_KEYS)
    return out
