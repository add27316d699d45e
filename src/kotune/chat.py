"""Chatting with an exported adapter: persona prompt, history within a token budget, streamed
answers that stop at the persona's stop patterns without ever showing them."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from kotune.config import GenerationConfig
from kotune.errors import KotuneError
from kotune.files import read_json
from kotune.generation import generation_kwargs
from kotune.prompting import StopFilter, cut_at_stop, prompt_builder
from kotune.tokenizing import fit_prompt

SETTINGS = "kotune.json"


def read_settings(adapter_dir: Path) -> dict[str, Any]:
    if not adapter_dir.is_dir():
        raise KotuneError(f"{adapter_dir}: no such folder (export one with `dvc repro export`)")
    if not (adapter_dir / SETTINGS).is_file():
        raise KotuneError(
            f"{adapter_dir}: not a kotune adapter folder (no {SETTINGS}); "
            f"point --adapter at the export stage's models/adapter"
        )
    return read_json(adapter_dir / SETTINGS)


def base_reference(adapter_dir: Path, settings: dict[str, Any]) -> tuple[str, str | None]:
    base = settings["base"]
    if base["source"] == "bundled":
        return str(adapter_dir / base["path"]), None
    if base["source"] == "local":
        return base["path"], None
    return base["hub_id"], base.get("revision")


def load_chat_model(
    adapter_dir: Path, quantization: str | None = None, device: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """Base + adapter from the exported folder alone. Unquantized bases get the adapter merged
    in (one matmul per layer instead of two)."""
    settings = read_settings(adapter_dir)  # a wrong folder fails before the heavy imports
    import torch
    from peft import PeftModel

    from kotune.modeling.loading import load_model, load_tokenizer

    location, revision = base_reference(adapter_dir, settings)
    device = device or (
        "cuda" if settings["device"] == "cuda" and torch.cuda.is_available() else "cpu"
    )
    quantization = quantization or settings["chat_quantization"]
    dtype = settings["compute_dtype"] if device == "cuda" else "float32"
    tokenizer = load_tokenizer(str(adapter_dir))
    try:
        model = load_model(
            location, revision, quantization=quantization, compute_dtype=dtype, device=device
        )
    except OSError as error:
        raise KotuneError(f"cannot load the base model {location}: {error}") from None
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    if quantization == "none":
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer, settings


class ChatSession:
    """One conversation: the history, the prompt that fits, and streamed answers."""

    def __init__(self, model: Any, tokenizer: Any, settings: dict[str, Any], gen: GenerationConfig):
        self.model, self.tokenizer, self.settings, self.gen = model, tokenizer, settings, gen
        self.builder = prompt_builder(
            tokenizer,
            settings["prompt_format"],
            settings.get("end_of_turn"),  # absent from folders exported before chat formats
            settings["system_prompt"],
            settings["base"]["name"],
        )
        self.stops = settings["stop_patterns"]  # the persona's and the format's, from export
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
            f"kotune chat — {session.settings['persona']} ({session.settings['base']['name']}). "
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
            write(f"{session.settings['persona']}> ")
        session.reply(question, on_text=write)
        write("\n")
