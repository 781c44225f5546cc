"""Neurons → notes: a band in the human's key whose notes the model's neurons choose.

(Everything below holds for dictionary features as well, when the brain plays them: ``brain.units: features``,
:mod:`brain.units.features`. A hit is then a feature, its voice its decoder direction's, its gate its own quantile.)

- **The frame follows the music.** The brain's :class:`RigView` tracks the key
  (Krumhansl–Schmuckler with hysteresis, from the human's notes) and the chord
  of the current beat (the diatonic triad covering what the human played in
  the last beat). Before the human has played, the key is the configured one
  (C major: the key the pet's chord pad is tuned to), so the pet alone is
  answered in its own pads' key; from the human's first confident key on, the
  band follows the human.
- **Inside the frame, the neuron chooses.** A sounding neuron plays the note it
  pushes the model's prediction towards most (its direct logit effect through
  ``ln_final``, :mod:`brain.voices`) among the notes allowed on that slot: on
  the beat, the tones of the chord (``on_beat: chord``; ``key`` lets the
  neuron pick any note of the key there too); off the beat, any note of the
  key — passing tones where the model pushes them. Consonance is measured
  (``neurojam score``), not forced off the beat. A model with other weights
  plays other notes: ``neurojam score --controls`` replays the session through
  a random-weight model, a shuffled neuron → voice map and the sounding neurons
  ablated, and says how far each lands from this band.
- **A neuron keeps its place.** Its note sits nearest its *home* (the note it
  promotes most, moved into its layer's octave), on its layer's channel, so a
  listener hears "1.42" in one register and timbre. **A voice keeps its
  neuron**: a (channel, pitch) belongs to the unit that last played it for
  ``voice_hold_beats``; a unit sounding for the first time where another
  holds the voice plays its pitch class an octave up or down instead (where
  that is free) and keeps that place after, so a voice is one unit to the ear
  and a unit one register. (With features, over a thousand units a layer,
  many more units are heard than a layer has notes in key.) A dictionary's
  near-duplicates (decoder cosine > 0.9) are one voice: they sing their
  group's notes in its place, and sounding together, share one note.
- **Louder means more active; silence means nothing unusual fires.** Only hits
  at or above ``gate`` × the neuron's calibration quantile sound; velocity
  rises with activation above the gate. No note starts more than
  ``listen_beats`` beats after the human or the pet last played.
- **Density follows the human.** One unit note a slot (``max_voices``) while
  the band keeps up; when it has struck fewer than ``density_low`` × the
  human's notes over the last :data:`DENSITY_BEATS` beats, up to
  ``busy_voices`` units sound together, each past the lower ``busy_gate``
  (in a key the model reads less surely its units fire lower: at the full
  gate a busy human in C got half the band the same tune got in D). Which
  units sound, and when, is still the model's: the most active first, none
  under its own quantile's ``busy_gate`` share. A unit heard only so (under
  its gate) fills in the chord: it takes the chord tone it pushes most, on
  or off the beat (on validation tunes the denser band kept its
  note-in-chord 13 points above random notes in key; choosing in the whole
  key, 9). A sparse human leaves the band sparse: units sound only when they
  fire, and nothing starts more than ``listen_beats`` after the last played
  note.
- **No restrikes, no doubled notes.** A neuron whose note is still ringing past
  the next slot is *tied* (the rig extends it; a tie whose note has already
  ended starts nothing); two neurons landing on one pitch share one note; the
  voice cap is a last resort.
- **The model can lead.** The prediction voice plays the model's predicted
  next note (moved into the key) on the next slot: zero logical latency.

Timing: each note lands on the next ``1/subdivision`` slot of the rig's grid
after the event's own rig time (plus a small budget), so a replay gives the
same notes.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from brain.config import SonifyConfig
from brain.live.rig_view import RigView
from brain.stream import Hit
from brain.voices import NeuronVoices, hashed_voices, layer_shifts
from bridge.messages import AccompNote
from recording.harmony import Key

LATENCY_BUDGET_S = 0.03
"""Notes are placed on the first grid slot at least this long after their event."""
BALANCE_NOTES = 64
"""The prediction voice's share is counted over the brain's last this many struck notes."""
TIE_MARGIN_BEATS = 0.05
"""A ringing note must outlast the new slot by this much to be tied rather than struck."""
SLOT_EPS = 1e-6
"""A slot this close to a whole beat is on the beat."""
DENSITY_BEATS = 8
"""The window over which the band's notes are counted against the human's."""


def _seconds(x: float) -> float:
    """A duration on the wire (4 decimals), rounded down: a note never overlaps the slot where its voice may be
    struck again."""
    return math.floor(x * 1e4) / 1e4


class Sonifier:
    def __init__(self, config: SonifyConfig, rig: RigView, voices: NeuronVoices | None = None) -> None:
        self.config, self.rig = config, rig
        self.voices = voices
        """Every neuron's home and pushes (:func:`brain.voices.voices_of`); hashed when not given."""
        self.ringing: dict[tuple[int, int], float] = {}  # (channel, pitch) -> beat its note ends, as the rig plays it
        self.chord: tuple[int, int, int] | None = None
        """The chord the last notes were voiced on."""
        self.key: Key | None = None
        """The key they were voiced in."""
        self.counts: Counter = Counter()
        self.recent: deque[bool] = deque(maxlen=BALANCE_NOTES)
        """Whether each of the brain's last notes was the prediction voice's (its share is capped)."""
        self.struck: deque[float] = deque(maxlen=4 * BALANCE_NOTES)
        """The beats the brain's recent struck notes were due on (the density rule counts them)."""
        self.owners: dict[tuple[int, int], tuple[str, float]] = {}
        """(channel, pitch) -> (the unit that last played it, the beat it did)."""
        self.octave: dict[str, int] = {}
        """The octave each unit was moved by when it first found a voice of its own (kept: a unit keeps its place)."""

    # -- a neuron's voice ---------------------------------------------------------------
    def allowed(self, key: Key, chord: tuple[int, int, int], due: float, likely: list[int] | None = None) -> \
            tuple[int, ...]:
        """The pitch classes a neuron may choose among on the slot at beat ``due``: the model's likely next notes
        moved into the key (on the beat, those in the chord; the chord if none is), else the key's (the chord's)."""
        c = self.config
        on_beat = abs(due - round(due)) < SLOT_EPS
        frame = tuple(chord) if (c.on_beat if on_beat else c.off_beat) == "chord" else tuple(key.scale)
        if c.choose_among == "frame":
            return frame
        wanted = tuple(dict.fromkeys(self.into_key(n, key) % 12 for n in likely or ()))
        return tuple(pc for pc in wanted if pc in frame) or frame

    def channel(self, layer: int) -> int:
        chans = self.config.layer_channels
        return chans[min(layer, len(chans) - 1)]

    def pitch(self, hit: Hit, allowed: tuple[int, ...]) -> int:
        if self.voices is None or hit.layer >= self.voices.home.shape[0] or hit.index >= self.voices.home.shape[1]:
            self.voices = self._hashed(hit)
        return max(0, min(127, self.voices.pitch(hit.layer, hit.index, allowed)))

    def _hashed(self, hit: Hit) -> NeuronVoices:
        """Hashed voices at least as large as this hit needs (a sonifier made without a model's voices)."""
        layers, width = hit.layer + 1, hit.index + 1
        if self.voices is not None:
            layers, width = max(layers, self.voices.home.shape[0]), max(width, self.voices.home.shape[1])
        return hashed_voices(layers, width, layer_shifts(layers, self.config.layer_octaves))

    def own_voice(self, channel: int, pitch: int, unit: str, due: float) -> int:
        """Where ``unit`` plays ``pitch``: the place (octave) it found the first time it sounded, so it keeps its
        register; the first time, ``pitch`` or the same pitch class an octave away, whichever no other unit has
        played within ``voice_hold_beats`` (``pitch``, shared and counted, when none is free)."""
        hold = self.config.voice_hold_beats
        if hold <= 0:
            return pitch
        if unit in self.octave:
            return pitch + self.octave[unit] if 0 <= pitch + self.octave[unit] <= 127 else pitch
        for shift in (0, 12, -12):
            owner = self.owners.get((channel, pitch + shift))
            if 0 <= pitch + shift <= 127 and (owner is None or owner[0] == unit or due - owner[1] > hold):
                return pitch + shift
        self.counts["voice_shared"] += 1
        return pitch

    def play_units(self, voices: NeuronVoices | None) -> None:
        """Other units from now on (neurons ↔ features): their voices; an id now names another unit, so no place or
        held voice carries over."""
        self.voices = voices
        self.owners.clear()
        self.octave.clear()

    def _claim(self, channel: int, pitch: int, base: int, unit: str, due: float) -> None:
        """``unit`` played ``pitch`` (its own choice was ``base``): the voice is its for the next hold."""
        self.owners[(channel, pitch)] = (unit, due)
        self.octave.setdefault(unit, pitch - base)

    def prediction_velocity(self, confidence: float | None) -> int:
        """Louder the surer the model: 60 % of ``prediction_velocity`` at the threshold, all of it at certainty."""
        c = self.config
        if confidence is None or c.prediction_confidence >= 1:
            return c.prediction_velocity
        x = max(0.0, min(1.0, (confidence - c.prediction_confidence) / (1 - c.prediction_confidence)))
        return max(1, int(round(c.prediction_velocity * (0.6 + 0.4 * x))))

    def velocity(self, normalized: float) -> int:
        c = self.config
        x = max(0.0, min(1.0, (normalized - c.gate) / max(1e-6, c.full_at - c.gate)))
        return int(round(c.velocity_min + (c.velocity_max - c.velocity_min) * x))

    # -- notes ------------------------------------------------------------------------------
    def notes_for(self, hits: list[Hit], event_time: float, predicted: int | None = None,
                  likely: list[int] | None = None, confidence: float | None = None) -> list[AccompNote]:
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
        allowed = self.allowed(key, chord, due, likely)
        for k in [k for k, until in self.ringing.items() if until < due]:
            del self.ringing[k]
        duration = _seconds(c.note_beats * grid.period)
        out: dict[tuple[int, int], AccompNote] = {}
        voices, gate = self.voices_now(due, event_time, grid.period)
        filler = tuple(pc for pc in allowed if pc in chord) or tuple(chord)
        for hit in sorted(hits, key=lambda h: -h.normalized):
            if hit.normalized < gate:
                self.counts["below_gate"] += 1
                continue
            # a unit heard only because the band lags (under the gate, past busy_gate) fills in the chord
            channel, base = self.channel(hit.layer), self.pitch(hit, allowed if hit.normalized >= c.gate else filler)
            nid = self.voices.voice_id(hit.layer, hit.index)  # its place: near-duplicates take one
            pitch = base if (channel, base) in out and nid not in self.octave else self.own_voice(channel, base, nid, due)
            note = out.get((channel, pitch))
            if note is not None:  # another neuron already sings this pitch here: share the note
                self.octave.setdefault(nid, pitch - base)  # its place from now on
                note.neurons.append(hit.id)
                note.velocity = max(note.velocity, self.velocity(hit.normalized))
                self.counts["shared"] += 1
                continue
            if len(out) >= voices:
                self.counts["voice_cap"] += 1
                continue
            self._claim(channel, pitch, base, nid, due)
            out[(channel, pitch)] = self._note(pitch, channel, self.velocity(hit.normalized), due, c.note_beats,
                                               duration, [hit.id])
        notes = list(out.values())
        sure = confidence is None or confidence >= c.prediction_confidence
        share = (sum(self.recent) + 1) / (len(self.recent) + len(notes) + 1)
        if c.prediction_voice and predicted is not None and not sure:
            self.counts["prediction_unsure"] += 1  # the model expects something else (a rest, a bar line) or is torn
        elif c.prediction_voice and predicted is not None and share > c.prediction_share and len(self.recent) >= 4:
            self.counts["prediction_balanced"] += 1  # it has had its share: the units' voices are heard
        elif c.prediction_voice and predicted is not None:
            pitch = self.into_key(predicted, key)
            if all(n.note != pitch for n in notes):  # already sounding in a neuron's voice: no double onset
                notes.append(self._note(pitch, c.prediction_channel, self.prediction_velocity(confidence), due,
                                        1 / c.subdivision, _seconds(grid.period / c.subdivision), ["prediction"]))
        self.counts["notes"] += len(notes)
        self.recent.extend(n.neurons == ["prediction"] for n in notes if not n.tie)
        self.struck.extend(n.due_beat for n in notes if not n.tie)
        return notes

    def voices_now(self, due: float, event_time: float, period: float) -> tuple[int, float]:
        """Unit notes this slot may start, and the gate each must pass: ``busy_voices`` from ``busy_gate`` while
        the band lags the human (the density rule), else ``max_voices`` from ``gate``."""
        c = self.config
        if c.busy_voices <= c.max_voices and c.busy_gate >= c.gate:
            return c.max_voices, c.gate
        human = sum(1 for t, _ in self.rig.human_notes if t > event_time - DENSITY_BEATS * period)
        band = sum(1 for b in self.struck if b > due - DENSITY_BEATS)
        if human >= 4 and band < c.density_low * human:
            self.counts["busy_slots"] += 1
            return max(c.busy_voices, c.max_voices), min(c.busy_gate, c.gate)
        return c.max_voices, c.gate

    def _note(self, pitch: int, channel: int, velocity: int, due: float, beats: float, duration: float,
              neurons: list[str]) -> AccompNote:
        """A note at ``due``, tied (extended, not struck again) if the rig is still sounding that pitch past ``due``
        (a note ending exactly there may already have ended when the tie arrives: it is struck again instead)."""
        tie = self.ringing.get((channel, pitch), float("-inf")) > due + TIE_MARGIN_BEATS
        self.ringing[(channel, pitch)] = max(self.ringing.get((channel, pitch), due), due + beats)
        self.counts["tied" if tie else "struck"] += 1
        return AccompNote(note=pitch, velocity=velocity, channel=channel, duration=duration, due_beat=due,
                          neurons=neurons, tie=tie)

    @staticmethod
    def into_key(note: int, key: Key) -> int:
        """The nearest note of the key (down on a tie): the prediction voice stays in key."""
        for step in (0, -1, 1, -2, 2):
            if (note + step) % 12 in key.scale and 0 <= note + step <= 127:
                return note + step
        return note
