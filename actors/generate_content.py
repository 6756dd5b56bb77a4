"""generate-content: text from a language model, over the OpenAI chat-completions API.

The request goes to `WARREN_LLM_URL` + `/chat/completions`, which OpenAI, Ollama, vLLM, LM
Studio and most model servers speak, with `WARREN_LLM_API_KEY` as a bearer token when set and
`WARREN_LLM_MODEL` when the payload names no model. The endpoint is the operator's
configuration, not the caller's, so it is not put through the SSRF guard.

A 429 or 5xx answer, a timeout or a connection error is retried, not before the server's
`Retry-After`; any other 4xx fails the job at once; an answer that is not a chat completion is
retried (a proxy's error page), and fails with the job's last attempt. `service.upstream`
makes the request: a cancel stops it within a second, and an answer is read up to a bound.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from service import upstream
from service.registry import current_settings, job_type

TIMEOUT_SECONDS = 120
Text = Annotated[str, Field(min_length=1, max_length=100_000)]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: Text


class GenerateContent(BaseModel):
    """A `prompt`, or chat `messages`; optionally a `system` message, a `model`, `maxTokens`
    and `temperature`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    prompt: Text | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=200)
    system: Text | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1, le=128_000, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2)

    @model_validator(mode="after")
    def _one_conversation(self) -> "GenerateContent":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self

    def chat(self) -> list[dict[str, str]]:
        said = [m.model_dump() for m in self.messages or []]
        if self.prompt is not None:
            said = [{"role": "user", "content": self.prompt}]
        if self.system is not None:
            said.insert(0, {"role": "system", "content": self.system})
        return said


class ModelFailed(Exception):
    """The model server could not answer this time; the job is retried."""


@job_type("generate-content", payload=GenerateContent, max_attempts=5, timeout_seconds=300)
def generate_content(payload: GenerateContent) -> dict[str, Any]:
    """Ask the model; return `{"text", "model", "finishReason", "usage"}`."""
    settings = current_settings()
    body: dict[str, Any] = {
        "model": payload.model or settings.llm_model,
        "messages": payload.chat(),
    }
    if payload.max_tokens is not None:
        body["max_tokens"] = payload.max_tokens
    if payload.temperature is not None:
        body["temperature"] = payload.temperature
    headers = {}
    if settings.llm_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
    url = settings.llm_url.rstrip("/") + "/chat/completions"
    data = upstream.post_json(
        url,
        body,
        headers=headers,
        timeout=TIMEOUT_SECONDS,
        server="the model server",
        failed=ModelFailed,
    )
    return _completion(data)


def _completion(data: Any) -> dict[str, Any]:
    try:
        [choice] = data["choices"][:1]
        usage = data.get("usage") or {}
        return {
            "text": choice["message"]["content"],
            "model": data.get("model"),
            "finishReason": choice.get("finish_reason"),
            "usage": {
                "promptTokens": usage.get("prompt_tokens"),
                "completionTokens": usage.get("completion_tokens"),
                "totalTokens": usage.get("total_tokens"),
            },
        }
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFailed(f"the model server's answer is not a chat completion: {exc!r}") from exc
