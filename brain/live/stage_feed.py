"""What the brain tells the stages watching it (``neurojam stage``): a copy of each rig's traffic, a status
once a second, and neuron cards on request.

The stage is a read-only view plus a few controls, so it needs no model of its
own (it may run on a laptop beside a Pi): the brain sends it the frames it
already has (:class:`~bridge.messages.Monitor`), the health of each rig's link
(:class:`~bridge.messages.BrainStatus`) and, when someone clicks a neuron, its
card (:class:`~bridge.messages.NeuronCard`: label, max-activating examples from
the calibration corpus and from this session, the notes it promotes).
Nothing here is sent unless a stage said hello, so a jam without one pays nothing.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING

import msgspec

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
    from brain.live.node import BrainNode
    from brain.stream import StepResult

SESSION_EXAMPLES = 5
CONTEXT_WORDS = 8
UNWATCHED = (Hello, Heartbeat, Ping, Pong)


class StageFeed:
    def __init__(self, node: "BrainNode") -> None:
        self.node = node
        self.stages: set[str] = set()
        """Node ids of the stages that said hello (each gets every copy)."""
        self._recent: dict[str, deque[str]] = {}  # rig → its last words
        self._examples: dict[str, list[tuple[float, int, list[str]]]] = {}  # 'L.N' → min-heap of the session's best
        self._count = 0

    def hello(self, msg: Hello) -> None:
        if msg.role == "stage":
            self.stages.add(msg.node)

    def _live_stages(self) -> list[str]:
        link, now = self.node.link, self.node.link.clock()
        return [s for s in self.stages if s in link.peers and now - link.peers[s].last_heard < link.liveness_s]

    def copy(self, rig: str, direction: str, msg: Message) -> None:
        """Pass a frame received from (``in``) or sent to (``out``) rig ``rig`` to each stage watching."""
        if not self.stages or isinstance(msg, UNWATCHED):
            return
        frame = encode(msg)
        for stage in self._live_stages():
            if not self.node.link.identity.may_see(stage, rig):
                continue
            self.node.link.send(Monitor(rig=rig, direction=direction, frame=frame), to=stage, record=False)

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

    def status(self) -> None:
        stages = self._live_stages() if self.stages else []
        if not stages:
            return
        node, link = self.node, self.node.link
        now = link.clock()
        rigs = []
        for name, state in node.rigs.items():
            peer, offset = link.peers.get(name), link.peer_offsets.get(name)
            age = None if peer is None else round(now - peer.last_heard, 3)
            rigs.append(RigHealth(
                node=name, alive=age is not None and age < link.liveness_s, last_heard_age_s=age,
                clock_offset_s=round(offset.offset, 6) if offset and offset.ready else None,
                rtt_ms=round(offset.rtt * 1000, 3) if offset and offset.ready else None,
                lost_in_gaps=link.peer_gaps.get(name, 0),
                events=state.events,
                steering={f"{lay}.{n}": f for (lay, n), f in state.stream.steering.factors.items()},
                corruption=state.stream.steering.corruption.describe() if state.stream.steering.corruption else ""))
        s = node.stats()
        status = BrainStatus(model=node.model.name, device=str(node.model.device), n_layers=node.model.n_layers,
                             d_mlp=node.model.d_mlp, rigs=rigs, dropped_in=dict(link.stats.dropped_in),
                             dropped_out=dict(link.stats.dropped_out), step_ms_p50=s["step_ms_p50"],
                             step_ms_p99=s["step_ms_p99"])
        for stage in stages:
            offset = link.peer_offsets.get(stage)
            status = msgspec.structs.replace(status, rigs=[r for r in rigs if link.identity.may_see(stage, r.node)])
            status.stage_clock_offset_s = round(offset.offset, 6) if offset and offset.ready else None
            link.send(status, to=stage, record=False)

    def card(self, req: CardRequest) -> None:
        node = self.node
        try:
            node.model.check_neuron(req.layer, req.neuron)
        except ModelError as exc:  # out of range
            node.link.send(NeuronCard(layer=req.layer, neuron=req.neuron, error=str(exc)), to=req.node, record=False)
            return
        nid = f"{req.layer}.{req.neuron}"
        stats = node.neuron_stats
        corpus = [CardExample(words=list(e["tokens"])[-CONTEXT_WORDS:], acts=list(e["acts"])[-CONTEXT_WORDS:])
                  for e in (stats.top_examples.get(nid, []) if stats else [])]
        session = [CardExample(words=words, acts=[0.0] * (len(words) - 1) + [round(act, 3)])
                   for act, _, words in sorted(self._examples.get(nid, []), reverse=True)]
        node.link.send(NeuronCard(layer=req.layer, neuron=req.neuron, label=node.labels.get(nid, ""),
                                  corpus=corpus, session=session, promotes=self._promotes(req)),
                       to=req.node, record=False)

    def _promotes(self, req: CardRequest) -> list[str]:
        from brain.encoder import note_word
        from brain.logit_effect import top_promoted

        return [f"{note_word(n)} {effect:+.2f}" for n, effect in top_promoted(self.node.model, req.layer, req.neuron)]
