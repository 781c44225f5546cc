"""The brain's picture of the rig it answers: its beat grid and what the human played lately.

One object, updated from the rig's messages in arrival order and read by the
sonifier (where the next slot is, which key the human is in) and the reward
rule (which bar, is the human mid-phrase).
"""

from __future__ import annotations

from collections import deque

from bridge.grid import BeatGrid
from bridge.messages import Beat, Message, Note


class RigView:
    def __init__(self, human_memory: int = 24) -> None:
        self.grid: BeatGrid | None = None
        """None until the rig's first ``beat``."""
        self.human_notes: deque[int] = deque(maxlen=human_memory)
        self.last_human_time = float("-inf")

    def observe(self, msg: Message) -> None:
        if isinstance(msg, Beat):
            self.grid = BeatGrid.from_beat(msg)
        elif isinstance(msg, Note) and msg.source == "human" and msg.on:
            self.human_notes.append(msg.note)
            self.last_human_time = msg.t
