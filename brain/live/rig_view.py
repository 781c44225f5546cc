"""The brain's picture of the rig it answers: its beat grid, the key and chord the human is in, who played when.

One object, updated from the rig's messages in arrival order and read by the
sonifier (where the next slot is, which key and chord, is anyone playing) and
the reward rule (which bar, is the human mid-phrase).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from bridge.grid import BeatGrid
from bridge.messages import Beat, Message, Note
from core.units import KEY_TONICS, PERCUSSION_CHANNEL
from recording.harmony import Key, KeyTracker, beat_chord

if TYPE_CHECKING:
    from brain.config import SonifyConfig


class RigView:
    def __init__(self, human_memory: int = 24) -> None:
        self.grid: BeatGrid | None = None
        """None until the rig's first ``beat``."""
        self.human_notes: deque[tuple[float, int]] = deque(maxlen=human_memory)
        """(rig time, note) of the human's recent note-ons."""
        self.last_human_time = float("-inf")
        self.last_played = float("-inf")
        """Rig time of the last note-on from the human or the pet."""
        self.keys = KeyTracker()
        self._chord: tuple[int, int, int] | None = None

    def observe(self, msg: Message) -> None:
        if isinstance(msg, Beat):
            self.grid = BeatGrid.from_beat(msg)
        elif isinstance(msg, Note) and msg.on and msg.source in ("human", "pet"):
            self.last_played = max(self.last_played, msg.t)
            if msg.source == "human" and msg.channel != PERCUSSION_CHANNEL:
                self.human_notes.append((msg.t, msg.note))
                self.last_human_time = msg.t
                self.keys.add(msg.note)

    def key(self, config: "SonifyConfig") -> Key | None:
        """The tracked key once the human has played enough; None while the human's first notes are still too few
        to tell; the configured key when not following or when only the pet plays."""
        if config.follow_key and self.keys.notes:
            return self.keys.key if self.keys.confident else None
        return Key(KEY_TONICS.index(config.key), config.mode)

    def chord(self, key: Key, t: float, period: float) -> tuple[int, int, int]:
        """The chord for the next slot: the triad covering what the human played in the last beat before t
        (the note that triggered this event included); when the human was silent, the last chord."""
        recent = [n for when, n in self.human_notes if t - period - 1e-6 <= when <= t + 1e-6]
        chord = beat_chord(key, recent)
        if chord is not None:
            self._chord = chord
        elif self._chord is None or not set(self._chord) <= set(key.scale):
            self._chord = key.triads()[0]
        return self._chord
