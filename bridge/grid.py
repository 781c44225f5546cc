"""The beat grid: beat ↔ time on the rig's clock, the only place this maths is written, with what "on the beat"
means and when an accompaniment note is due.

Beat ``b`` (fractional allowed) sits at ``anchor_time + (b - anchor_index) * 60 / tempo_bpm``.
The rig's :class:`rig.beat.BeatClock` keeps one and re-anchors it (tempo
changes, MIDI clock); every ``beat`` message carries one (:meth:`from_beat`),
so the brain, the session's jam view and the sims all compute the same grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridge.messages import AccompNote, Beat

ON_BEAT_S = 0.12
"""How far (seconds, either side) a press may be from a beat and still count as on it: the pet's figures, the
report and the brain's treat rule all use this one tolerance."""


@dataclass
class BeatGrid:
    anchor_time: float
    anchor_index: float = 0.0
    tempo_bpm: float = 120.0
    beats_per_bar: int = 4

    @classmethod
    def from_beat(cls, beat: Beat) -> "BeatGrid":
        return cls(beat.time, beat.index, beat.tempo_bpm, beat.beats_per_bar)

    @property
    def period(self) -> float:
        """Seconds per beat."""
        return 60.0 / self.tempo_bpm

    def beat_at(self, t: float) -> float:
        """Fractional beat index at time t."""
        return self.anchor_index + (t - self.anchor_time) / self.period

    def time_of_beat(self, index: float) -> float:
        return self.anchor_time + (index - self.anchor_index) * self.period

    def bar_of(self, t: float) -> int:
        return int(self.beat_at(t) // self.beats_per_bar)

    def offset_from_nearest(self, t: float) -> float:
        """Seconds from t to the nearest beat (signed: negative = early)."""
        b = self.beat_at(t)
        return (b - round(b)) * self.period

    def on_beat(self, t: float, tolerance_s: float = ON_BEAT_S) -> bool:
        return abs(self.offset_from_nearest(t)) <= tolerance_s

    def next_slot(self, t: float, subdivision: int) -> float:
        """The first 1/subdivision grid position at or after time t, as a fractional beat."""
        return math.ceil(self.beat_at(t) * subdivision - 1e-9) / subdivision


def due_time(note: AccompNote, grid: BeatGrid | None) -> float | None:
    """Rig time an accompaniment note is due: its own time, else its beat on the grid (None without a grid)."""
    if note.due_time is not None:
        return note.due_time
    return grid.time_of_beat(note.due_beat) if grid is not None and note.due_beat is not None else None
