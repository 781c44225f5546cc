"""Brain step time: a new event in → its accompaniment and neurons out (the node's whole handler).

    python bench/brain.py [--quick] [--device cuda] [--gpt2-shape]

Paths: the fixed-shape step (``brain/static_step.py``: static key/value buffers, answers chosen on the device,
one read-back; on CUDA a graph per shape), the eager key/value step, and the full recompute (models without a
cache). Beside them the floor: the fixed-shape step's device work alone (one event, no host glue), and 16 rigs
with an event each in one step. Targets (issue 29, an H100/H200-class GPU): gpt2-small shape p50 < 1.5 ms, p99
< 2 ms, 16 rigs < 2.5 ms a step; notes-default p50 < 0.5 ms. CPU (issue 4): notes-default p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import machine, pct, table

from brain.encoder import vocabulary
from brain.models import build_tiny, load_model
from brain.live.core import BrainCore
from brain.static_step import StaticRow
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
        sync(node.model.device)
        times.append((time.perf_counter() - t) / batch)
    return times


def measure_rigs(node: BrainCore, n: int, rigs: int = 16) -> list[float]:
    """Step time when ``rigs`` rigs each send one event at the same moment (one padded step)."""
    stream = events(n + 300)
    times = []
    for k, msg in enumerate(stream):
        batch = []
        for r in range(rigs):
            m = copy.copy(msg)
            m.node = f"rig{r}"
            batch.append(m)
        t = time.perf_counter()
        node.handle(batch)
        sync(node.model.device)
        if k >= 300:
            times.append(time.perf_counter() - t)
    return times


@torch.inference_mode()
def floor(node: BrainCore, n: int) -> list[float]:
    """The fixed-shape step's device work alone: one event's packed inputs in, its packed answers read back."""
    pool = node.static
    packed = pool._pack([StaticRow(0, [5], 0, [[0]])], 1, 1, 1)
    times = []
    for _ in range(n + 50):
        t = time.perf_counter()
        pool._run(packed, 1, 1).tolist()
        times.append(time.perf_counter() - t)
    return times[50:]


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


PATHS = {"fixed-shape step": ["brain.static_step=true"],
         "key/value cache, eager": ["brain.static_step=false"],
         "full recompute": ["brain.kv_cache=false"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpt2-shape", action="store_true", help="also a random gpt2-small-shaped TL-native model")
    args = ap.parse_args()
    n = 200 if args.quick else 1000
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA GPU here, so the GPU rows are not measured.")
        return
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
    for name, m in models:
        for path, sets in PATHS.items():
            for ctx in (64, 128, 192) if path != "full recompute" else (128,):
                cfg = load_config(None, [f"brain.context_tokens={ctx}", f"brain.device={args.device}", *sets])
                node = BrainCore(cfg.brain, m)
                node.warm()
                one = measure(node, n, 1)
                eight = measure(node, n, 8)
                sixteen = measure_rigs(node, n // 4 if path == "full recompute" else n)
                rows.append([name, path, ctx, pct(one, .5) * 1e3, pct(one, .99) * 1e3, pct(eight, .5) * 1e3,
                             pct(sixteen, .5) * 1e3, pct(sixteen, .99) * 1e3])
                if path == "fixed-shape step" and ctx == 128:
                    low = floor(node, n)
                    rows.append([name, "floor: the fixed-shape step's device work, 1 event", ctx, pct(low, .5) * 1e3,
                                 pct(low, .99) * 1e3, "–", "–", "–"])
                node.close()
    table("brain: event in → accompaniment + neurons out (the brain core, no network)",
          ["model", "path", "context tokens", "p50 ms", "p99 ms", "8 at once: ms/event", "16 rigs: p50 ms/step",
           "16 rigs: p99 ms/step"], rows)
    print(f"notes-default load: {load_s * 1000:.0f} ms after import ({first_s * 1000:.0f} ms for the first load, "
          f"which imports transformer_lens)")


if __name__ == "__main__":
    main()
