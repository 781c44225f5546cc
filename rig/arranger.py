"""The rig's ear for clashes: the brain's notes never rub a semitone against what the human or the pet sounds now.

The brain chooses its notes tens of milliseconds before they sound and cannot know what the human will play in
between; the rig can. So at the instant a brain note is due, :class:`Arranger` checks it against the human's and
the pet's pitched notes sounding then: a semitone (or a minor ninth, or a major seventh: the same rub) away, the
note moves onto the clashing note's pitch class (an octave or unison doubling, in the human's key by the human's
own choice), or is dropped when that would rub with another or double a brain note. And when the human strikes a
note that rubs with a brain note already sounding, that brain note ends there (at :data:`MIN_NOTE_S` after its
onset at the earliest: a rub that short is not heard, a note that short is a click). The pet's drum pads (channel 10) have no pitch to rub.
Counted in the rig's stats: moved, dropped, cut.
"""

from __future__ import annotations

import threading
from collections import Counter

DRUM_CHANNEL = 9
MIN_NOTE_S = 0.025
"""A brain note cut for a rub still lasts this long (the score hears neither a rub under 30 ms nor counts a note
over 20 ms as a click)."""
RUB = (1, 11)
"""Interval classes that clash: a semitone, a major seventh / minor ninth."""


def rubs(a: int, b: int) -> bool:
    return (a - b) % 12 in RUB


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
        (dropped). ``busy``: pitches the brain sounds already (a move never doubles one of them)."""
        others = self.sounding()
        clashing = [o for o in others if rubs(pitch, o)]
        if not clashing:
            return pitch
        for o in clashing:
            moved = pitch + (1 if (o - pitch) % 12 == 1 else -1)
            if 0 <= moved <= 127 and moved not in busy and not any(rubs(moved, x) for x in others):
                self.counts["clash_moved"] += 1
                return moved
        self.counts["clash_dropped"] += 1
        return None
