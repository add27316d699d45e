"""The batch's key/value memory: one preallocated row ("slot") per running answer, all rows
written at the same position each step, so the decode step has fixed shapes (CUDA graphs can
replay it) while answers join and leave at any step.

Layout: per layer, keys and values of shape [slots, kv heads, context, head dim]. A running
answer of n tokens in slot i occupies positions [t - n, t) where t is the write position shared
by every slot; its next token is written at t. When t reaches the end, every span shifts left
(one copy per layer); when an answer joins with a prompt longer than t, they shift right. Active
answers always occupy slots 0..n-1 (one that leaves is replaced by the last). Masks are built
here as 4D additive masks, so that transformers uses them as they are, whatever its version.
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import Cache, CacheLayerMixin


class Cursor:
    """Where the next forward writes: positions (1-D long tensor) shared by every layer."""

    def __init__(self, positions: Any) -> None:
        self.positions = positions


class SlotLayer(CacheLayerMixin):
    """One layer's keys/values over a range of slots (views of the shared buffers)."""

    is_compileable = True
    is_sliding = False

    def __init__(self, keys: Any, values: Any, cursor: Cursor) -> None:
        super().__init__()
        self.keys, self.values, self.cursor = keys, values, cursor
        self.dtype, self.device = keys.dtype, keys.device
        self.max_cache_len = keys.shape[2]
        self.is_initialized = True

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        pass  # preallocated

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
        self.keys.index_copy_(2, self.cursor.positions, key_states)
        self.values.index_copy_(2, self.cursor.positions, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
        return self.max_cache_len, 0  # unused: kotune passes ready 4D masks

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        return 0  # unused: kotune passes position ids

    def get_max_length(self) -> int:
        return self.max_cache_len


class Capture(CacheLayerMixin):
    """A layer that only records the shapes it is given (to size the buffers)."""

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        pass

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
        self.keys, self.values = key_states, value_states
        return key_states, value_states

    def get_mask_sizes(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
        return 1, 0

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def get_max_length(self) -> int:
        return -1


def cache_keyword(model: Any) -> str:
    """The forward() keyword that takes the KV cache: `cache` from transformers 5.24 on (where
    `past_key_values` is deprecated, to be removed in 5.40), `past_key_values` before."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    parameters = inspect.signature(inner.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def kv_shapes(model: Any) -> list[tuple[tuple[int, ...], tuple[int, ...], Any]]:
    """(key shape, value shape, dtype) per layer for one token, read off a one-token forward:
    kv heads and head dims differ by family (GQA, GPT-NeoX's fused qkv), the model knows best."""
    import torch

    layers = [Capture() for _ in range(model.config.num_hidden_layers)]
    device = next(model.parameters()).device
    with torch.inference_mode():
        model(
            input_ids=torch.zeros((1, 1), dtype=torch.long, device=device),
            position_ids=torch.zeros((1, 1), dtype=torch.long, device=device),
            use_cache=True,
            **{cache_keyword(model): Cache(layers=layers)},
        )
    return [(tuple(c.keys.shape), tuple(c.values.shape), c.keys.dtype) for c in layers]


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one token of context takes, every layer."""
    total = 0
    for key, value, dtype in kv_shapes(model):
        size = dtype.itemsize if hasattr(dtype, "itemsize") else 2
        total += (key[1] * key[3] + value[1] * value[3]) * size
    return total


def fitting_slots(model: Any, context: int, cap: int = 32, share: float = 0.5) -> int:
    """How many answers of `context` tokens fit at once: `cap` on the CPU; on a GPU as many as
    `share` of its free memory holds (5.8B in bf16: 28 layers × 2 × 4096 × 2 bytes = 0.46 MB
    a token, 0.94 GB a 2,048-token slot)."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return cap
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, int(share * free // (kv_bytes_per_token(model) * context))))


class SlotCache:
    """The preallocated keys/values of `slots` rows × `context` positions, and the shared
    write position `t` (host-side int; the device copy is `decode_position`, in
    `decode_state`)."""

    def __init__(self, model: Any, slots: int, context: int) -> None:
        import torch

        self.slots, self.context = slots, context
        self.device = next(model.parameters()).device
        self.keys, self.values = [], []
        for key, value, dtype in kv_shapes(model):
            self.keys.append(
                torch.zeros((slots, key[1], context, key[3]), dtype=dtype, device=self.device)
            )
            self.values.append(
                torch.zeros((slots, value[1], context, value[3]), dtype=dtype, device=self.device)
            )
        self.dtype = self.keys[0].dtype
        self.t = 0
        # the decode step's inputs per slot, one host-to-device copy a step: [0] the token fed,
        # [1] its position id, [2] the first cache position the row sees; [3, 0] is t (the
        # step copies it into decode_position, where the cache layers write: no aliased inputs)
        self.decode_state = torch.zeros((4, slots), dtype=torch.long, device=self.device)
        self.decode_position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.decode_cursor = Cursor(self.decode_position)
        self._decode_views: dict[int, Any] = {}

    def mark_static(self) -> None:
        """Tell torch.compile that the buffers never move (CUDA graphs replay them in place)."""
        import torch

        for tensor in (*self.keys, *self.values, self.decode_state, self.decode_position):
            torch._dynamo.mark_static_address(tensor)
        for cache in self._decode_views.values():
            for layer in cache.layers:
                torch._dynamo.mark_static_address(layer.keys)
                torch._dynamo.mark_static_address(layer.values)

    def view(self, lo: int, hi: int, cursor: Cursor) -> Any:
        """A transformers Cache over slots [lo, hi) that writes where `cursor` says."""
        layers = [
            SlotLayer(k[lo:hi], v[lo:hi], cursor)
            for k, v in zip(self.keys, self.values, strict=True)
        ]
        return Cache(layers=layers)

    def decode_view(self, rows: int) -> Any:
        """The decode step's cache over slots [0, rows): the same object every time (compiled
        graphs are keyed on it)."""
        if rows not in self._decode_views:
            self._decode_views[rows] = self.view(0, rows, self.decode_cursor)
        return self._decode_views[rows]

    def shift(self, rows: int, lo: int, new_t: int) -> None:
        """Move the spans of slots [0, rows), all inside [lo, t), so that they end at `new_t`."""
        delta = new_t - self.t
        if delta and rows and self.t > lo:
            for buffers in (self.keys, self.values):
                for buffer in buffers:
                    span = buffer[:rows, :, lo : self.t].clone()
                    buffer[:rows, :, lo + delta : self.t + delta] = span
        self.t = new_t

    def move(self, src: int, dst: int, lo: int) -> None:
        """Copy slot `src`'s span [lo, t) into slot `dst`."""
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[dst, :, lo : self.t] = buffer[src, :, lo : self.t]

    def prefill_mask(self, lengths: list[int], width: int) -> Any:
        """[rows, 1, width, context] additive mask for prompts of `lengths` written left-padded
        at [t - width, t): each real token sees its own prompt up to itself; a padding query
        sees only itself (its output is never used)."""
        import torch

        t, device = self.t, self.device
        keys = torch.arange(self.context, device=device)
        query_at = t - width + torch.arange(width, device=device)  # absolute position of query q
        starts = t - torch.tensor(lengths, device=device)  # first real position per row
        allowed = (keys[None, None, :] >= starts[:, None, None]) & (
            keys[None, None, :] <= query_at[None, :, None]
        )
        padding = query_at[None, :] < starts[:, None]  # [rows, width]
        itself = keys[None, None, :] == query_at[None, :, None]
        allowed = torch.where(padding[:, :, None], itself, allowed)
        return self.additive(allowed[:, None])

    def additive(self, allowed: Any) -> Any:
        import torch

        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        blocked = torch.tensor(torch.finfo(self.dtype).min, dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, blocked)


def decode_mask(first: Any, t: Any, context: int, dtype: Any) -> Any:
    """[rows, 1, 1, context] additive mask of the decode step: row i sees cache positions
    [first[i], t] (`first` [rows], `t` [1]: device tensors, so the compiled step builds it)."""
    import torch

    keys = torch.arange(context, device=first.device)
    allowed = (keys[None, :] >= first[:, None]) & (keys[None, :] <= t)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=first.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None, None]
