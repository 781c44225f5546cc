"""One short run for a machine with a GPU: is the fixed-shape live step right there, and are its graphs in use?

    python bench/gpu_check.py [--device cuda] [--gpt2-shape]

Replays a synthesized three-rig session (steering on one rig, a skipped layer on another) through the brain core
twice on the device — the fixed-shape step (padded, a CUDA graph per shape) and the eager key/value step — and
compares every answer as `tests/test_static_step.py` does on a CPU. Prints how many shapes were captured, whether a
capture fell back to eager, the answers that differ, and the step times of both. CI has no GPU: this is the check a
session with one runs before `bench/brain.py --device cuda --gpt2-shape` and `bench/loop.py --device cuda`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import torch
from common import machine, pct, table

from bridge.messages import Accomp, Neurons, Steer, TreatRequest
from brain.encoder import vocabulary
from brain.live.core import BrainCore
from brain.models import build_tiny, load_model
from neurojam.config import load_config
from recording.log import read_session
from recording.synthetic import played_by_rigs, write_melody_session

RIGS = ("rig-a", "rig-b", "rig-c")


def session_events() -> list:
    melody = [(b * 0.5, 0.45, 60 + [0, 4, 7, 12, 7, 4, 2, 5][b % 8]) for b in range(160)]
    src = write_melody_session(Path(tempfile.mkdtemp()) / "src", melody, tempo_bpm=120, pet_every_beats=3)
    return played_by_rigs(read_session(src).rig_side(), RIGS)


def controls(at: int) -> list[Steer]:
    plan = {90: [Steer(layer=1, neuron=5, factor=3.0, rig="rig-b")], 240: [Steer(layer=0, skip_layer=True, rig="rig-c")],
            420: [Steer(clear=True, rig="rig-c")]}
    for s in plan.get(at, []):
        s.node = "tool"
    return plan.get(at, [])


def jam(brain: BrainCore, events: list, batch: int) -> tuple[dict, list[float]]:
    got: dict[str, list] = {r: [] for r in RIGS}
    times = []
    for i in range(0, len(events), batch):
        for at in range(i, i + batch):
            if controls(at):
                brain.handle(controls(at))
        t = time.perf_counter()
        answers = brain.handle(events[i:i + batch])
        times.append(time.perf_counter() - t)
        for to, msg in answers:
            if to in got and isinstance(msg, (Accomp, Neurons, TreatRequest)):
                d = msgspec.to_builtins(msg)
                for k in ("node", "seq", "t", "step_ms"):
                    d.pop(k, None)
                got[to].append(d)
    return got, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--gpt2-shape", action="store_true", help="a random gpt2-small-shaped model instead of the shipped one")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA GPU here; nothing checked.")
        return 2
    print(f"machine: {machine()}; torch {torch.__version__}; device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device.startswith("cuda") else ""))
    model = (build_tiny(vocabulary(), n_layers=12, d_model=768, d_mlp=3072, n_ctx=1024, device=args.device)
             if args.gpt2_shape else load_model("notes-default", args.device))
    events = session_events()
    results, rows = {}, []
    for name, static in (("fixed-shape step", True), ("eager key/value step", False)):
        cfg = load_config(None, [f"brain.static_step={str(static).lower()}", f"brain.device={args.device}"])
        brain = BrainCore(cfg.brain, model)
        if static:
            brain.static.pad = True  # as on a GPU, also when this check runs on a CPU
        t = time.perf_counter()
        brain.warm()
        warm_s = time.perf_counter() - t
        results[name], times = jam(brain, events, batch=3)
        pool = brain.static
        rows.append([name, f"{warm_s:.1f}", len(pool.graphs) if pool else "–",
                     ("yes" if pool.use_graphs else "no") if pool else "–", pct(times, .5) * 1e3, pct(times, .99) * 1e3,
                     max(times) * 1e3])
    table("the same three-rig session through both steps",
          ["step", "warm-up s", "graphs captured", "graphs in use", "p50 ms", "p99 ms", "max ms"], rows)
    a, b = results["fixed-shape step"], results["eager key/value step"]
    differ = 0
    for rig in RIGS:
        for x, y in zip(a[rig], b[rig]):
            hx = [h[:2] for h in x.get("hits", [])]
            hy = [h[:2] for h in y.get("hits", [])]
            if {k: v for k, v in x.items() if k != "hits"} != {k: v for k, v in y.items() if k != "hits"} or hx != hy:
                differ += 1
        differ += abs(len(a[rig]) - len(b[rig]))
    total = sum(len(b[r]) for r in RIGS)
    print(f"answers that differ: {differ} of {total}")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
