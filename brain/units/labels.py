"""Labels on both sides of a unit (a neuron or a dictionary feature), each checked on tunes the unit never saw.

*Reads*: the trait of the current token the unit fires on, by precision exactly as neurons are labelled
(``brain/neuron_labels.py: precise_labels``): the trait most of its firings carry, chosen on the validation tunes
(and their transpositions), its precision measured again on the test tunes; clear at ≥ 80 % on both. Any network
carries these forward, trained or not: a shuffled-weight model's units earn them as easily.

*Does*: the outcome (a note word, a bar line, a rest) the unit pushes up most through the rest of the model's
output path (its direct logit effect through ``ln_final``; a feature's is its decoder direction's), and its **hit
rate**: on held-out tokens where the unit fires, how often that outcome is the next token, against how often it
is the next token at all. Only a model that learned what follows what earns this side; the choice of outcome
reads the weights alone, so the hit rate is measured on data nothing was tuned on.

A unit *does* something when it fired at least :data:`MIN_FIRINGS` times on the test tunes and its hit rate there is
at least :data:`LIFT` × the base rate. A unit fires where the sonifier would play it: at its gate × its scale (a
neuron's or a feature's own calibration quantile), so a label says what is true where the listener hears the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from brain.neuron_labels import GateCounts, PreciseLabel, precise_labels

MIN_FIRINGS = 10
LIFT = 2.0
BATCH_TEXTS = 200


@dataclass
class UnitLabel:
    reads: PreciseLabel
    expects: str
    firings: int
    hits: int
    base_rate: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.firings if self.firings else 0.0

    @property
    def does(self) -> bool:
        return self.firings >= MIN_FIRINGS and self.hit_rate >= LIFT * self.base_rate

    def text(self) -> str:
        side = (f"expects {self.expects}: next {self.hit_rate:.0%} of {self.firings} held-out firings "
                f"(base {self.base_rate:.0%})" if self.firings else f"expects {self.expects} (silent held out)")
        return f"reads {self.reads.text()}; {side}"

    def as_dict(self) -> dict:
        r = self.reads
        return {"reads": r.trait, "reads_clear": r.clear, "reads_precision": round(r.precision, 4),
                "reads_held_out_precision": None if r.held_out_precision is None else round(r.held_out_precision, 4),
                "expects": self.expects, "firings": self.firings, "hits": self.hits, "base_rate": self.base_rate,
                "hit_rate": round(self.hit_rate, 4), "does": self.does, "text": self.text()}


def outcome_ids(model) -> dict[int, str]:
    """token id → word for what may come next: the trained note words, a bar line and a rest."""
    from brain.encoder import BAR, REST
    from brain.logit_effect import trained_note_ids

    tok = model.tokenizer
    out = {i: tok.token_str(i) for i in trained_note_ids(model)}
    vocab = tok.vocab()
    for word in (BAR, REST):
        if word in vocab:
            out[vocab[word]] = word
    return out


def expected_outcomes(effects: torch.Tensor, outcomes: dict[int, str]) -> torch.Tensor:
    """[units] the outcome token each unit pushes up most, from its [units, vocab] direct logit effect."""
    ids = torch.tensor(sorted(outcomes))
    return ids[effects[:, ids].argmax(-1)]


def next_token(token_ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """[n] the id of the token after each captured token in its piece, -1 at a piece's end."""
    nxt = torch.full_like(token_ids, -1)
    nxt[:-1] = torch.where(position[1:] == position[:-1] + 1, token_ids[1:], -1)
    return nxt


@dataclass
class Tally:
    """Counts over some texts: per unit its firings and the traits then (the reads side), its firings with a next
    token and how often that was its expected outcome (the does side); how often each token comes next at all."""

    gates: GateCounts
    firings: np.ndarray  # [n_layers, units], firings with a next token
    hits: np.ndarray  # [n_layers, units]
    next_counts: np.ndarray  # [vocab]

    def base_rate(self, token: int) -> float:
        return float(self.next_counts[token] / max(1, self.next_counts.sum()))


def tally(model, texts: list[str], fires: Callable[[int, torch.Tensor], torch.Tensor], expected: dict[int, torch.Tensor],
          units: int) -> Tally:
    """``fires(layer, acts)`` → [tokens, units] bool; ``expected[layer]`` [units] outcome ids."""
    from brain.activations import capture_activations
    from brain.encoder import note_word
    from brain.logit_effect import MELODIC_RANGE
    from brain.neuron_labels import token_traits

    named = [note_word(n) for n in range(MELODIC_RANGE[0], MELODIC_RANGE[1] + 1)]
    names = token_traits([], np.zeros(0), np.zeros(0), named).names
    layers = sorted(expected)
    gate_firings = np.zeros((len(layers), units), dtype=np.int64)
    with_trait = np.zeros((len(layers), units, len(names)), dtype=np.int64)
    firings = np.zeros((len(layers), units), dtype=np.int64)
    hits = np.zeros((len(layers), units), dtype=np.int64)
    next_counts = np.zeros(model.bridge.cfg.d_vocab, dtype=np.int64)
    tokens, tok = 0, model.tokenizer
    for i in range(0, len(texts), BATCH_TEXTS):
        cap = capture_activations(model, texts[i:i + BATCH_TEXTS], layers=layers)
        words = [tok.token_str(int(t)) for t in cap.token_ids]
        chunk = (cap.position == 0).cumsum(0).numpy()
        traits = torch.from_numpy(token_traits(words, chunk, cap.position.numpy(), named).matrix.astype(np.float32))
        nxt = next_token(cap.token_ids, cap.position)
        has_next = nxt >= 0
        next_counts += np.bincount(nxt[has_next].numpy(), minlength=len(next_counts))
        tokens += cap.n_tokens
        for j, layer in enumerate(layers):
            on = fires(layer, cap.acts[layer].float())  # [tokens, units]
            gate_firings[j] += on.sum(0).numpy()
            with_trait[j] += (on.float().T @ traits).round().long().numpy()
            with_next = on & has_next[:, None]
            firings[j] += with_next.sum(0).numpy()
            hits[j] += (with_next & (nxt[:, None] == expected[layer][None])).sum(0).numpy()
    return Tally(GateCounts(names, gate_firings, with_trait, tokens), firings, hits, next_counts)


@torch.inference_mode()
def label_units(model, choose_texts: list[str], check_texts: list[str], fires: Callable, effects: dict[int, torch.Tensor]
                ) -> dict[str, UnitLabel]:
    """Both sides for every unit: {"L.U": label}. ``effects[layer]``: [units, vocab] direct logit effects."""
    from brain.neuron_stats import with_transpositions

    outcomes = outcome_ids(model)
    expected = {layer: expected_outcomes(e, outcomes) for layer, e in effects.items()}
    units = next(iter(effects.values())).shape[0]
    choose = tally(model, with_transpositions(choose_texts), fires, expected, units)
    check = tally(model, check_texts, fires, expected, units)
    reads = precise_labels(choose.gates, check.gates)  # keyed "j.u", j the layer's index among those tallied
    layers = sorted(effects)
    out = {}
    for j, layer in enumerate(layers):
        for u in range(units):
            e = int(expected[layer][u])
            out[f"{layer}.{u}"] = UnitLabel(reads[f"{j}.{u}"], outcomes[e], int(check.firings[j, u]),
                                            int(check.hits[j, u]), round(check.base_rate(e), 5))
    return out


def label_dictionary(model, dictionary, scale: torch.Tensor, gate: float, choose_texts: list[str],
                     check_texts: list[str]) -> dict[str, UnitLabel]:
    """``scale``: [n_layers, latents] each feature's calibration quantile (:mod:`brain.units.features`); a feature
    fires where the sonifier would play it, as a neuron does (at ``gate`` × its scale)."""
    from brain.logit_effect import direct_logit_effect

    effects = {layer: d.W_dec @ direct_logit_effect(model, layer) for layer, d in dictionary.layers.items()}
    return label_units(model, choose_texts, check_texts,
                       lambda layer, acts: dictionary[layer].encode(acts) >= gate * scale[layer], effects)


def label_neurons(model, scale: torch.Tensor, gate: float, choose_texts: list[str], check_texts: list[str]
                  ) -> dict[str, UnitLabel]:
    from brain.logit_effect import direct_logit_effect

    effects = {layer: direct_logit_effect(model, layer) for layer in range(model.n_layers)}
    return label_units(model, choose_texts, check_texts, lambda layer, acts: acts >= gate * scale[layer], effects)


def summary(labels: list[UnitLabel]) -> dict:
    """The figures the card, the report and the stage show: of the units that fire often enough to label, how many
    read clearly, and of those how many do what they say."""
    live = [u for u in labels if u.reads.trait]
    clear = [u for u in live if u.reads.clear]
    does = [u for u in clear if u.does]
    return {"units": len(labels), "labelable": len(live), "clear_reads": len(clear),
            "clear_reads_fraction": round(len(clear) / max(1, len(live)), 4),
            "does_among_clear": len(does), "does_among_clear_fraction": round(len(does) / max(1, len(clear)), 4)}


def as_json(labels: dict[str, UnitLabel]) -> dict:
    return {k: v.as_dict() for k, v in labels.items()}
