"""Notes as text: the one encoder shared by the live brain and model training.

Words are space-separated: a pitch (``C4``, ``F#3``; sharps only, MIDI 0-127),
a bar line ``|`` on each downbeat, and ``r`` for a beat in which nobody
played. Sources are *not* marked in the text — the pet's pads and the human's
keys both become pitches — so the live text stays in the language the default
model was trained on; which source made each word is kept beside the text in
:class:`EventSpan`. Tokens are mapped back to events by character offsets,
never by token index, because every tokenizer cuts the same text differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from core.units import PITCH_CLASSES, note_name

BAR = "|"
REST = "r"
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>")


def note_word(note: int) -> str:
    """MIDI number → word; 60 → 'C4'."""
    return note_name(note)


def word_note(word: str) -> int | None:
    """Word → MIDI number, or None for a bar line, rest or unknown word."""
    for name in sorted(PITCH_CLASSES, key=len, reverse=True):
        if word.startswith(name):
            try:
                octave = int(word[len(name):])
            except ValueError:
                return None
            note = (octave + 1) * 12 + PITCH_CLASSES.index(name)
            return note if 0 <= note <= 127 else None
    return None


def vocabulary() -> list[str]:
    """Every word the encoder can emit, specials first (the tokenizer's vocab)."""
    return [*SPECIAL_TOKENS, BAR, REST, *(note_word(n) for n in range(128))]


@dataclass(frozen=True)
class EventSpan:
    """Where one event's word sits in the text. ``kind`` is note, bar or rest."""

    start: int
    end: int
    kind: str
    source: str = ""
    note: int = -1
    event_id: int = -1
    time: float = 0.0


class NoteText:
    """A growing text of note words with the span of every event.

    ``add_note`` / ``add_beat`` append words; ``trim`` drops the oldest words
    so the text stays a rolling window (spans are re-based, ids kept).
    """

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[EventSpan] = []
        self._notes_since_beat = 0
        self._last_melody: str | None = None

    def _append(self, word: str, **info) -> EventSpan:
        start = len(self.text) + (1 if self.text else 0)
        self.text = f"{self.text} {word}" if self.text else word
        span = EventSpan(start=start, end=start + len(word), **info)
        self.spans.append(span)
        return span

    def add_note(self, note: int, source: str, event_id: int = -1, time: float = 0.0, drum: bool = False) -> EventSpan:
        """A note-on. A drum hit (a pet's kick or snare pad, General MIDI channel 10) has no pitch the melody
        corpus knows (its C2/D2 words were never trained on), so it is written as a repeat of the last melody
        note (a rest before any): of the ways tried, the one that disturbs the model's reading of the tune least
        (the card's "pet's words", recomputed by ``python -m brain.science.check_card``)."""
        self._notes_since_beat += 1
        word = (self._last_melody or REST) if drum else note_word(note)
        if not drum:
            self._last_melody = word
        return self._append(word, kind="note", source=source, note=note, event_id=event_id, time=time)

    def add_beat(self, downbeat: bool, event_id: int = -1, time: float = 0.0) -> list[EventSpan]:
        """A beat passed: a rest word if it was silent, then a bar line on a downbeat."""
        out = []
        if self._notes_since_beat == 0 and self.spans:
            out.append(self._append(REST, kind="rest", event_id=event_id, time=time))
        if downbeat:
            out.append(self._append(BAR, kind="bar", event_id=event_id, time=time))
        self._notes_since_beat = 0
        return out

    def trim(self, max_words: int) -> int:
        """Keep the last ``max_words`` words; returns how many characters were cut."""
        if len(self.spans) <= max_words:
            return 0
        keep = self.spans[-max_words:]
        cut = keep[0].start
        self.text = self.text[cut:]
        self.spans = [
            EventSpan(s.start - cut, s.end - cut, s.kind, s.source, s.note, s.event_id, s.time) for s in keep
        ]
        return cut


def align_tokens(offsets: Sequence[tuple[int, int]], spans: Sequence[EventSpan]) -> list[int]:
    """For each token (char offsets), the index of the span it overlaps, or -1.

    Works for any tokenizer: a word split into several tokens maps each piece
    to the same event; a token covering two words maps to the later one.
    """
    out: list[int] = []
    j = 0
    for start, end in offsets:
        if end <= start:  # special tokens such as BOS have empty offsets
            out.append(-1)
            continue
        while j < len(spans) and spans[j].end <= start:
            j += 1
        hit = -1
        k = j
        while k < len(spans) and spans[k].start < end:
            hit = k
            k += 1
        out.append(hit)
    return out


def melody_text(bars: Iterable[Sequence[int | None]]) -> str:
    """Training text for one tune: bars of MIDI notes (None = a rest beat)."""
    words: list[str] = []
    for bar in bars:
        words.append(BAR)
        words.extend(REST if n is None else note_word(n) for n in bar)
    return " ".join(words)
