"""The treat dispenser: pulses an output pin on a beat, under hard safety caps.

Treats are food. Whatever any message asks, the rig never dispenses closer
than ``min_interval_s``, more than ``max_per_minute`` in any 60 s, or more
than ``max_per_session``. The caps are checked when a request arrives (to
answer at once) and again at the pulse itself (the authority). Requests from
the brain, the training curriculum and the manual trigger all go through here.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from bridge.messages import Refusal, TreatResult, TreatSource
from rig.beat import BeatClock
from rig.config import DispenserConfig
from rig.gpio import OutputPin
from rig.timeline import Timeline


@dataclass(frozen=True)
class TreatCaps:
    """The safety caps (their defaults and ranges live in :class:`rig.config.DispenserConfig`)."""

    min_interval_s: float
    max_per_minute: int
    max_per_session: int

    @classmethod
    def from_config(cls, dc: DispenserConfig) -> "TreatCaps":
        return cls(dc.min_interval_s, dc.max_per_minute, dc.max_per_session)


ResultCallback = Callable[[TreatResult], None]
"""Told every outcome; called with no lock held, so it may request another treat."""


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

    def violation(self, t: float) -> tuple[Refusal, str] | None:
        """Which cap a treat at time t would break (code, words), or None."""
        if self.total >= self.caps.max_per_session:
            return "max_per_session", f"max_per_session ({self.caps.max_per_session}) reached"
        if self.dispensed and t - self.dispensed[-1] < self.caps.min_interval_s:
            return "min_interval", f"min_interval ({self.caps.min_interval_s:g} s) not yet passed"
        recent = sum(1 for d in self.dispensed if t - d < 60.0)
        if recent >= self.caps.max_per_minute:
            return "max_per_minute", f"max_per_minute ({self.caps.max_per_minute}) reached"
        return None

    def _plan(self, now: float) -> tuple[tuple[Refusal, str] | None, int, float]:
        """(refusal or None, beat, time) that a request at ``now`` would get. Call with the lock held."""
        if not self.enabled:
            return ("disabled", "dispenser disabled in config"), -1, now
        if not self.beats.running:
            return ("no_beat", "no beat clock running"), -1, now
        if self._pending is not None:
            return ("pending", "a treat is already due on the next beat"), -1, now
        beat = self.beats.next_beat(now, downbeat=self.downbeat_only)
        at = self.beats.time_of_beat(beat)
        return self.violation(at), beat, at

    def check(self, now: float | None = None) -> Refusal | None:
        """What a request at ``now`` would be refused for, or None if it would be granted. Changes nothing:
        the curriculum asks first so that it requests only what the caps allow."""
        now = self.timeline.clock() if now is None else now
        with self._lock:
            refusal = self._plan(now)[0]
        return None if refusal is None else refusal[0]

    def request(self, source: TreatSource = "brain", request_id: int = 0, now: float | None = None) -> bool:
        """Ask for a treat on the next beat (or downbeat). False if refused now."""
        now = self.timeline.clock() if now is None else now
        with self._lock:
            refusal, beat, at = self._plan(now)
            if refusal is None:
                handle = self.timeline.at(at, self._fire, source, request_id, beat, at)
                self._pending = (handle, beat)
        if refusal is not None:
            self._refuse(source, request_id, refusal, -1)
            return False
        return True

    def _fire(self, source: TreatSource, request_id: int, beat: int, at: float) -> None:
        with self._lock:
            self._pending = None
            refusal = self.violation(at)
            if refusal is None:
                self.pin.write(self.active_high)
                self.dispensed.append(at)
                while self.dispensed and at - self.dispensed[0] > 3600:
                    self.dispensed.popleft()
                self.total += 1
        if refusal is not None:
            self._refuse(source, request_id, refusal, beat)
            return
        self.timeline.at(at + self.pulse_s, self.pin.write, not self.active_high)
        if self.on_result:
            self.on_result(TreatResult(outcome="dispensed", source=source, request_id=request_id, beat_index=beat))

    def _refuse(self, source: TreatSource, request_id: int, refusal: tuple[Refusal, str], beat: int) -> None:
        self.refusals[refusal[0]] += 1
        if self.on_result:
            self.on_result(TreatResult(outcome="refused", source=source, request_id=request_id, refusal=refusal[0],
                                       detail=refusal[1], beat_index=beat))

    def close(self) -> None:
        """Cancel a pending treat and leave the pin inactive. Safe twice."""
        with self._lock:
            if self._pending is not None:
                self.timeline.cancel(self._pending[0])
                self._pending = None
        self.pin.write(not self.active_high)
