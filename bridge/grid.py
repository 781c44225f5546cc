"""The beat grid: beat ↔ time on the rig's clock, the only place this maths is written.

Beat ``b`` (fractional allowed) sits at ``anchor_time + (b - anchor_index) * 60 / tempo_bpm``.
The rig's :class:`rig.beat.BeatClock` keeps one and re-anchors it (tempo
changes, MIDI clock); every ``beat`` message carries one (:meth:`from_beat`),
so the brain, the session's jam view and the sims all compute the same grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridge.messages import Beat


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

    def next_slot(self, t: float, subdivision: int) -> float:
        """The first 1/subdivision grid position at or after time t, as a fractional beat."""
        return math.ceil(self.beat_at(t) * subdivision - 1e-9) / subdivision
