"""The dictionary's features as the live brain plays them: what a neuron is to the brain, a feature can be.

``brain.units: features`` (``--units features``) makes every reader of the brain's units (the live step, replay,
the score's controls, the report) take each layer's ``hook_post`` activations through the layer's dictionary
(:mod:`brain.units.dictionary`) before choosing the top units, so a hit ``L.F`` is feature ``F`` of layer ``L``.
What a feature needs beside its weights lives in the dictionary's folder:

- ``feature_quantiles.safetensors``: each feature's activation quantiles over the training tunes (the same levels
  as a neuron's, :data:`brain.neuron_stats.QUANTILES`), so ``normalized`` and the sonifier's gate mean the same for
  both kinds of unit. Written by ``python -m brain.training.dictionary`` (``--calibrate`` for an existing one).
- ``labels.json``: both sides of each feature's label (:mod:`brain.units.labels`), shown live and on the report's
  cards beside the control dictionary's figures.

A feature's voice and its direct logit effect are its decoder direction's (``W_dec[F] @ effect``, the neurons'
effects being linear in the neuron space); steering a feature scales its part of the reconstruction (``post +=
(factor - 1) · a_F · W_dec[F]``): 0 takes the feature out of the activations, 2 doubles it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from brain.neuron_stats import NeuronStats, fingerprint
from brain.units.dictionary import Dictionary
from core.errors import ConfigError
from core.units import NeuronId

Units = Literal["neurons", "features"]
QUANTILES_FILE = "feature_quantiles.safetensors"
LABELS_FILE = "labels.json"
CONTROL = "dictionary-control"
"""The shuffled-weight copy's own dictionary, beside the trained one (its labels are the control's figures)."""
CALIBRATION_TOKENS = 300_000
SAMPLE = 20_000
"""Feature activations kept for the median and the 0.9 quantile (a TopK feature is 0 on most tokens)."""


@dataclass
class FeatureSet:
    """A model's dictionary with the statistics and labels that let the brain play it."""

    dictionary: Dictionary
    stats: NeuronStats
    """Quantiles [n_layers, latents, levels]; labels and scores keyed 'L.F' (the shape ``NeuronStats`` has)."""
    control: dict | None = None
    """The control dictionary's label summary (``card.json``'s ``labels``), when it ships beside this one."""

    @property
    def n_latents(self) -> int:
        return self.dictionary.n_latents

    def label(self, fid: str) -> dict:
        return (self.stats.scores or {}).get(fid, {})

    def reads(self, fid: str) -> str:
        """The *reads* side alone (a card shows the *does* side on its own line)."""
        sc = self.label(fid)
        if not sc.get("trait"):
            return "too rare to label"
        if not sc.get("clear"):
            return "fires on many things"
        held = sc.get("held_out_precision")
        return f"reads {sc['trait']}" + (f" ({held:.0%} of its held-out firings)" if held is not None else "")


def feature_label_text(entry: dict) -> str:
    """The one-line label a listener sees: what the feature reads (when clear), what it makes the model expect and
    how often that came on tunes it never saw."""
    reads = entry.get("reads") or ""
    read = reads if entry.get("reads_clear") else "fires on many things" if reads else \
        "too rare to label (silent in the band unless brain.play_rare_features)"
    firings = entry.get("firings", 0)
    if not firings:
        return f"{read}; expects {entry.get('expects', '?')} (silent held out)"
    verdict = "does" if entry.get("does") else "not earned"
    return (f"{read}; expects {entry.get('expects', '?')}: {entry.get('hit_rate', 0):.0%} of {firings} held out, "
            f"base {entry.get('base_rate', 0):.0%} ({verdict})")


def _scores(labels: dict[str, dict]) -> dict[str, dict]:
    """labels.json → the ``scores`` shape the live label check reads (trait, clear, held-out precision)."""
    return {fid: {"trait": e.get("reads"), "clear": bool(e.get("reads_clear")),
                  "precision": e.get("reads_precision"), "held_out_precision": e.get("reads_held_out_precision"),
                  "expects": e.get("expects"), "firings": e.get("firings", 0), "hit_rate": e.get("hit_rate", 0.0),
                  "base_rate": e.get("base_rate", 0.0), "does": bool(e.get("does"))}
            for fid, e in labels.items()}


def dictionary_dir(model, which: str = "dictionary") -> Path:
    from brain.models import MODELS_DIR

    return (model.directory or MODELS_DIR / model.name) / which


def load_features(model, directory: Path | None = None) -> FeatureSet:
    """The features of ``model`` (its ``dictionary/`` folder unless told), calibrated and labelled; a clear error
    naming the command that makes what is missing."""
    directory = Path(directory) if directory is not None else dictionary_dir(model)
    dictionary = Dictionary.load(directory)
    if set(dictionary.layers) != set(range(model.n_layers)) or \
            next(iter(dictionary.layers.values())).W_enc.shape[1] != model.d_mlp:
        raise ConfigError(f"the dictionary at {directory} was not trained on {model.name} (its layers or width "
                          f"differ): train one with `python -m brain.training.dictionary --model "
                          f"{model.directory or model.name}`")
    qpath = directory / QUANTILES_FILE
    if not qpath.exists():
        where = model.directory or model.name
        fix = (f"neurojam model stats --model {where} --units features" if directory == dictionary_dir(model) else
               f"python -m brain.training.dictionary --model {where} --out {directory} --calibrate")
        raise ConfigError(f"the dictionary at {directory} has no feature statistics: run `{fix}` (a minute)")
    quantiles = load_quantiles(directory)
    lpath = directory / LABELS_FILE
    labels = json.loads(lpath.read_text()) if lpath.exists() else {}
    stats = NeuronStats(quantiles, fingerprint(model), {fid: feature_label_text(e) for fid, e in labels.items()}, {},
                        _scores(labels), int(dictionary.card.get("calibration_tokens", 0)))
    control_card = directory.parent / CONTROL / "card.json"
    control = json.loads(control_card.read_text()).get("labels") if control_card.exists() and \
        directory.name != CONTROL else None
    return FeatureSet(dictionary, stats, control)


def load_quantiles(directory: Path) -> torch.Tensor:
    """[n_layers, latents, levels] as :func:`silence_the_dead` leaves them."""
    from safetensors.torch import load_file

    return silence_the_dead(load_file(str(Path(directory) / QUANTILES_FILE))["quantiles"])


def silence_the_dead(quantiles: torch.Tensor) -> torch.Tensor:
    """A feature never calibrated (dead on the training tunes) gets an infinite top quantile: normalized 0, never
    chosen, never sounding (a scale floored at 1e-6 would make its first firing the loudest unit)."""
    out = quantiles.clone()
    out[..., -1] = torch.where(out[..., -1] > 1e-6, out[..., -1], torch.inf)
    return out


def silence_the_rare(stats: NeuronStats) -> NeuronStats:
    """The statistics the band plays by: a feature too rare to label (fewer than ``MIN_FIRINGS`` gate passes on the
    labelling tunes, so no trait was claimed for it) gets an infinite scale, as a dead one does. A dictionary shipped
    without labels is played whole (nothing says which are rare)."""
    if not stats.scores:
        return stats
    quantiles = stats.quantiles.clone()
    for fid, score in stats.scores.items():
        if not score.get("trait"):
            layer, unit = NeuronId.parse(fid)
            quantiles[layer, unit, -1] = torch.inf
    return replace(stats, quantiles=quantiles)


@torch.inference_mode()
def feature_quantiles(model, dictionary: Dictionary, texts: list[str], progress: bool = False) -> tuple[torch.Tensor, int]:
    """[n_layers, latents, levels] each feature's activation quantiles over ``texts`` (their distinct contexts),
    read a few hundred texts at a time; and how many tokens that was."""
    from brain.activations import capture_activations
    from brain.neuron_stats import DistinctContexts, _Quantiles

    tok = model.tokenizer
    capacity = sum(len(tok.encode(t)[0]) + 1 for t in texts)
    quant = {layer: _Quantiles(capacity, dictionary.n_latents, seed=layer, sample=SAMPLE) for layer in dictionary.layers}
    contexts = DistinctContexts()
    steps = range(0, len(texts), 200)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="feature statistics", unit="batch", leave=False)
    for i in steps:
        cap = capture_activations(model, texts[i:i + 200])
        new = contexts.mask(cap.token_ids, cap.position)
        for layer, d in dictionary.layers.items():
            quant[layer].add(d.encode(cap.acts[layer][new].float()))
    return torch.stack([quant[layer].result() for layer in sorted(quant)]), quant[0].n_total


def calibration_texts(model, tokens: int = CALIBRATION_TOKENS) -> list[str]:
    """The training tunes the dictionary learned from, up to ``tokens`` words (never the held-out ones)."""
    from brain.science.evaluate import corpus_splits

    out, total = [], 0
    for text in corpus_splits(model)[0]:
        out.append(text)
        total += len(text.split())
        if total >= tokens:
            break
    return out


def calibrate(model, dictionary: Dictionary, directory: Path, progress: bool = False,
              tokens: int = CALIBRATION_TOKENS) -> int:
    """Write the dictionary's ``feature_quantiles.safetensors`` and its card's ``calibration_tokens``; returns them."""
    from safetensors.torch import save_file

    from brain.units.dictionary import CARD

    quantiles, n = feature_quantiles(model, dictionary, calibration_texts(model, tokens), progress=progress)
    save_file({"quantiles": quantiles.contiguous()}, str(Path(directory) / QUANTILES_FILE))
    dictionary.card["calibration_tokens"] = n
    (Path(directory) / CARD).write_text(json.dumps(dictionary.card, indent=1) + "\n")
    return n


def feature_effects(model, dictionary: Dictionary, layer: int) -> torch.Tensor:
    """[latents, vocab] each feature's direct logit effect (its decoder direction through ``W_out`` and
    ``ln_final``, :mod:`brain.logit_effect`)."""
    from brain.logit_effect import direct_logit_effect

    return dictionary[layer].W_dec @ direct_logit_effect(model, layer)


def top_promoted_by_feature(model, dictionary: Dictionary, layer: int, feature: int, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` trained note words feature ``layer.feature`` pushes up most: (MIDI note, logit effect)."""
    from brain.logit_effect import direct_logit_effect, trained_note_ids

    note_ids = trained_note_ids(model)
    effect = dictionary[layer].W_dec[feature] @ direct_logit_effect(model, layer)
    ranked = sorted(note_ids, key=lambda i: float(effect[i]), reverse=True)[:k]
    return [(note_ids[i], float(effect[i])) for i in ranked]


def summary_line(features: FeatureSet) -> str:
    """How far the dictionary's labels are earned, beside the control dictionary's (the stage's status, the
    report): of the features that read clearly, the share whose expectation comes ≥ 2× its base rate."""
    mine = (features.dictionary.card.get("labels") or {}).get("features") or {}
    if not mine:
        return ""
    line = (f"features: {mine['clear_reads_fraction']:.0%} read clearly; {mine['does_among_clear_fraction']:.0%} of "
            f"those do what they say held out")
    theirs = (features.control or {}).get("features")
    if theirs:
        line += (f" (a shuffled-weight model's own dictionary: {theirs['clear_reads_fraction']:.0%} read clearly, "
                 f"{theirs['does_among_clear_fraction']:.0%} do)")
    return line


def expects_line(features: FeatureSet, fid: str) -> str:
    """A feature's *does* side in one line: what it makes the model expect and how often that came held out."""
    sc = features.label(fid)
    if not sc.get("expects"):
        return ""
    if not sc.get("firings"):
        return f"expects {sc['expects']} (silent on the held-out tunes)"
    verdict = "earned (≥ 2× its base rate)" if sc.get("does") else "not earned"
    return (f"expects {sc['expects']}: it came next {sc['hit_rate']:.0%} of {sc['firings']} held-out firings, base "
            f"rate {sc['base_rate']:.0%}: {verdict}")
