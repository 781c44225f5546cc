"""Labels on both sides of a unit (a neuron or a dictionary feature), each checked on tunes the unit never saw.

*Reads*: the trait of the current token the unit fires on, by precision exactly as neurons are labelled
(``brain/neuron_labels.py: precise_labels``): the trait most of its firings carry, chosen on the validation tunes
(and their transpositions), its precision measured again on the test tunes; clear at ≥ 80 % on both. Any network
carries these forward, trained or not: a shuffled-weight model's units earn them as easily.

*Does*: the outcome (a note word, a bar line, a rest) the unit makes the model expect, and its **hit rate**: on
held-out tokens where the unit fires, how often that outcome is the next token, against how often it is the next
token at all. Only a model that learned what follows what earns this side. The outcome is the one the unit's
**full effect** supports most: on the validation tunes, where it sounds, its contribution (a neuron's activation, a
feature's ``a · W_dec[F]``) is removed and the next-token probabilities fall; the outcome that falls most is
what it makes the model expect, through every later layer and attention head, not only its direct path. Its
**direct effect** (through ``ln_final`` alone, from the weights) is measured beside it; a unit that never sounds on
the validation tunes is named by its direct effect. The hit rate is measured on the test tunes, which nothing was
chosen on.

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
ABLATION_CHUNKS = 16
"""Validation chunks per unit (where it sounds) whose ablation names the outcome it makes the model expect."""

Code = Callable[[int, torch.Tensor], torch.Tensor]
"""``code(layer, acts)``: [tokens, d_mlp] neuron activations → [tokens, units] the units' activations."""


@dataclass
class UnitLabel:
    reads: PreciseLabel
    expects: str  # from its full effect (ablation), or its direct effect where it never sounded on the validation tunes
    firings: int
    hits: int
    base_rate: float
    direct_expects: str = ""
    direct_hits: int = 0
    direct_base_rate: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.firings if self.firings else 0.0

    @property
    def does(self) -> bool:
        return self.firings >= MIN_FIRINGS and self.hit_rate >= LIFT * self.base_rate

    @property
    def does_directly(self) -> bool:
        """The same test for the outcome its direct effect alone names (the card's comparison)."""
        return (self.firings >= MIN_FIRINGS and bool(self.direct_expects)
                and self.direct_hits / self.firings >= LIFT * self.direct_base_rate)

    def text(self) -> str:
        side = (f"expects {self.expects}: next {self.hit_rate:.0%} of {self.firings} held-out firings "
                f"(base {self.base_rate:.0%})" if self.firings else f"expects {self.expects} (silent held out)")
        return f"reads {self.reads.text()}; {side}"

    def as_dict(self) -> dict:
        r = self.reads
        return {"reads": r.trait, "reads_clear": r.clear, "reads_precision": round(r.precision, 4),
                "reads_held_out_precision": None if r.held_out_precision is None else round(r.held_out_precision, 4),
                "expects": self.expects, "firings": self.firings, "hits": self.hits, "base_rate": self.base_rate,
                "hit_rate": round(self.hit_rate, 4), "does": self.does, "direct_expects": self.direct_expects,
                "direct_hits": self.direct_hits, "does_directly": self.does_directly, "text": self.text()}


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
    """[units] the outcome token each unit pushes up most, from its [units, vocab] effect on the logits."""
    ids = torch.tensor(sorted(outcomes))
    return ids[effects[:, ids].argmax(-1)]


def next_token(token_ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """[n] the id of the token after each captured token in its piece, -1 at a piece's end."""
    nxt = torch.full_like(token_ids, -1)
    nxt[:-1] = torch.where(position[1:] == position[:-1] + 1, token_ids[1:], -1)
    return nxt


@torch.inference_mode()
def full_effects(model, texts: list[str], code: Code, threshold: dict[int, torch.Tensor],
                 directions: dict[int, torch.Tensor], batch: int = 64) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Per layer ([units, vocab] mean fall of each next-token probability when the unit's contribution is removed
    where it sounds, [units] the tokens that mean is over): its effect through every later layer, on ``texts``.
    Probabilities, not log-probabilities: a log-probability falls furthest for outcomes the model hardly expected.

    For each unit, up to :data:`ABLATION_CHUNKS` chunks in which it sounds are run again with ``amount ×
    direction`` taken out of ``hook_post`` at the positions where it sounds; many (chunk, unit) pairs share one
    batch."""
    from brain.activations import pad_rows, token_chunks

    prefix = [model.tokenizer.bos_id] if model.tokenizer.bos_id is not None else []
    rows = sorted((prefix + ids for _, ids, _ in token_chunks(model, texts)), key=len)
    effects, counts = {}, {}
    for layer, direction in directions.items():
        name = model.hook_name(layer)
        units = direction.shape[0]
        clean: list[torch.Tensor] = []  # per row [T, vocab] next-token probabilities
        pairs: list[tuple[int, int, torch.Tensor]] = []  # (row, unit, [T] amount where it sounds, else 0)
        taken = torch.zeros(units, dtype=torch.long)
        for start in range(0, len(rows), batch):
            x, mask = pad_rows(rows[start:start + batch], model.device)
            seen = {}
            logits = model.bridge.run_with_hooks(x, fwd_hooks=[(name, lambda act, hook: seen.setdefault("a", act))])
            lp = logits.float().softmax(-1).cpu()
            acts = seen["a"].float().cpu()
            a = code(layer, acts.reshape(-1, acts.shape[-1])).reshape(*acts.shape[:2], -1)
            mask[:, :len(prefix)] = False  # a BOS token is no note
            sounds = (a >= threshold[layer]) & mask.cpu()[..., None]
            for r in range(x.shape[0]):
                clean.append(lp[r, :len(rows[start + r])])
                for u in sounds[r].any(0).nonzero().flatten().tolist():
                    if taken[u] < ABLATION_CHUNKS:
                        taken[u] += 1
                        pairs.append((start + r, u, torch.where(sounds[r, :, u], a[r, :, u], 0.0)[:len(rows[start + r])]))
        total = torch.zeros(units, model.bridge.cfg.d_vocab)
        count = torch.zeros(units)
        for start in range(0, len(pairs), batch):
            group = pairs[start:start + batch]
            x, _ = pad_rows([rows[r] for r, _, _ in group], model.device)
            amount = torch.zeros(x.shape)
            for i, (r, _, amt) in enumerate(group):
                amount[i, :len(amt)] = amt
            minus = (amount[..., None] * direction[torch.tensor([u for _, u, _ in group])][:, None, :]).to(model.device)
            logits = model.bridge.run_with_hooks(x, fwd_hooks=[(name, lambda act, hook: act - minus.to(act.dtype))])
            lp = logits.float().softmax(-1).cpu()
            for i, (r, u, amt) in enumerate(group):
                at = amt > 0
                total[u] += (clean[r][at] - lp[i, :len(amt)][at]).sum(0)
                count[u] += int(at.sum())
        effects[layer], counts[layer] = total / count.clamp(min=1)[:, None], count
    return effects, counts


@dataclass
class Tally:
    """Counts over some texts: per unit its firings and the traits then (the reads side), its firings with a next
    token and how often that was each named outcome (the does side); how often each token comes next at all."""

    gates: GateCounts
    firings: np.ndarray  # [n_layers, units], firings with a next token
    hits: dict[str, np.ndarray]  # per set of expectations [n_layers, units]
    next_counts: np.ndarray  # [vocab]

    def base_rate(self, token: int) -> float:
        return float(self.next_counts[token] / max(1, self.next_counts.sum()))


def tally(model, texts: list[str], fires: Callable[[int, torch.Tensor], torch.Tensor],
          expected: dict[str, dict[int, torch.Tensor]], units: int) -> Tally:
    """``fires(layer, acts)`` → [tokens, units] bool; ``expected[name][layer]`` [units] outcome ids, one set per way
    of naming them."""
    from brain.activations import capture_activations
    from brain.encoder import note_word
    from brain.logit_effect import MELODIC_RANGE
    from brain.neuron_labels import token_traits

    named = [note_word(n) for n in range(MELODIC_RANGE[0], MELODIC_RANGE[1] + 1)]
    names = token_traits([], np.zeros(0), np.zeros(0), named, context=True).names
    layers = sorted(next(iter(expected.values())))
    gate_firings = np.zeros((len(layers), units), dtype=np.int64)
    with_trait = np.zeros((len(layers), units, len(names)), dtype=np.int64)
    firings = np.zeros((len(layers), units), dtype=np.int64)
    hits = {key: np.zeros((len(layers), units), dtype=np.int64) for key in expected}
    next_counts = np.zeros(model.bridge.cfg.d_vocab, dtype=np.int64)
    tokens, tok = 0, model.tokenizer
    for i in range(0, len(texts), BATCH_TEXTS):
        cap = capture_activations(model, texts[i:i + BATCH_TEXTS], layers=layers)
        words = [tok.token_str(int(t)) for t in cap.token_ids]
        chunk = (cap.position == 0).cumsum(0).numpy()
        traits = torch.from_numpy(token_traits(words, chunk, cap.position.numpy(), named, context=True).matrix
                                   .astype(np.float32))
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
            for key, exp in expected.items():
                hits[key][j] += (with_next & (nxt[:, None] == exp[layer][None])).sum(0).numpy()
    return Tally(GateCounts(names, gate_firings, with_trait, tokens), firings, hits, next_counts)


@torch.inference_mode()
def label_units(model, choose_texts: list[str], check_texts: list[str], code: Code, threshold: dict[int, torch.Tensor],
                directions: dict[int, torch.Tensor]) -> dict[str, UnitLabel]:
    """Both sides for every unit: {"L.U": label}. A unit sounds where ``code`` reaches ``threshold[layer]`` [units];
    ``directions[layer]`` [units, d_mlp]: what one unit of it adds to ``hook_post`` (a neuron's basis vector, a
    feature's decoder row)."""
    from brain.logit_effect import direct_logit_effect
    from brain.neuron_stats import with_transpositions

    outcomes = outcome_ids(model)
    direct = {layer: expected_outcomes(d @ direct_logit_effect(model, layer), outcomes) for layer, d in directions.items()}
    full, counts = full_effects(model, choose_texts, code, threshold, directions)
    expected = {layer: torch.where(counts[layer] > 0, expected_outcomes(full[layer], outcomes), direct[layer])
                for layer in directions}
    units = next(iter(directions.values())).shape[0]
    fires = lambda layer, acts: code(layer, acts) >= threshold[layer]  # noqa: E731
    choose = tally(model, with_transpositions(choose_texts), fires, {"full": expected}, units)
    check = tally(model, check_texts, fires, {"full": expected, "direct": direct}, units)
    reads = precise_labels(choose.gates, check.gates)  # keyed "j.u", j the layer's index among those tallied
    out = {}
    for j, layer in enumerate(sorted(directions)):
        for u in range(units):
            e, d = int(expected[layer][u]), int(direct[layer][u])
            out[f"{layer}.{u}"] = UnitLabel(reads[f"{j}.{u}"], outcomes[e], int(check.firings[j, u]),
                                            int(check.hits["full"][j, u]), round(check.base_rate(e), 5),
                                            outcomes[d], int(check.hits["direct"][j, u]), round(check.base_rate(d), 5))
    return out


def label_dictionary(model, dictionary, scale: torch.Tensor, gate: float, choose_texts: list[str],
                     check_texts: list[str]) -> dict[str, UnitLabel]:
    """``scale``: [n_layers, latents] each feature's calibration quantile (:mod:`brain.units.features`); a feature
    fires where the sonifier would play it, as a neuron does (at ``gate`` × its scale)."""
    return label_units(model, choose_texts, check_texts, lambda layer, acts: dictionary[layer].encode(acts),
                       {layer: gate * scale[layer] for layer in dictionary.layers},
                       {layer: d.W_dec for layer, d in dictionary.layers.items()})


def label_neurons(model, scale: torch.Tensor, gate: float, choose_texts: list[str], check_texts: list[str]
                  ) -> dict[str, UnitLabel]:
    eye = torch.eye(model.d_mlp)
    return label_units(model, choose_texts, check_texts, lambda layer, acts: acts,
                       {layer: gate * scale[layer] for layer in range(model.n_layers)},
                       {layer: eye for layer in range(model.n_layers)})


def summary(labels: list[UnitLabel]) -> dict:
    """The figures the card, the report and the stage show: of the units that fire often enough to label, how many
    read clearly, and of those how many do what they say (by the full effect; by the direct effect alone beside)."""
    live = [u for u in labels if u.reads.trait]
    clear = [u for u in live if u.reads.clear]
    does = [u for u in clear if u.does]
    directly = [u for u in clear if u.does_directly]
    return {"units": len(labels), "labelable": len(live), "clear_reads": len(clear),
            "clear_reads_fraction": round(len(clear) / max(1, len(live)), 4),
            "does_among_clear": len(does), "does_among_clear_fraction": round(len(does) / max(1, len(clear)), 4),
            "does_directly_among_clear": len(directly),
            "does_directly_among_clear_fraction": round(len(directly) / max(1, len(clear)), 4)}


def as_json(labels: dict[str, UnitLabel]) -> dict:
    return {k: v.as_dict() for k, v in labels.items()}
