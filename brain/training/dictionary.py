"""Train the sparse dictionary of a model's MLP neurons, one TopK SAE per layer, and write its card.

    python -m brain.training.dictionary                      # notes-default → brain/models/notes-default/dictionary
    python -m brain.training.dictionary --model DIR --out X  # any model folder
    python -m brain.training.dictionary --random-weights     # the control: a shuffled-weight copy, its own dictionary
    python -m brain.training.dictionary --calibrate          # only the features' statistics, for an existing one

The activations come from the corpus's training tunes (``blocks.L.mlp.hook_post``, captured once), the card's
figures from the deduplicated test tunes, which the dictionary never saw. EleutherAI's sparsify supplies the
SparseCoder (TopK, AuxK for dead latents, unit-norm decoder); the loop is ours, a page long.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from brain.science.evaluate import corpus_splits
from brain.units.dictionary import Dictionary, LayerDictionary
from brain.units.features import calibrate, load_quantiles

DEAD_AFTER = 20_000
"""Tokens without firing after which a latent counts as dead and AuxK trains it on what the others miss (50,000 left
12 % of layer 0's latents dead on the test tunes; 20,000: 3 %)."""


def train_layer(acts: torch.Tensor, latents: int, k: int, epochs: int, seed: int, progress: bool) -> LayerDictionary:
    """One TopK SAE on [n_tokens, d_mlp] activations."""
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(seed)
    sae = SparseCoder(acts.shape[1], SparseCoderConfig(num_latents=latents, k=k))
    with torch.no_grad():  # start the decoder's bias at the data's median, as sparsify's trainer does
        sae.b_dec.copy_(acts[:20_000].median(0).values)
    lr = 2e-4 / math.sqrt(latents / 2 ** 14)  # sparsify's default scaling
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    batch = 1024
    since_fired = torch.zeros(latents, dtype=torch.long)
    steps = range(epochs * (acts.shape[0] // batch))
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="  training", unit="step", leave=False)
    for step in steps:
        i = step % (acts.shape[0] // batch)
        if i == 0:  # a new epoch, a new order
            order = torch.randperm(acts.shape[0])
        x = acts[order[i * batch:(i + 1) * batch]]
        out = sae(x, dead_mask=since_fired > DEAD_AFTER)
        loss = out.fvu + out.auxk_loss / 32
        opt.zero_grad()
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()
        fired = torch.zeros(latents, dtype=torch.bool)
        fired[out.latent_indices.flatten()] = True
        since_fired = torch.where(fired, 0, since_fired + batch)
    return LayerDictionary(sae.encoder.weight.detach().clone(), sae.encoder.bias.detach().clone(),
                           sae.W_dec.detach().clone(), sae.b_dec.detach().clone(), k)


@torch.inference_mode()
def card_figures(model, dictionary: Dictionary, test_texts: list[str]) -> dict:
    """How well the dictionary stands in for the neurons on tunes it never saw (``check_card`` recomputes these)."""
    from brain.activations import capture_activations
    from brain.science.evaluate import model_scores, note_id_set

    cap = capture_activations(model, test_texts)
    layers = {}
    for layer, d in dictionary.layers.items():
        acts = cap.acts[layer]
        features = d.encode(acts)
        rebuilt = d.decode(features)
        fvu = float((acts - rebuilt).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum())
        fired = (features > 0).any(0)
        pairs = len(d.near_duplicate_pairs())
        layers[str(layer)] = {"fvu": round(fvu, 4), "l0": round(float((features > 0).sum(1).float().mean()), 2),
                              "dead_fraction": round(1 - float(fired.float().mean()), 4),
                              "near_duplicate_pairs": pairs}
    notes = note_id_set(model)
    hooks = [(model.hook_name(layer), (lambda d: lambda act, hook: d.reconstruct(act))(d))
             for layer, d in dictionary.layers.items()]
    clean = model_scores(model, test_texts, notes)
    spliced = model_scores(model, test_texts, notes, forward=lambda x: model.bridge.run_with_hooks(x, fwd_hooks=hooks))
    return {"layers": layers, "test_tokens": cap.n_tokens, "test_tunes": len(test_texts),
            "next_note_top1": {"clean": round(clean["accuracy"], 4), "spliced": round(spliced["accuracy"], 4)}}


def label_summary(model, dictionary: Dictionary, scale: torch.Tensor) -> tuple[dict, dict]:
    """Both sides of every feature's label (traits chosen on the validation tunes, everything measured on the test
    tunes), and the same for the model's neurons at the sonifier's gate (a shuffled copy's scale from its own
    quantiles): the card's comparison. The features' labels themselves go to labels.json."""
    from brain.config import SonifyConfig
    from brain.neuron_stats import NeuronStats, compute_quantiles
    from brain.units.labels import as_json, label_dictionary, label_neurons, summary

    train_texts, choose, check = corpus_splits(model)
    features = label_dictionary(model, dictionary, scale, SonifyConfig().gate, choose, check)
    stats = NeuronStats.load(model.directory) if model.directory is not None else None
    if stats is None:  # a shuffled copy has no statistics: its own quantiles, as the score's controls compute them
        stats = compute_quantiles(model, train_texts[:2000])
    neurons = label_neurons(model, stats.scale, SonifyConfig().gate, choose, check)
    return ({"features": summary(list(features.values())), "neurons": summary(list(neurons.values())),
             "gate": SonifyConfig().gate}, as_json(features))


def train_dictionary(model, latents: int = 1024, k: int = 24, tokens: int = 300_000, epochs: int = 10, seed: int = 0,
                     progress: bool = True) -> Dictionary:
    from brain.activations import capture_activations

    train_texts, _, test_texts = corpus_splits(model)
    gen = torch.Generator().manual_seed(seed)
    picked, total = [], 0
    for i in torch.randperm(len(train_texts), generator=gen).tolist():
        picked.append(train_texts[i])
        total += len(train_texts[i].split())
        if total >= tokens:
            break
    cap = capture_activations(model, picked, progress=progress)
    layers = {}
    for layer in cap.layers:
        if progress:
            print(f"layer {layer}: {cap.n_tokens:,} tokens × {model.d_mlp} neurons → {latents} features, k = {k}",
                  file=sys.stderr)
        layers[layer] = train_layer(cap.acts[layer].float(), latents, k, epochs, seed + layer, progress)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):  # as it is stored, so the card measures what ships
            setattr(layers[layer], name, getattr(layers[layer], name).half().float())
    del cap
    dictionary = Dictionary(layers)
    dictionary.card = {"kind": "TopK SAE on blocks.L.mlp.hook_post", "latents": latents, "k": k,
                       "train_tokens": total, "epochs": epochs, "seed": seed, "model": model.name,
                       **card_figures(model, dictionary, test_texts)}
    return dictionary


def write_dictionary_md(card: dict, out: Path) -> None:
    """The dictionary's card in words, beside its numbers (``card.json``), with the control's where it ships."""
    lab, neu = card["labels"]["features"], card["labels"]["neurons"]
    rows = "\n".join(f"| {layer} | {v['fvu']} | {v['dead_fraction']:.0%} | {v.get('near_duplicate_pairs', '–')} |"
                     for layer, v in card["layers"].items())
    top1 = card["next_note_top1"]
    (out / "README.md").write_text(f"""# Sparse dictionary of {card['model']}

{card['kind']}: {card['latents']} features a layer, k = {card['k']}, trained on {card['train_tokens']:,} tokens of the
training tunes ({card['epochs']} epochs, seed {card['seed']}) by `python -m brain.training.dictionary`; every figure
below measured on the {card['test_tunes']:,} deduplicated test tunes ({card['test_tokens']:,} tokens) and recomputed by
`python -m brain.science.check_card`. Feature statistics (`feature_quantiles.safetensors`) over
{card.get('calibration_tokens', 0):,} training tokens. Played with `--units features` (`brain/units/features.py`).

| layer | FVU | dead | near-duplicate pairs (decoder cosine > 0.9) |
| --- | --- | --- | --- |
{rows}

Next-note top-1 with every layer spliced in: {top1['spliced']:.1%} (clean {top1['clean']:.1%}).

Labels (`labels.json`, `brain/units/labels.py`), where a unit sounds (gate {card['labels']['gate']} × its top quantile):
{lab['clear_reads']} of {lab['labelable']} features that fire often enough read a trait clearly
({lab['clear_reads_fraction']:.0%}); {lab['does_among_clear']} of those ({lab['does_among_clear_fraction']:.1%}) make the
model expect what then comes at ≥ 2× its base rate, the outcome named by their full effect (removed where they sound on
the validation tunes){_direct(lab)}. The model's neurons, labelled the same way:
{neu['clear_reads']} of {neu['labelable']} ({neu['clear_reads_fraction']:.0%}) and {neu['does_among_clear']}
({neu['does_among_clear_fraction']:.1%}){_direct(neu)}.
""")


def _direct(summary: dict) -> str:
    if "does_directly_among_clear" not in summary:
        return ""
    return (f" ({summary['does_directly_among_clear']}, {summary['does_directly_among_clear_fraction']:.1%}, with the "
            f"outcome its direct effect alone names)")


def main(argv: list[str] | None = None) -> int:
    from brain.models import MODELS_DIR, load_model

    ap = argparse.ArgumentParser(prog="python -m brain.training.dictionary", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="notes-default", help="model name or folder (default notes-default)")
    ap.add_argument("--out", help="where to write it (default: the model's folder/dictionary)")
    ap.add_argument("--latents", type=int, default=1024, help="features per layer (default 1024: 2 per neuron)")
    ap.add_argument("--k", type=int, default=24, help="features on per token (default 24: with 16, next-note top-1 "
                    "spliced in fell 1.5 points and layer 3's FVU was 0.154)")
    ap.add_argument("--tokens", type=int, default=300_000, help="training tokens (default 300,000)")
    ap.add_argument("--epochs", type=int, default=10, help="passes over them (default 10: ~13 minutes on 2 CPU cores)")
    ap.add_argument("--random-weights", action="store_true",
                    help="train on a shuffled-weight copy of the model instead: the control a label must beat")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--relabel", action="store_true",
                    help="keep the trained dictionary at --out; measure its card and its labels again")
    ap.add_argument("--calibrate", action="store_true",
                    help="keep the trained dictionary at --out; compute only its features' statistics (what "
                         "--units features needs beside the weights)")
    args = ap.parse_args(argv)
    model = load_model(args.model, "cpu")
    out = Path(args.out) if args.out else (model.directory or MODELS_DIR / args.model) / "dictionary"
    start = time.perf_counter()
    if args.relabel or args.calibrate:
        dictionary = Dictionary.load(out)
        args.random_weights, args.seed = dictionary.card["random_weights"], dictionary.card["seed"]
    if args.random_weights:
        from brain.science.controls import random_weights

        model = random_weights(model, seed=args.seed)
    if args.calibrate:
        print(f"feature statistics over {calibrate(model, dictionary, out, progress=True):,} tokens → {out}")
        return 0
    if args.relabel:
        dictionary.card.update(card_figures(model, dictionary, corpus_splits(model)[2]))
    if not args.relabel:
        dictionary = train_dictionary(model, args.latents, args.k, args.tokens, args.epochs, args.seed)
        dictionary.card["random_weights"] = args.random_weights
    if not args.relabel:
        dictionary.save(out)
        calibrate(model, dictionary, out, progress=True)
    dictionary.card["labels"], labels = label_summary(model, dictionary, load_quantiles(out)[..., -1])
    dictionary.save(out)
    write_dictionary_md(dictionary.card, out)
    (out / "labels.json").write_text(json.dumps(labels) + "\n")
    c = dictionary.card
    fvu = ", ".join(str(v["fvu"]) for v in c["layers"].values())
    dead = ", ".join(f"{v['dead_fraction']:.0%}" for v in c["layers"].values())
    top1 = c["next_note_top1"]
    lab = c["labels"]["features"]
    print(f"labels: {lab['clear_reads']} of {lab['labelable']} features read clearly, {lab['does_among_clear']} of those "
          f"do what they say (neurons: {c['labels']['neurons']['clear_reads']}, "
          f"{c['labels']['neurons']['does_among_clear']})")
    print(f"dictionary: {len(dictionary.layers)} layers × {dictionary.n_latents} features; FVU {fvu}; dead {dead}; next-note "
          f"top-1 {top1['clean']:.3f} clean, {top1['spliced']:.3f} spliced; {time.perf_counter() - start:.0f} s → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
