"""The body of POST /v1/chat/completions: OpenAI's fields, checked as OpenAI checks them, and
turned into the engine's messages and sampling settings. Every field of OpenAI's API is
accepted at its default; a value this server cannot honour (tools, logprobs, JSON mode,
audio) is refused by name, never ignored. A name OpenAI does not
know (a typo) is refused as OpenAI refuses it. Hints with no effect on the answer's text
(user, metadata, service_tier, prompt caching, predicted output) are accepted and not used."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from kotune.inference.engine import PromptTooLong
from kotune.serving.chat_messages import Message
from kotune.serving.errors import ApiError


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool | None = None  # padding against side channels; nothing to pad here


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions: OpenAI's fields, plus `repetition_penalty` (as
    vLLM accepts it). `max_completion_tokens` wins over `max_tokens` when both are given."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: Annotated[list[Message], Field(min_length=1)]
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(ge=0, le=1)] = None
    max_tokens: Annotated[int | None, Field(ge=1)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1)] = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: Annotated[int | None, Field(ge=-(2**63), le=2**63 - 1)] = None  # int64, as OpenAI
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
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None  # the deprecated form of tools
    function_call: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    # hints that leave the answer's text as it is
    service_tier: str | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None


def check_supported(body: ChatCompletionRequest) -> None:
    """400 for what this server cannot do, naming the parameter (never silently ignored)."""
    tools = bool(body.tools) or bool(body.functions)
    unsupported = {
        "logprobs": bool(body.logprobs),
        "top_logprobs": body.top_logprobs is not None,
        # tool definitions with tool_choice "none" are never called: nothing to honour
        "tools": bool(body.tools) and body.tool_choice != "none",
        "tool_choice": body.tool_choice not in (None, "none", "auto") and not tools,
        "functions": bool(body.functions) and body.function_call != "none",
        "function_call": body.function_call not in (None, "none", "auto") and not tools,
        "store": bool(body.store),
        "response_format": bool(body.response_format)
        and body.response_format.get("type") != "text",
        "modalities": any(m != "text" for m in body.modalities or ()),
        "audio": body.audio is not None,
        "reasoning_effort": body.reasoning_effort not in (None, "none"),
        "verbosity": body.verbosity not in (None, "medium"),
        "web_search_options": body.web_search_options is not None,
        "moderation": body.moderation is not None,
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


def token_limit(body: ChatCompletionRequest) -> tuple[int | None, str]:
    """The answer's token limit and the parameter that set it."""
    if body.max_completion_tokens is not None:
        return body.max_completion_tokens, "max_completion_tokens"
    return body.max_tokens, "max_tokens"


def context_error(error: PromptTooLong, limit_param: str) -> ApiError:
    """400 `context_length_exceeded`, naming the token limit when it alone is over the context
    (no shorter question can help), else the messages."""
    total = error.prompt_tokens + error.max_new_tokens
    return ApiError(
        400,
        f"This model's maximum context length is {error.context} tokens. However, you requested "
        f"{total} tokens ({error.prompt_tokens} in the messages, {error.max_new_tokens} in the "
        f"completion). Please reduce the length of the messages or completion.",
        param=limit_param if error.max_new_tokens >= error.context else "messages",
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
    if body.presence_penalty or body.frequency_penalty:
        changes["presence_penalty"] = body.presence_penalty or 0.0
        changes["frequency_penalty"] = body.frequency_penalty or 0.0
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
