"""A simulated pet and a simulated human, driving the same code paths as the real ones.

The pet presses sim pads (through :class:`SimInputPin.drive`, so debouncing
and the pad → sound path run as on a Pi); the human plays a MIDI file into
the rig's keyboard handler (the same function the keyboard's port calls).
Both are seeded and scheduled on the rig's timeline.
"""

from __future__ import annotations

import random
from typing import Callable

import mido

from rig.beat import BeatClock
from rig.gpio import SimInputPin
from rig.timeline import Timeline


class SimulatedPet:
    """On each beat, presses a random pad with probability ``presses_per_beat``;
    it lands on the beat with probability ``on_beat``, else somewhere off it.
    Each press holds 80-200 ms and bounces a little, like foil does.

    Learning (a simple rule, for the curriculum's tests and the bench): each
    marked press moves ``on_beat`` ``learn_rate`` of the way to 1 (reward makes
    the timing that earned it likelier); each beat moves it ``forget_per_beat``
    of the way back to where it started (unrewarded habits fade)."""

    def __init__(self, pins: list[SimInputPin], timeline: Timeline, beats: BeatClock, *,
                 presses_per_beat: float = 0.5, on_beat_probability: float = 0.6, seed: int = 1,
                 active_low: bool = True, learn_rate: float = 0.0, forget_per_beat: float = 0.0) -> None:
        self.pins, self.timeline, self.beats = pins, timeline, beats
        self.rate, self.on_beat, self.start_on_beat = presses_per_beat, on_beat_probability, on_beat_probability
        self.learn_rate, self.forget_per_beat = learn_rate, forget_per_beat
        self.rewards = 0
        self.rng = random.Random(seed)
        self.active_low = active_low
        self.presses = 0
        beats.listeners.append(self._on_beat)

    def rewarded(self) -> None:
        """The marker sounded for the pet's last press."""
        self.rewards += 1
        self.on_beat += self.learn_rate * (1.0 - self.on_beat)

    def _on_beat(self, index: int, bar: int, beat: int, tempo: float, t: float) -> None:
        self.on_beat -= self.forget_per_beat * (self.on_beat - self.start_on_beat)
        if not self.pins:
            return
        whole = int(self.rate)
        count = whole + (1 if self.rng.random() < self.rate - whole else 0)
        period = self.beats.period
        for k in range(count):
            pin = self.rng.choice(self.pins)
            # Aim at the next beat: on it, or off by 20-45% of a beat; extra presses spread over the beat.
            if k == 0 and self.rng.random() < self.on_beat:
                offset = 0.0
            else:
                offset = self.rng.choice([-1, 1]) * self.rng.uniform(0.2, 0.45) * period
            press_at = self.beats.time_of_beat(index + 1) + offset + k * period / max(1, count)
            hold = min(self.rng.uniform(0.08, 0.2), period / max(1, count) * 0.8)
            pressed, released = (not self.active_low), self.active_low
            self.timeline.at(press_at, pin.drive, pressed)
            self.timeline.at(press_at + 0.002, pin.drive, released)  # a bounce
            self.timeline.at(press_at + 0.004, pin.drive, pressed)
            self.timeline.at(press_at + hold, pin.drive, released)
            self.presses += 1


class SimulatedHuman:
    """Plays a MIDI file's notes into ``handler`` as if from the keyboard."""

    def __init__(self, midi: mido.MidiFile, timeline: Timeline, handler: Callable[[mido.Message, float], None],
                 *, loop: bool = True, tempo_scale: float = 1.0) -> None:
        self.timeline, self.handler, self.loop = timeline, handler, loop
        self.events: list[tuple[float, mido.Message]] = []
        t = 0.0
        for msg in midi:  # iterating a MidiFile yields seconds-based delta times
            t += msg.time * tempo_scale
            if msg.type in ("note_on", "note_off"):
                self.events.append((t, msg.copy(time=0)))
        self.length = max(t, self.events[-1][0] + 0.5) if self.events else 0.0
        self.played = 0

    def start(self, t0: float) -> None:
        if not self.events:
            return
        for t, msg in self.events:
            self.timeline.at(t0 + t, self._play, msg, t0 + t)
        if self.loop:
            self.timeline.at(t0 + self.length, self.start, t0 + self.length)

    def _play(self, msg: mido.Message, t: float) -> None:
        self.played += 1
        self.handler(msg, t)
