"""Experiment speed: activation patching (batched vs one run per patch) and layer corruption on the test split.

    python bench/experiments.py [--runs 5] [--device cpu]

Target (issue 28): a per-neuron patch of one layer (512 neurons) over a 128-token window in under 10 s on a
2-core CPU. The baseline is the plain loop: one corrupted forward per neuron (timed on 32 neurons, scaled to
512).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import torch
from common import machine, pct, table

from brain.corruption import LayerCorruption
from brain.science.corruption_effects import corrupted_forward, test_texts
from brain.encoder import note_word, word_note
from brain.science.evaluate import model_scores, note_id_set
from brain.models import MODELS_DIR, load_model
from brain.science.patching import aligned, patch


def window(model) -> tuple[str, str]:
    """128 tokens of a validation tune and the same window transposed up a tone."""
    tunes = [json.loads(line) for line in gzip.open(MODELS_DIR / "notes-default" / "corpus.jsonl.gz", "rt")]
    text = next(" ".join(t["text"].split()[:model.n_ctx - 1]) for t in tunes
                if t["split"] == "validation" and len(t["text"].split()) >= model.n_ctx - 1)
    moved = " ".join(note_word(word_note(w) + 2) if word_note(w) is not None else w for w in text.split())
    return text, moved


def loop_patch(model, inputs, layer: int, neurons: list[int]) -> float:
    """The unbatched reference: one forward per patched neuron."""
    _, cache = model.bridge.run_with_cache(torch.tensor([inputs.clean]), names_filter=lambda n: n == model.hook_name(layer))
    clean = cache[model.hook_name(layer)][0]
    x = torch.tensor([inputs.corrupt])
    start = time.perf_counter()
    for n in neurons:
        def hook(act, hook=None, n=n):
            act = act.clone()
            act[0, :, n] = clean[:, n]
            return act
        with torch.inference_mode():
            model.bridge.run_with_hooks(x, fwd_hooks=[(model.hook_name(layer), hook)])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; device {args.device}")
    model = load_model("notes-default", args.device)
    inputs = aligned(model, *window(model))
    layer = model.n_layers - 1
    patch(model, inputs, sites=("mlp_out",))  # warm
    neuron_s, map_s = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        patch(model, inputs, sites=(), neuron_layer=layer)
        neuron_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        patch(model, inputs)
        map_s.append(time.perf_counter() - t)
    loop_32 = loop_patch(model, inputs, layer, list(range(32)))
    loop_512 = loop_32 * model.d_mlp / 32
    table(f"activation patching, notes-default, a {len(inputs.clean)}-token window, {args.runs} runs",
          ["measure", "p50 s", "p99 s", "one forward per patch s", "speed-up ×"],
          [[f"layer {layer}'s {model.d_mlp} neurons, each patched alone (batched)", pct(neuron_s, 0.5),
            pct(neuron_s, 0.99), loop_512, loop_512 / pct(neuron_s, 0.5)],
           [f"layer × position map, 3 sites × {model.n_layers} layers × {len(inputs.clean)} positions", pct(map_s, 0.5),
            pct(map_s, 0.99), "–", "–"]])
    texts = test_texts(model)
    notes = note_id_set(model)
    rows = []
    for spec in (["skip=2"], ["permute=0,2,1,3"], ["mean-mlp=1"]):
        plan = LayerCorruption.parse(spec, model.n_layers)
        from brain.science.corruption_effects import means_for

        forward = corrupted_forward(model, plan, means_for(model, plan))
        t = time.perf_counter()
        score = model_scores(model, texts, notes, forward=forward)
        rows.append([spec[0], time.perf_counter() - t, score["targets"], score["accuracy"] * 100])
    table(f"layer corruption scored on the whole deduplicated test split ({len(texts)} tunes)",
          ["corruption", "seconds", "note targets", "top-1 %"], rows)


if __name__ == "__main__":
    main()
