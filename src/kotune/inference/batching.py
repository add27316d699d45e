"""The batching scheduler: one thread runs the model for every answer in progress.

Requests wait in a queue; when the batch is empty the first one waits a few ms for others. Each
loop: answers whose caller went away are dropped, waiting requests join free slots with one
batched prefill (their first token), then one decode step gives every running answer its next
token. Each row stops on its own (end-of-turn id, stop pattern, token limit) and leaves at once;
its slot is free for the next request at the next step. Every row has its own sampling
settings and random generator. An exception in a forward fails the rows in it (their callers get
the message), and the loop goes on serving the others.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

from kotune.inference.decoding import AnswerText, Detokenizer, make_generator
from kotune.inference.requests import Delta, Done, Failure, Request


@dataclass
class Row:
    """A running answer in slot `slot`: its tokens occupy cache positions [start, start+length);
    `next_token` was chosen but is not in the cache yet."""

    request: Request
    slot: int
    start: int
    length: int
    detokenizer: Detokenizer
    text: AnswerText
    generator: Any
    next_token: int = -1
    generated: int = 0


class Batcher:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        stop_ids: set[int],
        stop_patterns: list[str],
        slots: int,
        context: int,
        gather_s: float = 0.005,
        compile: bool = False,
        buckets: list[int] | None = None,
        max_prefill_tokens: int = 16384,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.stop_ids, self.stop_patterns = stop_ids, stop_patterns
        self.slots, self.context, self.gather_s = slots, context, gather_s
        self.max_prefill_tokens = max_prefill_tokens
        self.buckets = (
            sorted({b for b in buckets or [] if b < slots} | {slots}) if compile else None
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.device = next(model.parameters()).device
        from kotune.inference.slots import cache_keyword

        self.cache_keyword = cache_keyword(model)
        self.pending: collections.deque[Request] = collections.deque()
        self.rows: list[Row] = []
        self.condition = threading.Condition()
        self.closed = False
        self.counts = {"finished": 0, "cancelled": 0, "failed": 0}  # answers since the start
        from kotune.inference.decode_step import StepBuffers
        from kotune.inference.slots import SlotCache

        self.cache = SlotCache(model, slots, context)
        self.buffers = StepBuffers(self.cache, output_vocab(model), self.pad_id)
        self.decode_function = self._decode_forward  # eager: (state, seen, bias, penalty, cache)
        self.forward_decode = self.compiled = self._decode_forward  # what a step calls
        self.compile = compile
        self.ready = threading.Event()  # set once the loop runs (compiled graphs warm)
        self.thread = threading.Thread(target=self._run, name="kotune-batcher", daemon=True)
        self.thread.start()
        self.ready.wait()

    # ------------------------------------------------------------------ callers' side

    def submit(self, request: Request) -> None:
        with self.condition:
            if self.closed:
                raise RuntimeError("the engine is closed")
            self.pending.append(request)
            self.condition.notify()

    def load(self) -> dict[str, int]:
        """Answers running now and requests waiting for a slot."""
        with self.condition:
            return {
                "running": len(self.rows),
                "waiting": len(self.pending),
                "slots": self.slots,
                "compiled": self.compiled is not self._decode_forward,
                **self.counts,
            }

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify()
        self.thread.join(timeout=30)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        import signal

        import torch

        if hasattr(signal, "pthread_sigmask"):  # Ctrl-C belongs to the caller's (main) thread
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        if self.compile:  # here: CUDA graphs are recorded and replayed by this thread
            self._compile()
        self.ready.set()
        while True:
            with self.condition:
                while not self.closed and not self.pending and not self.rows:
                    self.condition.wait()
                if self.closed:
                    break
                gather = bool(self.pending) and not self.rows and self.gather_s > 0
            if (
                gather
            ):  # an idle engine waits a moment so that requests sent together start together
                time.sleep(self.gather_s)
            try:
                with torch.inference_mode():
                    self._drop_cancelled()
                    self._admit()
                    if self.rows:
                        self._step()
            except Exception as error:  # noqa: BLE001 - a bug here must not hang every caller
                for row in list(self.rows):
                    self._remove(row)
                    self._fail(row.request, error)
        for row in list(self.rows):
            self._finish(row, "cancelled")
        for request in self.pending:
            request.sink(Done("cancelled", len(request.prompt_ids), 0))

    def _drop_cancelled(self) -> None:
        for row in [r for r in self.rows if r.request.cancelled.is_set()]:
            self._finish(row, "cancelled")

    def _take(self) -> list[Request]:
        """Waiting requests for the free slots, within the prefill token budget."""
        joiners: list[Request] = []
        with self.condition:
            while self.pending and len(self.rows) + len(joiners) < self.slots:
                request = self.pending[0]
                if request.cancelled.is_set():
                    self.pending.popleft()
                    self.counts["cancelled"] += 1
                    request.sink(Done("cancelled", len(request.prompt_ids), 0))
                    continue
                width = max(len(request.prompt_ids), *(len(j.prompt_ids) for j in joiners), 0)
                if joiners and width * (len(joiners) + 1) > self.max_prefill_tokens:
                    break
                joiners.append(self.pending.popleft())
        return joiners

    def _admit(self) -> None:
        joiners = self._take()
        if not joiners:
            return
        try:
            logits = self._prefill([j.prompt_ids for j in joiners])
        except Exception as error:  # noqa: BLE001 - any failure reaches the callers
            for request in joiners:
                self._fail(request, error)
            return
        rows = []
        for request in joiners:
            slot = len(self.rows)
            length = len(request.prompt_ids)
            row = Row(
                request=request,
                slot=slot,
                start=self.cache.t - length,
                length=length,
                detokenizer=Detokenizer(self.tokenizer),
                text=AnswerText((*self.stop_patterns, *request.params.stop)),
                generator=make_generator(request.params.seed, self.device),
            )
            self.rows.append(row)
            rows.append(row)
            params = request.params
            self.buffers.start(
                slot, request.prompt_ids, params.repetition_penalty, params.logit_bias
            )
        self._choose_first(rows, logits)

    def _prefill(self, prompts: list[list[int]]) -> Any:
        """One forward over the joiners' prompts, written left-padded into their slots at
        [t - width, t); returns the last position's logits per prompt."""
        import torch

        from kotune.inference.slots import Cursor

        lengths = [len(p) for p in prompts]
        width, first = max(lengths), len(self.rows)
        if self.cache.t < width:  # room on the left for the longest prompt
            self._shift(width)
        t = self.cache.t
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            positions[row, width - len(prompt) :] = torch.arange(len(prompt))
        cursor = Cursor(torch.arange(t - width, t, device=self.device))
        output = self.model(
            input_ids=ids.to(self.device),
            position_ids=positions.to(self.device),
            attention_mask=self.cache.prefill_mask(lengths, width),
            use_cache=True,
            **{self.cache_keyword: self.cache.view(first, first + len(prompts), cursor)},
            logits_to_keep=1,
        )
        return output.logits[:, -1]

    def _step(self) -> None:
        """One decode step for every running row: their inputs to the device in one copy, the
        step (compiled: a CUDA graph replay on a GPU), the chosen ids back in one."""
        from kotune.inference.decoding import pick_tokens

        rows = self.rows
        if self.cache.t >= self.context:  # the shared position reached the end: shift left
            self._shift(max(r.length for r in rows))
        count = len(rows)
        width = self._bucket(count)
        self.buffers.load(
            [r.next_token for r in rows],
            [r.length for r in rows],
            [r.start for r in rows],
            width,
        )
        try:
            logits, greedy = self.forward_decode(*self.buffers.args(width))
            tokens = pick_tokens(
                logits[:count],
                greedy[:count],
                [r.request.params for r in rows],
                [r.generator for r in rows],
                [r.detokenizer.ids for r in rows],  # each answer's tokens so far
            )
        except Exception as error:  # noqa: BLE001 - any failure reaches the callers
            for row in list(rows):
                self._remove(row)
                self._fail(row.request, error)
            return
        self.cache.t += 1
        for row in rows:
            row.length += 1
        for row, token in zip(list(rows), tokens, strict=True):
            self._accept(row, token)

    def _decode_forward(self, state: Any, seen: Any, bias: Any, penalty: Any, cache: Any) -> Any:
        """The decode step on the device (kotune.inference.decode_step): marks the fed tokens
        seen, builds the mask, runs the model, returns (adjusted logits, greedy ids)."""
        from kotune.inference.decoding import adjust_logits
        from kotune.inference.slots import decode_mask

        ids, positions, first, t = state[0], state[1], state[2], state[3, :1]
        self.cache.decode_position.copy_(t)
        seen.scatter_(1, ids[:, None], True)  # the token fed is part of its answer now
        output = self.model(
            input_ids=ids[:, None],
            position_ids=positions[:, None],
            attention_mask=decode_mask(first, t, self.cache.context, self.cache.dtype),
            use_cache=True,
            **{self.cache_keyword: cache},
            logits_to_keep=1,
        )
        logits = adjust_logits(output.logits[:, -1], seen, bias, penalty)
        return logits, logits.argmax(dim=-1)

    # ------------------------------------------------------------------ rows

    def _choose_first(self, rows: list[Row], logits: Any) -> None:
        """The joiners' first tokens from their prefill's logits (rows in consecutive slots)."""
        from kotune.inference.decoding import adjust_logits, pick_tokens

        lo = rows[0].slot
        logits = adjust_logits(logits, *self.buffers.rows(lo, lo + len(rows)))
        tokens = pick_tokens(
            logits,
            logits.argmax(dim=-1),
            [r.request.params for r in rows],
            [r.generator for r in rows],
        )
        for row, token in zip(rows, tokens, strict=True):
            self._accept(row, token)

    def _accept(self, row: Row, token: int) -> None:
        row.generated += 1
        if token in self.stop_ids:
            self._finish(row, "stop")
            return
        piece = row.text.feed(row.detokenizer.feed(token))
        if piece:
            row.request.sink(Delta(piece))
        if row.text.stopped:
            self._finish(row, "stop")
        elif row.generated >= row.request.params.max_new_tokens or row.length >= self.context:
            self._finish(row, "length")
        else:
            row.next_token = token  # marked seen when the step feeds it

    def _fail(self, request: Request, error: Exception) -> None:
        self.counts["failed"] += 1
        request.sink(Failure(f"generation failed: {type(error).__name__}: {error}"))

    def _finish(self, row: Row, reason: str) -> None:
        self.counts["cancelled" if reason == "cancelled" else "finished"] += 1
        self._remove(row)
        tail = row.text.feed(row.detokenizer.finish()) + row.text.finish()
        if tail and reason != "cancelled":
            row.request.sink(Delta(tail))
        row.request.sink(Done(reason, len(row.request.prompt_ids), row.generated))

    def _remove(self, row: Row) -> None:
        """Free the row's slot: the last running row moves into it, so rows stay 0..n-1."""
        with self.condition:
            last = self.rows[-1]
            if last is not row:
                self.cache.move(last.slot, row.slot, last.start)
                self.buffers.move(last.slot, row.slot)
                last.slot = row.slot
                self.rows[row.slot] = last
            self.rows.pop()

    def _shift(self, new_t: int) -> None:
        """Move every running span so that the shared position becomes `new_t`."""
        lo = min((r.start for r in self.rows), default=self.cache.t)
        delta = new_t - self.cache.t
        self.cache.shift(len(self.rows), lo, new_t)
        for row in self.rows:
            row.start += delta

    def _bucket(self, count: int) -> int:
        if self.buckets is None:
            return count
        return next(b for b in self.buckets if b >= count)

    # ------------------------------------------------------------------ compiled decode

    def _compile(self) -> None:
        """The compiled decode step, warm for every bucket (kotune.inference.decode_step); if
        compiling fails, eager decoding goes on (a line on stderr says so)."""
        import sys

        from kotune.inference.decode_step import compile_decode

        try:
            self.forward_decode, self.compiled = compile_decode(
                self._decode_forward, self.buffers, self.buckets or []
            )
        except Exception as error:  # noqa: BLE001 - serving eagerly beats not serving
            print(
                f"kotune: compiling the decode step failed ({type(error).__name__}: {error}); "
                "decoding eagerly",
                file=sys.stderr,
            )
            self.forward_decode = self.compiled = self._decode_forward
            self.buckets = None

    def decode_args(self, width: int) -> tuple[Any, ...]:
        """The decode function's inputs for `width` rows (its static buffers)."""
        return self.buffers.args(width)


def output_vocab(model: Any) -> int:
    """How many logits the model gives per position."""
    head = model.get_output_embeddings()
    return getattr(head, "out_features", None) or model.config.vocab_size
