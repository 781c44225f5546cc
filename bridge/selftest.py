"""Two real processes over loopback TCP: a sender (rig side) and a receiver (brain side).

``python -m bridge.selftest --receive PORT N`` runs the receiver: it counts
frames until N arrive or it has heard nothing for 2 s, then prints one JSON
line (stats and one-way latencies, which are meaningful because both
processes read the same CLOCK_MONOTONIC). ``run_selftest`` drives it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bridge.link import Link
from bridge.messages import Note


def curve(keys: str | None, server: bool):
    """CurveZMQ for the selftest from a folder holding brain.* and rig.* keys (None: plain TCP)."""
    if keys is None:
        return None
    from pathlib import Path

    from bridge.security import CurveClient, CurveServer, load_keys

    brain_pub, brain_sec = load_keys(Path(keys), "brain")
    rig_pub, rig_sec = load_keys(Path(keys), "rig")
    if server:
        import zmq

        return CurveServer(zmq.Context.instance(), brain_pub, brain_sec, [rig_pub.decode()])
    return CurveClient(rig_pub, rig_sec, brain_pub)


def receive(port: int, expect: int, idle_s: float = 2.0, keys: str | None = None) -> dict:
    link = Link("brain", "selftest-brain", events_port=port, commands_port=port + 1, hwm=100_000,
                security=curve(keys, server=True))
    latencies: list[float] = []
    print("ready", flush=True)
    last = time.monotonic()
    got = 0
    while got < expect and time.monotonic() - last < idle_s:
        for msg in link.receive(timeout_ms=50):
            if isinstance(msg, Note):
                got += 1
                latencies.append(time.monotonic() - msg.t)
            last = time.monotonic()
    out = link.stats_dict()
    out["notes"] = got
    out["latency_s"] = latencies
    link.close()
    return out


def start_receiver(port: int, expect: int, keys: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bridge.selftest", "--receive", str(port), str(expect)]
                            + ([keys] if keys else []), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("receiver did not start")
    return proc


def finish_receiver(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def send_paced(port: int, count: int, rate: float, keys: str | None = None) -> Link:
    link = Link("rig", "selftest-rig", events_port=port, commands_port=port + 1, hwm=100_000,
                security=curve(keys, server=False))
    deadline = time.monotonic() + 5
    while not link.send(Note(source="human", note=60)) and time.monotonic() < deadline:
        time.sleep(0.01)  # wait for the connection
    link.stats.dropped_out.clear()
    start = time.monotonic()
    for i in range(count - 1):
        due = start + i / rate
        while time.monotonic() < due:
            pass
        link.send(Note(source="human", note=i % 128))
    return link


def run_selftest(count: int = 5000, port: int = 15555, rate: float = 10_000, plot: str | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    proc = start_receiver(port, count)
    link = send_paced(port, count, rate)
    result = finish_receiver(proc)
    link.close()
    lat = sorted(result.pop("latency_s"))
    table = Table(title=f"bridge self-test: {count} notes at {rate:.0f}/s over tcp://127.0.0.1:{port}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("sent", str(link.stats.sent))
    table.add_row("received", str(result["notes"]))
    table.add_row("gaps / lost", f"{result['gaps']} / {result['lost_in_gaps']}")
    table.add_row("dropped in", str(result["dropped_in"]))
    if lat:
        table.add_row("one-way p50", f"{lat[len(lat) // 2] * 1e6:.0f} µs")
        table.add_row("one-way p99", f"{lat[int(len(lat) * 0.99)] * 1e6:.0f} µs")
    Console().print(table)
    if plot and lat:
        print(f"picture: {draw_latencies(lat, plot, f'{count} notes at {rate:.0f}/s, loopback')}")
    return 0 if result["notes"] == count else 1


def draw_latencies(latencies_s: list[float], path: str, title: str) -> str:
    """The one-way latencies as a histogram with p50 and p99 marked (matplotlib: only when a picture is asked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    us = sorted(x * 1e6 for x in latencies_s)
    p50, p99 = us[len(us) // 2], us[int(len(us) * 0.99)]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(us, bins=60, range=(0, max(us[int(len(us) * 0.999)], p99 * 1.5)), color="#2a9db5")
    for v, name in ((p50, "p50"), (p99, "p99")):
        ax.axvline(v, color="#333", linestyle=":", linewidth=1)
        ax.text(v, ax.get_ylim()[1] * 0.9, f" {name} {v:.0f} µs", fontsize=8)
    ax.set_xlabel("one-way latency, sender's clock to receiver's (µs)")
    ax.set_ylabel("messages")
    ax.set_title(f"bridge self-test: {title}", fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--receive":
        print(json.dumps(receive(int(sys.argv[2]), int(sys.argv[3]), keys=sys.argv[4] if len(sys.argv) > 4 else None)),
              flush=True)
    else:
        sys.exit(run_selftest())
