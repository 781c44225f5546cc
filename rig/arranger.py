"""The rig's ear for clashes: the brain's notes never rub a semitone against what the human or the pet sounds now.

The brain chooses its notes tens of milliseconds before they sound and cannot know what the human will play in
between; the rig can. So at the instant a brain note is due, :class:`Arranger` checks it against the human's and
the pet's pitched notes sounding then, by the rule in :mod:`recording.arrangement` (the one a replay is scored by):
a semitone (or a minor ninth, or a major seventh: the same rub) away, the note moves onto the clashing note's pitch
class, or is dropped when that would rub with another or double a brain note. And when the human strikes a note that
rubs with a brain note already sounding, that brain note ends there (the scheduler's ``give_way``, at
:data:`MIN_NOTE_S` after its onset at the earliest). A brain note that would crowd a sounding note (a unison or a
step away: one voice to the ear) sounds an octave away instead. Counted in the rig's stats: moved, dropped, cut,
moved an octave.
"""

from __future__ import annotations

import threading
from collections import Counter

from recording.arrangement import DRUM_CHANNEL, MIN_NOTE_S, place, rubs

__all__ = ["Arranger", "DRUM_CHANNEL", "MIN_NOTE_S", "rubs"]


class Arranger:
    def __init__(self) -> None:
        self._sounding: Counter = Counter()  # the human's and the pet's pitched notes sounding now
        self._lock = threading.Lock()
        self.counts: Counter = Counter()

    def heard(self, note: int, on: bool, channel: int = 0) -> None:
        """A human or pet note starting or ending (drums ignored)."""
        if channel == DRUM_CHANNEL:
            return
        with self._lock:
            if on:
                self._sounding[note] += 1
            elif self._sounding[note] > 1:
                self._sounding[note] -= 1
            else:
                self._sounding.pop(note, None)

    def sounding(self) -> list[int]:
        with self._lock:
            return list(self._sounding)

    def place(self, pitch: int, busy: set[int] = frozenset()) -> int | None:
        """Where a brain note due now should sound: ``pitch``, moved onto a rubbing note's pitch class, or None
        (dropped); then an octave away from a note it crowds. ``busy``: pitches the brain sounds already (a move
        never doubles one of them)."""
        return place(pitch, self.sounding(), busy, self.counts)
