"""What the brain tells the stages watching it (``neurojam stage``): a copy of each rig's traffic, a status
once a second, and neuron cards on request.

The stage is a read-only view plus a few controls, so it needs no model of its
own (it may run on a laptop beside a Pi): the brain sends it the frames it
already has (:class:`~bridge.messages.Monitor`), the health of each rig's link
(:class:`~bridge.messages.BrainStatus`) and, when someone clicks a neuron, its
card (:class:`~bridge.messages.NeuronCard`: label, max-activating examples from
the calibration corpus and from this session, the notes it promotes).
Nothing here is sent unless a stage said hello, so a jam without one pays nothing.
It returns ``(stage, message)`` answers and reads the wire and the rigs as
snapshots, so the brain core owns it and nothing here reaches back.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from bridge.identity import IdentityBook
from bridge.link import LinkSnapshot
from bridge.messages import (
    BrainStatus,
    CardExample,
    CardRequest,
    Heartbeat,
    Hello,
    Message,
    Monitor,
    NeuronCard,
    Ping,
    Pong,
    RigHealth,
    encode,
)
from core.errors import ModelError

if TYPE_CHECKING:
    from brain.models import LoadedModel
    from brain.units.features import FeatureSet
    from brain.neuron_stats import NeuronStats
    from brain.stream import StepResult

SESSION_EXAMPLES = 5
CONTEXT_WORDS = 8
UNWATCHED = (Hello, Heartbeat, Ping, Pong)


@dataclass
class RigSnapshot:
    """One rig as the core sees it, for the status line."""

    node: str
    events: int
    steering: dict[tuple[int, int], float]
    corruption: str


class StageFeed:
    def __init__(self, identity: IdentityBook, model: "LoadedModel", stats: "NeuronStats | None",
                 labels: dict[str, str], features: "FeatureSet | None" = None) -> None:
        """``features``: the brain plays the dictionary's features (cards and the status say so)."""
        self.identity, self.model, self.stats, self.labels = identity, model, stats, labels
        self.features = features
        self.units = "features" if features is not None else "neurons"
        self.stages: set[str] = set()
        """Node ids of the stages that said hello (each gets every copy)."""
        self._recent: dict[str, deque[str]] = {}  # rig → its last words
        self._examples: dict[str, list[tuple[float, int, list[str]]]] = {}  # 'L.N' → min-heap of the session's best
        self._count = 0

    def hello(self, msg: Hello) -> None:
        if msg.role == "stage":
            self.stages.add(msg.node)

    def copy(self, rig: str, direction: str, msg: Message, wire: LinkSnapshot) -> list[tuple[str, Message]]:
        """A frame received from (``in``) or sent to (``out``) rig ``rig``, for each live stage that may see it."""
        if not self.stages or isinstance(msg, UNWATCHED):
            return []
        frame = encode(msg)
        return [(stage, Monitor(rig=rig, direction=direction, frame=frame)) for stage in self.stages
                if wire.alive(stage) and self.identity.may_see(stage, rig)]

    def heard(self, rig: str, result: "StepResult") -> None:
        """Keep the session's strongest firings per neuron (for the card's "in this session")."""
        recent = self._recent.setdefault(rig, deque(maxlen=CONTEXT_WORDS))
        recent.extend(result.text.split())
        words = list(recent)
        for hit in result.hits:
            heap = self._examples.setdefault(hit.id, [])
            self._count += 1
            item = (hit.normalized, self._count, words)
            if len(heap) < SESSION_EXAMPLES:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)

    def status(self, rigs: list[RigSnapshot], wire: LinkSnapshot, *, step_ms_p50: float | None,
               step_ms_p99: float | None) -> list[tuple[str, Message]]:
        stages = [s for s in self.stages if wire.alive(s)]
        if not stages:
            return []
        health = []
        for rig in rigs:
            last = wire.last_heard.get(rig.node)
            age = None if last is None else round(wire.now - last, 3)
            offset = wire.offsets.get(rig.node)
            health.append(RigHealth(
                node=rig.node, alive=age is not None and age < wire.liveness_s, last_heard_age_s=age,
                clock_offset_s=round(offset[0], 6) if offset else None,
                rtt_ms=round(offset[1] * 1000, 3) if offset else None,
                lost_in_gaps=wire.gaps.get(rig.node, 0), events=rig.events,
                steering={f"{lay}.{n}": f for (lay, n), f in rig.steering.items()}, corruption=rig.corruption))
        status = BrainStatus(model=self.model.name, device=str(self.model.device), n_layers=self.model.n_layers,
                             d_mlp=self.model.d_mlp, rigs=health, dropped_in=dict(wire.dropped_in),
                             dropped_out=dict(wire.dropped_out), step_ms_p50=step_ms_p50, step_ms_p99=step_ms_p99,
                             units=self.units, labels=self._labels_line())
        out = []
        for stage in stages:
            offset = wire.offsets.get(stage)
            mine = msgspec.structs.replace(status, rigs=[r for r in health if self.identity.may_see(stage, r.node)])
            mine.stage_clock_offset_s = round(offset[0], 6) if offset else None
            out.append((stage, mine))
        return out

    def _labels_line(self) -> str:
        if self.features is None:
            return ""
        from brain.units.features import summary_line

        return summary_line(self.features)

    def card(self, req: CardRequest) -> tuple[str, NeuronCard]:
        try:
            self.model.check_neuron(req.layer, None if self.features else req.neuron)
            if self.features is not None:
                self.features.dictionary.check_feature(req.layer, req.neuron)
        except ModelError as exc:  # out of range
            return req.node, NeuronCard(layer=req.layer, neuron=req.neuron, error=str(exc), units=self.units)
        nid = f"{req.layer}.{req.neuron}"
        corpus = [CardExample(words=list(e["tokens"])[-CONTEXT_WORDS:], acts=list(e["acts"])[-CONTEXT_WORDS:])
                  for e in (self.stats.top_examples.get(nid, []) if self.stats else [])]
        session = [CardExample(words=words, acts=[0.0] * (len(words) - 1) + [round(act, 3)])
                   for act, _, words in sorted(self._examples.get(nid, []), reverse=True)]
        expects, label = "", self.labels.get(nid, "")
        if self.features is not None:
            from brain.units.features import expects_line

            expects, label = expects_line(self.features, nid), self.features.reads(nid)
        return req.node, NeuronCard(layer=req.layer, neuron=req.neuron, label=label,
                                    corpus=corpus, session=session, promotes=self._promotes(req), units=self.units,
                                    expects=expects)

    def _promotes(self, req: CardRequest) -> list[str]:
        from brain.encoder import note_word
        from brain.logit_effect import top_promoted

        if self.features is not None:
            from brain.units.features import top_promoted_by_feature

            pairs = top_promoted_by_feature(self.model, self.features.dictionary, req.layer, req.neuron)
        else:
            pairs = top_promoted(self.model, req.layer, req.neuron)
        return [f"{note_word(n)} {effect:+.2f}" for n, effect in pairs]
