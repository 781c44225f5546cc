"""Estimate the offset between our monotonic clock and a peer's.

Each ping/pong gives one sample: we sent at ``t0``, the peer stamped ``t1``,
we received at ``t3``. Assuming symmetric paths, ``offset = t1 - (t0 + t3)/2``
and its error is at most ``rtt/2``, so we keep the minimum-RTT samples of a
recent window (NTP's trick) and report that sample's offset.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ClockSample:
    rtt: float
    offset: float


class ClockOffsetEstimator:
    """peer_time ≈ local_time + offset."""

    def __init__(self, window: int = 32) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=window)

    def add(self, t0: float, t1_peer: float, t3: float) -> ClockSample:
        sample = ClockSample(rtt=max(0.0, t3 - t0), offset=t1_peer - (t0 + t3) / 2)
        self._samples.append(sample)
        return sample

    @property
    def ready(self) -> bool:
        return bool(self._samples)

    def best(self) -> ClockSample | None:
        return min(self._samples, key=lambda s: s.rtt) if self._samples else None

    @property
    def offset(self) -> float:
        best = self.best()
        return best.offset if best else 0.0

    @property
    def rtt(self) -> float:
        best = self.best()
        return best.rtt if best else float("nan")

    def to_peer(self, local_time: float) -> float:
        return local_time + self.offset

    def to_local(self, peer_time: float) -> float:
        return peer_time - self.offset
