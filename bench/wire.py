"""Wire benchmark: codec cost, one-way loopback latency between two processes, sustained rate.

    python bench/wire.py [--quick]

Targets (issue 2): codec round trip < 20 µs/message; loopback one-way p99 < 1 ms;
20,000 messages/s sustained with zero loss and zero gaps.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bridge.messages import Accomp, AccompNote, Beat, NeuronHit, Neurons, Note, Pad, decode, encode  # noqa: E402
from bridge.selftest import finish_receiver, send_paced, start_receiver  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def codec_rows(n: int) -> list[tuple[str, float, int]]:
    samples = {
        "note": Note(source="pet", note=60, node="rig", seq=1, t=1.0),
        "pad": Pad(pad=1, down=True),
        "beat": Beat(index=3, bar=0, beat=3, tempo_bpm=120, time=1.5),
        "accomp (4 notes)": Accomp(notes=[AccompNote(note=60 + i, due_beat=4.5, neurons=["1.2"]) for i in range(4)]),
        "neurons (top-8)": Neurons(hits=[NeuronHit(layer=1, index=i, activation=1.0, normalized=0.5, label="x" * 20) for i in range(8)]),
    }
    rows = []
    for name, msg in samples.items():
        frame = encode(msg)
        start = time.perf_counter()
        for _ in range(n):
            decode(encode(msg))
        rows.append((name, (time.perf_counter() - start) / n * 1e6, len(frame)))
    return rows


def run(port: int, count: int, rate: float, keys: str | None = None) -> tuple[dict, int]:
    proc = start_receiver(port, count, keys)
    link = send_paced(port, count, rate, keys)
    res = finish_receiver(proc)
    sent, dropped = link.stats.sent, sum(link.stats.dropped_out.values())
    link.close()
    return res, sent + dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--port", type=int, default=25555)
    args = ap.parse_args()
    console = Console()
    console.print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, {platform.platform()}")

    table = Table(title="codec: encode + decode + validate")
    for col in ("message", "µs / round trip", "bytes"):
        table.add_column(col, justify="right")
    for name, us, size in codec_rows(2000 if args.quick else 20000):
        table.add_row(name, f"{us:.2f}", str(size))
    console.print(table)

    lat_n = 1000 if args.quick else 5000
    import tempfile

    from bridge.security import create_keys

    keys = tempfile.mkdtemp()
    create_keys(keys, "brain")
    create_keys(keys, "rig")
    table = Table(title=f"one-way latency, two processes, loopback TCP ({lat_n} notes at 1,000/s)")
    for col in ("wire", "p50 µs", "p99 µs", "max µs", "received"):
        table.add_column(col, justify="right")
    for name, k in (("plain", None), ("CurveZMQ + allow-list", keys), ("plain, again", None)):
        res, _ = run(args.port + (4 if k else 0), lat_n, 1000, k)
        lat = res["latency_s"]
        table.add_row(name, f"{pct(lat, .5) * 1e6:.0f}", f"{pct(lat, .99) * 1e6:.0f}", f"{max(lat) * 1e6:.0f}",
                      f"{res['notes']}/{lat_n}")
    console.print(table)

    table = Table(title="sustained rate, two processes, loopback TCP")
    for col in ("target /s", "messages", "received", "lost", "gaps", "p99 latency µs"):
        table.add_column(col, justify="right")
    for rate in ((20_000,) if args.quick else (20_000, 50_000)):
        n = int(rate * (2 if args.quick else 5))
        res, attempted = run(args.port + 2, n, rate)
        table.add_row(f"{rate:,}", f"{attempted:,}", f"{res['notes']:,}", f"{attempted - res['notes']:,}",
                      str(res["gaps"]), f"{pct(res['latency_s'], .99) * 1e6:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
