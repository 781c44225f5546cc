"""Neurons → notes: what each top-firing neuron sings, how loud, and when.

- Pitch: in a model with note words, a neuron sings the note it promotes most
  through its direct effect on the logits (``W_out[n] @ W_U``), moved into
  its layer's register; otherwise a stable hash of (layer, neuron) picks a
  degree of the configured key and scale. The key can follow the human.
- Velocity from normalized activation; timing quantized to the next
  subdivision of the rig's beat grid, computed from the *event's* rig time
  (so a replay gives the same notes); a neuron still sounding from the last
  event sustains instead of retriggering; a voice cap.
- An optional prediction voice plays the model's most likely next note.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from brain.config import KEYS, SonifyConfig
from brain.rig_view import RigView
from brain.stream import Hit
from bridge.messages import AccompNote

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}
LATENCY_BUDGET_S = 0.03
"""Notes are placed on the first grid slot at least this long after their event."""


class Sonifier:
    def __init__(self, config: SonifyConfig, rig: RigView, promoted: dict[tuple[int, int], int] | None = None) -> None:
        self.config, self.rig = config, rig
        self.promoted = promoted or {}
        self.sounding_until: dict[str, float] = {}  # neuron id -> beat position its note ends
        self.counts: Counter = Counter()

    # -- pitch ----------------------------------------------------------------------------
    def key_root(self) -> int:
        human = self.rig.human_notes
        if self.config.follow_key and len(human) >= 4:
            return Counter(n % 12 for n in human).most_common(1)[0][0]
        return KEYS.index(self.config.key)

    def pitch(self, hit: Hit) -> int:
        octave = self.config.layer_octaves[min(hit.layer, len(self.config.layer_octaves) - 1)]
        promoted = self.promoted.get((hit.layer, hit.index))
        if promoted is not None:
            pc = promoted % 12
        else:
            digest = hashlib.sha1(f"{hit.layer}.{hit.index}".encode()).digest()
            scale = SCALES[self.config.scale]
            pc = (self.key_root() + scale[digest[0] % len(scale)]) % 12
        return max(0, min(127, 12 * (octave + 1) + pc))

    def channel(self, layer: int) -> int:
        chans = self.config.layer_channels
        return chans[min(layer, len(chans) - 1)]

    def velocity(self, normalized: float) -> int:
        c = self.config
        x = max(0.0, min(1.0, normalized))
        return int(round(c.velocity_min + (c.velocity_max - c.velocity_min) * x))

    # -- notes ------------------------------------------------------------------------------
    def notes_for(self, hits: list[Hit], event_time: float, predicted: int | None = None) -> list[AccompNote]:
        """The accompaniment for one event's hits (empty until the rig's beat is known)."""
        grid = self.rig.grid
        if grid is None:
            self.counts["no_grid"] += 1
            return []
        c = self.config
        due = grid.next_slot(event_time + LATENCY_BUDGET_S, c.subdivision)
        for nid in [n for n, end in self.sounding_until.items() if end <= due]:
            del self.sounding_until[nid]
        out: list[AccompNote] = []
        for hit in hits:
            if hit.normalized < c.min_normalized:
                continue
            nid = hit.id
            if nid in self.sounding_until:  # still in the top-k and still sounding: let it ring
                self.sounding_until[nid] = max(self.sounding_until[nid], due + c.note_beats)
                self.counts["sustained"] += 1
                continue
            if len(self.sounding_until) >= c.max_voices:
                self.counts["voice_cap"] += 1
                continue
            self.sounding_until[nid] = due + c.note_beats
            out.append(AccompNote(note=self.pitch(hit), velocity=self.velocity(hit.normalized),
                                  channel=self.channel(hit.layer), duration=self.beats_to_s(c.note_beats),
                                  due_beat=due, neurons=[nid]))
        if c.prediction_voice and predicted is not None:
            out.append(AccompNote(note=predicted, velocity=c.velocity_min, channel=c.prediction_channel,
                                  duration=self.beats_to_s(1.0 / c.subdivision), due_beat=due, neurons=["prediction"]))
        self.counts["notes"] += len(out)
        return out

    def beats_to_s(self, beats: float) -> float:
        grid = self.rig.grid
        return round(beats * (grid.period if grid else 0.5), 4)
