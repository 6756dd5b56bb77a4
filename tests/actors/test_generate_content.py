"""generate-content against a local server that speaks OpenAI's chat-completions API: the
request it sends, the result it keeps, and what it does with a 429, a 4xx and an answer that
is not a completion."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from actors.generate_content import GenerateContent, ModelFailed, generate_content
from service.bodies import AnswerRefused
from service.errors import PermanentError, RetryLater
from service.settings import Settings
from service.upstream import MAX_ANSWER_BYTES
from tests.helpers import wait_for

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "tiny-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the model."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
}


class ModelServer:
    """Answers POST /v1/chat/completions with the queued answers, then with COMPLETION."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.url = ""

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.answers.append((status, headers, body))


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    model = ModelServer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                model.requests.append((dict(self.headers.items()), body))
                queued = model.answers.pop(0) if model.answers else None
            status, headers, content = queued or (200, {}, json.dumps(COMPLETION).encode())
            if self.path != "/v1/chat/completions":
                status, headers, content = 404, {}, b"not found"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    model.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield model
    server.shutdown()
    server.server_close()


def settings_for(model: ModelServer, **more: Any) -> Settings:
    return Settings(llm_url=model.url, llm_model="tiny-model", **more)


def test_a_prompt_becomes_text_with_its_usage(model_server, running_job):
    running_job(settings=settings_for(model_server, llm_api_key="sk-local"))

    result = generate_content(
        GenerateContent(prompt="Say hello", system="Be brief", maxTokens=20, temperature=0.2)
    )

    assert result == {
        "text": "Hello from the model.",
        "model": "tiny-model",
        "finishReason": "stop",
        "usage": {"promptTokens": 12, "completionTokens": 5, "totalTokens": 17},
    }
    [(headers, body)] = model_server.requests
    assert headers["Authorization"] == "Bearer sk-local"
    assert body == {
        "model": "tiny-model",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 20,
        "temperature": 0.2,
    }


def test_chat_messages_and_a_model_of_its_own(model_server, running_job):
    running_job(settings=settings_for(model_server))
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ]

    generate_content(GenerateContent(messages=messages, model="other-model"))

    [(headers, body)] = model_server.requests
    assert "Authorization" not in headers
    assert body == {"model": "other-model", "messages": messages}


def test_a_429_is_retried_not_before_its_retry_after(model_server, running_job):
    running_job(settings=settings_for(model_server))
    model_server.answer(429, b'{"error": "rate limited"}', Retry_After="7")

    with pytest.raises(RetryLater) as raised:
        generate_content(GenerateContent(prompt="x"))

    assert raised.value.seconds == 7


def test_a_5xx_is_retried_and_a_4xx_fails_at_once(model_server, running_job):
    running_job(settings=settings_for(model_server))
    model_server.answer(503, b"overloaded")
    model_server.answer(400, b'{"error": "context length exceeded"}')

    with pytest.raises(ModelFailed, match="HTTP 503"):
        generate_content(GenerateContent(prompt="x"))
    with pytest.raises(PermanentError, match="context length exceeded"):
        generate_content(GenerateContent(prompt="x"))


@pytest.mark.parametrize(
    "answer", [b"<html>bad gateway</html>", b'{"choices": []}', b'{"choices": [{"text": 1}]}']
)
def test_an_answer_that_is_not_a_completion_is_retried(model_server, running_job, answer):
    running_job(settings=settings_for(model_server))
    model_server.answer(200, answer)

    with pytest.raises(ModelFailed, match=r"not JSON|not a chat completion"):
        generate_content(GenerateContent(prompt="x"))


@pytest.mark.parametrize(
    "payload",
    [{}, {"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, {"prompt": ""},
     {"messages": [{"role": "tool", "content": "y"}]}, {"prompt": "x", "temperature": 3}],
)  # fmt: skip
def test_a_bad_payload_is_a_422(warren, payload):
    from service.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        warren.enqueue("generate-content", payload)


def test_on_a_worker_a_429_waits_for_its_retry_after_then_completes(
    warren, start_worker, model_server
):
    model_server.answer(429, b"slow down", Retry_After="2")
    start_worker(llm_url=model_server.url, llm_model="tiny-model")

    job_id = warren.enqueue("generate-content", {"prompt": "Say hello"}).id

    wait_for(lambda: warren.get(job_id).status == "completed", timeout=20)
    job = warren.get(job_id)
    assert job.result["text"] == "Hello from the model." and job.attempts == 2
    first, second = warren.attempts(job_id)
    assert first.error["type"] == "RetryLater"
    assert (second.started_at - first.finished_at).total_seconds() >= 1.9


def test_an_answer_past_the_bound_is_refused_unread(model_server, running_job):
    """A model server (or whatever answers in its place) cannot fill the worker's memory."""
    running_job(settings=settings_for(model_server))
    model_server.answer(200, b'{"choices": ["' + b"x" * (MAX_ANSWER_BYTES + 1) + b'"]}')

    with pytest.raises(AnswerRefused, match="larger than 33,554,432 bytes"):
        generate_content(GenerateContent(prompt="x"))
