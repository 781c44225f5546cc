"""Neurons → notes: a band that listens to the human and shows the model's neurons.

- **Harmony follows the music.** The brain's :class:`RigView` tracks the key
  (Krumhansl–Schmuckler with hysteresis, from the human's notes) and the chord
  of the current beat (the diatonic triad covering what the human played in
  the last beat, the note that triggered this event included). Every neuron
  voice is a tone of that chord, so the band is in key in every key.
- **A neuron keeps its voice.** Its *role* — root, third or fifth of the chord —
  comes from the note it promotes through its direct logit effect
  (``W_out[n] @ W_U``), read as an interval above the current key's tonic
  (the major tonic of its signature, so a relative-minor reading changes nothing):
  0–2 semitones → root, 3–5 → third, 6–9 → fifth, 10–11 → root. Its layer sets
  register and channel (timbre). So "1.42" is always, say, the fifth, up high,
  on the vibraphone; models without note words pick the role by a stable hash.
- **Louder means more active; silence means nothing unusual fires.** Only hits
  at or above ``gate`` × the neuron's calibration quantile sound; velocity
  rises with activation above the gate. No note starts more than
  ``listen_beats`` beats after the human or the pet last played.
- **No restrikes, no doubled notes.** A neuron whose note is still sounding
  and unchanged is *tied* (the rig extends it); two neurons landing on one
  pitch share one note; the voice cap is a last resort.
- **The model can lead.** The prediction voice plays the model's predicted
  next note (moved into the key) on the next slot: zero logical latency.

Timing: each note lands on the next ``1/subdivision`` slot of the rig's grid
after the event's own rig time (plus a small budget), so a replay gives the
same notes.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from brain.config import SonifyConfig
from brain.live.rig_view import RigView
from brain.stream import Hit
from bridge.messages import AccompNote
from recording.harmony import Key

LATENCY_BUDGET_S = 0.03
"""Notes are placed on the first grid slot at least this long after their event."""
ROLE_OF_INTERVAL = (0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 0)
"""Semitones above the key's tonic → chord-tone role (0 root, 1 third, 2 fifth)."""


class Sonifier:
    def __init__(self, config: SonifyConfig, rig: RigView, promoted: dict[tuple[int, int], int] | None = None) -> None:
        self.config, self.rig = config, rig
        self.promoted = promoted or {}
        self.ringing: dict[tuple[int, int], float] = {}  # (channel, pitch) -> beat its note ends, as the rig plays it
        self.chord: tuple[int, int, int] | None = None
        """The chord the last notes were voiced on."""
        self.key: Key | None = None
        """The key they were voiced in."""
        self.counts: Counter = Counter()

    # -- a neuron's voice ---------------------------------------------------------------
    def role(self, hit: Hit, key: Key) -> int:
        promoted = self.promoted.get((hit.layer, hit.index))
        if promoted is None:
            return hashlib.sha1(f"{hit.layer}.{hit.index}".encode()).digest()[0] % 3
        return ROLE_OF_INTERVAL[(promoted - key.signature_tonic) % 12]

    def octave(self, layer: int) -> int:
        octaves = self.config.layer_octaves
        return octaves[min(layer, len(octaves) - 1)]

    def channel(self, layer: int) -> int:
        chans = self.config.layer_channels
        return chans[min(layer, len(chans) - 1)]

    def pitch(self, hit: Hit, key: Key, chord: tuple[int, int, int]) -> int:
        return max(0, min(127, 12 * (self.octave(hit.layer) + 1) + chord[self.role(hit, key)]))

    def velocity(self, normalized: float) -> int:
        c = self.config
        x = max(0.0, min(1.0, (normalized - c.gate) / max(1e-6, c.full_at - c.gate)))
        return int(round(c.velocity_min + (c.velocity_max - c.velocity_min) * x))

    # -- notes ------------------------------------------------------------------------------
    def notes_for(self, hits: list[Hit], event_time: float, predicted: int | None = None) -> list[AccompNote]:
        """The accompaniment for one event's hits (empty until the rig's beat is known)."""
        grid, c = self.rig.grid, self.config
        if grid is None:
            self.counts["no_grid"] += 1
            return []
        due = grid.next_slot(event_time + LATENCY_BUDGET_S, c.subdivision)
        if grid.time_of_beat(due) - self.rig.last_played > c.listen_beats * grid.period:
            self.counts["nobody_playing"] += 1  # no note may start more than listen_beats after the last one played
            return []
        key = self.rig.key(c)
        if key is None:
            self.counts["key_not_yet_heard"] += 1
            return []
        self.key = key
        chord = self.chord = self.rig.chord(key, event_time, grid.period)
        for k in [k for k, until in self.ringing.items() if until < due]:
            del self.ringing[k]
        duration = round(c.note_beats * grid.period, 4)
        out: dict[tuple[int, int], AccompNote] = {}
        for hit in sorted(hits, key=lambda h: -h.normalized):
            if hit.normalized < c.gate:
                self.counts["below_gate"] += 1
                continue
            pitch, channel, nid = self.pitch(hit, key, chord), self.channel(hit.layer), hit.id
            note = out.get((channel, pitch))
            if note is not None:  # another neuron already sings this pitch here: share the note
                note.neurons.append(nid)
                note.velocity = max(note.velocity, self.velocity(hit.normalized))
                self.counts["shared"] += 1
                continue
            if len(out) >= c.max_voices:
                self.counts["voice_cap"] += 1
                continue
            out[(channel, pitch)] = self._note(pitch, channel, self.velocity(hit.normalized), due, c.note_beats,
                                               duration, [nid])
        notes = list(out.values())
        if c.prediction_voice and predicted is not None:
            pitch = self.into_key(predicted, key)
            if all(n.note != pitch for n in notes):  # already sounding in a neuron's voice: no double onset
                notes.append(self._note(pitch, c.prediction_channel, c.prediction_velocity, due, 1 / c.subdivision,
                                        round(grid.period / c.subdivision, 4), ["prediction"]))
        self.counts["notes"] += len(notes)
        return notes

    def _note(self, pitch: int, channel: int, velocity: int, due: float, beats: float, duration: float,
              neurons: list[str]) -> AccompNote:
        """A note at ``due``, tied (extended, not struck again) if the rig is still sounding that pitch there."""
        tie = self.ringing.get((channel, pitch), float("-inf")) >= due
        self.ringing[(channel, pitch)] = max(self.ringing.get((channel, pitch), due), due + beats)
        self.counts["tied" if tie else "struck"] += 1
        return AccompNote(note=pitch, velocity=velocity, channel=channel, duration=duration, due_beat=due,
                          neurons=neurons, tie=tie)

    @staticmethod
    def into_key(note: int, key: Key) -> int:
        """The nearest note of the key (down on a tie): the prediction voice stays in key."""
        for step in (0, -1, 1, -2, 2):
            if (note + step) % 12 in key.scale:
                return note + step
        return note
