"""The body of POST /v1/chat/completions: OpenAI's fields that kotune honours, checked as
OpenAI checks them, and turned into the engine's messages and sampling settings. Parameters this
server cannot honour (n > 1, tools, logprobs, penalties other than 0, JSON mode) are refused by
name, never ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kotune.inference.engine import PromptTooLong
from kotune.serving.errors import ApiError


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None  # accepted as OpenAI does; kotune's prompt formats have no speakers


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions: OpenAI's fields that kotune honours, plus
    `repetition_penalty` (as vLLM accepts it)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: Annotated[list[Message], Field(min_length=1)]
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(ge=0, le=1)] = None
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1)] = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: Annotated[int | None, Field(ge=1, le=128)] = 1
    frequency_penalty: Annotated[float | None, Field(ge=-2, le=2)] = 0
    presence_penalty: Annotated[float | None, Field(ge=-2, le=2)] = 0
    repetition_penalty: Annotated[float | None, Field(gt=0)] = None
    logprobs: bool | None = False
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    user: str | None = None  # an end-user id for the client's own records; not used here
    metadata: dict[str, str] | None = None
    store: bool | None = False


def check_supported(body: ChatCompletionRequest) -> None:
    """400 for what this server cannot do, naming the parameter (never silently ignored)."""
    unsupported = {
        "n": body.n not in (None, 1),
        "frequency_penalty": bool(body.frequency_penalty),
        "presence_penalty": bool(body.presence_penalty),
        "logprobs": bool(body.logprobs) or body.top_logprobs is not None,
        "tools": bool(body.tools) or body.tool_choice not in (None, "none"),
        "store": bool(body.store),
        "response_format": bool(body.response_format)
        and body.response_format.get("type") != "text",
    }
    for param, refused in unsupported.items():
        if refused:
            raise ApiError(400, f"'{param}' is not supported by this server", param=param)
    if body.stream_options is not None and not body.stream:
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if isinstance(body.stop, list) and not all(body.stop):
        raise ApiError(400, "'stop' sequences must not be empty", param="stop")


def plain_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as kotune's engine takes it: text only, `developer` as `system`; at
    least one user message, the last message the user's."""
    messages = []
    for message in body.messages:
        content = message.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content)
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's", param="messages")
    return messages


def context_error(error: PromptTooLong) -> ApiError:
    total = error.prompt_tokens + error.max_new_tokens
    return ApiError(
        400,
        f"This model's maximum context length is {error.context} tokens. However, you requested "
        f"{total} tokens ({error.prompt_tokens} in the messages, {error.max_new_tokens} in the "
        f"completion). Please reduce the length of the messages or completion.",
        param="messages",
        code="context_length_exceeded",
    )


def sampling_changes(body: ChatCompletionRequest, max_new_tokens: int) -> dict[str, Any]:
    """Per-request changes to the persona's generation settings. temperature 0 is greedy;
    any other temperature or top_p samples."""
    changes: dict[str, Any] = {"max_new_tokens": max_new_tokens, "seed": body.seed}
    if body.temperature is not None:
        changes["do_sample"] = body.temperature > 0
        if body.temperature > 0:
            changes["temperature"] = body.temperature
    if body.top_p is not None:
        changes["top_p"] = body.top_p
        if body.temperature is None:
            changes["do_sample"] = body.top_p > 0
        if body.top_p == 0:
            changes["do_sample"] = False
    if body.repetition_penalty is not None:
        changes["repetition_penalty"] = body.repetition_penalty
    if body.stop:
        changes["stop"] = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop)
    if body.logit_bias:
        changes["logit_bias"] = tuple((int(k), v) for k, v in body.logit_bias.items())
    return changes


def check_logit_bias(body: ChatCompletionRequest, vocab_size: int) -> None:
    for key, bias in (body.logit_bias or {}).items():
        if not key.isdigit() or int(key) >= vocab_size:
            raise ApiError(
                400,
                f"logit_bias: {key!r} is not a token id (0 to {vocab_size - 1})",
                param="logit_bias",
            )
        if not -100 <= bias <= 100:
            raise ApiError(
                400, f"logit_bias: {bias} for {key} is not in [-100, 100]", param="logit_bias"
            )
