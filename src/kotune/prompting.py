"""The prompt of each model format, its end-of-turn token and stop patterns: one place, used by
tokenize, train, evaluate, export and chat."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kotune.errors import KotuneError

# kotune's copies of the two chat templates, used only when a tokenizer ships none. ChatML as
# OpenAI and Qwen write it; Llama-3 as Meta-Llama-3-8B-Instruct's tokenizer_config.json has it
# (Bllossom keeps it): bos first, contents trimmed, every turn closed by <|eot_id|>.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)


@dataclass(frozen=True)
class PromptFormat:
    name: str
    user_header: str = ""  # koalpaca: text headers, system prompt first, blocks joined by separator
    assistant_header: str = ""
    separator: str = ""
    fallback_template: str | None = None  # chat formats: used when the tokenizer has no template
    turn_markers: tuple[str, ...] = ()  # text that opens a new turn: seen in an answer, it stops

    @property
    def uses_chat_template(self) -> bool:
        return self.name != "koalpaca"


# KoAlpaca-Polyglot's own format: `### 질문: …\n\n### 답변: …`; the system prompt leads.
KOALPACA = PromptFormat(
    "koalpaca", "### 질문:", "### 답변:", "\n\n", turn_markers=("### 질문:", "### 답변:")
)
# Chat formats render through the tokenizer's chat template; the markers are what a turn opens
# or closes with, should the model ever write them out as text.
CHATML = PromptFormat(
    "chatml", fallback_template=CHATML_TEMPLATE, turn_markers=("<|im_start|>", "<|im_end|>")
)
LLAMA3 = PromptFormat(
    "llama3",
    fallback_template=LLAMA3_TEMPLATE,
    turn_markers=("<|start_header_id|>", "<|eot_id|>"),
)
TEMPLATE = PromptFormat("template")  # the tokenizer's own template; markers read off it
PROMPT_FORMATS = {f.name: f for f in (KOALPACA, CHATML, LLAMA3, TEMPLATE)}


def get_format(name: str) -> PromptFormat:
    return PROMPT_FORMATS[name]


def render_headers(fmt: PromptFormat, system_prompt: str, context: list[dict[str, str]]) -> str:
    """KoAlpaca's text prompt: system prompt, the turns so far, then the answer header.

    `context` ends with the user's question; earlier turns come as question/answer blocks.
    """
    parts = [system_prompt] if system_prompt else []
    for message in context:
        if message["role"] == "system":
            parts.append(message["content"])
        else:
            header = fmt.user_header if message["role"] == "user" else fmt.assistant_header
            parts.append(f"{header} {message['content']}")
    parts.append(fmt.assistant_header)
    return fmt.separator.join(parts)


def chat_messages(system_prompt: str, context: list[dict[str, str]]) -> list[dict[str, str]]:
    """The persona's system prompt (if any), the earlier turns, then the question."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, *({"role": m["role"], "content": m["content"]} for m in context)]


@dataclass(frozen=True)
class PromptBuilder:
    """One model's prompt, resolved against its tokenizer once per run: every prompt and answer
    that tokenize, evaluate and chat build comes from here. Make one with `prompt_builder`."""

    fmt: PromptFormat
    tokenizer: Any = field(repr=False)
    system_prompt: str
    chat_template: str | None = field(repr=False)  # renders the prompt (None: koalpaca's headers)
    end_of_turn_id: int  # closes every answer, inside the loss: the model learns to stop
    stop_token_ids: tuple[int, ...]  # generation ends at any: the end of turn, then eos
    turn_markers: tuple[str, ...]

    def render(self, context: list[dict[str, str]]) -> str:
        """The text the model continues: system prompt, the turns so far, the answer's opening."""
        if self.chat_template is None:
            return render_headers(self.fmt, self.system_prompt, context)
        return self.tokenizer.apply_chat_template(
            chat_messages(self.system_prompt, context),
            chat_template=self.chat_template,
            add_generation_prompt=True,
            tokenize=False,
        )

    def prompt_ids(self, context: list[dict[str, str]]) -> list[int]:
        # The rendered text already holds any bos the template writes (<|begin_of_text|>): the
        # tokenizer must not add a second one.
        return self.tokenizer(self.render(context), add_special_tokens=False)["input_ids"]

    def answer_ids(self, answer: str) -> list[int]:
        """The answer's ids and the end-of-turn id (KoAlpaca puts a space after `### 답변:`)."""
        text = answer if self.fmt.uses_chat_template else f" {answer}"
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [*ids, self.end_of_turn_id]

    def stop_patterns(self, persona_patterns: list[str]) -> list[str]:
        """The persona's text stops plus this format's turn markers, without repeats."""
        return list(dict.fromkeys(p for p in [*persona_patterns, *self.turn_markers] if p))


def prompt_builder(
    tokenizer: Any,
    prompt_format: str,
    end_of_turn: str | None,
    system_prompt: str,
    model_name: str,
) -> PromptBuilder:
    """Resolve `prompt_format` and `end_of_turn` (model settings) against the tokenizer; a model
    whose tokenizer cannot render the format fails here, before any work, naming the model."""
    fmt = get_format(prompt_format)
    template = None
    if fmt.uses_chat_template:
        own = tokenizer.chat_template
        if isinstance(own, dict):  # named templates (default, tool_use): prompts use the default
            own = own.get("default")
        template = own or fmt.fallback_template
        if template is None:
            raise KotuneError(
                f"model '{model_name}': prompt_format 'template' needs the tokenizer's chat "
                f"template, and this tokenizer has none; set model.prompt_format to koalpaca, "
                f"chatml or llama3 (whichever the model was trained on)"
            )
    eos_id = tokenizer.eos_token_id
    if end_of_turn is None:
        if eos_id is None:
            raise KotuneError(
                f"model '{model_name}': the tokenizer has no eos token and model.end_of_turn is "
                f"not set: the model could never learn to stop"
            )
        end_id = eos_id
    else:
        end_id = tokenizer.convert_tokens_to_ids(end_of_turn)
        if end_id is None or end_id == tokenizer.unk_token_id:
            raise KotuneError(
                f"model '{model_name}': model.end_of_turn {end_of_turn!r} is not a token of its "
                f"tokenizer"
            )
    stop_ids = tuple(dict.fromkeys(i for i in (end_id, eos_id) if i is not None))
    markers = fmt.turn_markers
    if fmt is TEMPLATE:
        ends = [t for t in (end_of_turn, tokenizer.eos_token) if t]
        markers = template_turn_markers(tokenizer, template, ends)
    return PromptBuilder(fmt, tokenizer, system_prompt, template, end_id, stop_ids, markers)


def config_prompt_builder(tokenizer: Any, cfg: Any) -> PromptBuilder:
    """The builder for a composed Config: its model's format and end token, its persona's
    system prompt (tokenize, evaluate and export share this)."""
    model = cfg.model
    return prompt_builder(
        tokenizer, model.prompt_format, model.end_of_turn, cfg.persona.system_prompt, model.name
    )


def template_turn_markers(tokenizer: Any, template: str, end_tokens: list[str]) -> tuple[str, ...]:
    """What a chat template writes between an answer's end and the next question (`Human:`,
    `<|im_start|>user`), read off a probe conversation: an answer that writes it has begun the
    user's turn."""
    probe = ["\x01system\x01", "\x01question\x01", "\x01answer\x01", "\x01next\x01"]
    messages = [
        {"role": role, "content": text}
        for role, text in zip(("system", "user", "assistant", "user"), probe)
    ]
    try:
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    except Exception:  # a template that refuses the probe (jinja raise_exception): no markers
        return ()
    between = text.partition(probe[2])[2].partition(probe[3])[0]
    for token in end_tokens:
        between = between.replace(token, "")
    marker = between.strip()
    return (marker,) if marker else ()


def cut_at_stop(text: str, patterns: list[str]) -> str:
    """The text before the earliest stop pattern, right-trimmed."""
    cut = len(text)
    for pattern in patterns:
        index = text.find(pattern)
        if index != -1:
            cut = min(cut, index)
    return text[:cut].rstrip()


class StopFilter:
    """Streams generated text but holds back any tail that might start a stop pattern, so a
    pattern is never shown even when it arrives split across chunks."""

    def __init__(self, patterns: list[str]):
        self.patterns = [p for p in patterns if p]
        self.buffer = ""
        self.stopped = False

    def feed(self, chunk: str) -> str:
        """Add generated text; return what is safe to show now ('' once a pattern was seen)."""
        if self.stopped:
            return ""
        self.buffer += chunk
        hits = [i for i in (self.buffer.find(p) for p in self.patterns) if i != -1]
        if hits:
            self.stopped = True
            shown, self.buffer = self.buffer[: min(hits)].rstrip(), ""
            return shown
        hold = 0
        for pattern in self.patterns:
            for size in range(min(len(pattern) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(pattern[:size]):
                    hold = max(hold, size)
                    break
        shown = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(shown) :]
        return shown

    def finish(self) -> str:
        """The held-back tail at the end of generation (no pattern completed)."""
        shown, self.buffer = ("" if self.stopped else self.buffer.rstrip()), ""
        return shown
