"""Brain step time: a new event in → its accompaniment and neurons out (the node's whole handler).

    python bench/brain.py [--quick] [--device cuda] [--gpt2-shape]

Targets (issue 4): embedded default on CPU p99 < 10 ms on a 2-core machine; on a GPU a TL-native model with
gpt2-small's shape (12 layers, d_model 768, d_mlp 3072, random weights) p50 < 4 ms (anchor: HF eager gpt2-small
with a KV cache, 9.6 ms on an H100). Also reports throughput when 8 events arrive at once, and load time.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine, pct, table

from brain.encoder import vocabulary
from brain.models import build_tiny, load_model
from brain.live.core import BrainCore
from bridge.messages import Beat, Note
from neurojam.config import load_config


def events(n: int, t0: float = 1000.0, tempo: float = 120.0):
    """Beats with notes between them: what a jam looks like to the brain."""
    out, period, seq = [], 60 / tempo, 0
    for i in range(n):
        t = t0 + i * period / 3
        if i % 3 == 0:
            b = i // 3
            msg = Beat(index=b, bar=b // 4, beat=b % 4, tempo_bpm=tempo, time=t, t=t)
        else:
            msg = Note(source="pet" if i % 5 == 0 else "human", note=55 + (i * 7) % 24, velocity=90, t=t)
        msg.seq, msg.node = seq, "rig"
        seq += 1
        out.append(msg)
    return out


def measure(node: BrainCore, n: int, batch: int) -> list[float]:
    stream = events(n + 300)
    for i in range(0, 300, batch):  # warm up and fill the context window
        node.handle(stream[i:i + batch])
    times = []
    for i in range(300, 300 + n, batch):
        t = time.perf_counter()
        node.handle(stream[i:i + batch])
        if node.model.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) / batch)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpt2-shape", action="store_true", help="also a random gpt2-small-shaped TL-native model")
    args = ap.parse_args()
    n = 200 if args.quick else 1000
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device.startswith("cuda") else ""))
    t = time.perf_counter()
    model = load_model("notes-default", args.device)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    load_model("notes-default", args.device)
    load_s = time.perf_counter() - t
    rows = []
    models = [("notes-default", model)]
    if args.gpt2_shape:
        models.append(("gpt2-small shape (random)", build_tiny(vocabulary(), n_layers=12, d_model=768, d_mlp=3072,
                                                               n_ctx=1024, device=args.device)))
    for k, (name, m) in enumerate(models):
        for kv in (True, False):
            for ctx in (64, 128, 192):
                cfg = load_config(None, [f"brain.context_tokens={ctx}", f"brain.device={args.device}",
                                         f"brain.kv_cache={str(kv).lower()}"])
                node = BrainCore(cfg.brain, m)
                path = "key/value cache" if node.rig_state("rig").stream._kv is not None else "full recompute"
                one = measure(node, n, 1)
                eight = measure(node, n, 8)
                node.close()
                rows.append([name, path, ctx, pct(one, .5) * 1e3, pct(one, .99) * 1e3, pct(eight, .5) * 1e3,
                             1 / pct(eight, .5)])
    table("brain: event in → accompaniment + neurons out (the brain core, no network)",
          ["model", "path", "context tokens", "p50 ms", "p99 ms", "8 at once: ms/event", "events/s"], rows)
    print(f"notes-default load: {load_s * 1000:.0f} ms after import ({first_s * 1000:.0f} ms for the first load, "
          f"which imports transformer_lens)")


if __name__ == "__main__":
    main()
