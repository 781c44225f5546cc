"""When the brain asks the rig for a treat. The rig decides the beat and applies the caps.

Two rules, both from config: (1) a pet press made one of the chosen neurons
exceed a normalized activation; (2) the pet played on the beat while the
human was in the middle of a phrase. At most one request per bar.
"""

from __future__ import annotations

from brain.sonify import BeatGrid
from brain.stream import StepResult
from neurojam.config import BrainRewardConfig

ON_BEAT_TOLERANCE_BEATS = 0.2


class BrainRewardRule:
    def __init__(self, config: BrainRewardConfig, grid: BeatGrid) -> None:
        self.config, self.grid = config, grid
        self.neurons = set(config.neurons)
        self.last_human_time = float("-inf")
        self.last_request_bar = -1
        self.requests = 0

    def observe_human(self, rig_time: float) -> None:
        self.last_human_time = rig_time

    def check(self, result: StepResult) -> str | None:
        """The reason to ask for a treat after this event, or None."""
        event = result.event
        if not self.config.enabled or event.kind != "note" or event.source != "pet" or not self.grid.ready:
            return None
        bar = int(self.grid.beat_at(event.time) // self.grid.last.beats_per_bar)
        if bar == self.last_request_bar:
            return None
        reason = None
        for hit in result.hits:
            if hit.id in self.neurons and hit.normalized >= self.config.threshold:
                reason = f"neuron {hit.id} at {hit.normalized:.2f}"
                break
        if reason is None and self.config.phrase_rule:
            pos = self.grid.beat_at(event.time)
            on_beat = abs(pos - round(pos)) <= ON_BEAT_TOLERANCE_BEATS
            in_phrase = event.time - self.last_human_time <= self.config.phrase_window_s
            if on_beat and in_phrase:
                reason = "on the beat inside the human's phrase"
        if reason:
            self.last_request_bar = bar
            self.requests += 1
        return reason
