"""The brain under abuse: 100k abusive frames, and 3,000 made-up node ids beside a real rig.

    python bench/trust.py [--frames 100000]

Targets (issue 26): every abusive frame counted by reason and the brain's session log reads back whole, its size
bounded; 3,000 fake ids: brain memory growth < 20 MB and the real rig's round trip unchanged within noise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import msgspec
import zmq
from common import machine, pct, table
from loop import start_brain

from bridge.link import Link
from bridge.messages import Accomp, Beat, Note, encode
from bridge.security import Security
from neurojam.processes import free_port_pair
from recording.log import read_session


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def abusive_frames(n: int, rng: random.Random):
    """(kind, frame) of every sort a fuzzer or a broken peer sends."""
    kinds = ["empty", "random", "truncated", "wrong_types", "unknown_kind", "forged_rig", "2MB", "10MB"]
    for i in range(n):
        kind = kinds[i % len(kinds)] if i % 1000 < 8 else kinds[i % 6]
        if kind == "empty":
            yield kind, b""
        elif kind == "random":
            yield kind, os.urandom(rng.randint(1, 300))
        elif kind == "truncated":
            yield kind, encode(Note(source="pet", note=60, node="x", seq=i, t=0.0))[:-3]
        elif kind == "wrong_types":
            yield kind, msgspec.msgpack.encode({"kind": "note", "v": 2, "source": "pet", "note": "loud"})
        elif kind == "unknown_kind":
            yield kind, msgspec.msgpack.encode({"kind": "hologram", "v": 2})
        elif kind == "forged_rig":
            yield kind, encode(Note(source="human", note=60, velocity=90, node="rig", seq=10_000 + i, t=time.monotonic()))
        elif kind == "2MB":
            yield kind, b"\x91" * (2 << 20)
        else:
            yield kind, b"\x00" * (10 << 20)


def play_and_time(rig: Link, seconds: float) -> list[float]:
    """The rig plays a note and a beat every 1/8 s; round trip of each note to its accompaniment, ms."""
    sent, rtt = {}, []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        rig.send(Beat(index=i, bar=i // 4, beat=i % 4, tempo_bpm=120.0, time=time.monotonic()))
        note = Note(source="human", note=62 + i % 5, velocity=90)
        rig.send(note)
        sent[note.seq] = note.t
        i += 1
        due = time.monotonic() + 0.125
        while time.monotonic() < due:
            rig.tick()
            for m in rig.receive(timeout_ms=1):
                if isinstance(m, Accomp) and m.event_seq in sent:
                    rtt.append((time.monotonic() - sent.pop(m.event_seq)) * 1000)
    return rtt


def fuzz(n: int) -> None:
    port, tmp = free_port_pair(), Path(tempfile.mkdtemp())
    brain = start_brain(port, None, [], tmp / "brain")
    raw = zmq.Context.instance().socket(zmq.PUSH)
    Security().apply(raw, server=False)  # another local process, with its own connection
    raw.connect(f"tcp://127.0.0.1:{port}")
    rig = Link("rig", "rig", events_port=port, commands_port=port + 1)
    rig.writable(timeout_ms=5000)
    play_and_time(rig, 2)
    sent: dict[str, int] = {}
    start = time.monotonic()
    for kind, frame in abusive_frames(n, random.Random(0)):
        raw.send(frame)
        sent[kind] = sent.get(kind, 0) + 1
    took = time.monotonic() - start
    time.sleep(3)
    raw.close(linger=0)
    rig.close()
    brain.terminate()
    brain.wait(timeout=30)
    stats = json.loads((tmp / "brain" / "stats.json").read_text())
    dropped = stats["bridge"]["dropped_in"]
    log = read_session(tmp / "brain")
    size = (tmp / "brain" / "events.njlog").stat().st_size
    table(f"{n:,} abusive frames into a real brain in {took:.1f} s", ["kind sent", "frames"],
          [[k, v] for k, v in sent.items()])
    table("what the brain counted", ["reason dropped", "frames"], [[k, v] for k, v in sorted(dropped.items())])
    table("and its session log", ["frames sent", "counted dropped", "log bytes", "records read back",
                                  "skipped bytes", "truncated bytes"],
          [[n, sum(dropped.values()), size, len(log.records), log.skipped_bytes, log.truncated_bytes]])


def flood(ids: int) -> None:
    port, tmp = free_port_pair(), Path(tempfile.mkdtemp())
    brain = start_brain(port, None, [], tmp / "brain")
    rig = Link("rig", "rig", events_port=port, commands_port=port + 1)
    other = Link("tool", "flood", events_port=port, commands_port=port + 1, hwm=100_000)
    rig.writable(timeout_ms=5000)
    play_and_time(rig, 3)  # warm: the band hears the key
    before_ms = play_and_time(rig, 10)
    before_mb = rss_mb(brain.pid)
    for i in range(ids):
        note = Note(source="human", note=60 + i % 12, velocity=90)
        note.node, note.seq, note.t = f"fake-{i}", 0, time.monotonic()
        other.send(note, as_recorded=True)
    time.sleep(2)
    after_ms = play_and_time(rig, 10)
    after_mb = rss_mb(brain.pid)
    rig.close()
    other.close()
    brain.terminate()
    brain.wait(timeout=30)
    stats = json.loads((tmp / "brain" / "stats.json").read_text())
    table(f"{ids:,} made-up node ids beside a real rig (round trip at the rig, ms; brain RSS, MB)",
          ["", "round trip p50", "p99", "answered", "brain RSS MB", "rig states", "refused (by reason)"],
          [["before", pct(before_ms, 0.5), pct(before_ms, 0.99), len(before_ms), before_mb, "", ""],
           ["after", pct(after_ms, 0.5), pct(after_ms, 0.99), len(after_ms), after_mb, len(stats["rigs"]),
            json.dumps({k: v for k, v in stats["bridge"]["dropped_in"].items()})]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--ids", type=int, default=3000)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    fuzz(args.frames)
    flood(args.ids)


if __name__ == "__main__":
    main()
