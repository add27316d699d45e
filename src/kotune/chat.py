"""The terminal chat: a conversation's history, the loop that reads questions and streams the
engine's answers. Prompts, stop patterns and generation are the engine's (kotune.inference)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from kotune.errors import KotuneError
from kotune.inference.decoding import SamplingParams
from kotune.inference.engine import Delta, Done, Engine, Failure, PromptTooLong


class ChatSession:
    """One conversation: the history, and answers that keep it within the model's context (the
    oldest turns are left out first)."""

    def __init__(self, engine: Engine, params: SamplingParams) -> None:
        self.engine, self.params = engine, params
        self.settings = engine.settings
        self.history: list[dict[str, str]] = []

    def reset(self) -> None:
        self.history = []

    def reply(self, question: str, on_text: Callable[[str], None] = lambda _: None) -> str:
        """Answer `question` given the history; streams the shown text to `on_text`. The
        exchange joins the history only once the answer is complete (Ctrl-C leaves it out)."""
        context = [*self.history, {"role": "user", "content": question}]
        try:
            prompt = self.engine.prompt(context, self.params.max_new_tokens, drop_oldest=True)
        except PromptTooLong as error:
            raise KotuneError(
                f"the question is too long: {error.prompt_tokens} tokens, and the answer may take "
                f"{error.max_new_tokens} more, but the model's context is {error.context} tokens"
            ) from None
        pieces = []
        for event in self.engine.stream(prompt, self.params):
            if isinstance(event, Delta):
                pieces.append(event.text)
                on_text(event.text)
            elif isinstance(event, Failure):
                raise KotuneError(event.message)
            elif isinstance(event, Done):
                break
        answer = "".join(pieces)
        self.history = [*context, {"role": "assistant", "content": answer}]
        return answer


def run_chat(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """The terminal loop. Interactive: a prompt and streamed answers; Ctrl-C stops an answer,
    Ctrl-C at the prompt, Ctrl-D or /exit leaves; /reset starts a new conversation. Piped: one
    question a line, one answer a line (empty when the question failed, with the reason on
    stderr), so it can be scripted. Returns the exit status: 1 if any question failed."""
    interactive = stdin.isatty()
    failed = 0

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    settings = session.settings
    if interactive:
        write(
            f"kotune chat — {settings.persona} ({settings.base.name}). "
            "/reset: new conversation, /exit or Ctrl-D: quit, Ctrl-C: stop an answer\n"
        )
    lineno = 0
    while True:
        if interactive:
            try:
                line = input("\n나> ")
            except (EOFError, KeyboardInterrupt):
                write("\n")  # the shell's prompt starts on its own line
                return 1 if failed else 0
        else:
            line = stdin.readline()
            if not line:
                return 1 if failed else 0
        lineno += 1
        question = line.strip()
        if not question:
            continue
        if question == "/exit":
            return 1 if failed else 0
        if question == "/reset":
            session.reset()
            if interactive:
                write("(새 대화)\n")
            continue
        if interactive:
            write(f"{settings.persona}> ")
        try:
            session.reply(question, on_text=write)
        except KotuneError as error:
            failed += 1
            if interactive:
                write("\n")
                print(f"kotune: error: {error}", file=sys.stderr, flush=True)
                continue
            print(f"kotune: error: line {lineno}: {error}", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            if not interactive:
                raise
            write("\n(중단됨)\n")  # the answer stopped; ^C and the next prompt never share a line
            continue
        write("\n")
