"""The `messages` of a chat completion request as OpenAI's clients send them (text or a list of
content parts, `developer` for `system`, assistant turns with `content: null`), turned into
the engine's text-only turns. What kotune cannot read (images, audio, files, tool calls and
tool results) is a 400 naming the message and the part, never dropped."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kotune.serving.errors import ApiError

# content part types of OpenAI's API that need more than text (vision, audio, files)
NOT_TEXT = {"image_url": "images", "input_audio": "audio", "file": "files"}
# keys a text part may carry besides its text: hints with no effect on the answer
TEXT_PART_HINTS = {"prompt_cache_breakpoint", "cache_control"}


class Message(BaseModel):
    """One message, with every field OpenAI's message types have; `content` checked in
    `message_text` (OpenAI's own words for what is wrong, and the message's index)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[Any] | None = None
    name: str | None = None  # accepted as OpenAI does; kotune's prompt formats have no speakers
    refusal: str | None = None  # an assistant turn that refused: its words are the turn's text
    audio: dict[str, Any] | None = None
    tool_calls: list[Any] | None = None
    function_call: dict[str, Any] | None = None
    tool_call_id: str | None = None


def refuse(param: str, what: str) -> ApiError:
    return ApiError(400, f"{param}: {what} is not supported by this server", param=param)


def part_text(part: Any, param: str, role: str) -> str:
    """The text of one content part: `text`, or `refusal` in an assistant's turn."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ApiError(
            400, f"Invalid value for '{param}': expected an object with a 'type'.", param=param
        )
    kind = part["type"]
    if kind in NOT_TEXT:
        raise ApiError(
            400,
            f"{param}: '{kind}' content is not supported by this server: the model reads text "
            f"only ({NOT_TEXT[kind]} cannot be sent)",
            param=f"{param}.type",
        )
    field = {"text": "text", "refusal": "refusal" if role == "assistant" else None}.get(kind)
    if field is None:
        allowed = "'text' or 'refusal'" if role == "assistant" else "'text'"
        raise ApiError(
            400,
            f"Invalid value for '{param}.type': '{kind}'. Supported values are: {allowed}.",
            param=f"{param}.type",
        )
    if not isinstance(part.get(field), str):
        raise ApiError(
            400, f"Missing required parameter: '{param}.{field}'.", param=f"{param}.{field}"
        )
    extra = set(part) - {"type", field} - (TEXT_PART_HINTS if kind == "text" else set())
    if extra:
        name = f"{param}.{sorted(extra)[0]}"
        raise ApiError(400, f"Unrecognized request argument supplied: {name}", param=name)
    return part[field]


def message_text(index: int, message: Message) -> str:
    """The message's text: a string, or its parts' texts one per line (as vLLM joins them)."""
    param = f"messages.[{index}]"
    if message.role in ("tool", "function"):
        raise refuse(f"{param}.role", f"a '{message.role}' message (tools, function calling)")
    assistant = message.role == "assistant"
    turn_only = {"refusal": message.refusal, "audio": message.audio}
    turn_only |= {"tool_calls": message.tool_calls, "function_call": message.function_call}
    for field, value in {**turn_only, "tool_call_id": message.tool_call_id}.items():
        if value is not None and (not assistant or field == "tool_call_id"):
            name = f"{param}.{field}"
            raise ApiError(400, f"Unrecognized request argument supplied: {name}", param=name)
    if message.tool_calls or message.function_call:
        raise refuse(f"{param}.tool_calls", "an assistant turn with tool calls")
    if message.audio is not None:
        raise refuse(f"{param}.audio", "an assistant turn in audio")
    content = message.content
    if content is None:
        if not assistant:
            raise ApiError(
                400, f"Missing required parameter: '{param}.content'.", param=f"{param}.content"
            )
        return message.refusal or ""
    if isinstance(content, str):
        return content
    if not content:
        raise ApiError(
            400,
            f"Invalid value for '{param}.content': an empty array; expected at least one part.",
            param=f"{param}.content",
        )
    role = message.role
    return "\n".join(part_text(p, f"{param}.content.[{i}]", role) for i, p in enumerate(content))


def plain_messages(messages: list[Message]) -> list[dict[str, str]]:
    """The conversation as kotune's engine takes it: text only, `developer` as `system`; at
    least one user message, the last message the user's. A blank system message (chat apps
    send one when their system prompt field is empty) says nothing: the persona's stays."""
    plain = []
    for index, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        text = message_text(index, message)
        if role != "system" or text.strip():
            plain.append({"role": role, "content": text})
    if not plain or plain[-1]["role"] != "user":
        raise ApiError(
            400,
            "messages: the last message must be the user's (it is the "
            f"{plain[-1]['role'] if plain else 'system'}'s): "
            "this server answers the user, it does not continue a turn",
            param="messages",
        )
    return plain
