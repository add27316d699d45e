"""Chatting with an exported adapter: persona prompt, history within a token budget, streamed
answers that stop at the persona's stop patterns without ever showing them."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from kotune.config import GenerationConfig
from kotune.errors import KotuneError
from kotune.generation import generation_kwargs
from kotune.inference.adapter import AdapterSettings, adapter_prompt_builder
from kotune.prompting import StopFilter, cut_at_stop
from kotune.tokenizing import fit_prompt


class ChatSession:
    """One conversation: the history, the prompt that fits, and streamed answers."""

    def __init__(
        self, model: Any, tokenizer: Any, settings: AdapterSettings, gen: GenerationConfig
    ):
        self.model, self.tokenizer, self.settings, self.gen = model, tokenizer, settings, gen
        self.builder = adapter_prompt_builder(tokenizer, settings)
        self.stops = settings.stop_patterns  # the persona's and the format's, from export
        self.history: list[dict[str, str]] = []
        self.budget_tokens = model.config.max_position_embeddings - gen.max_new_tokens

    def reset(self) -> None:
        self.history = []

    def reply(self, question: str, on_text: Callable[[str], None] = lambda _: None) -> str:
        """Answer `question` given the history; streams the shown text to `on_text`."""
        import torch
        from transformers import TextIteratorStreamer

        context = [*self.history, {"role": "user", "content": question}]
        ids, _ = fit_prompt(self.builder, context, self.budget_tokens)
        if ids is None:
            raise KotuneError(
                f"the question is longer than the model's context ({self.budget_tokens} tokens)"
            )
        device = next(self.model.parameters()).device
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = generation_kwargs(
            self.gen, self.tokenizer, self.stops, self.builder.stop_token_ids
        )
        input_ids = torch.tensor([ids], device=device)
        worker = threading.Thread(
            target=self.model.generate,
            kwargs={
                "input_ids": input_ids,
                "attention_mask": torch.ones_like(input_ids),
                "streamer": streamer,
                **kwargs,
            },
        )
        worker.start()
        shown = StopFilter(self.stops)
        raw = []
        for chunk in streamer:
            raw.append(chunk)
            on_text(shown.feed(chunk.lstrip() if len(raw) == 1 else chunk))
        on_text(shown.finish())
        worker.join()
        answer = cut_at_stop("".join(raw), self.stops).strip()
        self.history = [*context, {"role": "assistant", "content": answer}]
        return answer


def run_chat(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """The terminal loop. Interactive: a prompt and streamed answers, /reset, /exit. Piped: one
    question a line, one answer a line, so it can be scripted."""
    interactive = stdin.isatty()

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    if interactive:
        write(
            f"kotune chat — {session.settings.persona} ({session.settings.base.name}). "
            "/reset: new conversation, /exit: quit\n"
        )
    while True:
        if interactive:
            try:
                line = input("\n나> ")
            except EOFError:
                write("\n")
                return
        else:
            line = stdin.readline()
            if not line:
                return
        question = line.strip()
        if not question:
            continue
        if question == "/exit":
            return
        if question == "/reset":
            session.reset()
            if interactive:
                write("(새 대화)\n")
            continue
        if interactive:
            write(f"{session.settings.persona}> ")
        session.reply(question, on_text=write)
        write("\n")
