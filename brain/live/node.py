"""The brain node: listens to the rig, answers with accompaniment, neurons and treat requests.

It binds its sockets and waits; rigs come and go (a ``hello`` resets what it
knows of their beat). Bad requests (unknown neuron, factor out of range) are
answered with ``control: refused`` and a reason; bad frames are counted by
the bridge. Nothing a peer sends can stop it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import msgspec

from brain.config import BrainConfig
from brain.corruption import LayerCorruption, layer_output_means, reference_texts
from brain.models import LoadedModel, load_model
from brain.logit_effect import promoted_notes
from brain.neuron_stats import load_stats
from brain.live.reward_rule import BrainRewardRule
from brain.live.rig_view import RigView
from brain.live.stage_feed import StageFeed
from brain.live.sonify import Sonifier
from brain.stream import NeuronStream, StepResult, step_streams, stream_event
from bridge.config import BridgeConfig, OscConfig
from bridge.identity import IdentityBook
from bridge.link import Link
from bridge.osc import OscOut
from bridge.messages import (
    Accomp,
    CardRequest,
    Hello,
    Message,
    NeuronHit,
    Neurons,
    Steer,
    SteerReply,
    Tempo,
    TreatRequest,
)
from bridge.security import security_for
from core.config import to_dict
from core.errors import ModelError, NeurojamError
from recording.config import SessionConfig
from recording.log import SessionRecorder

log = logging.getLogger("neurojam.brain")
SOFTWARE = "neurojam-brain/0.1"


@dataclass
class RigState:
    stream: NeuronStream
    view: RigView
    sonifier: Sonifier
    reward: BrainRewardRule
    events: int = 0
    last_event: float = 0.0


class BrainSettings(Protocol):
    """What the brain node reads: its own section, the wire's and the recorder's (``neurojam.config.Config`` is one)."""

    brain: BrainConfig
    bridge: BridgeConfig
    session: SessionConfig
    osc: OscConfig


class BrainNode:
    def __init__(self, config: BrainSettings, model: LoadedModel | None = None, *, session_dir: str | Path | None = None,
                 meta: dict | None = None) -> None:
        self.config = config
        bc = config.brain
        self.model = model or load_model(bc.model, bc.device, bc.dtype)
        self.neuron_stats = load_stats(self.model, bc.stats_dir)
        self.labels = self.neuron_stats.labels if self.neuron_stats else {}
        self.promoted = {}
        if self.model.note_token_ids():
            table = promoted_notes(self.model)
            self.promoted = {(lay, n): int(table[lay, n]) for lay in range(self.model.n_layers)
                             for n in range(self.model.d_mlp)}
        for layer in [] if bc.layers == "all" else bc.layers:  # told now, not when the first rig plays
            self.model.check_neuron(layer)
        self.steering_all: dict[tuple[int, int], float] = {}
        """Steering every rig gets (from config, and live steers addressed to all), new rigs included."""
        for s in bc.steering:
            self.model.check_neuron(s.layer, s.neuron)
            self.steering_all[(s.layer, s.neuron)] = s.factor
        self.corruption_all = LayerCorruption.parse(bc.corrupt, self.model.n_layers)
        """The layer corruption every rig gets (config, and live skips addressed to all)."""
        self._layer_means: dict | None = None
        if self.corruption_all.needs_means:  # told now, not when the first rig plays
            self._means()
        self.rigs: dict[str, RigState] = {}
        """One context, key/value cache, picture of the rig, band and reward rule per rig (by node id)."""
        self.on_new_rig: Callable[[str], None] | None = None
        """Told each rig's node id when it first plays (``neurojam brain`` prints it)."""
        self.recorder = None
        if session_dir is not None:
            self.recorder = SessionRecorder(session_dir, {"node": "brain", "config": to_dict(config),
                                                          "model": self.model.name, **(meta or {})},
                                            buffer=config.session.buffer, flush_ms=config.session.flush_ms,
                                            min_free_mb=config.session.min_free_mb, max_mb=config.session.max_mb)
        b = config.bridge
        security = security_for(b, bc.node_id, server=True)
        self.link = Link("brain", bc.node_id, bind_host=b.bind_host, events_port=b.events_port,
                         commands_port=b.commands_port, heartbeat_s=b.heartbeat_s, liveness_s=b.liveness_s,
                         hwm=b.hwm, tap=self.recorder, security=security, max_frame_bytes=b.max_frame_bytes,
                         identity=IdentityBook.from_config(b, keyed=security.name == "curve"))
        osc = getattr(config, "osc", None)
        self.osc = OscOut(osc.targets, osc.prefix) if osc is not None else OscOut([])
        """Each event's top neurons, for visuals (``bridge/osc.py``)."""
        self.stage = StageFeed(self)
        """Copies for the stages watching (``neurojam stage``); nothing is sent while none is."""
        self.stop_event = threading.Event()
        self.step_ms: deque[float] = deque(maxlen=5000)
        self.counts = {"events": 0, "accomp_notes": 0, "reward_requests": 0, "refused_controls": 0}
        self._closed = False

    def rig_state(self, node: str) -> "RigState":
        """The state of rig ``node``, made on its first event."""
        state = self.rigs.get(node)
        if state is None:
            bc = self.config.brain
            layers = None if bc.layers == "all" else list(bc.layers)
            stream = NeuronStream(self.model, layers=layers, top_k=bc.top_k, context_tokens=bc.context_tokens,
                                  stats=self.neuron_stats, kv_cache=bc.kv_cache)
            for (layer, neuron), factor in self.steering_all.items():
                stream.steering.set(layer, neuron, factor)
            if not self.corruption_all.is_identity:
                self._corrupt(stream, self.corruption_all)
            view = RigView()
            state = self.rigs[node] = RigState(stream, view, Sonifier(bc.sonify, view, self.promoted),
                                               BrainRewardRule(bc.reward, view))
            log.info("serving rig %s (%d rigs)", node, len(self.rigs))
            if self.on_new_rig:
                self.on_new_rig(node)
        return state

    # -- messages in ----------------------------------------------------------------------
    def handle(self, msgs: list[Message]) -> list[StepResult]:
        """Messages in arrival order → events → one forward pass for all rigs → answers to each rig, its own only.

        What a message tells about its rig (grid, the human's notes) is applied
        just before that event's answer, so the answers do not depend on how the
        events were batched (replays reproduce live sessions)."""
        pending: dict[str, list[tuple[object, Message]]] = {}  # rig → (stream event, the message it came from)
        for msg in msgs:
            event = stream_event(msg)
            if isinstance(msg, (Steer, Tempo, TreatRequest, CardRequest)) and not self._may_control(msg):
                continue
            if event is not None:
                pending.setdefault(msg.node, []).append((event, msg))
            elif isinstance(msg, Steer):
                self.steer(msg)
            elif isinstance(msg, (Tempo, TreatRequest)):
                self.pass_on(msg)
            elif isinstance(msg, CardRequest):
                self.stage.card(msg)
            elif isinstance(msg, Hello):
                self.stage.hello(msg)
                if msg.role == "rig":
                    log.info("rig %s connected", msg.node)
            if msg.node in self.rigs or event is not None:
                self.stage.copy(msg.node, "in", msg)
        results: list[StepResult] = []
        states = [self.rig_state(node) for node in pending]
        stepped = step_streams([(state.stream, [e for e, _ in items]) for state, items in zip(states, pending.values())])
        for state, items, done in zip(states, pending.values(), stepped):
            self.counts["events"] += len(items)
            state.events += len(items)
            state.last_event = self.link.clock()
            by_event = {id(r.event): r for r in done}
            for event, msg in items:
                state.view.observe(msg)
                r = by_event.get(id(event))
                if r is not None:
                    self.respond(r, state)
            results += done
        return results

    def _may_control(self, msg: Steer | Tempo | TreatRequest | CardRequest) -> bool:
        """A control names its rig ('' : every rig); a sender that may steer only some rigs names one of them."""
        rigs = self.link.identity.rigs_of(msg.node)
        if rigs is None:
            return True
        if not msg.rig and len(rigs) == 1:
            msg.rig = next(iter(rigs))  # a rig's own key (or a tool for one rig) means that rig
        if msg.rig and msg.rig in rigs:
            return True
        self.counts["refused_controls"] += 1
        self.link.stats.dropped_in["not_your_rig"] += 1
        log.warning("refused a %s from %s for rig %r: it may steer only %s", msg.__struct_config__.tag, msg.node,
                    msg.rig or "(every rig)", ", ".join(sorted(rigs)) or "no rig")
        if isinstance(msg, Steer):
            self.link.send(SteerReply(applied=False, reason=f"{msg.node} may steer only {', '.join(sorted(rigs)) or 'no rig'}",
                                      layer=msg.layer, neuron=msg.neuron, factor=msg.factor, clear=msg.clear,
                                      skip_layer=msg.skip_layer), to=msg.node)
        return False

    def respond(self, r: StepResult, state: "RigState") -> None:
        self.step_ms.append(r.step_ms)
        hits = [NeuronHit(layer=h.layer, index=h.index, activation=h.activation, normalized=h.normalized,
                          label=self.labels.get(h.id, "")) for h in r.hits]
        to = r.event.node
        for h in hits if self.osc.enabled else ():
            self.osc.neuron(f"{h.layer}.{h.index}", h.normalized, h.activation, h.label, to)
        self.send_rig(Neurons(event_seq=r.event.seq, event_node=r.event.node, text=r.text, hits=hits,
                              step_ms=round(r.step_ms, 3)), to)
        sonifier = state.sonifier
        notes = sonifier.notes_for(r.hits, r.event.time, r.predicted_note)
        if notes:
            self.counts["accomp_notes"] += len(notes)
            self.send_rig(Accomp(notes=notes, event_seq=r.event.seq, chord=list(sonifier.chord or ()),
                                 key=str(sonifier.key or "")), to)
        reason = state.reward.check(r)
        if reason:
            self.counts["reward_requests"] += 1
            self.send_rig(TreatRequest(source="brain", request_id=state.reward.requests, why=reason), to)
        if self.stage.stages:
            self.stage.heard(to, r)

    def send_rig(self, msg: Message, rig: str) -> None:
        """To rig ``rig`` only (and a copy to each stage)."""
        self.link.send(msg, to=rig)
        self.stage.copy(rig, "out", msg)

    def pass_on(self, msg: Tempo | TreatRequest) -> None:
        """A tool's tempo change or treat button, to its rig (none named: every rig). The rig decides: its
        dispenser's caps judge a manual treat like any other request."""
        if isinstance(msg, TreatRequest) and msg.source == "brain":
            msg.source = "manual"  # only the brain's own rule speaks as the brain
        targets = [msg.rig] if msg.rig else list(self.rigs)
        if msg.rig and msg.rig not in self.rigs:
            self.counts["refused_controls"] += 1
            log.warning("refused a %s for rig %r: no such rig is playing (rigs: %s)", msg.__struct_config__.tag,
                        msg.rig, ", ".join(self.rigs) or "none yet")
            return
        for rig in targets:  # sent as the brain's own message: stamped with its node, seq and clock
            self.send_rig(msgspec.structs.replace(msg), rig)

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

    def steer(self, msg: Steer) -> None:
        try:
            if msg.rig and msg.rig not in self.rigs:
                raise ModelError(f"no rig called {msg.rig!r} is playing (rigs: {', '.join(self.rigs) or 'none yet'})")
            if msg.skip_layer:
                self.model.check_neuron(msg.layer)
            elif not msg.clear:
                self.model.check_neuron(msg.layer, msg.neuron)
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
                    steering.set(msg.layer, msg.neuron, msg.factor)
        except NeurojamError as exc:
            self.counts["refused_controls"] += 1
            log.warning("refused steering: %s", exc)
            self.link.send(SteerReply(applied=False, reason=str(exc), layer=msg.layer, neuron=msg.neuron,
                                      factor=msg.factor, clear=msg.clear, skip_layer=msg.skip_layer), to=msg.node)
            return
        self.link.send(SteerReply(applied=True, layer=msg.layer, neuron=msg.neuron, factor=msg.factor, clear=msg.clear,
                                  skip_layer=msg.skip_layer), to=msg.node)

    # -- run -------------------------------------------------------------------------------
    def step(self, timeout_ms: float = 5) -> list[StepResult]:
        msgs = self.link.receive(timeout_ms=timeout_ms)
        self.link.tick()
        return self.handle(msgs) if msgs else []

    def forget_idle_rigs(self) -> list[str]:
        """Rigs not heard for ``bridge.idle_rig_s`` lose their state (context, cache, band) and their place."""
        link, now = self.link, self.link.clock()
        idle = [node for node in self.rigs
                if now - getattr(link.peers.get(node), "last_heard", self.rigs[node].last_event) > self.config.bridge.idle_rig_s]
        for node in idle:
            self.rigs.pop(node).stream.close()
            link.forget(node)
            log.info("forgot rig %s: not heard for %.0f s", node, self.config.bridge.idle_rig_s)
        return idle

    def stats(self) -> dict:
        ms = sorted(self.step_ms)
        pick = (lambda q: round(ms[min(len(ms) - 1, int(len(ms) * q))], 3)) if ms else (lambda q: None)
        return {"node": "brain", "model": self.model.name, "bridge": self.link.stats_dict(), "counts": dict(self.counts),
                "rigs": {node: {"sonifier": dict(s.sonifier.counts),
                                "steering": {f"{k[0]}.{k[1]}": v for k, v in s.stream.steering.factors.items()},
                                "corruption": s.stream.steering.corruption.describe() if s.stream.steering.corruption
                                else ""}
                         for node, s in self.rigs.items()},
                "step_ms_p50": pick(0.5), "step_ms_p99": pick(0.99)}

    def run(self, seconds: float | None = None) -> None:
        self.link.hello(software=SOFTWARE)
        end = None if seconds is None else time.monotonic() + seconds
        next_stats = time.monotonic() + 1
        while not self.stop_event.is_set() and (end is None or time.monotonic() < end):
            self.step()
            if time.monotonic() >= next_stats:
                next_stats += 1
                self.forget_idle_rigs()
                self.stage.status()
                if self.recorder:
                    self.recorder.write_stats(self.stats())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for state in self.rigs.values():
            state.stream.close()
        self.link.close()
        self.osc.close()
        if self.recorder:
            self.recorder.write_stats(self.stats())
            self.recorder.close()


def run_brain(config: BrainSettings, seconds: float | None = None, session_dir: str | None = None) -> int:
    stop = threading.Event()

    def on_signal(*_) -> None:
        if stop.is_set():  # a second Ctrl-C: now, whatever is loading
            os._exit(130)
        stop.set()

    # Installed before the model loads: importing torch/transformer_lens can swallow a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    import torch

    if config.brain.device in ("auto", "cpu") and not torch.cuda.is_available():
        torch.set_num_threads(config.brain.cpu_threads)
    print(f"brain: loading {config.brain.model} ... (Ctrl-C stops)", flush=True)
    try:
        node = BrainNode(config, session_dir=session_dir)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    node.stop_event = stop
    node.on_new_rig = lambda rig: print(f"brain: serving rig {rig} (rigs: {', '.join(node.rigs)})", flush=True)
    if stop.is_set():
        node.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("brain: stopped while loading the model.", flush=True)
        return 130
    b = config.bridge
    print(f"brain: {node.model.name} on {node.model.device} ({node.model.n_layers} layers × {node.model.d_mlp} "
          f"neurons), listening on tcp://{b.bind_host}:{b.events_port}/{b.commands_port}; Ctrl-C to stop", flush=True)
    try:
        node.run(seconds)
    finally:
        node.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    s = node.stats()
    print(f"brain: stopped. {s['counts']['events']} events, {s['counts']['accomp_notes']} accompaniment notes, "
          f"step p50 {s['step_ms_p50']} ms, p99 {s['step_ms_p99']} ms", flush=True)
    return 0
