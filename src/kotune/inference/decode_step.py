"""The decode step as one function of buffers that never move: the tokens fed, their positions,
the rows' visible spans (the slot cache's `decode_state`), each row's seen tokens, logit bias and
repetition penalty. The function builds the attention mask, runs the model, adjusts the logits
and takes the greedy choice on the device, so a step costs the host one small copy in and one
out (the chosen ids); only sampling rows are finished outside (kotune.inference.decoding).

On a GPU the compiled function is captured once per batch width in a CUDA graph and replayed:
no Python, guards or kernel launches per step. Elsewhere it is called as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from kotune.inference.slots import SlotCache


class StepBuffers:
    """The per-slot state the decode step reads, beside the slot cache's `decode_state`:
    `seen` [slots, vocab] bool (the prompt's and answer's tokens), `bias` [slots, vocab] float
    (logit_bias), `penalty` [slots] float (repetition_penalty). Rows move with their slots."""

    def __init__(self, cache: SlotCache, vocab: int, pad_id: int) -> None:
        import torch

        device, slots = cache.device, cache.slots
        self.cache, self.pad_id = cache, pad_id
        self.seen = torch.zeros((slots, vocab), dtype=torch.bool, device=device)
        self.bias = torch.zeros((slots, vocab), dtype=torch.float32, device=device)
        self.penalty = torch.ones(slots, dtype=torch.float32, device=device)
        state = cache.decode_state
        # written on the host, one copy to the device a step (the buffer itself on the CPU)
        self.host = state if device.type == "cpu" else torch.zeros_like(state, device="cpu")
        if device.type == "cuda":
            self.host = self.host.pin_memory()
        self.host_view = self.host.numpy()
        self._args: dict[int, tuple[Any, ...]] = {}

    def start(self, slot: int, prompt_ids: list[int], penalty: float, bias: Any) -> None:
        """A row joins in `slot`: its prompt is seen, its settings set."""
        import torch

        self.seen[slot] = False
        ids = torch.tensor(prompt_ids, device=self.seen.device)
        self.seen[slot, ids[ids < self.seen.shape[1]]] = True
        self.penalty[slot] = penalty
        self.bias[slot] = 0.0
        if bias:
            ids = torch.tensor([i for i, _ in bias], device=self.bias.device)
            self.bias[slot, ids] = torch.tensor([b for _, b in bias], device=self.bias.device)

    def move(self, src: int, dst: int) -> None:
        for buffer in (self.seen, self.bias, self.penalty):
            buffer[dst] = buffer[src]

    def rows(self, lo: int, hi: int) -> tuple[Any, Any, Any]:
        return self.seen[lo:hi], self.bias[lo:hi], self.penalty[lo:hi]

    def load(self, tokens: list[int], positions: list[int], firsts: list[int], width: int) -> None:
        """The step's inputs for running rows 0..n-1 (the rest of `width`: padding rows that
        feed the pad id at position 0 and see only position t, in free slots)."""
        host, count, t = self.host_view, len(tokens), self.cache.t
        host[0, :count], host[0, count:width] = tokens, self.pad_id
        host[1, :count], host[1, count:width] = positions, 0
        host[2, :count], host[2, count:width] = firsts, t
        host[3, 0] = t
        if self.host is not self.cache.decode_state:
            self.cache.decode_state.copy_(self.host, non_blocking=True)

    def args(self, width: int) -> tuple[Any, ...]:
        """The decode function's inputs for `width` rows: the same objects every call (compiled
        code and CUDA graphs are keyed on them)."""
        if width not in self._args:
            self._args[width] = (
                self.cache.decode_state[:, :width],
                *self.rows(0, width),
                self.cache.decode_view(width),
            )
        return self._args[width]

    def mark_static(self) -> None:
        import torch

        for width in self._args:
            for tensor in self._args[width][:4]:
                torch._dynamo.mark_static_address(tensor)
        for tensor in (self.seen, self.bias, self.penalty):
            torch._dynamo.mark_static_address(tensor)


class GraphedDecode:
    """`decode` captured in one CUDA graph per width (all sharing one memory pool) and
    replayed: called with a width's arguments, it returns that graph's outputs, which the next
    replay overwrites."""

    def __init__(self, decode: Callable[..., Any], buffers: StepBuffers, widths: list[int]) -> None:
        import torch

        self.graphs: dict[int, tuple[Any, Any]] = {}
        pool = None
        for width in sorted(widths, reverse=True):  # the widest first: the pool fits them all
            args = buffers.args(width)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    decode(*args)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                outputs = decode(*args)
            pool = graph.pool()
            self.graphs[width] = (graph, outputs)

    def __call__(self, state: Any, *args: Any) -> Any:
        graph, outputs = self.graphs[state.shape[1]]
        graph.replay()
        return outputs


def compile_decode(
    decode: Callable[..., Any], buffers: StepBuffers, widths: list[int]
) -> tuple[Any, Any]:
    """`decode` through torch.compile, warmed up now for every width of running rows so that no
    request waits for compilation (the first width compiles for its shape, the second for any:
    automatic dynamic shapes), then on a GPU captured in CUDA graphs (GraphedDecode). Returns
    (what a step calls, the compiled function). The buffers are marked static."""
    import torch

    cache = buffers.cache
    compiled = torch.compile(decode)
    for width in widths:
        buffers.args(width)
    cache.mark_static()
    buffers.mark_static()
    with torch.inference_mode():
        for width in widths:
            buffers.load([], [], [], width)
            for _ in range(2):
                compiled(*buffers.args(width))
        if cache.device.type != "cuda":
            return compiled, compiled
        try:
            return GraphedDecode(compiled, buffers, widths), compiled
        except Exception as error:  # noqa: BLE001 - compiled without graphs still serves
            print(
                f"kotune: capturing the decode step in CUDA graphs failed "
                f"({type(error).__name__}: {error}); decoding compiled, without graphs",
                file=sys.stderr,
            )
            return compiled, compiled
