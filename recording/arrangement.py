"""The arranger's rule, in one place for the rig that plays it live and for a replay that the rig never played.

A brain note rubs with a human or pet note sounding with it a semitone (or a major seventh / minor ninth: the same
rub) away. At its onset it moves onto the rubbing note's pitch class (a doubling the human chose), or is dropped when
that would rub with another or double a brain note; a human or pet note that starts while a brain note it rubs with
sounds ends that brain note there, never under :data:`MIN_NOTE_S` after its onset. The pet's drum pads have no pitch.

Registers apart: a brain note that crowds a sounding human or pet note (the same pitch, or a step away: the ear
hears one voice, and the brain's is lost in the human's) moves an octave away from it (:func:`apart`), where it
crowds none and doubles no brain note. An octave keeps the pitch class, so key, chord and rubs are as before.

``rig/arranger.py`` applies :func:`place` at the rig's clock; :func:`arrange` applies the same rule to the notes a
replay's brain asked for (a replay has no rig), so ``neurojam score`` hears a replay as the rig would play it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Protocol, TypeVar


class Sounding(Protocol):
    """A note with a span (``recording.jam.PlayedNote``)."""

    start: float
    end: float
    note: int
    channel: int


N = TypeVar("N", bound=Sounding)

DRUM_CHANNEL = 9
MIN_NOTE_S = 0.025
"""A brain note cut for a rub still lasts this long (the score hears neither a rub under 30 ms nor counts a note
over 20 ms as a click)."""
RUB = (1, 11)
"""Interval classes that clash: a semitone, a major seventh / minor ninth."""


CROWD = 2
"""A brain note this many semitones or fewer from a sounding human or pet note (a unison included) crowds it."""


def crowds(a: int, b: int) -> bool:
    return abs(a - b) <= CROWD


def apart(pitch: int, sounding: list[int], busy: set[int] = frozenset()) -> int:
    """Where a brain note due now is heard as a voice of its own: ``pitch``, or an octave away from the sounding note
    it crowds (below it if it was at or under that note, else above; the other way where that crowds another note
    or doubles a brain note ``busy`` sounds); ``pitch`` where neither is free."""
    near = [o for o in sounding if crowds(pitch, o)]
    if not near:
        return pitch
    for shift in ((-12, 12) if pitch <= near[0] else (12, -12)):
        moved = pitch + shift
        if 0 <= moved <= 127 and moved not in busy and not any(crowds(moved, o) for o in sounding):
            return moved
    return pitch


def rubs(a: int, b: int) -> bool:
    return (a - b) % 12 in RUB


def clear_of_rubs(pitch: int, sounding: list[int], busy: set[int] = frozenset()) -> int | None:
    """Where a brain note due now should sound, given the human's and the pet's pitched notes ``sounding``:
    ``pitch``, moved a semitone onto a rubbing note's pitch class, or None (dropped). ``busy``: pitches the brain
    sounds already (a move never doubles one of them)."""
    clashing = [o for o in sounding if rubs(pitch, o)]
    if not clashing:
        return pitch
    for o in clashing:
        moved = pitch + (1 if (o - pitch) % 12 == 1 else -1)
        if 0 <= moved <= 127 and moved not in busy and not any(rubs(moved, x) for x in sounding):
            return moved
    return None


def place(pitch: int, sounding: list[int], busy: set[int], counts: Counter) -> int | None:
    """Where a brain note due now sounds beside ``sounding``: off any rub (:func:`clear_of_rubs`), then apart from a
    note it crowds (:func:`apart`); None: dropped. What it did is counted in ``counts`` (the rig's stats' names)."""
    placed = clear_of_rubs(pitch, sounding, busy)
    if placed is None:
        counts["clash_dropped"] += 1
        return None
    if placed != pitch:
        counts["clash_moved"] += 1
    spaced = apart(placed, sounding, busy)
    if spaced != placed:
        counts["register_moved"] += 1
    return spaced


def arrange(brain: list[N], others: list[Sounding]) -> tuple[list[N], Counter]:
    """The brain's notes as the rig's arranger plays them beside ``others`` (the human's and the pet's), in time order
    as the rig meets them, and what it did (moved, dropped, cut, merged, moved an octave: the rig's stats' names). A
    brain note due on a (channel, pitch) still sounding merges into it, as at the rig. One pass: what sounds at each moment is kept
    as it goes (an hour's session is as quick as a minute's, per note)."""
    pitched = [o for o in others if o.channel != DRUM_CHANNEL]
    events = sorted([(o.start, 0, i) for i, o in enumerate(pitched)] + [(n.start, 1, i) for i, n in enumerate(brain)])
    counts: Counter = Counter()
    out: list[N] = []
    human: list[Sounding] = []  # the human's and the pet's notes sounding now
    ringing: list[N] = []  # the brain's notes sounding now
    for t, kind, i in events:
        human = [o for o in human if o.end > t]
        ringing = [b for b in ringing if b.end > t]
        if kind == 0:  # a human or pet note starts: the brain's notes it rubs with end here (never into a click)
            for b in ringing:
                if rubs(b.note, pitched[i].note):
                    counts["clash_cut"] += 1
                    b.end = max(t, b.start + MIN_NOTE_S)
            human.append(pitched[i])
            continue
        n = brain[i]
        pitch = place(n.note, [o.note for o in human],
                      {b.note for b in ringing if (b.channel, b.note) != (n.channel, n.note)}, counts)
        if pitch is None:
            continue
        held = next((b for b in ringing if (b.channel, b.note) == (n.channel, pitch)), None)
        if held is not None:  # sounding already: it rings on to this note's end, no second attack
            held.end = max(n.end, held.start)
            counts["merged"] += 1
            continue
        played = replace(n, note=pitch)
        out.append(played)
        ringing.append(played)
    return out, counts
