"""The stage's picture of the jam: the brain's copies of each rig's traffic → small JSON events for the page.

Every time on the page is on the stage's own monotonic clock (the browser maps
it to ``performance.now()``): a rig's time becomes the brain's by the rig's
clock offset and the stage's by this stage's offset, both measured by the
brain's pings and sent in its status. Each event that answers a rig event
(``neurons``, the brain's notes) carries ``event_t``, when that event left the
rig, so the page can measure what the audience sees: event out → painted.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from bridge.grid import BeatGrid, due_time
from bridge.messages import (
    Accomp,
    Beat,
    BrainStatus,
    FrameError,
    Message,
    Monitor,
    NeuronCard,
    Neurons,
    Note,
    SteerReply,
    TrainingTrial,
    TreatRequest,
    TreatResult,
    decode,
)
from core.units import note_name

class RigPicture:
    """What the stage knows of one rig: its grid, its recent events (for a page that opens late)."""

    def __init__(self, history_s: float) -> None:
        self.grid: BeatGrid | None = None
        self.history: deque[dict] = deque()
        self.history_s = history_s
        self.event_t: dict[int, float] = {}  # the rig's event seq → when it left the rig (stage clock)

    def keep(self, event: dict, now: float) -> None:
        self.history.append(event)
        while self.history and now - self.history[0]["t"] > self.history_s:
            self.history.popleft()
        if len(self.event_t) > 4096:
            for seq in sorted(self.event_t)[:2048]:
                del self.event_t[seq]


class JamView:
    def __init__(self, history_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.history_s = history_s
        self.rigs: dict[str, RigPicture] = {}
        self.status: dict | None = None
        self.rig_offsets: dict[str, float] = {}  # rig clock − brain clock
        self.stage_offset = 0.0  # stage clock − brain clock
        self.bad_frames = 0

    def to_stage(self, rig: str, t: float) -> float:
        return t - self.rig_offsets.get(rig, 0.0) + self.stage_offset

    def read(self, msg: Message) -> list[dict]:
        """One message from the brain → the page events it makes (none for what the page does not show)."""
        if isinstance(msg, Monitor):
            try:
                inner = decode(msg.frame)
            except FrameError:
                self.bad_frames += 1
                return []
            return self._rig_event(msg.rig, msg.direction, inner)
        if isinstance(msg, BrainStatus):
            return [self._status(msg)]
        if isinstance(msg, NeuronCard):
            return [{"type": "card", "id": f"{msg.layer}.{msg.neuron}", "label": msg.label, "error": msg.error,
                     "corpus": [{"words": e.words, "acts": e.acts} for e in msg.corpus],
                     "session": [{"words": e.words, "acts": e.acts} for e in msg.session], "promotes": msg.promotes,
                     "units": msg.units, "expects": msg.expects}]
        if isinstance(msg, SteerReply):
            return [{"type": "steer_reply", "applied": msg.applied, "id": f"{msg.layer}.{msg.neuron}",
                     "factor": msg.factor, "clear": msg.clear, "reason": msg.reason, "t": self.clock(),
                     "skip_layer": msg.skip_layer, "units": msg.units, "play": msg.play}]
        return []

    def _status(self, msg: BrainStatus) -> dict:
        if msg.stage_clock_offset_s is not None:
            self.stage_offset = msg.stage_clock_offset_s
        for r in msg.rigs:
            if r.clock_offset_s is not None:
                self.rig_offsets[r.node] = r.clock_offset_s
        self.status = {"type": "status", "model": msg.model, "device": msg.device, "n_layers": msg.n_layers,
                       "d_mlp": msg.d_mlp, "step_ms_p50": msg.step_ms_p50, "step_ms_p99": msg.step_ms_p99,
                       "dropped_in": msg.dropped_in, "dropped_out": msg.dropped_out, "units": msg.units,
                       "labels": msg.labels,
                       "rigs": [{"node": r.node, "alive": r.alive, "last_heard_age_s": r.last_heard_age_s,
                                 "clock_offset_ms": None if r.clock_offset_s is None else round(r.clock_offset_s * 1e3, 3),
                                 "rtt_ms": r.rtt_ms, "lost_in_gaps": r.lost_in_gaps, "events": r.events,
                                 "steering": r.steering, "corruption": r.corruption} for r in msg.rigs]}
        return self.status

    def _rig_event(self, rig: str, direction: str, m: Message) -> list[dict]:
        pic = self.rigs.get(rig)
        if pic is None:
            pic = self.rigs[rig] = RigPicture(self.history_s)
        now = self.clock()
        events: list[dict] = []
        if isinstance(m, Beat):
            pic.grid = BeatGrid.from_beat(m)
            events.append({"type": "beat", "t": self.to_stage(rig, m.time), "index": m.index, "bar": m.bar,
                           "beat": m.beat, "beats_per_bar": m.beats_per_bar, "bpm": m.tempo_bpm})
        elif isinstance(m, Note) and direction == "in" and m.source != "brain":
            t = self.to_stage(rig, m.t)
            if m.on:
                pic.event_t[m.seq] = t
            events.append({"type": "note" if m.on else "off", "t": t, "source": m.source, "note": m.note,
                           "name": note_name(m.note), "velocity": m.velocity, "event_t": t})
        elif isinstance(m, Accomp):
            event_t = pic.event_t.get(m.event_seq)
            for n in m.notes:
                due = due_time(n, pic.grid)
                if due is None:
                    continue
                events.append({"type": "note", "t": self.to_stage(rig, due), "source": "brain", "note": n.note,
                               "name": note_name(n.note), "velocity": n.velocity, "duration": n.duration,
                               "neurons": n.neurons, "event_t": event_t})
        elif isinstance(m, Neurons):
            events.append({"type": "neurons", "t": now, "event_t": pic.event_t.get(m.event_seq), "text": m.text,
                           "step_ms": m.step_ms, "units": m.units,
                           "hits": [{"id": f"{h.layer}.{h.index}", "act": round(h.activation, 3),
                                     "norm": round(h.normalized, 3), "label": h.label} for h in m.hits]})
        elif isinstance(m, TreatResult):
            events.append({"type": "treat", "t": now, "outcome": m.outcome, "source": m.source,
                           "refusal": m.refusal, "detail": m.detail})
        elif isinstance(m, TreatRequest) and direction == "out":
            events.append({"type": "treat_request", "t": now, "source": m.source, "why": m.why})
        elif isinstance(m, TrainingTrial):
            events.append({"type": "trial", "t": now, "pet": m.pet, "level": m.level_after, "level_name": m.level_name,
                           "success": m.success, "earned": m.earned, "offset_ms": m.offset_ms})
        for e in events:
            e["rig"] = rig
            pic.keep(e, now)
        return events

    def snapshot(self) -> list[dict]:
        """What a page that opens now is sent first: the status and each rig's recent history."""
        out = [self.status] if self.status else []
        for pic in self.rigs.values():
            out += list(pic.history)
        return out
