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


def read_line(prompt: str, stdin: TextIO, stdout: TextIO) -> str:
    """input() that Ctrl-C always interrupts: wait for a line in short steps, so this thread runs
    Python often enough to raise KeyboardInterrupt even when the signal reached another thread.
    The terminal's own line editing (cooked mode) stays. Raises EOFError at Ctrl-D."""
    import select

    stdout.write(prompt)
    stdout.flush()
    while not select.select([stdin], [], [], 0.1)[0]:
        pass
    line = stdin.readline()
    if not line:
        raise EOFError
    return line


def run_chat(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """The terminal loop. Interactive: a prompt and streamed answers; Ctrl-C stops an answer,
    Ctrl-C anywhere else, Ctrl-D or /exit leaves; /reset starts a new conversation. Piped: one
    question a line, one answer a line (empty when the question failed, with the reason on
    stderr), so it can be scripted. Returns the exit status: 1 if any question failed."""
    interactive = stdin.isatty()
    state = {"failed": 0, "lineno": 0}

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    settings = session.settings
    if not interactive:
        while line := stdin.readline():
            if not turn(session, line, state, write, interactive=False):
                break
        return 1 if state["failed"] else 0
    write(
        f"kotune chat — {settings.persona} ({settings.base.name}). "
        "/reset: new conversation, /exit or Ctrl-D: quit, Ctrl-C: stop an answer\n"
    )
    while True:
        try:
            line = read_line("\n나> ", stdin, stdout)
            if not turn(session, line, state, write, interactive=True):
                break
        except (EOFError, KeyboardInterrupt):  # Ctrl-D, or Ctrl-C when no answer is running
            write("\n")  # the shell's prompt starts on its own line
            break
    return 1 if state["failed"] else 0


def turn(
    session: ChatSession,
    line: str,
    state: dict[str, int],
    write: Callable[[str], None],
    *,
    interactive: bool,
) -> bool:
    """One line of input: a command or a question and its answer. False: leave."""
    state["lineno"] += 1
    question = line.strip()
    if question == "/exit":
        return False
    if question == "/reset":
        session.reset()
        if interactive:
            write("(새 대화)\n")
        return True
    if not question:
        return True
    if interactive:
        write(f"{session.settings.persona}> ")
    try:
        session.reply(question, on_text=write)
    except KotuneError as error:
        state["failed"] += 1
        where = "" if interactive else f"line {state['lineno']}: "
        if interactive:
            write("\n")
        print(f"kotune: error: {where}{error}", file=sys.stderr, flush=True)
        if interactive:
            return True
    except KeyboardInterrupt:
        if not interactive:
            raise
        write("\n(중단됨)\n")  # the answer stopped; ^C and the next prompt never share a line
        return True
    write("\n")
    return True
