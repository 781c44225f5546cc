"""The brain with no sockets: messages in arrival order → ``(peer, message)`` answers.

Everything the brain decides lives here: which rig an event is for, one batched
forward pass for the events that arrived together, each rig's accompaniment,
neurons and treat requests, who may steer what, and what the stages are told.
The node (``brain/live/node.py``) only moves frames between this and its
``Link``; a replay or a test can drive it in-process and get the same answers
(it reads the wire as a :class:`~bridge.link.LinkSnapshot`, never the link).
Bad requests (unknown neuron, factor out of range, a rig that is not yours)
are answered with a refusal and a reason.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

import msgspec

from brain.config import BrainConfig
from brain.corruption import LayerCorruption, layer_output_means, reference_texts
from brain.live.reward_rule import BrainRewardRule
from brain.live.rig_view import RigView
from brain.live.sonify import Sonifier
from brain.live.stage_feed import RigSnapshot, StageFeed
from brain.voices import voices_of
from brain.models import LoadedModel
from brain.neuron_labels import present_now, traits_now
from brain.neuron_stats import NeuronStats, load_stats
from brain.static_step import BATCH_SIZES
from brain.units.features import FeatureSet, load_features, silence_the_rare
from brain.stream import NeuronStream, StepResult, step_streams, stream_event
from bridge.identity import IdentityBook
from bridge.link import LinkSnapshot
from bridge.messages import (
    Accomp,
    Beat,
    CardRequest,
    Hello,
    Message,
    NeuronHit,
    Neurons,
    Note,
    Steer,
    SteerReply,
    Tempo,
    TreatRequest,
)
from core.errors import ModelError, NeurojamError

log = logging.getLogger("neurojam.brain")

Answer = tuple[str, Message]
"""A message and the peer (node id) it is for."""


@dataclass
class RigState:
    stream: NeuronStream
    view: RigView
    sonifier: Sonifier
    reward: BrainRewardRule
    events: int = 0
    last_event: float = 0.0


class BrainCore:
    def __init__(self, config: BrainConfig, model: LoadedModel, *, identity: IdentityBook | None = None,
                 stats: NeuronStats | None = None, features: FeatureSet | None = None) -> None:
        """``stats``: calibration to use instead of the model's stored one (a control model's own); ``features``:
        the dictionary to play when the units are features, instead of the model's shipped one (a control's own)."""
        self.config, bc = config, config
        self.model = model
        self._given = {"neurons": stats, "features": features}
        self.features: FeatureSet | None = None
        """The dictionary's features, once the brain has played them (loaded on first use)."""
        for layer in [] if bc.layers == "all" else bc.layers:  # told now, not when the first rig plays
            self.model.check_neuron(layer)
        self.identity = identity or IdentityBook(keyed=False)
        """Who may steer and see which rigs (shared with the node's link, which fills it in)."""
        self.units = bc.units
        self._play(bc.units)
        self.steering_all: dict[tuple[int, int], float] = {}
        """Steering every rig gets (from config, and live steers addressed to all), new rigs included: units of
        the kind the brain plays."""
        for s in bc.steering:
            self._check_unit(s.layer, s.neuron)
            self.steering_all[(s.layer, s.neuron)] = s.factor
        self.ablated: dict[tuple[int, int], float] = {}
        """Neurons every rig's stream holds at a mean activation (the score's ablation control)."""
        self.corruption_all = LayerCorruption.parse(bc.corrupt, self.model.n_layers)
        """The layer corruption every rig gets (config, and live skips addressed to all)."""
        self._layer_means: dict | None = None
        if self.corruption_all.needs_means:  # told now, not when the first rig plays
            self._means()
        self.rigs: dict[str, RigState] = {}
        """One context, key/value cache, picture of the rig, band and reward rule per rig (by node id)."""
        self.on_new_rig: Callable[[str], None] | None = None
        """Told each rig's node id when it first plays (``neurojam brain`` prints it)."""
        self.step_ms: deque[float] = deque(maxlen=5000)
        self.counts = {"events": 0, "accomp_notes": 0, "reward_requests": 0, "refused_controls": 0}
        self._told: set[tuple[str, str]] = set()
        """(sender, rig) pairs whose refused control was logged (once each: a tool retrying floods nothing)."""
        self.dropped_in: Counter = Counter()
        """Controls refused for who sent them, for the link's counters (the node adds them there)."""
        self.wire = LinkSnapshot()

    def _play(self, units: str) -> None:
        """Read and play ``units`` from now on: their statistics, labels, voices, step buffers and stage cards."""
        bc = self.config
        dictionary = None
        if units == "features":
            self.features = self._given["features"] or self.features or load_features(self.model)
            dictionary = self.features.dictionary
            self.neuron_stats = self.features.stats if bc.play_rare_features else silence_the_rare(self.features.stats)
        else:
            self.neuron_stats = self._given["neurons"] or load_stats(self.model, bc.stats_dir)
        self.units = units
        self.dictionary = dictionary
        self.labels = self.neuron_stats.labels if self.neuron_stats else {}
        self.voices = voices_of(self.model, bc.sonify.layer_octaves, dictionary)
        """Each unit's home and pushes: what it plays (the score's controls swap these for shuffled ones)."""
        old = getattr(self, "stage", None)
        self.stage = StageFeed(self.identity, self.model, self.neuron_stats, self.labels, self.features
                               if units == "features" else None)
        if old is not None:
            self.stage.stages = old.stages
        self.static = self._static_pool()
        """Every rig's keys and values at fixed shapes, one read-back a step (:mod:`brain.static_step`)."""

    def _check_unit(self, layer: int, index: int) -> None:
        self.model.check_neuron(layer)
        if self.dictionary is None:
            self.model.check_neuron(layer, index)
        else:
            self.dictionary.check_feature(layer, index)

    def _steer_unit(self, steering, layer: int, index: int, factor: float) -> None:
        if self.dictionary is None:
            steering.set(layer, index, factor)
        else:
            steering.set_feature(layer, index, factor)

    def switch_units(self, units: str) -> None:
        """Every rig from its next event on reads and plays ``units``; its window is kept (read again once), its
        steering cleared (a neuron's factor means nothing to a feature)."""
        if units == self.units:
            return
        previous = self.units
        try:
            self._play(units)
        except NeurojamError:
            self._play(previous)
            raise
        self.steering_all.clear()
        self.ablated.clear()
        for node, state in self.rigs.items():
            stream = self._new_stream()
            stream.text, stream.style = state.stream.text, state.stream.style
            if not self.corruption_all.is_identity:
                self._corrupt(stream, self.corruption_all)
            state.stream.close()
            state.stream = stream
            state.sonifier.play_units(self.voices)
        log.info("the brain now plays %s", units)

    def _static_pool(self):
        from brain.kv_cache import supports_kv_cache
        from brain.static_step import StaticKV

        bc = self.config
        if not (bc.static_step and bc.kv_cache and supports_kv_cache(self.model)):
            return None
        layers = list(range(self.model.n_layers)) if bc.layers == "all" else list(bc.layers)
        scale = self.neuron_stats.scale if self.neuron_stats is not None else None
        return StaticKV(self.model, context_tokens=bc.context_tokens, layers=layers, top_k=bc.top_k, scale=scale,
                        dictionary=self.dictionary)

    def rig_state(self, node: str) -> RigState:
        """The state of rig ``node``, made on its first event."""
        state = self.rigs.get(node)
        if state is None:
            bc = self.config
            stream = self._new_stream()
            for (layer, neuron), factor in self.steering_all.items():
                self._steer_unit(stream.steering, layer, neuron, factor)
            for (layer, neuron), mean in self.ablated.items():
                stream.steering.ablate(layer, neuron, mean)
            if not self.corruption_all.is_identity:
                self._corrupt(stream, self.corruption_all)
            view = RigView()
            state = self.rigs[node] = RigState(stream, view, Sonifier(bc.sonify, view, self.voices),
                                               BrainRewardRule(bc.reward, view))
            log.info("serving rig %s (%d rigs)", node, len(self.rigs))
            if self.on_new_rig:
                self.on_new_rig(node)
        return state

    def _new_stream(self) -> NeuronStream:
        """A reader as configured: the window, top-k and layers every rig gets."""
        bc = self.config
        return NeuronStream(self.model, layers=None if bc.layers == "all" else list(bc.layers), top_k=bc.top_k,
                            context_tokens=bc.context_tokens, stats=self.neuron_stats, kv_cache=bc.kv_cache,
                            static=self.static, dictionary=self.dictionary)

    def warm(self) -> None:
        """Every step shape (each padded batch size × token count; on CUDA each captured as a graph), then one
        beat and one note through a throwaway stream: no jam step pays a first-call cost. The step statistics
        start after this (they exclude warm-up)."""
        if self.static is not None:
            shapes = self.static.warm()
            log.info("warmed %d step shapes (batch sizes %s)", shapes, ", ".join(map(str, BATCH_SIZES)))
        stream = self._new_stream()
        try:
            for msg in (Beat(index=0, bar=0, beat=0, time=0.0), Note(source="human", note=62, velocity=80, t=0.1)):
                stream.step([stream_event(msg)])
        finally:
            stream.close()

    # -- messages in ----------------------------------------------------------------------
    def handle(self, msgs: list[Message], wire: LinkSnapshot | None = None) -> list[Answer]:
        """Messages in arrival order → events → one forward pass for all rigs → answers to each rig, its own only.

        What a message tells about its rig (grid, the human's notes) is applied
        just before that event's answer, so the answers do not depend on how the
        events were batched (replays reproduce live sessions)."""
        if wire is not None:
            self.wire = wire
        out: list[Answer] = []
        pending: dict[str, list[tuple[object, Message]]] = {}  # rig → (stream event, the message it came from)
        for msg in msgs:
            event = stream_event(msg)
            if isinstance(msg, (Steer, Tempo, TreatRequest, CardRequest)) and not self._may_control(msg, out):
                continue
            if event is not None:
                pending.setdefault(msg.node, []).append((event, msg))
            elif isinstance(msg, Steer):
                out.append((msg.node, self.steer(msg)))
            elif isinstance(msg, (Tempo, TreatRequest)):
                self.pass_on(msg, out)
            elif isinstance(msg, CardRequest):
                out.append(self.stage.card(msg))
            elif isinstance(msg, Hello):
                self.stage.hello(msg)
                if msg.role == "rig":
                    log.info("rig %s connected", msg.node)
            if msg.node in self.rigs or event is not None:
                out += self.stage.copy(msg.node, "in", msg, self.wire)
        states = [self.rig_state(node) for node in pending]
        stepped = step_streams([(state.stream, [e for e, _ in items]) for state, items in zip(states, pending.values())])
        for state, items, done in zip(states, pending.values(), stepped):
            self.counts["events"] += len(items)
            state.events += len(items)
            state.last_event = self.wire.now
            by_seq: dict[int, list[StepResult]] = {}  # a beat written ahead of its message is answered with the
            for r in done:                             # note that brought it (it carries that note's seq)
                by_seq.setdefault(r.event.seq, []).append(r)
            for event, msg in items:
                state.view.observe(msg)
                for r in by_seq.get(event.seq, ()):
                    self.respond(r, state, out)
        return out

    def _may_control(self, msg: Steer | Tempo | TreatRequest | CardRequest, out: list[Answer]) -> bool:
        """A control names its rig ('' : every rig); a sender that may steer only some rigs names one of them; a
        rig's key controls nothing (a card request only reads, and is answered for its own rig)."""
        owner = self.identity.rig_of_key(msg.node)
        if owner is not None and not isinstance(msg, CardRequest):
            self.counts["refused_controls"] += 1
            self.dropped_in["rig_key_control"] += 1
            if (msg.node, "rig key") not in self._told:
                self._told.add((msg.node, "rig key"))
                log.warning("refused a %s from %s: it speaks with rig %s's key, and a rig's key plays but never "
                            "controls (further refusals counted in rig_key_control). Give the tool a key of its own: "
                            "`neurojam keys init --node tool` on its machine, then on the brain bridge.identities: "
                            "{KEY: 'tool:%s'}", msg.__struct_config__.tag, msg.node, owner, owner)
            if isinstance(msg, Steer):
                out.append((msg.node, _steer_reply(msg, f"{msg.node} speaks with rig {owner}'s key: a rig's key "
                                                        "controls nothing; give the tool its own key")))
            return False
        rigs = self.identity.rigs_of(msg.node)
        if rigs is None:
            return True
        if not msg.rig and len(rigs) == 1:
            msg.rig = next(iter(rigs))  # a rig's own key (or a tool for one rig) means that rig
        if msg.rig and msg.rig in rigs:
            return True
        self.counts["refused_controls"] += 1
        self.dropped_in["not_your_rig"] += 1
        allowed = ", ".join(sorted(rigs)) or "no rig"
        if (msg.node, msg.rig) not in self._told:
            self._told.add((msg.node, msg.rig))
            log.warning("refused a %s from %s for rig %r: its key may control only %s (further refusals counted in "
                        "not_your_rig). If it should, name its key on the brain: bridge.identities: {KEY: 'tool'} (every "
                        "rig) or {KEY: 'tool:%s'}", msg.__struct_config__.tag, msg.node, msg.rig or "(every rig)",
                        allowed, msg.rig or "RIG")
        if isinstance(msg, Steer):
            out.append((msg.node, _steer_reply(msg, f"{msg.node} may steer only {allowed}")))
        return False

    def respond(self, r: StepResult, state: RigState, out: list[Answer]) -> None:
        self.step_ms.append(r.step_ms)
        now = traits_now(r.window_words or [])
        hits = [NeuronHit(layer=h.layer, index=h.index, activation=h.activation, normalized=h.normalized,
                          label=self.shown_label(h.id, now)) for h in r.hits]
        to = r.event.node
        self._to_rig(Neurons(event_seq=r.event.seq, event_node=r.event.node, text=r.text, hits=hits,
                             step_ms=round(r.step_ms, 3), units=self.units), to, out)
        sonifier = state.sonifier
        notes = sonifier.notes_for(r.hits, r.event.time, r.predicted_note, r.likely_notes, r.confidence)
        if notes:
            self.counts["accomp_notes"] += len(notes)
            self._to_rig(Accomp(notes=notes, event_seq=r.event.seq, chord=list(sonifier.chord or ()),
                                key=str(sonifier.key or "")), to, out)
        reason = state.reward.check(r)
        if reason:
            self.counts["reward_requests"] += 1
            self._to_rig(TreatRequest(source="brain", request_id=state.reward.requests, why=reason), to, out)
        if self.stage.stages:
            self.stage.heard(to, r)

    def shown_label(self, nid: str, now: set[str]) -> str:
        """The neuron's label as shown live: a clear one (its held-out precision in it) says whether its trait is
        true at this event (``now``: the event's traits, :func:`brain.neuron_labels.traits_now`)."""
        label = self.labels.get(nid, "")
        score = ((self.neuron_stats.scores or {}) if self.neuron_stats else {}).get(nid) or {}
        if not label or not score.get("clear") or "held_out_precision" not in score:
            return label
        true = present_now(score["trait"], now) if now else None
        return label if true is None else f"{label} · {'true now' if true else 'not now'}"

    def _to_rig(self, msg: Message, rig: str, out: list[Answer]) -> None:
        """To rig ``rig`` only (and a copy to each stage)."""
        out.append((rig, msg))
        out += self.stage.copy(rig, "out", msg, self.wire)

    def pass_on(self, msg: Tempo | TreatRequest, out: list[Answer]) -> None:
        """A tool's tempo change or treat button, to its rig (none named: every rig). The rig decides: its
        dispenser's caps judge a manual treat like any other request."""
        if isinstance(msg, TreatRequest) and msg.source == "brain":
            msg.source = "manual"  # only the brain's own rule speaks as the brain
        if msg.rig and msg.rig not in self.rigs:
            self.counts["refused_controls"] += 1
            log.warning("refused a %s for rig %r: no such rig is playing (rigs: %s)", msg.__struct_config__.tag,
                        msg.rig, ", ".join(self.rigs) or "none yet")
            return
        for rig in [msg.rig] if msg.rig else list(self.rigs):  # sent as the brain's own: the node stamps it
            self._to_rig(msgspec.structs.replace(msg), rig, out)

    def _means(self) -> dict:
        """Each block output's mean over the model's validation tunes, for mean ablation: computed once."""
        if self._layer_means is None:
            texts = reference_texts(self.model)
            if not texts:
                raise ModelError(f"mean ablation needs reference texts and {self.model.name} ships no corpus: use "
                                 f"zero-mlp / zero-attn instead.")
            self._layer_means = layer_output_means(self.model, texts)
        return self._layer_means

    def _corrupt(self, stream: NeuronStream, plan: LayerCorruption) -> None:
        """Put a layer plan on a rig's stream."""
        stream.steering.corrupt(plan, self._means() if plan.needs_means else None)

    def steer(self, msg: Steer) -> SteerReply:
        try:
            if msg.play:
                if msg.rig:
                    raise ModelError("what the brain plays is the same for every rig: send play without a rig")
                self.switch_units(msg.play)
                return _steer_reply(msg, units=self.units)
            if msg.rig and msg.rig not in self.rigs:
                raise ModelError(f"no rig called {msg.rig!r} is playing (rigs: {', '.join(self.rigs) or 'none yet'})")
            if msg.units and msg.units != self.units and not msg.clear and not msg.skip_layer:
                raise ModelError(f"the brain plays {self.units} now, not {msg.units}: switch it first (the stage's "
                                 f"units toggle, or `neurojam steer --play {msg.units}`)")
            if msg.skip_layer:
                self.model.check_neuron(msg.layer)
            elif not msg.clear:
                self._check_unit(msg.layer, msg.neuron)
            targets = [self.rigs[msg.rig]] if msg.rig else list(self.rigs.values())
            skip = f"skip={msg.layer}"
            if not msg.rig:  # every rig, and the ones still to come
                if msg.clear:
                    self.steering_all.clear()
                    self.corruption_all = LayerCorruption.identity(self.model.n_layers)
                elif msg.skip_layer:
                    self.corruption_all = self.corruption_all.then(skip)
                else:
                    self.steering_all[(msg.layer, msg.neuron)] = msg.factor
            for state in targets:
                steering = state.stream.steering
                if msg.clear:
                    steering.clear()
                elif msg.skip_layer:
                    self._corrupt(state.stream, (steering.corruption or LayerCorruption.identity(
                        self.model.n_layers)).then(skip))
                else:
                    self._steer_unit(steering, msg.layer, msg.neuron, msg.factor)
        except NeurojamError as exc:
            self.counts["refused_controls"] += 1
            log.warning("refused steering: %s", exc)
            return _steer_reply(msg, str(exc), units=self.units)
        return _steer_reply(msg, units=self.units)

    # -- once a second ----------------------------------------------------------------------
    def forget_idle_rigs(self, wire: LinkSnapshot, idle_s: float) -> list[str]:
        """Rigs not heard for ``idle_s`` lose their state (context, cache, band); the node forgets their place."""
        idle = [node for node, state in self.rigs.items()
                if wire.now - wire.last_heard.get(node, state.last_event) > idle_s]
        for node in idle:
            self.rigs.pop(node).stream.close()
            log.info("forgot rig %s: not heard for %.0f s", node, idle_s)
        return idle

    def status(self, wire: LinkSnapshot) -> list[Answer]:
        """The brain's status for each stage watching."""
        self.wire = wire
        if not self.stage.stages:
            return []
        rigs = [RigSnapshot(name, state.events, _steered(state.stream.steering), self._corruption_of(state))
                for name, state in self.rigs.items()]
        s = self.step_percentiles()
        return self.stage.status(rigs, wire, step_ms_p50=s["step_ms_p50"], step_ms_p99=s["step_ms_p99"])

    @staticmethod
    def _corruption_of(state: RigState) -> str:
        corruption = state.stream.steering.corruption
        return corruption.describe() if corruption else ""

    def step_percentiles(self) -> dict:
        ms = sorted(self.step_ms)
        pick = (lambda q: round(ms[min(len(ms) - 1, int(len(ms) * q))], 3)) if ms else (lambda q: None)
        return {"step_ms_p50": pick(0.5), "step_ms_p99": pick(0.99), "step_ms_max": pick(1.0),
                "step_ms_excludes": "warm-up (every step shape runs before the brain says it is ready)"}

    def stats(self) -> dict:
        return {"node": "brain", "model": self.model.name, "units": self.units, "counts": dict(self.counts),
                "rigs": {node: {"sonifier": dict(s.sonifier.counts),
                                "steering": {f"{k[0]}.{k[1]}": v for k, v in _steered(s.stream.steering).items()},
                                "corruption": self._corruption_of(s)}
                         for node, s in self.rigs.items()},
                **self.step_percentiles()}

    def close(self) -> None:
        for state in self.rigs.values():
            state.stream.close()


def _steered(steering) -> dict[tuple[int, int], float]:
    """Every steered unit's factor (a brain steers the kind of unit it plays)."""
    return {**steering.factors, **steering.feature_factors}


def _steer_reply(msg: Steer, refused: str = "", units: str = "") -> SteerReply:
    return SteerReply(applied=not refused, reason=refused, layer=msg.layer, neuron=msg.neuron, factor=msg.factor,
                      clear=msg.clear, skip_layer=msg.skip_layer, units=units, play=msg.play)
