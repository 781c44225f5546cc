"""When the brain asks the rig for a treat. The rig decides the beat and applies the caps.

Two rules, both from config: (1) a pet press made one of the chosen neurons
exceed a normalized activation; (2) the pet played on the beat while the
human was in the middle of a phrase. At most one request per bar.
"""

from __future__ import annotations

from brain.config import BrainRewardConfig
from brain.live.rig_view import RigView
from brain.stream import StepResult


class BrainRewardRule:
    def __init__(self, config: BrainRewardConfig, rig: RigView) -> None:
        self.config, self.rig = config, rig
        self.neurons = set(config.neurons)
        self.last_request_bar = -1
        self.requests = 0

    def check(self, result: StepResult) -> str | None:
        """The reason to ask for a treat after this event, or None."""
        event = result.event
        grid = self.rig.grid
        if not self.config.enabled or event.kind != "note" or event.source != "pet" or grid is None:
            return None
        bar = grid.bar_of(event.time)
        if bar == self.last_request_bar:
            return None
        reason = None
        for hit in result.hits:
            if hit.id in self.neurons and hit.normalized >= self.config.threshold:
                reason = f"neuron {hit.id} at {hit.normalized:.2f}"
                break
        if reason is None and self.config.phrase_rule:
            on_beat = grid.on_beat(event.time)
            in_phrase = event.time - self.rig.last_human_time <= self.config.phrase_window_s
            if on_beat and in_phrase:
                reason = "on the beat inside the human's phrase"
        if reason:
            self.last_request_bar = bar
            self.requests += 1
        return reason
