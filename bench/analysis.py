"""Analysis speed: vectorized neuron match vs a nested-loop reference, and batched activation capture.

    python bench/analysis.py [--quick] [--device cuda] [--gpt2-shape]

Targets (issue 8): match ≥ 1000× faster than the nested loops on the same input; report the default model
against itself on 100k tokens. Capture throughput in tokens/s (GPU anchor: HF eager gpt2-small forward
156k tokens/s fp32, 596k bf16 on an H100; target > 1M bf16).
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np
import torch
from common import machine, table

from brain.activations import capture_activations
from brain.encoder import note_word, vocabulary
from brain.science.experiments import correlate, match_neurons
from brain.models import build_tiny, load_model


def nested_loop_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The seed search's shape: for each A neuron, for each B neuron, loop over tokens."""
    n = len(a)
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            sa = sb = saa = sbb = sab = 0.0
            for k in range(n):
                x, y = a[k, i], b[k, j]
                sa += x
                sb += y
                saa += x * x
                sbb += y * y
                sab += x * y
            cov = sab / n - (sa / n) * (sb / n)
            out[i, j] = cov / math.sqrt(max(1e-12, (saa / n - (sa / n) ** 2) * (sbb / n - (sb / n) ** 2)))
    return out


def texts(n_tokens: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out, total = [], 0
    while total < n_tokens:
        words = ["|" if i % 6 == 0 else note_word(rng.choice([60, 62, 64, 65, 67, 69, 71, 72])) for i in range(200)]
        out.append(" ".join(words))
        total += len(words)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpt2-shape", action="store_true")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA GPU here, so the GPU rows are not measured.")
        return
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; device {args.device}")

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 48)), rng.normal(size=(500, 48))
    t = time.perf_counter()
    ref = nested_loop_correlation(a, b)
    t_ref = time.perf_counter() - t
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        fast = correlate(a, b)
    t_fast = (time.perf_counter() - t) / reps
    assert np.allclose(ref, fast, atol=1e-3)
    table("neuron match on the same input (500 aligned words, 48 × 48 neurons)",
          ["nested loops s", "one matrix product ms", "speed-up ×"], [[t_ref, t_fast * 1e3, t_ref / t_fast]])

    model = load_model("notes-default", args.device)
    n_tokens = 20_000 if args.quick else 100_000
    corpus = texts(n_tokens)
    t = time.perf_counter()
    matches = match_neurons(model, model, corpus)
    t_match = time.perf_counter() - t
    self_hits = sum(m.a == m.b for m in matches) / len(matches)
    n = model.n_layers * model.d_mlp
    table(f"neuron match: notes-default against itself ({n_tokens:,} tokens, {n:,} × {n:,} neurons)",
          ["seconds (capture both + correlate)", "neurons matched to themselves"], [[t_match, f"{self_hits:.1%}"]])

    rows = []
    models = [("notes-default", model, torch.float32)]
    if args.gpt2_shape:
        g = build_tiny(vocabulary(), n_layers=12, d_model=768, d_mlp=3072, n_ctx=1024, device=args.device)
        models += [("gpt2-small shape fp32", g, torch.float32)]
        if gpu:  # the same weights in bfloat16
            g16 = build_tiny(vocabulary(), n_layers=12, d_model=768, d_mlp=3072, n_ctx=1024, device=args.device)
            g16.bridge.to(torch.bfloat16)
            models += [("gpt2-small shape bf16", g16, torch.bfloat16)]
    batch = 256 if gpu else 32
    for name, m, dtype in models:
        sample = texts(20_000 if args.quick else 60_000, seed=1)
        capture_activations(m, sample[:5], dtype=dtype)
        t = time.perf_counter()
        cap = capture_activations(m, sample, batch_size=batch, dtype=dtype)
        el = time.perf_counter() - t  # capture waits for its own copies
        rows.append([name, batch, cap.n_tokens, el, cap.n_tokens / el])
    table("batched activation capture (all MLP layers' hook_post, one device → host copy per layer per batch)",
          ["model", "batch", "tokens", "seconds", "tokens/s"], rows)


if __name__ == "__main__":
    main()
