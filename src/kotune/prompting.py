"""The prompt template and stop patterns: one place, used by tokenize, train, evaluate and chat."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptFormat:
    name: str
    user_header: str
    assistant_header: str
    separator: str


# KoAlpaca-Polyglot's own format: `### 질문: …\n\n### 답변: …`; the system prompt leads.
KOALPACA = PromptFormat("koalpaca", "### 질문:", "### 답변:", "\n\n")
PROMPT_FORMATS = {KOALPACA.name: KOALPACA}


def get_format(name: str) -> PromptFormat:
    return PROMPT_FORMATS[name]


def render_prompt(fmt: PromptFormat, system_prompt: str, context: list[dict[str, str]]) -> str:
    """The text the model continues: system prompt, the turns so far, then the answer header.

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


def render_answer(answer: str) -> str:
    """What follows the answer header in training (the end-of-turn token is added as an id)."""
    return f" {answer}"


def stop_patterns(fmt: PromptFormat, persona_patterns: list[str]) -> list[str]:
    """The persona's patterns plus the format's next-turn headers, without repeats."""
    patterns = [*persona_patterns, fmt.user_header, fmt.assistant_header]
    return list(dict.fromkeys(p for p in patterns if p))


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
