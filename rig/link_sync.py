"""The rig's beat grid in an Ableton Link session: tempo and phase both ways.

LinkPython (``LinkPython-extern``), not aalink: its API is the Link SDK's own, synchronous (capture a session
state, read or change it, commit), which fits the rig's timeline thread; aalink is built around an asyncio loop
the rig does not run. Both are maintained wheels of the same SDK.

The beat grid stays the rig's one source of time. Every ``poll_s`` (on the timeline thread, so nothing races the
beat) the session's tempo and the time of the rig's next beat are read from Link and the grid is re-anchored
there; the rig's beat ``n`` is Link beat ``base + n``, with ``base`` on a bar line, so downbeats agree. A tempo
change on the rig (the stage's control) is committed to the session; a change anywhere else arrives by the next
poll. Link's clock (microseconds) is mapped to the rig's monotonic clock by an offset measured at each poll.
"""

from __future__ import annotations

import logging
import math
import time

from core.errors import DeviceError
from rig.beat import BeatClock
from rig.timeline import Timeline

log = logging.getLogger("neurojam.rig")


def link_module():
    try:
        import link  # LinkPython-extern
    except ImportError as exc:
        raise DeviceError("rig.sync.source: link needs Ableton Link for Python: `pip install neurojam[sync]` "
                          "(the LinkPython-extern wheel).") from exc
    return link


class LinkSync:
    def __init__(self, beats: BeatClock, timeline: Timeline, *, quantum: int, start_stop: bool = True,
                 poll_s: float = 0.002) -> None:
        self.beats, self.timeline = beats, timeline
        self.quantum = quantum or beats.beats_per_bar
        self.poll_s = poll_s
        self.start_stop = start_stop
        self.link = link_module().Link(beats.tempo_bpm)
        self.link.enabled = True
        self.link.startStopSyncEnabled = start_stop
        self.base = 0.0
        self._handle: int | None = None
        self.polls = 0

    # -- clocks ------------------------------------------------------------------------------------------
    def _offset(self) -> float:
        """Link's clock minus ours, in seconds (both monotonic; read back to back)."""
        a = time.monotonic()
        micros = self.link.clock().micros()
        b = time.monotonic()
        return micros / 1e6 - (a + b) / 2

    @property
    def peers(self) -> int:
        return self.link.numPeers()

    # -- run ---------------------------------------------------------------------------------------------
    def start(self, t0: float) -> None:
        """Join the session's bar under way at ``t0``: the rig's beat 0 is that bar's first beat, and the first
        beat played is the session's next beat."""
        offset = self._offset()
        state = self.link.captureSessionState()
        at = state.beatAtTime(int((t0 + offset) * 1e6), self.quantum)
        self.base = math.floor(at / self.quantum) * self.quantum
        bar_start = state.timeAtBeat(self.base, self.quantum) / 1e6 - offset
        self.beats.tempo_bpm = state.tempo()
        if self.start_stop:
            state.setIsPlaying(True, int((t0 + offset) * 1e6))
            self.link.commitSessionState(state)
        self.beats.start(bar_start, first_index=math.ceil(at - self.base))
        self._handle = self.timeline.at(self.timeline.clock() + self.poll_s, self._poll)

    def _poll(self) -> None:
        self.polls += 1
        offset = self._offset()
        state = self.link.captureSessionState()
        n = self.beats.last_index + 1
        due = state.timeAtBeat(self.base + n, self.quantum) / 1e6 - offset
        self.beats.follow(n, due, state.tempo())
        self._handle = self.timeline.at(self.timeline.clock() + self.poll_s, self._poll)

    def set_tempo(self, bpm: float) -> None:
        """A tempo change from the rig (the stage): into the session at once; the grid follows at the next poll."""
        state = self.link.captureSessionState()
        state.setTempo(bpm, self.link.clock().micros())
        self.link.commitSessionState(state)

    def stop(self) -> None:
        if self._handle is not None:
            self.timeline.cancel(self._handle)
            self._handle = None
        if self.start_stop:
            state = self.link.captureSessionState()
            state.setIsPlaying(False, self.link.clock().micros())
            self.link.commitSessionState(state)
        self.link.enabled = False
