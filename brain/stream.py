"""The listening loop's core: events in, top-firing MLP neurons out.

Each note (and each silent beat or bar line) is appended to a rolling note
text (:class:`NoteText`). The model reads the window; hooks on
``blocks.{L}.mlp.hook_post`` apply steering (multiply chosen neurons) and
keep the activations; each new event's tokens — found by character offsets,
never by index — give that event's top-k neurons.

Several pending events share one forward pass (the model is causal, so an
earlier event's activations do not depend on later text). The window is cut
by a rule that depends only on the event sequence (when it outgrows
the window's words (``context_tokens`` for a word-level tokenizer, fewer for one that splits note words:
``LoadedModel.window_words``), drop the words before a fixed index, about half), so replaying a session gives the
same contexts whatever the batching.

The TL-native models have no key/value cache of their own: ``brain/kv_cache.py``
runs only the new tokens against cached keys/values, and :func:`step_streams`
runs the new tokens of several rigs (each its own context and cache) in one
padded forward pass. Other models recompute the window, one rig at a time.
Live, the brain's rigs step through :mod:`brain.static_step` instead (static
buffers, the answers chosen on the device, one read-back a step); the eager
path stays the reference it is tested against, and serves layer plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from brain.corruption import CorruptionHooks, LayerCorruption
from brain.events import StreamEvent, stream_event  # noqa: F401  (the stream's vocabulary, imported from here too)
from brain.encoder import EventSpan, NoteText, align_tokens
from brain.models import LoadedModel
from brain.neuron_stats import NeuronStats
from core.errors import ModelError

if TYPE_CHECKING:
    from brain.static_step import StaticKV
    from brain.units.dictionary import Dictionary


def session_text(log) -> NoteText:
    """What the brain heard in a recorded session: the rig-side events ('out' in the rig's log) as note text.
    The one session → text function: the report, the neuron commands and the tests all read through it."""
    return text_of(session_events(log))


def session_events(log) -> list[StreamEvent]:
    """The events the brain read in a recorded session, in the rig's order, as it wrote them
    (:mod:`brain.corpus_style`: some beats written early, repeated onsets folded away)."""
    from brain.corpus_style import written

    return written(e for e in map(stream_event, log.rig_side()) if e is not None)


def read_session(model: LoadedModel, events: list[StreamEvent], *, context_tokens: int, top_k: int = 4,
                 stats: NeuronStats | None = None, dictionary: "Dictionary | None" = None) -> list[StepResult]:
    """Read a session's events exactly as the live brain did: the same stream, the same windows (a session longer
    than the context is cut the same way), every unit's activation kept per event. Unsteered."""
    stream = NeuronStream(model, top_k=top_k, context_tokens=context_tokens, stats=stats, kv_cache=True,
                          keep_acts=True, written=True, dictionary=dictionary)
    try:
        return stream.step(events)
    finally:
        stream.close()


def text_of(events: list[StreamEvent]) -> NoteText:
    """The whole note text of a run of written events (:func:`session_events`; no window): what analysis reads."""
    text = NoteText()
    for e in events:
        if e.kind == "note":
            text.add_note(e.note, e.source, e.seq, e.time, drum=e.drum)
        else:
            text.add_beat(e.downbeat, e.seq, e.time)
    return text


LIKELY = 3
"""How many of the model's most likely next notes a sounding neuron chooses among (:mod:`brain.live.sonify`)."""
TIE = 1e-4
"""Normalized activations closer than this are a tie: a batched and a single forward differ by ~1e-6."""


def top_neurons(norm: torch.Tensor, raw: torch.Tensor, k: int) -> list[int]:
    """The ``k`` highest normalized activations, ties (many neurons sit exactly at their calibration top, e.g. right
    after <bos>) broken by raw activation, then index: the same answer however events were batched."""
    k = min(k, norm.numel())
    if k == 0:
        return []
    floor = float(norm.topk(k).values[-1]) - TIE
    near = (norm >= floor).nonzero().flatten()
    keys = zip((-torch.round(norm[near] / TIE)).tolist(), (-torch.round(raw[near] / TIE)).tolist(), near.tolist())
    return [i for *_, i in sorted(keys)[:k]]


def window_full(text: NoteText, context_words: int) -> bool:
    """The window rule, in one place: cut before an event (at most 2 words) could overflow the context (BOS
    included). It depends only on the event sequence, so live, replays, the report and the experiments agree."""
    return len(text.spans) + 2 > context_words - 1


def kept_from(context_words: int) -> int:
    """The first word a cut keeps: always the same index (the cut comes at ``context_words - 2`` or ``- 1``
    words and keeps about half), so the words a cut will keep are known, and read, before it (the live step's
    shadow cache, :mod:`brain.static_step`)."""
    return context_words - 2 - (context_words - 1) // 2


def cut_window(text: NoteText, context_words: int) -> None:
    text.trim(len(text.spans) - kept_from(context_words))


def live_window(events: list[StreamEvent], upto: int, context_words: int) -> NoteText:
    """The note text the live brain held when it read written event ``upto`` (same rule as :class:`NeuronStream`)."""
    text = NoteText()
    for e in events[:upto + 1]:
        if window_full(text, context_words):
            cut_window(text, context_words)
        if e.kind == "note":
            text.add_note(e.note, e.source, e.seq, e.time, drum=e.drum)
        else:
            text.add_beat(e.downbeat, e.seq, e.time)
    return text


@dataclass
class Hit:
    layer: int
    index: int
    activation: float
    normalized: float

    @property
    def id(self) -> str:
        return f"{self.layer}.{self.index}"


@dataclass
class StepResult:
    event: StreamEvent
    spans: list[EventSpan]
    hits: list[Hit]
    text: str
    predicted_note: int | None = None
    likely_notes: list[int] | None = None
    """The model's :data:`LIKELY` most likely next notes, most likely first (note-vocabulary models)."""
    confidence: float | None = None
    """The probability (over the whole vocabulary: a bar line or a rest may be likelier) that the next token is
    ``predicted_note``: the prediction voice sounds only when it is high (:mod:`brain.live.sonify`)."""
    step_ms: float = 0.0
    tokens: int = 0
    acts: torch.Tensor | None = None
    """[n_layers read, d_mlp] every neuron's activation at this event (max over its tokens), when asked for."""
    window_words: list[str] | None = None
    """The window's words up to and including this event's: what a label's trait is checked against now."""


class Steering:
    """Neuron multipliers applied inside the forward pass: 0 silences, 2 doubles; feature multipliers (a feature's
    part of the reconstruction scaled, :mod:`brain.units.features`); and a layer plan (:mod:`brain.corruption`:
    skipped, repeated, permuted or ablated blocks), None for the model as trained."""

    def __init__(self, model: LoadedModel, dictionary: "Dictionary | None" = None) -> None:
        self.model = model
        self.dictionary = dictionary
        self.factors: dict[tuple[int, int], float] = {}
        self.feature_factors: dict[tuple[int, int], float] = {}
        """(layer, feature) → factor: ``post += (factor - 1) · a_F · W_dec[F]``."""
        self.offsets: dict[tuple[int, int], float] = {}
        """Added after the factor: a mean-ablated neuron has factor 0 and its mean here."""
        self.corruption: LayerCorruption | None = None
        self.layer_means: dict = {}
        """Each block output's mean (:func:`brain.corruption.layer_output_means`), for mean ablation."""
        self.version = 0  # bumps on every change: cached keys/values made before it are stale

    def corrupt(self, plan: LayerCorruption | None, means: dict | None = None) -> None:
        """Run the model under ``plan`` from the next event on (None or the identity: as trained)."""
        if plan is not None and plan.needs_means and means is None and not self.layer_means:
            raise ModelError("mean ablation needs each layer's mean output: pass means "
                             "(brain.corruption.layer_output_means).")
        self.corruption = None if plan is None or plan.is_identity else plan
        if means is not None:
            self.layer_means = means
        self.version += 1

    def set(self, layer: int, neuron: int, factor: float) -> None:
        """The factor's range is checked where it enters: the config section and the ``steer`` message."""
        self.model.check_neuron(layer, neuron)
        self.offsets.pop((layer, neuron), None)
        if factor == 1.0:
            self.factors.pop((layer, neuron), None)
        else:
            self.factors[(layer, neuron)] = factor
        self.version += 1

    def set_feature(self, layer: int, feature: int, factor: float) -> None:
        if self.dictionary is None:
            raise ModelError(f"{self.model.name} plays neurons here: steer a feature with the brain's units set to "
                             f"features (--units features)")
        self.model.check_neuron(layer)
        self.dictionary.check_feature(layer, feature)
        if factor == 1.0:
            self.feature_factors.pop((layer, feature), None)
        else:
            self.feature_factors[(layer, feature)] = factor
        self.version += 1

    def ablate(self, layer: int, neuron: int, mean: float) -> None:
        """Hold the neuron at ``mean`` (mean ablation: its information gone, its average contribution kept)."""
        self.model.check_neuron(layer, neuron)
        self.factors[(layer, neuron)] = 0.0
        self.offsets[(layer, neuron)] = mean
        self.version += 1

    def clear(self) -> None:
        self.factors.clear()
        self.offsets.clear()
        self.feature_factors.clear()
        self.corruption = None
        self.version += 1

    def for_layer(self, layer: int) -> list[tuple[int, float, float]]:
        """(neuron, factor, offset): the neuron's activation becomes ``act * factor + offset``."""
        return [(n, f, self.offsets.get((lay, n), 0.0)) for (lay, n), f in self.factors.items() if lay == layer]

    def apply(self, layer: int, post: torch.Tensor) -> torch.Tensor | None:
        """``post`` (layer ``layer``'s ``hook_post``, [..., d_mlp]) steered, or None when nothing steers it."""
        neurons = self.for_layer(layer)
        features = [(f, k) for (lay, f), k in self.feature_factors.items() if lay == layer]
        if not neurons and not features:
            return None
        post = post.clone()
        for neuron, factor, offset in neurons:
            post[..., neuron] = post[..., neuron] * factor + offset
        if features:
            d = self.dictionary[layer]
            acts = d.encode(post.float())
            for f, factor in features:
                post = post + ((factor - 1.0) * acts[..., f:f + 1] * d.W_dec[f]).to(post.dtype)
        return post


class NeuronStream:
    def __init__(self, model: LoadedModel, *, layers: list[int] | None = None, top_k: int = 4,
                 context_tokens: int = 128, stats: NeuronStats | None = None, kv_cache: bool = False,
                 keep_acts: bool = False, written: bool = False, static: "StaticKV | None" = None,
                 dictionary: "Dictionary | None" = None) -> None:
        """``written``: the events come already written (:func:`session_events`); else they are the rig's, and
        are written here as :mod:`brain.corpus_style` says. ``static``: the live step's buffer pool
        (:mod:`brain.static_step`), shared by the rigs of one brain; this stream takes a slot in it.
        ``dictionary``: read features instead of neurons (:mod:`brain.units.features`; ``stats`` then the
        features' own)."""
        from brain.corpus_style import CorpusStyle

        self.model = model
        self.style = None if written else CorpusStyle()
        self.layers = list(range(model.n_layers)) if layers is None else list(layers)
        for layer in self.layers:
            model.check_neuron(layer)
        self.top_k = top_k
        self.keep_acts = keep_acts
        self.context_tokens = min(context_tokens, model.n_ctx)
        self.context_words = model.window_words(self.context_tokens)
        """The window's rules count words (one token each for the shipped tokenizer; fewer words for one that
        splits note words into pieces, so every word of the window fits the context)."""
        self.stats = stats
        self.scale = stats.scale.to(model.device) if stats is not None else None
        self.dictionary = dictionary
        self.steering = Steering(model, dictionary)
        self.text = NoteText()
        self.note_ids = model.note_token_ids()
        self._note_index = torch.tensor(sorted(self.note_ids), dtype=torch.long)
        self._captured: dict[int, torch.Tensor] = {}
        self._handles = [self._hook_point(layer).add_hook(self._make_hook(layer), is_permanent=True) for layer in range(model.n_layers)]
        self.last_logits: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        from brain.kv_cache import KVCachedForward, supports_kv_cache

        self._kv = KVCachedForward(model) if kv_cache and supports_kv_cache(model) else None
        self._fed = 0  # words of the text already in the key/value cache
        self._steering_version = 0
        usable = static is not None and self._kv is not None and not keep_acts
        self._static = static if usable else None
        self._slot = static.acquire() if usable else None
        self._static_len = 0  # tokens of this stream in its static slot
        self._path = ""  # the cache the last step ran on: "static" or "eager"
        self._shadow_slot: int | None = None  # taken when the window first reaches the words a cut keeps
        """The words the next cut keeps (from :func:`kept_from`), read at the positions they will have after it,
        step by step beside the live window: at the cut this becomes the cache, and nothing is read again."""
        self._shadow_len = 0  # tokens in the shadow slot
        self.cuts_from_shadow = 0
        """Cuts that read nothing again (the shadow became the cache)."""
        self._shadow_fed = -1  # window words whose tokens are in the shadow (from kept_from); -1: not valid

    # -- hooks -------------------------------------------------------------------------
    def _hook_point(self, layer: int):
        return self.model.bridge.hook_dict[self.model.hook_name(layer)]

    def _make_hook(self, layer: int):
        def hook(act: torch.Tensor, hook=None):
            steered = self.steering.apply(layer, act)
            if steered is not None:
                act = steered
            if layer in self.layers:
                self._captured[layer] = act.detach()
            return steered
        return hook

    def close(self) -> None:
        """Take our hooks off the model (it may be shared with analysis code)."""
        for layer in range(self.model.n_layers):
            self._hook_point(layer).remove_hooks(including_permanent=True)
        if self._static is not None:
            for slot in (self._slot, self._shadow_slot):
                if slot is not None:
                    self._static.release(slot)
            self._slot = self._shadow_slot = None

    # -- text ------------------------------------------------------------------------------
    def _append(self, event: StreamEvent) -> list[EventSpan]:
        if event.kind == "note":
            return [self.text.add_note(event.note, event.source, event.seq, event.time, drum=event.drum)]
        return self.text.add_beat(event.downbeat, event.seq, event.time)  # same rule as text_of

    # -- stepping ------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, events: list[StreamEvent]) -> list[StepResult]:
        """Read new events; one result per event that added words to the text."""
        return step_streams([(self, events)])[0]

    def _read(self, events: list[StreamEvent]) -> tuple[list[StepResult], list[tuple[StreamEvent, list[EventSpan]]]]:
        """Append events to the text; what must run before a trim runs now. Returns those results and the
        events still pending a forward pass."""
        results: list[StepResult] = []
        pending: list[tuple[StreamEvent, list[EventSpan]]] = []
        if self.style is not None:
            events = [w for e in events for w in self.style.feed(e)]
        for event in events:
            if window_full(self.text, self.context_words):
                if pending:
                    results += self._run(pending)
                    pending = []
                shadow_ready = self._shadow_ready()
                cut_window(self.text, self.context_words)
                if shadow_ready:  # the kept words were read at their new positions already
                    self._adopt_shadow()
                else:
                    self._fed = 0  # positions moved: the cache must be re-read
            spans = self._append(event)
            if spans:
                pending.append((event, spans))
        return results, pending

    def _shadow_ready(self) -> bool:
        """The shadow holds every word a cut now keeps, under the steering of the live cache."""
        return (self._path == "static" and self._static_ready() and self._shadow_fed == len(self.text.spans)
                and self._fed == len(self.text.spans) and self._steering_version == self.steering.version)

    def _adopt_shadow(self) -> None:
        self.cuts_from_shadow += 1
        self._slot, self._shadow_slot = self._shadow_slot, self._slot
        self._static_len = self._shadow_len
        self._fed = len(self.text.spans)
        self._shadow_len, self._shadow_fed = 0, kept_from(self.context_words)

    def _static_ready(self) -> bool:
        """The fixed-shape step serves this stream now (a layer plan changes the graph: the eager path)."""
        return self._static is not None and self.steering.corruption is None and not self.steering.feature_factors

    def _run(self, pending: list[tuple[StreamEvent, list[EventSpan]]]) -> list[StepResult]:
        if self._static_ready():
            return _run_static([(self, pending)])[0]
        return self._run_eager(pending)

    def _run_eager(self, pending: list[tuple[StreamEvent, list[EventSpan]]]) -> list[StepResult]:
        self._shadow_fed = -1  # the shadow misses these words: the next cut reads the window again
        start = time.perf_counter()
        if self._kv is not None:
            tokens, prefix_len, owner = self._kv_input("eager")
            logits, posts = self._kv.forward(tokens, self.steering)
            n_tokens = self._kv_output(logits, posts)
        else:
            prefix_len, owner, n_tokens = self._forward_full()
        return self._results(pending, prefix_len, owner, n_tokens, (time.perf_counter() - start) * 1000)

    def _event_positions(self, pending, prefix_len: int, owner: list[int]) -> list[tuple[list[int], int]]:
        """Per pending event: the indices of its tokens among this step's, and how many words of the window
        reach up to it."""
        span_index = {id(s): i for i, s in enumerate(self.text.spans)}
        out = []
        for _, spans in pending:
            wanted = {span_index[id(s)] for s in spans if id(s) in span_index}
            out.append(([prefix_len + i for i, o in enumerate(owner) if o in wanted], max(wanted) + 1 if wanted else 0))
        return out

    def _result(self, event: StreamEvent, spans: list[EventSpan], upto: int, hits: list[Hit], likely,
                raw: torch.Tensor | None, elapsed: float, n_tokens: int, confidence: float | None = None) -> StepResult:
        return StepResult(event=event, spans=spans, hits=hits, text=" ".join(
            self.text.text[s.start:s.end] for s in spans), step_ms=elapsed, tokens=n_tokens,
            predicted_note=likely[0] if likely else None, likely_notes=likely, confidence=confidence,
            acts=raw if self.keep_acts else None,
            window_words=[self.text.text[s.start:s.end] for s in self.text.spans[:upto]])

    def _results(self, pending, prefix_len: int, owner: list[int], n_tokens: int, elapsed: float) -> list[StepResult]:
        results = []
        for (event, spans), (positions, upto) in zip(pending, self._event_positions(pending, prefix_len, owner)):
            hits, raw = self._top_k(positions)
            likely, confidence = self.likely_notes(max(positions)) if positions else (None, None)
            results.append(self._result(event, spans, upto, hits, likely, raw, elapsed, n_tokens, confidence))
        return results

    def _forward_full(self) -> tuple[int, list[int], int]:
        """Recompute the whole window through the bridge (its hooks capture and steer)."""
        tok = self.model.tokenizer
        ids, offsets = tok.encode(self.text.text)
        budget = self.context_tokens - (1 if tok.bos_id is not None else 0)
        if len(ids) > budget:  # subword tokenizers: keep the newest tokens
            ids, offsets = ids[-budget:], offsets[-budget:]
        prefix = [tok.bos_id] if tok.bos_id is not None else []
        x = torch.tensor([prefix + ids], device=self.model.device)
        plan = self.steering.corruption
        if plan is None:
            logits = self.model.bridge(x)
        else:
            hooks = CorruptionHooks(self.model, plan, self.steering.layer_means).hooks()
            logits = self.model.bridge.run_with_hooks(x, fwd_hooks=hooks)
            for layer in plan.skipped:  # as in the key/value path: a skipped layer's neurons never fired
                if layer in self._captured:
                    self._captured[layer] = torch.zeros_like(self._captured[layer])
        self._logits = logits[0]  # [T, vocab], indexed like the captured activations
        self.last_logits = logits[0, -1].float()
        return len(prefix), align_tokens(offsets, self.text.spans), len(prefix) + len(ids)

    def _kv_input(self, path: str) -> tuple[list[int], int, list[int]]:
        """The words not yet in the key/value cache of ``path`` ("static" or "eager"), as tokens (word-level
        tokenizers: one word, one token): the tokens, how many lead them (BOS), and which span each token
        belongs to. A change of steering or of path starts the cache again from the window's first word."""
        if self._fed == 0 or self._steering_version != self.steering.version or self._path != path:
            self._kv.reset()
            self._static_len = 0
            self._shadow_len, self._shadow_fed = 0, kept_from(self.context_words)
            self._fed = 0
            self._steering_version = self.steering.version
            self._path = path
        tok = self.model.tokenizer
        first = self.text.spans[self._fed].start
        ids, offsets = tok.encode(self.text.text[first:])
        offsets = [(a + first, b + first) for a, b in offsets]
        length = self._static_len if path == "static" else self._kv.length
        prefix = [tok.bos_id] if length == 0 and tok.bos_id is not None else []
        return prefix + ids, len(prefix), align_tokens(offsets, self.text.spans)

    def _shadow_tokens(self, ids: list[int], owner: list[int]) -> list[int] | None:
        """This step's tokens (``ids``, BOS aside; ``owner``: each one's word) of the words the next cut keeps, for
        the shadow cache (BOS first if it is empty); None when the shadow is not being kept (it missed words: the
        next cut reads the window again)."""
        first = kept_from(self.context_words)
        if self._shadow_fed < first or self._static is None:
            return None
        mine = [t for t, o in zip(ids, owner) if o >= first]
        if mine and self._shadow_slot is None:
            self._shadow_slot = self._static.acquire()
        if mine and self._shadow_len == 0 and self.model.tokenizer.bos_id is not None:
            mine = [self.model.tokenizer.bos_id] + mine
        return mine

    def _kv_output(self, logits: torch.Tensor, posts: dict[int, torch.Tensor]) -> int:
        self._captured = {layer: posts[layer][None] for layer in self.layers}
        self._logits = logits  # [T_new, vocab], indexed like the captured activations
        self.last_logits = logits[-1].float()
        self._fed = len(self.text.spans)
        return self._kv.length

    def _top_k(self, positions: list[int]) -> tuple[list[Hit], torch.Tensor | None]:
        if not positions:
            return [], None
        raw_rows, norm_rows = [], []
        for layer in self.layers:
            act = self._captured[layer][0, positions].float()
            if self.dictionary is not None:
                act = self.dictionary[layer].encode(act)
            act = act.max(dim=0).values  # [units]
            raw_rows.append(act)
            norm_rows.append(act / self.scale[layer] if self.scale is not None else act)
        raw = torch.stack(raw_rows)  # [n_layers, d_mlp]
        norm = torch.stack(norm_rows)
        d_mlp = raw.shape[1]
        return [Hit(layer=self.layers[i // d_mlp], index=i % d_mlp, activation=round(float(raw.flatten()[i]), 5),
                    normalized=round(float(norm.flatten()[i]), 5))
                for i in top_neurons(norm.flatten(), raw.flatten(), self.top_k)], raw

    def likely_notes(self, position: int, k: int = LIKELY) -> tuple[list[int] | None, float | None]:
        """The ``k`` notes the model finds most likely next after ``position`` of the last forward, most likely
        first (the first is the prediction voice's), and the first one's probability over the whole vocabulary:
        each event's own, however events were batched."""
        if self._logits is None or not self.note_ids:
            return None, None
        full = self._logits[position].float()
        index = self._note_index.to(self._logits.device)
        top = full[index].topk(min(k, index.numel())).indices
        confidence = float(full.softmax(-1)[index[top[0]]])
        return [self.note_ids[int(self._note_index[int(i)])] for i in top.cpu()], confidence


@torch.inference_mode()
def step_streams(work: list[tuple[NeuronStream, list[StreamEvent]]]) -> list[list[StepResult]]:
    """Step several streams (one per rig) at once: the key/value-cached ones share one padded forward pass.

    Each stream's answers are the same as from its own :meth:`NeuronStream.step` (each row reads only its own
    cache and steering); only the Python and dispatch overhead is shared, which is most of a small model's step."""
    out: list[list[StepResult]] = []
    batch: list[tuple[int, NeuronStream, list]] = []
    static: dict[int, list[tuple[int, NeuronStream, list]]] = {}  # pool → its streams' work
    for i, (stream, events) in enumerate(work):
        results, pending = stream._read(events)
        out.append(results)
        if pending and stream._static_ready():
            static.setdefault(id(stream._static), []).append((i, stream, pending))
        elif pending and stream._kv is not None and (not batch or (stream.model is batch[0][1].model and
                                                                stream.steering.corruption == batch[0][1].steering.corruption)):
            batch.append((i, stream, pending))
        elif pending:
            out[i] += stream._run(pending)
    for group in static.values():
        for (i, _, _), results in zip(group, _run_static([(stream, pending) for _, stream, pending in group])):
            out[i] += results
    if len(batch) == 1:
        i, stream, pending = batch[0]
        out[i] += stream._run_eager(pending)
    elif batch:
        from brain.kv_cache import forward_batch

        start = time.perf_counter()
        inputs = [stream._kv_input("eager") for _, stream, _ in batch]
        rows = forward_batch([s._kv for _, s, _ in batch], [t for t, _, _ in inputs], [s.steering for _, s, _ in batch])
        elapsed = (time.perf_counter() - start) * 1000
        for (i, stream, pending), (_, prefix_len, owner), (logits, posts) in zip(batch, inputs, rows):
            n_tokens = stream._kv_output(logits, posts)
            out[i] += stream._results(pending, prefix_len, owner, n_tokens, elapsed)
    return out


def _run_static(work: list[tuple[NeuronStream, list]]) -> list[list[StepResult]]:
    """Streams sharing one :class:`~brain.static_step.StaticKV` in one fixed-shape step (one read-back); a stream
    whose step does not fit it runs eagerly."""
    from brain.static_step import StaticRow

    start = time.perf_counter()
    pool = work[0][0]._static
    rows, placed, out = [], [], [[] for _ in work]
    for j, (stream, pending) in enumerate(work):
        tokens, prefix_len, owner = stream._kv_input("static")
        where = stream._event_positions(pending, prefix_len, owner)
        events = [positions for positions, _ in where]
        shadow = stream._shadow_tokens(tokens[prefix_len:], owner)
        if pool.fits(stream._static_len, len(tokens), events) and (not shadow or pool.fits(
                stream._shadow_len, len(shadow), [])):
            pool.load_steering(stream._slot, stream.steering)
            rows.append(StaticRow(stream._slot, tokens, stream._static_len, events))
            if shadow:
                pool.load_steering(stream._shadow_slot, stream.steering)
                rows.append(StaticRow(stream._shadow_slot, shadow, stream._shadow_len, []))
            placed.append((j, stream, pending, where, len(tokens), len(shadow) if shadow is not None else None))
        else:
            out[j] = stream._run_eager(pending)
    answers = iter(pool.step(rows) if rows else [])
    elapsed = (time.perf_counter() - start) * 1000
    for j, stream, pending, where, n_new, n_shadow in placed:
        mine = next(answers)
        stream._static_len += n_new
        stream._fed = len(stream.text.spans)
        if n_shadow is not None:
            if n_shadow:
                next(answers)  # the shadow row answers nothing
            stream._shadow_len += n_shadow
            stream._shadow_fed = max(len(stream.text.spans), kept_from(stream.context_words))
        for (event, spans), (_, upto), answer in zip(pending, where, mine):
            hits = [Hit(layer=layer, index=index, activation=round(a, 5), normalized=round(n, 5))
                    for layer, index, a, n in answer.hits]
            out[j].append(stream._result(event, spans, upto, hits, answer.likely, None, elapsed, stream._static_len,
                                         answer.confidence))
    return out
