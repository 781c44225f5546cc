"""The live loop where a musician feels it: a rig's event leaving → its accompaniment arriving back at the rig.

    python bench/loop.py [--quick] [--device cuda] [--runs N] [--rigs 1,4] [--set brain.model=DIR]

A real `neurojam brain` process and, in this process, N simulated rigs (each a real bridge Link: PUSH + DEALER,
its own node id), each playing a folk tune's notes and a beat at 112 BPM plus a pet on a pad. The round trip is
measured on the rig's own clock (event stamped as it leaves → the Accomp answering it received), so the network,
the queues, the brain's handler and both processes' scheduling are all in it. At 1, 4 and 16 rigs, with and
without CurveZMQ. Targets (issue 14): default model, CPU, both on this 2-core machine: p99 < 10 ms at 1 rig,
< 25 ms at 16 rigs; CurveZMQ adds < 0.2 ms p99. Issue 29: with the brain on a GPU, 16 rigs p99 < 10 ms and no
brain step over 20 ms after it is ready (the brain's own step statistics exclude its warm-up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from common import machine, pct, table

from bridge.link import Link
from bridge.messages import Accomp, Beat, Note
from bridge.security import CurveClient, create_keys, load_keys, public_key_text
from neurojam import processes
from neurojam.processes import free_port_pair
from recording.synthetic import melody_from_midi

ROOT = Path(__file__).resolve().parent.parent
MELODY = ROOT / "configs" / "melodies" / "soldiers-joy.mid"


def start_brain(port: int, keys: Path | None, rig_keys: list[str], session: Path, device: str,
                sets: list[str]) -> subprocess.Popen:
    args = ["--session", str(session), "--set", f"brain.device={device}", *(a for s in sets for a in ("--set", s))]
    if keys:
        allowed = "[" + ", ".join(f"'{k}'" for k in rig_keys) + "]"
        args += ["--set", "bridge.curve=true", "--set", f"bridge.keys_dir={keys}",
                 "--set", f"bridge.allowed_keys={allowed}"]
    security = CurveClient(*load_keys(keys, "sim-0"), load_keys(keys, "brain")[0]) if keys else None
    return processes.start_brain(port, *args, log=session.parent / "brain.log", cwd=ROOT, security=security)


def run(n_rigs: int, seconds: float, curve: bool, device: str = "cpu", sets: list[str] = ()) -> tuple[list[float], dict]:
    port = free_port_pair()
    tmp = Path(tempfile.mkdtemp())
    keys = tmp / "keys" if curve else None
    rig_keys = []
    if keys:
        create_keys(keys, "brain")
        for i in range(n_rigs):
            create_keys(keys, f"sim-{i}")
            rig_keys.append(public_key_text(keys / f"sim-{i}.key"))
    brain = start_brain(port, keys, rig_keys, tmp / "brain", device, list(sets))
    links = []
    for i in range(n_rigs):
        security = None
        if keys:
            pub, sec = load_keys(keys, f"sim-{i}")
            security = CurveClient(pub, sec, load_keys(keys, "brain")[0])
        links.append(Link("rig", f"sim-{i}", events_port=port, commands_port=port + 1, hwm=10_000,
                          security=security))
    for link in links:
        link.writable(timeout_ms=5000)
    melody = melody_from_midi(MELODY, 112)
    period = 60 / 112
    sent: dict[tuple[int, int], float] = {}
    rtt: list[float] = []
    start = time.monotonic() + 0.5
    # every rig plays the tune (offset by a few notes so they differ) with its beat; events in time order
    plan = []
    n_beats = int(seconds / period)
    for i in range(n_rigs):
        for b in range(n_beats):
            plan.append((start + b * period, i, "beat", b))
        shift = i % 7
        for s, _, note in melody:
            if s * period < seconds:
                plan.append((start + s * period + 0.003 * i, i, "note", note + shift))
    plan.sort()
    k = 0
    while k < len(plan) or time.monotonic() < start + seconds + 1.0:
        now = time.monotonic()
        while k < len(plan) and plan[k][0] <= now:
            t, i, kind, value = plan[k]
            link = links[i]
            if kind == "beat":
                msg = Beat(index=value, bar=value // 4, beat=value % 4, tempo_bpm=112, time=t)
            else:
                msg = Note(source="human", note=value, velocity=90)
            link.send(msg)
            if kind == "note":
                sent[(i, msg.seq)] = msg.t
            k += 1
        for i, link in enumerate(links):
            link.tick()
            for m in link.receive(timeout_ms=0):
                if isinstance(m, Accomp) and (i, m.event_seq) in sent:
                    rtt.append(time.monotonic() - sent.pop((i, m.event_seq)))
        time.sleep(0.0005)
    for link in links:
        link.close()
    brain.terminate()
    brain.wait(timeout=20)
    stats = json.loads((tmp / "brain" / "stats.json").read_text())
    return rtt, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", help="the brain's device (cuda: the GPU rows)")
    ap.add_argument("--runs", type=int, default=1, help="full runs one after another, each its own table")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a brain setting, e.g. brain.static_step=false for the eager step (the baseline), or "
                         "brain.model=DIR for another model")
    ap.add_argument("--rigs", default="1,4,16", help="rig counts to run, comma-separated (default 1,4,16)")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"--device {args.device}: torch sees no CUDA GPU here, so the GPU rows are not measured.")
            return
    print(f"machine: {machine()}; brain on {args.device}" + "".join(f"; {s}" for s in args.set))
    seconds = 8 if args.quick else 20
    for k in range(args.runs):
        rows = []
        for n in (int(x) for x in args.rigs.split(",")):
            for curve in (False, True):
                rtt, stats = run(n, seconds, curve, args.device, args.set)
                ms = [x * 1000 for x in rtt]
                rows.append([n, "CurveZMQ" if curve else "plain", len(ms), pct(ms, 0.5), pct(ms, 0.99), max(ms),
                             stats.get("step_ms_p50"), stats.get("step_ms_p99"), stats.get("step_ms_max")])
        table(f"run {k + 1} of {args.runs}: round trip at the rig, event out → its accompaniment back ({seconds} s of "
              f"a folk tune per rig, 112 BPM)",
              ["rigs", "wire", "answered events", "p50 ms", "p99 ms", "max ms", "brain step p50 ms",
               "brain step p99 ms", "brain step max ms"], rows)


if __name__ == "__main__":
    main()
