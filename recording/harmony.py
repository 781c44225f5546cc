"""Keys and chords: a key tracker for live use and the chord of a beat, shared by the sonifier and the score.

The key tracker is Krumhansl–Schmuckler key finding (Krumhansl–Kessler
profiles correlated with a decaying pitch-class histogram) with hysteresis:
the key changes only when another key has led for several notes in a row,
so one passing note does not move the band. The chord of a beat is the
diatonic triad of the key that covers most of the pitch classes sounding in
it (ties go to I, IV or V, then to the triad built on, then holding, the lowest note). The score finds the key
independently, with music21.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.units import KEY_TONICS

MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
PRIMARY = (0, 3, 4)
"""Indices of I, IV and V among a key's triads."""


@dataclass(frozen=True)
class Key:
    tonic: int
    """Pitch class 0..11."""
    mode: str
    """'major' or 'minor' (natural minor's pitch classes)."""

    @property
    def scale(self) -> tuple[int, ...]:
        steps = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        return tuple((self.tonic + s) % 12 for s in steps)

    @property
    def signature_tonic(self) -> int:
        """The major tonic of this key's signature: the same for a key and its relative minor."""
        return self.tonic if self.mode == "major" else (self.tonic + 3) % 12

    def triads(self) -> list[tuple[int, int, int]]:
        """The seven diatonic triads, (root, third, fifth) pitch classes, from the tonic up."""
        s = self.scale
        return [(s[i], s[(i + 2) % 7], s[(i + 4) % 7]) for i in range(7)]

    def __str__(self) -> str:
        return f"{KEY_TONICS[self.tonic]} {self.mode}"


ALL_KEYS = [Key(t, m) for m in ("major", "minor") for t in range(12)]


def _centered(profile: tuple[float, ...]) -> tuple[list[float], float]:
    mean = sum(profile) / 12
    centered = [y - mean for y in profile]
    return centered, sum(y * y for y in centered)


_CENTERED = {"major": _centered(MAJOR_PROFILE), "minor": _centered(MINOR_PROFILE)}


def key_scores(hist: list[float]) -> dict[Key, float]:
    """Each key's Pearson correlation of its profile with the histogram rotated to its tonic. A rotation keeps the
    histogram's mean and spread, so they are computed once (this runs for every note of every rig, live)."""
    mean = sum(hist) / 12
    xs = [h - mean for h in hist]
    spread = sum(x * x for x in xs)
    out = {}
    for k in ALL_KEYS:
        profile, profile_spread = _CENTERED[k.mode]
        den = math.sqrt(spread * profile_spread)
        out[k] = sum(xs[(k.tonic + i) % 12] * y for i, y in enumerate(profile)) / den if den else 0.0
    return out


class KeyTracker:
    """The key the human is in, updated note by note, with hysteresis."""

    def __init__(self, default: Key = Key(0, "major"), *, decay: float = 0.97, min_notes: int = 8,
                 switch_after: int = 8, margin: float = 0.05) -> None:
        self.key = default
        self.decay, self.min_notes, self.switch_after, self.margin = decay, min_notes, switch_after, margin
        self.hist = [0.0] * 12
        self.notes = 0
        self._challenger: Key | None = None
        self._lead = 0
        self.changes = 0

    @property
    def confident(self) -> bool:
        """Enough notes heard to trust the key (before that, the configured default)."""
        return self.notes >= self.min_notes

    def add(self, note: int, weight: float = 1.0) -> Key:
        self.hist = [h * self.decay for h in self.hist]
        self.hist[note % 12] += weight
        self.notes += 1
        scores = key_scores(self.hist)
        best = max(scores, key=scores.get)
        if self.notes == self.min_notes:  # the first estimate: take it
            self.key, self._lead = best, 0
        elif best != self.key and scores[best] > scores[self.key] + self.margin:
            self._lead = self._lead + 1 if best == self._challenger else 1
            self._challenger = best
            if self._lead >= self.switch_after:
                self.key, self._lead, self._challenger = best, 0, None
                self.changes += 1
        else:
            self._lead, self._challenger = 0, None
        return self.key


def beat_chord(key: Key, notes: list[int]) -> tuple[int, int, int] | None:
    """The diatonic triad of ``key`` covering most of ``notes``' pitch classes (None for no notes).
    Ties, as a harmonizer would break them: a primary triad (I, IV, V), then the triad built on the lowest note,
    then one that holds it, then the one nearest the tonic."""
    if not notes:
        return None
    pcs = {n % 12 for n in notes}
    low = min(notes) % 12
    triads = key.triads()
    return max(triads, key=lambda tri: (len(pcs & set(tri)), triads.index(tri) in PRIMARY, tri[0] == low, low in tri,
                                        -triads.index(tri)))
