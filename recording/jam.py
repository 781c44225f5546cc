"""A session's music on the rig's time line: notes per source, beats, treats, neuron frames.

Export, the session list, the demo's summary and the neuron report all read
a session through :func:`jam_from_log`, so they agree on what happened.
Brain notes are the ones the rig reports it played (``note`` with source
``brain``); a session without them (a replay, which has no rig) uses the
brain's ``accomp`` requests at their due times instead, played as the rig's
arranger would beside the human and the pet (:mod:`recording.arrangement`).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from bridge.grid import BeatGrid, due_time
from bridge.messages import Accomp, Beat, Neurons, Note, Pad, TrainingTrial, TreatResult
from recording.arrangement import arrange
from recording.log import SessionLog

SOURCES = ("pet", "human", "brain")


@dataclass
class PlayedNote:
    source: str
    start: float
    end: float
    note: int
    velocity: int
    channel: int


@dataclass
class Treat:
    time: float
    action: str  # dispensed | refused
    source: str
    refusal: str = ""
    """The refusal code (which cap, or which state), '' when dispensed."""
    reason: str = ""
    """The refusal in words."""
    beat_index: int = -1


@dataclass
class Jam:
    start: float
    end: float
    notes: list[PlayedNote] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)
    treats: list[Treat] = field(default_factory=list)
    pad_presses: list[float] = field(default_factory=list)
    neurons: list[Neurons] = field(default_factory=list)
    accomps: list[Accomp] = field(default_factory=list)
    trials: list[TrainingTrial] = field(default_factory=list)
    events: list = field(default_factory=list)
    """The rig's events (notes and beats) as it sent them: what the brain's answers refer to by (node, seq)."""
    restrikes: Counter = field(default_factory=Counter)
    """Note-ons, by source, of a (channel, pitch) that was still sounding."""
    stuck: list[PlayedNote] = field(default_factory=list)
    """Notes still sounding when the log ends (a rig that stopped cleanly leaves none)."""
    asked: list[PlayedNote] | None = None
    """A replay's brain notes as the brain asked for them, before the arranger (None: the rig reported what it
    played)."""
    arranged: Counter = field(default_factory=Counter)
    """What the arranger did to a replay's notes (moved, dropped, cut, merged)."""

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def count_by_source(self) -> Counter:
        return Counter(n.source for n in self.notes)

    def grid_at(self, t: float) -> BeatGrid | None:
        """The rig's grid as its last beat at or before rig time t announced it (the first beat's before that)."""
        if not self.beats:
            return None
        i = bisect.bisect_right(self._beat_times, t) - 1
        return BeatGrid.from_beat(self.beats[max(0, i)])

    def beat_at(self, t: float) -> float | None:
        grid = self.grid_at(t)
        return None if grid is None else grid.beat_at(t)

    def grid_of_beat(self, beat: float) -> BeatGrid | None:
        """The grid as the last beat at or before beat index ``beat`` announced it."""
        if not self.beats:
            return None
        i = bisect.bisect_right(self._beat_indices, beat) - 1
        return BeatGrid.from_beat(self.beats[max(0, i)])

    def time_of_beat(self, beat: float) -> float | None:
        grid = self.grid_of_beat(beat)
        return None if grid is None else grid.time_of_beat(beat)

    @cached_property
    def _beat_times(self) -> list[float]:  # read once the jam is built
        return [b.time for b in self.beats]

    @cached_property
    def _beat_indices(self) -> list[int]:
        return [b.index for b in self.beats]

    def accomp_time(self, note) -> float | None:
        """Rig time an accompaniment note was due."""
        return due_time(note, None if note.due_beat is None else self.grid_of_beat(note.due_beat))

    def on_beat_rate(self) -> float | None:
        """Share of pet presses on the beat (:meth:`bridge.grid.BeatGrid.on_beat`)."""
        if not self.pad_presses or not self.beats:
            return None
        hits = sum(1 for t in self.pad_presses if self.grid_at(t).on_beat(t))
        return hits / len(self.pad_presses)


def trial_strip(trials: list[TrainingTrial], n: int = 20) -> str:
    """The last n training trials at a glance: ● earned, ◉ success held back by the caps, ○ miss."""
    return "".join("●" if t.earned else "◉" if t.success else "○" for t in trials[-n:])


def jam_from_log(log: SessionLog) -> Jam:
    records = log.records
    rig_side = log.rig_side()
    # the jam's length is the rig's own clock: a replay's pings and heartbeats are stamped at replay time, hours
    # after the jam, and must not stretch it (nor hold its last notes until then)
    times = [m.time if isinstance(m, Beat) else m.t for m in rig_side] or \
        [r.msg.t for r in records if r.direction == "out"] or [r.time for r in records] or [0.0]
    jam = Jam(start=min(times), end=max(times))
    jam.events = [m for m in rig_side if isinstance(m, Beat) or (isinstance(m, Note) and m.on)]
    open_notes: dict[tuple[str, int, int], tuple[float, int]] = {}
    brain_played = False
    for r in records:
        m = r.msg
        if isinstance(m, Note):
            key = (m.source, m.channel, m.note)
            if m.source == "brain":
                brain_played = True
            if m.on:
                if key in open_notes:  # retrigger: close the previous one
                    jam.restrikes[m.source] += 1
                    s, v = open_notes.pop(key)
                    jam.notes.append(PlayedNote(m.source, s, m.t, m.note, v, m.channel))
                open_notes[key] = (m.t, m.velocity)
            elif key in open_notes:
                s, v = open_notes.pop(key)
                jam.notes.append(PlayedNote(m.source, s, m.t, m.note, v, m.channel))
        elif isinstance(m, Beat) and r.direction == "out":
            jam.beats.append(m)
        elif isinstance(m, Pad) and m.down:
            jam.pad_presses.append(m.t)
        elif isinstance(m, TreatResult):
            jam.treats.append(Treat(m.t, m.outcome, m.source, m.refusal or "", m.detail, m.beat_index))
        elif isinstance(m, Neurons):
            jam.neurons.append(m)
        elif isinstance(m, TrainingTrial):
            jam.trials.append(m)
        elif isinstance(m, Accomp):
            jam.accomps.append(m)
    for (source, channel, note), (s, v) in open_notes.items():  # still sounding at the end
        jam.notes.append(PlayedNote(source, s, max(s, jam.end), note, v, channel))
        jam.stuck.append(jam.notes[-1])
    if not brain_played:  # a replay has no rig: what the brain asked for, at its due times, ties extending
        requested = sorted(((jam.accomp_time(n), n) for a in jam.accomps for n in a.notes), key=lambda x: x[0])
        sounding: dict[tuple[int, int], PlayedNote] = {}
        for start, n in requested:
            if start is None:
                continue
            held = sounding.get((n.channel, n.note))
            if n.tie:  # as the rig plays it: a tie extends a sounding note; for one that has ended it starts nothing
                if held is not None and held.end >= start - 1e-6:
                    held.end = max(held.end, start + n.duration)
                continue
            if held is not None and held.end > start + 1e-6:
                jam.restrikes["brain"] += 1
                held.end = start
            played = PlayedNote("brain", start, start + n.duration, n.note, n.velocity, n.channel)
            sounding[(n.channel, n.note)] = played
            jam.notes.append(played)
        jam.asked = [dataclasses.replace(n) for n in jam.notes if n.source == "brain"]
        others = [n for n in jam.notes if n.source in ("human", "pet")]
        arranged, jam.arranged = arrange(jam.asked, others)
        jam.notes = [n for n in jam.notes if n.source != "brain"] + arranged
    jam.notes.sort(key=lambda n: (n.start, n.source, n.note))
    if jam.notes:
        jam.end = max(jam.end, max(n.end for n in jam.notes))
    for treat in jam.treats:  # a dispensed treat happened on its beat
        if treat.action == "dispensed" and treat.beat_index >= 0:
            bt = jam.time_of_beat(treat.beat_index)
            treat.time = treat.time if bt is None else bt
    return jam
