"""Recompute every number in the default model's card from the shipped weights; fail on a mismatch.

    python -m brain.science.check_card

Split counts (tunes, tokens, the deduplication's counts) must match exactly; top-1 accuracy within 0.05
points, perplexity within 0.1 %, target counts exactly, for the model, all four baselines and the ways of
writing the pet's presses; and the neuron labels by precision (how many are clear, their median held-out precision).
Then the dictionary's card and its control's (``dictionary/`` and ``dictionary-control/`` beside the model): FVU,
L0, dead latents, near-duplicates, next-note top-1 spliced in, and both sides of the labels, features and neurons.
"""

from __future__ import annotations

import sys

from brain import corpus
from brain.science import evaluate
from brain.models import MODELS_DIR, load_model

ACCURACY_PP = 0.05
PERPLEXITY_REL = 1e-3


def compare(stated: dict, measured: dict, path: str = "") -> list[str]:
    """Every number under ``stated`` against ``measured``: the mismatches, as readable lines."""
    out = []
    for key, want in stated.items():
        where = f"{path}.{key}" if path else key
        got = measured.get(key) if isinstance(measured, dict) else None
        if isinstance(want, dict):
            out += compare(want, got if isinstance(got, dict) else {}, where)
        elif got is None:
            out.append(f"{where}: the card says {want}, nothing was measured")
        elif key == "accuracy" and abs(got - want) * 100 > ACCURACY_PP:
            out.append(f"{where}: card {want * 100:.2f}%, measured {got * 100:.2f}%")
        elif key == "perplexity" and abs(got - want) > PERPLEXITY_REL * want:
            out.append(f"{where}: card {want:.3f}, measured {got:.3f}")
        elif key not in ("accuracy", "perplexity") and isinstance(want, (int, float)) and abs(got - want) > 1e-9:
            out.append(f"{where}: card {want}, measured {got}")
    return out


def check(labels: bool = False) -> tuple[dict, list[str]]:
    """``labels``: also relabel every neuron by precision (about a minute) and compare the card's label counts."""
    model = load_model("notes-default", "cpu")
    tunes = corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    measured = evaluate.evaluate_all(model, tunes)
    card = model.card
    keys = ["data", "window", "test", "pet_words"]
    if labels:
        from brain.neuron_stats import load_stats
        from brain.training.train import label_card

        measured["labels"] = label_card(model, load_stats(model, ""), tunes)
        keys.append("labels")
    return measured, compare({k: card[k] for k in keys}, measured)


DICTIONARY_KEYS = ("layers", "next_note_top1", "test_tokens", "test_tunes", "labels")


def check_dictionary(folder, labels: bool = True) -> tuple[dict, list[str]]:
    """Recompute a dictionary's card on the test tunes (a control's on the same shuffled copy it was trained on);
    ``labels``: both sides of every feature's and neuron's label too (minutes)."""
    from brain.science.controls import random_weights
    from brain.science.evaluate import corpus_splits
    from brain.training.dictionary import card_figures, label_summary
    from brain.units.dictionary import Dictionary
    from brain.units.features import load_quantiles

    dictionary = Dictionary.load(folder)
    card = dictionary.card
    model = load_model("notes-default", "cpu")
    if card.get("random_weights"):
        model = random_weights(model, seed=card["seed"])
    _, _, test = corpus_splits(model)
    measured = card_figures(model, dictionary, test)
    keys = [k for k in DICTIONARY_KEYS if labels or k != "labels"]
    if labels:
        measured["labels"], _ = label_summary(model, dictionary, load_quantiles(folder)[..., -1])
    return measured, compare({k: card[k] for k in keys}, measured)


def main() -> int:
    measured, mismatches = check(labels=True)
    t = measured["test"]
    for name, s in t.items():
        print(f"{name:14s} top-1 {s['accuracy'] * 100:6.2f}%  perplexity {s['perplexity']:6.2f}  ({s['targets']:,} targets)")
    for scheme, r in measured["pet_words"].items():
        print(f"pet as {scheme!r:12s} tune notes: perplexity {r['perplexity']:5.2f}, top-1 {r['accuracy'] * 100:5.2f}%")
    d = measured["data"]["test"]["dedup"]
    print(f"test split: {d['kept']:,} of {d['test_tunes']:,} tunes kept ({d['exact_duplicates']} exact duplicates, "
          f"{d['transpositions']} transpositions, {d['repeated_within_test']} repeated within test left out)")
    lab = measured["labels"]
    print(f"labels at gate {lab['gate']}: {lab['clear']} of {lab['neurons']} clear (held-out precision ≥ 80 %, median "
          f"{lab['median_held_out_precision_clear']:.1%}), {lab['chosen_at_80']} chosen at ≥ 80 % on validation, "
          f"{lab['too_rare']} too rare to label")
    for name in ("dictionary", "dictionary-control"):
        folder = MODELS_DIR / "notes-default" / name
        if not folder.exists():
            continue
        got, wrong = check_dictionary(folder)
        mismatches += [f"{name}: {w}" for w in wrong]
        f, n = got["labels"]["features"], got["labels"]["neurons"]
        print(f"{name}: FVU {', '.join(str(v['fvu']) for v in got['layers'].values())}; top-1 spliced "
              f"{got['next_note_top1']['spliced'] * 100:.2f}% (clean {got['next_note_top1']['clean'] * 100:.2f}%); "
              f"features clearly read {f['clear_reads_fraction']:.0%}, of those doing what they say "
              f"{f['does_among_clear_fraction']:.0%} (neurons: {n['clear_reads_fraction']:.0%}, "
              f"{n['does_among_clear_fraction']:.0%})")
    if mismatches:
        print("MISMATCH with the card:\n  " + "\n  ".join(mismatches))
        return 1
    print("every number in the card: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
