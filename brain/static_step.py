"""The live step at fixed shapes: static key/value buffers, the answers chosen on the device, one read-back.

A live event adds one or two words. On a GPU the work for them is tiny (well under a millisecond for a
gpt2-small shape) and the host's share — a hundred kernel launches, a sync per ``.item()``, a shape that
changes every step — is what the musician waits for. So the step here:

- keeps every rig's keys and values in one buffer pool (``[layer, slot, head, position, d_head]``), written in
  place; a rig owns a slot while it plays, slot 0 takes the padding rows;
- runs rows padded to a few batch sizes (:data:`BATCH_SIZES`) and token counts (powers of two), so a shape
  repeats and, on CUDA, is captured once in a CUDA graph (eager elsewhere, the same code);
- applies steering as dense per-slot factor and offset rows (``act * factor + offset``: exactly the eager
  path's arithmetic, and a no-op at 1 and 0), so steering never changes the shape;
- picks each event's top-k neurons (the same tie rule as :func:`brain.stream.top_neurons`, by stable sorts) and
  the model's likely next notes on the device, and packs them into one small tensor read back once per step.

Layer plans (skip, repeat, permute, ablate a block: :mod:`brain.corruption`) change the graph, so a rig under
one steps through the eager key/value path (:mod:`brain.kv_cache`); so does a step that does not fit (more than
:data:`MAX_EVENTS` events of a rig at once, a word of more than :data:`MAX_TOKENS_PER_EVENT` tokens).
``tests/test_static_step.py`` holds the two paths equal on a replayed session, steering included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from brain.kv_cache import ACTIVATIONS

log = logging.getLogger("neurojam.brain")

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
"""Rows are padded up to one of these (a rig is one row, two while its shadow is read); more rows at once run in
several steps of 32."""
MAX_EVENTS = 8
"""Events of one rig answered by one step (more: the eager path)."""
MAX_TOKENS_PER_EVENT = 4
TIE = 1e-4
"""The tie quantum of :func:`brain.stream.top_neurons`."""
RAW_SPAN = 2 ** 20
NORM_SPAN = 2 ** 25


def token_sizes(capacity: int) -> list[int]:
    """The padded token counts a step may have: powers of two up to the context."""
    sizes, n = [], 1
    while n < capacity:
        sizes.append(n)
        n *= 2
    return sizes + [capacity]


def _bucket(n: int, sizes) -> int:
    return next(s for s in sizes if s >= n)


def choose_top(norm: torch.Tensor, raw: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the ``k`` best along the last dim in :func:`brain.stream.top_neurons`' order — rounded
    normalized value, then rounded raw value (both descending), then index — with no host sync: all three in one
    int64 key per neuron, unique, so a plain top-k gives that order. Clamped to fit: normalized beyond ±2^25
    quanta (±3,355) and raw beyond ±2^20 (±104.8) tie at the clamp, then go by the next part."""
    n = norm.shape[-1]
    index_bits = max(1, (n - 1).bit_length())
    norm_q = torch.round(norm / TIE).long().clamp(-NORM_SPAN, NORM_SPAN - 1)
    raw_q = torch.round(raw / TIE).long().clamp(-RAW_SPAN, RAW_SPAN - 1)
    last = torch.arange(n - 1, -1, -1, device=norm.device)  # the lower index, the higher key
    key = ((norm_q * (2 * RAW_SPAN) + raw_q) << index_bits) + last
    return key.topk(min(k, n), dim=-1).indices


@dataclass
class StaticRow:
    """One rig's share of a step: its slot, where its new tokens start, and which of them each event owns."""

    slot: int
    tokens: list[int]
    start: int
    events: list[list[int]]
    """Per pending event, the indices (into ``tokens``) of its tokens; may be empty."""


@dataclass
class EventAnswer:
    hits: list[tuple[int, int, float, float]]
    """(layer, neuron, activation, normalized), the event's top-k, best first."""
    likely: list[int] | None
    """The model's likely next notes after the event, most likely first (note-vocabulary models)."""
    confidence: float | None = None
    """The probability (over the whole vocabulary) that the next token is the first of ``likely``."""


class StaticKV:
    def __init__(self, model, *, context_tokens: int, layers: list[int], top_k: int,
                 scale: torch.Tensor | None = None, likely: int = 3, slots: int = 17, pad: bool | None = None,
                 dictionary=None) -> None:
        """``pad``: pad rows to the fixed shapes (default: where graphs are captured, i.e. on CUDA; a CPU gains
        nothing from a fixed shape and pays for the padding). ``dictionary``: choose among its features
        (:mod:`brain.units.features`) instead of the neurons; ``scale`` then the features'."""
        cfg = model.bridge.cfg
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.d_mlp, self.eps, self.n_ctx = cfg.d_mlp, cfg.eps, cfg.n_ctx
        self.act = ACTIVATIONS[cfg.act_fn or "gelu"]
        self.capacity = min(context_tokens, cfg.n_ctx)
        self.positions = self.capacity + 1
        """The last position takes the padding's writes; no real query (at most ``capacity - 1``) sees it."""
        self.layers = list(layers)
        self.d_units = dictionary.n_latents if dictionary is not None else self.d_mlp
        self.top_k = min(top_k, len(self.layers) * self.d_units)
        self.token_sizes = token_sizes(self.capacity)
        with torch.inference_mode():
            self.w = {k: v.detach() for k, v in model.bridge.state_dict().items()}
            self.device = self.w["embed.weight"].device
            self.dtype = self.w["embed.weight"].dtype
            self.scale = (scale[self.layers].float().reshape(-1).to(self.device) if scale is not None
                          else torch.ones(len(self.layers) * self.d_units, device=self.device))
            self.encoders = None if dictionary is None else {
                layer: type(dictionary[layer])(*(getattr(dictionary[layer], n).to(self.device) for n in (
                    "W_enc", "b_enc", "W_dec", "b_dec")), k=dictionary[layer].k) for layer in self.layers}
            note_ids = model.note_token_ids()
            self.likely = min(likely, len(note_ids)) if note_ids else 0
            cols = sorted(note_ids)
            self.note_cols = torch.tensor(cols, dtype=torch.long, device=self.device)
            self.note_midi = torch.tensor([note_ids[c] for c in cols], dtype=torch.float32, device=self.device)
            self._allocate(slots)
        self.free = list(range(1, slots))
        self.steering_version: dict[int, int] = {}
        self.graphs: dict[tuple[int, int], tuple] = {}
        self._graph_pool = None
        self.use_graphs = self.device.type == "cuda"
        self.pad = self.use_graphs if pad is None else pad
        self.shapes_seen: set[tuple[int, int]] = set()
        self.cold_steps = 0
        """Steps that met a shape for the first time (after :meth:`warm`, a jam should see none)."""

    def _allocate(self, slots: int) -> None:
        shape = (self.n_layers, slots, self.n_heads, self.positions, self.d_head)  # a head's positions contiguous
        self.keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.factor = torch.ones(slots, self.n_layers, self.d_mlp, dtype=self.dtype, device=self.device)
        self.offset = torch.zeros(slots, self.n_layers, self.d_mlp, dtype=self.dtype, device=self.device)

    # -- slots ---------------------------------------------------------------------------------
    def acquire(self) -> int:
        """A slot for a new rig; the pool doubles when full (on CUDA its graphs are captured again)."""
        if not self.free:
            old = self.keys.shape[1]
            with torch.inference_mode():
                keys, values, factor, offset = self.keys, self.values, self.factor, self.offset
                self._allocate(old * 2)
                self.keys[:, :old], self.values[:, :old] = keys, values
                self.factor[:old], self.offset[:old] = factor, offset
            self.free = list(range(old, old * 2))
            if self.graphs:
                log.warning("more than %d rigs: the step's buffers doubled, so each shape is captured again "
                            "(a one-time stall per shape)", old - 1)
                self.graphs.clear()
                self.shapes_seen.clear()
                self._graph_pool = None
        return self.free.pop(0)

    def release(self, slot: int) -> None:
        self.steering_version.pop(slot, None)
        self.free.append(slot)

    @torch.inference_mode()
    def load_steering(self, slot: int, steering) -> None:
        """The slot's dense steering rows from ``steering`` (multipliers and mean-ablation offsets)."""
        if self.steering_version.get(slot) == steering.version:
            return
        self.factor[slot] = 1
        self.offset[slot] = 0
        for (layer, neuron), factor in steering.factors.items():
            self.factor[slot, layer, neuron] = factor
        for (layer, neuron), offset in steering.offsets.items():
            self.offset[slot, layer, neuron] = offset
        self.steering_version[slot] = steering.version

    # -- fitting -------------------------------------------------------------------------------
    def fits(self, start: int, tokens: int, events: list[list[int]]) -> bool:
        return (0 < tokens and start + tokens <= self.capacity and len(events) <= min(tokens, MAX_EVENTS)
                and all(len(e) <= MAX_TOKENS_PER_EVENT for e in events))

    # -- the step ------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, rows: list[StaticRow]) -> list[list[EventAnswer]]:
        """Each row's answers, one per event; one device → host read (padded: one per :data:`BATCH_SIZES` chunk)."""
        size = BATCH_SIZES[-1] if self.pad else len(rows)
        out: list[list[EventAnswer]] = []
        for i in range(0, len(rows), size):
            out += self._step(rows[i:i + size])
        return out

    def _step(self, rows: list[StaticRow]) -> list[list[EventAnswer]]:
        B, T = len(rows), max(len(r.tokens) for r in rows)
        if self.pad:
            B, T = _bucket(B, BATCH_SIZES), _bucket(T, self.token_sizes)
        E = min(T, MAX_EVENTS) if self.pad else max(1, max(len(r.events) for r in rows))
        # unpadded (a CPU), the attention reads the caches only as far as the longest one: no fixed shape to keep
        reach = None if self.pad else max(r.start for r in rows)
        packed = self._run(self._pack(rows, B, T, E), B, T, reach=reach).tolist()  # the step's one read-back
        k, L = self.top_k, self.likely
        answers = []
        for r, row_out in zip(rows, packed):
            mine = []
            for e, values in zip(r.events, row_out):
                if not e:
                    mine.append(EventAnswer([], None))
                    continue
                ids, raw, norm = values[:k], values[k:2 * k], values[2 * k:3 * k]
                hits = [(self.layers[int(i) // self.d_units], int(i) % self.d_units, a, n)
                        for i, a, n in zip(ids, raw, norm)]
                mine.append(EventAnswer(hits, [int(m) for m in values[3 * k:3 * k + L]] if L else None,
                                        values[3 * k + L] if L else None))
            answers.append(mine)
        return answers

    def _pack(self, rows: list[StaticRow], B: int, T: int, E: int) -> torch.Tensor:
        """Every input of a step in one int64 tensor (one host → device copy): token ids [B, T], start [B],
        slot [B], real token count [B], each event's token indices [B, E, W] (a short event repeats its last)."""
        W = MAX_TOKENS_PER_EVENT
        ids, start, slot, n_real, events = [], [], [], [], []
        for b in range(B):
            r = rows[b] if b < len(rows) else None
            toks = r.tokens if r else []
            ids += toks + [0] * (T - len(toks))
            start.append(r.start if r else 0)
            slot.append(r.slot if r else 0)
            n_real.append(len(toks))
            evs = (r.events if r else [])[:E]
            for e in evs + [[0]] * (E - len(evs)):
                e = e or [0]
                events += e + [e[-1]] * (W - len(e))
        return torch.tensor(ids + start + slot + n_real + events, dtype=torch.long)

    def _run(self, packed: torch.Tensor, B: int, T: int, warming: bool = False, reach: int | None = None) -> torch.Tensor:
        shape = (B, T)
        if shape not in self.shapes_seen:
            self.shapes_seen.add(shape)
            self.cold_steps += not warming
        if self.use_graphs and self.pad:
            graph = self.graphs.get(shape) or self._capture(B, T)
            if graph is not None:
                g, static_in, static_out = graph
                static_in.copy_(packed, non_blocking=True)
                g.replay()
                return static_out
        if packed.device != self.device:  # the step's one upload
            packed = packed.to(self.device, non_blocking=True)
        return self._compute(packed, B, T, reach)

    def _capture(self, B: int, T: int):
        """The step at shape (B, T) as one CUDA graph, over inputs that touch only the padding slot."""
        try:
            static_in = self._pack([], B, T, min(T, MAX_EVENTS)).to(self.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._compute(static_in, B, T)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            if self._graph_pool is None:
                self._graph_pool = torch.cuda.graph_pool_handle()
            # one memory pool for all shapes: graphs replay one at a time and each output is read at once, so one
            # shape's temporaries may reuse another's (48 private pools would hold GBs for a gpt2-small shape)
            with torch.cuda.graph(g, pool=self._graph_pool):
                static_out = self._compute(static_in, B, T)
            # a graph must answer as the eager step does (these inputs touch only the padding slot, and read
            # nothing of it but the padding's own token: the same answer every time)
            g.replay()
            eager = self._compute(static_in.clone(), B, T)
            if not torch.allclose(static_out, eager, atol=1e-3, rtol=1e-3):
                raise RuntimeError("the replayed graph's answers differ from the eager step's")
            self.graphs[(B, T)] = (g, static_in, static_out)
            return self.graphs[(B, T)]
        except Exception as exc:  # noqa: BLE001 — a capture that fails must not stop the jam
            log.warning("CUDA graph at batch %d × %d tokens failed (%s): the live step runs eagerly", B, T, exc)
            self.use_graphs = False
            return None

    @torch.inference_mode()
    def warm(self) -> int:
        """Run (and on CUDA capture) every shape a step can have, on the padding slot: no jam step pays a first
        call. Returns how many shapes."""
        for B in BATCH_SIZES:
            for T in self.token_sizes:
                self._run(self._pack([], B, T, min(T, MAX_EVENTS)), B, T, warming=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return len(BATCH_SIZES) * len(self.token_sizes)

    # -- on the device -------------------------------------------------------------------------
    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"],
                                              self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def _compute(self, packed: torch.Tensor, B: int, T: int, reach: int | None = None) -> torch.Tensor:
        """The forward pass and the choice of answers, all on the device, fixed shapes, no host sync. ``reach``:
        how many cached positions the rows can see (default: all, the fixed shape)."""
        W = MAX_TOKENS_PER_EVENT
        E = (packed.numel() - 3 * B - B * T) // (B * W)  # the events per row the inputs were packed with
        H, dh, C, w = self.n_heads, self.d_head, self.positions, self.w
        ids = packed[:B * T].view(B, T)
        o = B * T
        start, slot, n_real = packed[o:o + B], packed[o + B:o + 2 * B], packed[o + 2 * B:o + 3 * B]
        events = packed[o + 3 * B:].view(B, E, W)
        t = torch.arange(T, device=packed.device)
        real = t[None, :] < n_real[:, None]
        at = torch.where(real, start[:, None] + t[None, :], C - 1)  # (B, T): where each token's key is written
        x = w["embed.weight"][ids] + w["pos_embed.weight"][at.clamp(max=self.n_ctx - 1)]
        # a query sees the cache before its row's start, and the new tokens up to itself (padding: only itself)
        R = C if reach is None else reach
        old_hidden = (torch.arange(R, device=packed.device)[None, :] >= start[:, None])[:, None, None, :]  # B,1,1,R
        new_hidden = (t[None, :] > t[:, None])[None] | ~real[:, None, :]  # (B, T, T)
        new_hidden = (new_hidden & (t[None, :] != t[:, None])[None])[:, None]  # (B, 1, T, T)
        old_keys = self.keys[:, slot, :, :R]  # (L, B, H, R, dh): this step's rows' caches, read once
        old_values = self.values[:, slot, :, :R]
        factor, offset = self.factor[slot][:, :, None], self.offset[slot][:, :, None]  # (B, L, 1, d_mlp)
        posts, new_keys, new_values = [], [], []
        for layer in range(self.n_layers):
            p = f"blocks.{layer}"
            h = self._ln(x, f"{p}.ln1")
            q, k, v = (self._linear(h, f"{p}.attn.{n}").view(B, T, H, dh).transpose(1, 2) for n in "qkv")  # B,H,T,dh
            new_keys.append(k)
            new_values.append(v)
            scores = torch.cat([(q @ old_keys[layer].transpose(-2, -1)).masked_fill(old_hidden, float("-inf")),
                                (q @ k.transpose(-2, -1)).masked_fill(new_hidden, float("-inf"))], dim=-1)
            pattern = (scores / math.sqrt(dh)).softmax(-1)  # (B, H, T, R + T)
            attn = pattern[..., :R] @ old_values[layer] + pattern[..., R:] @ v
            x = x + self._linear(attn.transpose(1, 2).reshape(B, T, H * dh), f"{p}.attn.o")
            post = self.act(self._linear(self._ln(x, f"{p}.ln2"), f"{p}.mlp.in"))  # blocks.{L}.mlp.hook_post
            post = post * factor[:, layer] + offset[:, layer]
            posts.append(post)
            x = x + self._linear(post, f"{p}.mlp.out")
        rows = slot[:, None].expand(B, T)  # the new keys and values into the cache, every layer at once
        self.keys.permute(1, 3, 0, 2, 4).index_put_((rows, at), torch.stack(new_keys).permute(1, 3, 0, 2, 4))
        self.values.permute(1, 3, 0, 2, 4).index_put_((rows, at), torch.stack(new_values).permute(1, 3, 0, 2, 4))
        logits = self._linear(self._ln(x, "ln_final"), "unembed")  # (B, T, vocab)
        units = [posts[layer].float() if self.encoders is None else self.encoders[layer].encode(posts[layer].float())
                 for layer in self.layers]
        acts = torch.stack(units, dim=2).reshape(B, T, -1)  # (B, T, F)
        F = acts.shape[-1]
        per_event = acts.gather(1, events.reshape(B, E * W, 1).expand(B, E * W, F)).view(B, E, W, F).amax(2)
        norm = per_event / self.scale
        top = choose_top(norm, per_event, self.top_k)  # (B, E, k)
        parts = [top.float(), per_event.gather(-1, top), norm.gather(-1, top)]
        if self.likely:
            last = events[..., -1]  # (B, E): each event's last token
            row = logits.float().gather(1, last[..., None].expand(B, E, logits.shape[-1]))  # (B, E, vocab)
            best = row[..., self.note_cols].topk(self.likely, dim=-1).indices
            parts.append(self.note_midi[best])
            parts.append(row.softmax(-1).gather(-1, self.note_cols[best[..., :1]]))  # the first one's probability
        return torch.cat(parts, dim=-1)  # (B, E, 3k + likely + 1)
