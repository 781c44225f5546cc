"""Sessions: sustained recording rate with zero loss, and replay --fast throughput.

    python bench/sessions.py [--quick]

Target (issue 6): ≥ 10,000 events/s recorded with zero loss.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import machine, table

from bridge.messages import Beat, Note, encode
from recording.log import SessionRecorder, read_session


def record(rate: float | None, seconds: float) -> tuple[int, int, int, float]:
    """Record Note frames at ``rate``/s (None: as fast as possible); returns sent, on disk, dropped, achieved rate."""
    tmp = Path(tempfile.mkdtemp())
    rec = SessionRecorder(tmp / "s")
    frame = encode(Note(source="pet", note=60, node="rig", seq=1, t=1.0))
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        if rate is not None and sent >= (now - start) * rate:
            continue
        rec.record("out", frame, now)
        sent += 1
    elapsed = time.monotonic() - start
    rec.close()
    on_disk = len(read_session(tmp / "s").records)
    shutil.rmtree(tmp)
    return sent, on_disk, rec.dropped, sent / elapsed


def replay_throughput(n_events: int) -> tuple[int, float]:
    from brain.live.replay import replay
    from neurojam.config import load_config

    tmp = Path(tempfile.mkdtemp())
    rec = SessionRecorder(tmp / "src")
    t, seq = 100.0, 0
    for i in range(n_events):
        msg = (Beat(index=i // 3, bar=i // 12, beat=(i // 3) % 4, tempo_bpm=120, time=t, t=t) if i % 3 == 0
               else Note(source="human", note=55 + (i * 5) % 24, t=t))
        msg.seq, msg.node = seq, "rig"
        seq += 1
        rec.record("out", encode(msg), t)
        t += 0.166
    rec.close()
    start = time.perf_counter()
    replay(tmp / "src", load_config(), speed=None,
           out=tmp / "out", progress=False)
    elapsed = time.perf_counter() - start
    shutil.rmtree(tmp)
    return n_events, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    q = ap.parse_args().quick
    print(f"machine: {machine()}")
    rows = []
    for rate in (10_000, 50_000, None):
        sent, disk, dropped, achieved = record(rate, 2 if q else 5)
        rows.append([f"{rate:,}/s" if rate else "flat out", sent, disk, dropped, sent - disk, achieved])
    table("session recording (the caller's record() never blocks)",
          ["offered", "events", "on disk", "dropped (counted)", "lost", "events/s"], rows)
    n, s = replay_throughput(1500 if q else 6000)
    table("replay --fast through the default model (brain on loopback ZeroMQ)",
          ["events", "seconds (incl. model load)", "events/s"], [[n, s, n / s]])


if __name__ == "__main__":
    main()
