"""The LLM judge against a local stub of an OpenAI-compatible chat-completions endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainer.evaluation import judge

VALID = "Creativity: 7\nOriginality: 6\nNarrative Flow: 8\nEmotional Impact: 5\nImagery: 9"


class StubJudge:
    """Answers every chat completion with ``reply`` (or ``status``) and records the requests."""

    def __init__(self) -> None:
        self.reply: Any = VALID
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                payload = (
                    stub.reply
                    if not isinstance(stub.reply, str)
                    else {
                        "id": "x",
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": stub.reply}}],
                    }
                )
                data = json.dumps(payload).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def stub() -> Iterator[StubJudge]:
    s = StubJudge()
    thread = threading.Thread(target=s.server.serve_forever, daemon=True)
    thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def config(stub: StubJudge) -> judge.JudgeConfig:
    return judge.JudgeConfig(url=stub.url, api_key="sk-test", model="stub-judge", timeout=5)


def test_it_scores_a_story_with_the_five_criteria_scaled_by_ten(stub: StubJudge) -> None:
    scores = judge.judge_story(config(stub), "Write about a door.", "The door hummed.")
    assert scores == {
        "creativity": 70.0,
        "originality": 60.0,
        "narrative_flow": 80.0,
        "emotional_impact": 50.0,
        "imagery": 90.0,
    }
    (req,) = stub.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "stub-judge"
    assert req["body"]["temperature"] == 0.0
    user = req["body"]["messages"][-1]["content"]
    assert "Write about a door." in user and "The door hummed." in user and "Narrative Flow: <score>" in user


def test_it_records_malformed_output_as_an_error_not_a_score(stub: StubJudge) -> None:
    stub.reply = "Creativity: 7\nOriginality: 6\nThis story is lovely."
    results = judge.judge_many(config(stub), [("p", "story one"), ("p", "story two")])
    assert [r.scores for r in results] == [None, None]
    assert all("lacks narrative_flow" in r.error for r in results)
    assert judge.summarize(results) == {"judged": 0, "errors": 2}


def test_it_records_http_errors_and_answers_without_choices(stub: StubJudge) -> None:
    stub.status = 500
    stub.reply = {"error": {"message": "overloaded"}}
    with pytest.raises(judge.JudgeError, match="HTTP 500"):
        judge.judge_story(config(stub), "p", "s")
    stub.status = 200
    with pytest.raises(judge.JudgeError, match="no choices"):
        judge.judge_story(config(stub), "p", "s")


def test_it_reports_an_unreachable_endpoint() -> None:
    cfg = judge.JudgeConfig(url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(judge.JudgeError, match="unreachable"):
        judge.judge_story(cfg, "p", "s")


def test_it_is_not_configured_without_a_url() -> None:
    assert judge.judge_config_from_env({}) is None
    assert judge.judge_config_from_env({"JUDGE_API_KEY": "k"}) is None
    with pytest.raises(judge.JudgeNotConfigured, match="JUDGE_API_URL"):
        judge.judge_story(None, "p", "s")


def test_it_reads_the_endpoint_from_the_environment() -> None:
    cfg = judge.judge_config_from_env(
        {"JUDGE_API_URL": "https://api.example.com/v1", "JUDGE_API_KEY": "k", "JUDGE_MODEL": "gpt-5"}
    )
    assert cfg == judge.JudgeConfig(url="https://api.example.com/v1", api_key="k", model="gpt-5")
    assert cfg.endpoint == "https://api.example.com/v1/chat/completions"
    assert judge.JudgeConfig(url="http://h:8000/v1/chat/completions").endpoint == "http://h:8000/v1/chat/completions"
    assert judge.JudgeConfig(url="http://h:8000/").endpoint == "http://h:8000/v1/chat/completions"


def test_summarize_averages_the_scored_samples(stub: StubJudge) -> None:
    results = [
        judge.JudgeResult({k: 60.0 for k in judge.CRITERION_KEYS}),
        judge.JudgeResult({k: 80.0 for k in judge.CRITERION_KEYS}),
        judge.JudgeResult(None, "bad"),
    ]
    summary = judge.summarize(results)
    assert summary["judged"] == 2 and summary["errors"] == 1
    assert summary["imagery"] == pytest.approx(70.0) and summary["overall"] == pytest.approx(70.0)


@pytest.mark.parametrize(
    "text",
    [
        VALID,
        "Here are the scores:\n1. **Creativity**: 7/10\n2. Originality - 6\n- Narrative Flow: 8 (good pacing)\n"
        "* Emotional Impact = 5.\nImagery: 9\nOverall: 7",
        "imagery: 9\nemotional impact: 5\nnarrative   flow: 8\noriginality: 6\ncreativity: 7",
    ],
)
def test_the_parser_accepts_harmless_variations(text: str) -> None:
    assert judge.parse_judge_output(text) == {
        "creativity": 70.0,
        "originality": 60.0,
        "narrative_flow": 80.0,
        "emotional_impact": 50.0,
        "imagery": 90.0,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lacks"),
        (VALID.replace("Imagery: 9", "Imagery: 11"), "outside 0–10"),
        (VALID.replace("Imagery: 9", "Imagery: vivid"), "unparseable"),
        (VALID.replace("Imagery: 9", "Imagery: 7-9"), "unparseable"),
        (VALID + "\nCreativity: 3", "twice"),
    ],
)
def test_the_parser_rejects_what_it_cannot_trust(text: str, message: str) -> None:
    with pytest.raises(judge.JudgeError, match=message):
        judge.parse_judge_output(text)
