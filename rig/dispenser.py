"""The treat dispenser: pulses an output pin on a beat, under hard safety caps.

Treats are food. Whatever any message asks, the rig never dispenses closer
than ``min_interval_s``, more than ``max_per_minute`` in any 60 s, or more
than ``max_per_session``. The caps are checked when a request arrives (to
answer at once) and again at the pulse itself (the authority). Requests from
the brain, the local reward rule and the manual trigger all go through here.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from rig.beat import BeatClock
from rig.gpio import OutputPin
from rig.timeline import Timeline


@dataclass(frozen=True)
class TreatCaps:
    min_interval_s: float = 8.0
    max_per_minute: int = 4
    max_per_session: int = 25


ResultCallback = Callable[[str, str, int, str, int], None]
"""(action 'dispensed'|'refused', source, request_id, reason, beat_index)."""


class TreatDispenser:
    def __init__(self, pin: OutputPin, timeline: Timeline, beats: BeatClock, caps: TreatCaps, *,
                 pulse_s: float = 0.15, downbeat_only: bool = True, active_high: bool = True,
                 enabled: bool = True, on_result: ResultCallback | None = None) -> None:
        self.pin, self.timeline, self.beats, self.caps = pin, timeline, beats, caps
        self.pulse_s, self.downbeat_only, self.active_high = pulse_s, downbeat_only, active_high
        self.enabled = enabled
        self.on_result = on_result
        self.dispensed: deque[float] = deque()
        self.total = 0
        self.refusals: Counter = Counter()
        self._pending: tuple[int, int] | None = None  # (timeline handle, beat index)
        self._lock = threading.Lock()
        self.pin.write(not active_high)

    def _violation(self, t: float) -> str | None:
        if self.total >= self.caps.max_per_session:
            return f"max_per_session ({self.caps.max_per_session}) reached"
        if self.dispensed and t - self.dispensed[-1] < self.caps.min_interval_s:
            return f"min_interval ({self.caps.min_interval_s:g} s) not yet passed"
        recent = sum(1 for d in self.dispensed if t - d < 60.0)
        if recent >= self.caps.max_per_minute:
            return f"max_per_minute ({self.caps.max_per_minute}) reached"
        return None

    def request(self, source: str = "brain", request_id: int = 0, now: float | None = None) -> bool:
        """Ask for a treat on the next beat (or downbeat). False if refused now."""
        now = self.timeline.clock() if now is None else now
        with self._lock:
            reason = None
            if not self.enabled:
                reason = "dispenser disabled in config"
            elif not self.beats.running:
                reason = "no beat clock running"
            elif self._pending is not None:
                reason = "a treat is already due on the next beat"
            if reason is None:
                beat = self.beats.next_beat(now, downbeat=self.downbeat_only)
                at = self.beats.time_of_beat(beat)
                reason = self._violation(at)
            if reason is not None:
                self._refuse(source, request_id, reason, -1)
                return False
            handle = self.timeline.at(at, self._fire, source, request_id, beat, at)
            self._pending = (handle, beat)
        return True

    def _fire(self, source: str, request_id: int, beat: int, at: float) -> None:
        with self._lock:
            self._pending = None
            reason = self._violation(at)
            if reason is None:
                self.pin.write(self.active_high)
                self.dispensed.append(at)
                while self.dispensed and at - self.dispensed[0] > 3600:
                    self.dispensed.popleft()
                self.total += 1
        if reason is not None:
            self._refuse(source, request_id, reason, beat)
            return
        self.timeline.at(at + self.pulse_s, self.pin.write, not self.active_high)
        if self.on_result:
            self.on_result("dispensed", source, request_id, "", beat)

    def _refuse(self, source: str, request_id: int, reason: str, beat: int) -> None:
        self.refusals[reason.split(" ")[0]] += 1
        if self.on_result:
            self.on_result("refused", source, request_id, reason, beat)

    def close(self) -> None:
        """Cancel a pending treat and leave the pin inactive. Safe twice."""
        with self._lock:
            if self._pending is not None:
                self.timeline.cancel(self._pending[0])
                self._pending = None
        self.pin.write(not self.active_high)


class OnBeatRewardRule:
    """The rig's own rule (works with no brain): a pet press within
    ±tolerance of a beat earns a treat on the next downbeat."""

    def __init__(self, dispenser: TreatDispenser, beats: BeatClock, tolerance_s: float = 0.12) -> None:
        self.dispenser, self.beats, self.tolerance = dispenser, beats, tolerance_s
        self.on_beat_presses = 0
        self.presses = 0

    def pressed(self, t: float) -> bool:
        if not self.beats.running:
            return False
        self.presses += 1
        if abs(self.beats.offset_from_nearest(t)) <= self.tolerance:
            self.on_beat_presses += 1
            return self.dispenser.request(source="rig", now=t)
        return False
