"""The live stream written as the corpus writes a tune, so the model is read on its own distribution.

The default model learned tunes as ABC collections notate them: one word per
melody note, a bar line before each measure's first note, and measures of
about 4–9 notes (a reel: 8 eighths). A jam arrives differently, and read raw
the model's neurons fired 30–110× their calibration rate. Four rules, each a
function of the event sequence alone (so a replay, the report and the neuron
commands write exactly the live text):

- **The bar line comes before the note on the beat.** A note played up to
  :data:`ANTICIPATE_S` before the rig's next beat (a human is early as often
  as late) is written after that beat's bar line: the beat is written when
  the note arrives and the rig's own beat message, when it comes, adds
  nothing.
- **A written bar holds a measure's worth of notes.** A tune played at four
  notes a beat (the demo's reel) fills a 4-beat bar with 16 notes, twice a
  notated measure; while the human plays more than :data:`DENSE_PER_BEAT`
  notes a beat, a bar line is also written at the middle of the rig's bar.
- **One onset, one word.** The corpus keeps one note per onset (a chord's top
  note); live, a second human note within :data:`ONSET_S` of the last is the
  same onset and is not written again (the first is already read).
- **A pet press is one word.** The pet's pads (a drum or a three-note chord
  pad) are written as one repeat of the last melody note per press: of the
  ways tried, the one that disturbs the model's reading of the tune least
  (the card's "pet's words").

What this buys is measured by ``bench/music.py`` (words per bar against the
tune's corpus rendering; the demo's neurons' firing rates against their
calibration rates).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from brain.events import StreamEvent

ANTICIPATE_S = 0.06
"""A note this close before the next beat is written after its bar line (a sixteenth at 112 BPM is 0.134 s)."""
ONSET_S = 0.03
"""Notes of one source closer than this are one onset (a chord, a chord pad)."""
DENSE_PER_BEAT = 2.0
"""Human notes per beat above which a written bar is half the rig's bar."""


class CorpusStyle:
    """Rig events in, the events to write out (beats possibly earlier, some notes folded away)."""

    def __init__(self) -> None:
        self.last_beat: StreamEvent | None = None
        self.anticipated: StreamEvent | None = None
        """A beat already written ahead of the rig's message for it."""
        self.last_onset: dict[str, float] = {}
        self.human_since_bar = 0

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if event.kind == "beat":
            return self._beat(event)
        if 0 <= event.time - self.last_onset.get(event.source, float("-inf")) < ONSET_S:
            return []  # the same onset: already written
        self.last_onset[event.source] = event.time
        out = []
        due = self._next_beat()
        if due is not None and self.anticipated is None and due.time - ANTICIPATE_S <= event.time:
            self.anticipated = due = dataclasses.replace(due, seq=event.seq, node=event.node)  # answered with it
            out += self._write_beat(due)
        if event.source == "pet":
            event.drum = True  # the same event (the brain answers it by identity), now written as a press
        if event.source == "human":
            self.human_since_bar += 1
        return out + [event]

    def _next_beat(self) -> StreamEvent | None:
        b = self.last_beat
        if b is None or b.period <= 0:
            return None
        beat = (b.beat + 1) % max(1, b.beats_per_bar)
        return dataclasses.replace(b, time=b.time + b.period, beat=beat, downbeat=beat == 0)

    def _beat(self, event: StreamEvent) -> list[StreamEvent]:
        ahead, self.anticipated = self.anticipated, None
        if ahead is not None and abs(ahead.time - event.time) < event.period / 2:
            self.last_beat = event  # already written: keep the rig's own time and numbering from here
            return []
        return self._write_beat(event)

    def _write_beat(self, event: StreamEvent) -> list[StreamEvent]:
        self.last_beat = event
        half = event.beats_per_bar // 2 if event.beats_per_bar >= 4 and event.beats_per_bar % 2 == 0 else 0
        bar = event.beat == 0 or (half and event.beat == half and self.human_since_bar > DENSE_PER_BEAT * half)
        if bar:
            self.human_since_bar = 0
        event.downbeat = bool(bar)
        return [event]


def written(events: Iterable[StreamEvent]) -> list[StreamEvent]:
    """A whole run of rig events as the brain writes them."""
    style = CorpusStyle()
    return [w for e in events for w in style.feed(e)]
