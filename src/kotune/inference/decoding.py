"""From logits to shown text, one token at a time: per-answer sampling settings, the choice of
the next token for a batch of answers, UTF-8-safe detokenization, and the shown answer (stop
patterns never shown, whitespace trimmed at both ends even while streaming)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from kotune.config import GenerationConfig
from kotune.prompting import StopFilter

REPLACEMENT = "\ufffd"  # what a decoder shows for bytes that are not (yet) a whole character


@dataclass(frozen=True)
class SamplingParams:
    """How one answer is generated. Greedy unless `do_sample`; `seed` makes sampling repeatable
    (each answer has its own random generator, whatever else is in the batch)."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    # OpenAI's: subtracted from the logit of each token the answer holds, once (presence) and
    # per occurrence (frequency); 0 changes nothing
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # more stop strings, besides the adapter's own
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)

    @classmethod
    def from_generation(cls, gen: GenerationConfig, **changes: Any) -> SamplingParams:
        """The persona's generation settings (kotune.json), with per-request changes."""
        params = cls(
            max_new_tokens=gen.max_new_tokens,
            do_sample=gen.do_sample,
            temperature=gen.temperature,
            top_p=gen.top_p,
            repetition_penalty=gen.repetition_penalty,
        )
        return replace(params, **changes)


def make_generator(seed: int | None, device: Any) -> Any:
    """A random generator for one answer: seeded, or from the OS when no seed is given."""
    import torch

    generator = torch.Generator(device=device)
    # torch takes seeds in [-2**63, 2**64) and reads a negative one as its two's complement:
    # any integer is taken modulo 2**64 (the same generator for those in range, no error for
    # the rest: an error here, in the engine's thread, would leave the answer waiting)
    generator.manual_seed(
        seed % 2**64 if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    )
    return generator


def adjust_logits(logits: Any, seen: Any, bias: Any, penalty: Any) -> Any:
    """The logits a choice is made from: `logits` [rows, vocab] of the last position as float,
    plus each row's logit bias (`bias` [rows, vocab], zero where none), then the repetition
    penalty as transformers applies it (logits of `seen` tokens divided by the row's `penalty`,
    or multiplied when negative; a penalty of 1 changes nothing). Pure tensor arithmetic: the
    compiled decode step runs it inside its graph."""
    import torch

    logits = logits.float() + bias
    factor = penalty[:, None]
    penalised = torch.where(logits < 0, logits * factor, logits / factor)
    return torch.where(seen, penalised, logits)


def penalised(params: SamplingParams) -> bool:
    return bool(params.presence_penalty or params.frequency_penalty)


def pick_tokens(
    logits: Any,
    greedy: Any,
    params: list[SamplingParams],
    generators: list[Any],
    answers: list[list[int]] | None = None,
) -> list[int]:
    """The next token of each row from adjusted `logits` [rows, vocab]: the greedy choice
    (`greedy` [rows], the argmax) unless the row samples, with temperature and top-p and its
    own generator, or has presence / frequency penalties on the tokens of its answer so far
    (`answers`, one id list a row). One transfer to the host."""
    import torch

    if not any(p.do_sample or penalised(p) for p in params):
        return greedy.tolist()
    chosen = greedy.clone()
    for row, (p, generator) in enumerate(zip(params, generators, strict=True)):
        if not (p.do_sample or penalised(p)):
            continue
        row_logits = logits[row]
        if penalised(p) and answers and answers[row]:
            ids = torch.tensor(answers[row], device=row_logits.device)
            counts = torch.bincount(ids, minlength=row_logits.shape[0])[: row_logits.shape[0]]
            counts = counts.to(row_logits.dtype)
            row_logits = row_logits - p.frequency_penalty * counts
            row_logits = row_logits - p.presence_penalty * (counts > 0).to(row_logits.dtype)
        if not p.do_sample:
            chosen[row] = row_logits.argmax()
            continue
        probs = torch.softmax(row_logits / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            before = sorted_probs.cumsum(0) - sorted_probs  # mass of the tokens ranked above
            sorted_probs = torch.where(before < p.top_p, sorted_probs, 0.0)  # keeps the first
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        chosen[row] = torch.multinomial(probs, 1, generator=generator)[0]
    return chosen.tolist()


class Detokenizer:
    """Token ids to text as they come, never splitting a character: byte-level BPE tokens can
    end inside a Hangul syllable (3 bytes in UTF-8), so text is released only once the decoded
    window no longer ends in U+FFFD. A few earlier tokens are decoded along as context (the
    prefix), so tokenizers that treat a leading space specially decode as they do in a whole."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the context window
        self.read = 0  # end of what was released

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def feed(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is unfinished)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        if len(text) > len(before) and not text.endswith(REPLACEMENT):
            self.prefix, self.read = self.read, len(self.ids)
            return text[len(before) :]
        return ""

    def finish(self) -> str:
        """The rest at the end: bytes that never became a whole character (an answer cut by
        its token limit mid-syllable) are dropped, not shown as U+FFFD."""
        before = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return text[len(before) :].rstrip(REPLACEMENT)


class AnswerText:
    """The answer as shown, streamed: leading whitespace dropped, a stop pattern never shown
    (even split across pieces), trailing whitespace held back until more text follows. The
    pieces joined are exactly the whole answer."""

    def __init__(self, stop_patterns: list[str] | tuple[str, ...]) -> None:
        self.filter = StopFilter(list(stop_patterns))
        self.started = False
        self.spaces = ""

    @property
    def stopped(self) -> bool:
        return self.filter.stopped

    def feed(self, text: str) -> str:
        return self._shape(self.filter.feed(text))

    def finish(self) -> str:
        return self._shape(self.filter.finish())

    def _shape(self, shown: str) -> str:
        if not self.started:
            shown = shown.lstrip()
            if not shown:
                return ""
            self.started = True
        text = self.spaces + shown
        body = text.rstrip()
        self.spaces = text[len(body) :]
        return body
