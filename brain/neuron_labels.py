"""Neuron labels by selectivity: which trait of the current token makes a neuron fire, and how reliably.

For every calibration token we know a few binary traits (which note, a bar
line, a rest, the first note of a bar, a rising or falling step or leap, a
repeated note, near the start of the window, late in it). For each neuron and
trait, the score is the AUROC of the neuron's activation for telling tokens
with the trait from tokens without it: 1.0 = it fires on exactly those tokens,
0.5 = chance. Unlike "the share of the top-20 contexts that have the trait",
it counts the times the trait is present and the neuron stays quiet, and it
does not reward a trait just for being common (the base rate is reported
beside it).

The label is the best trait with its score ("bar line, AUROC 0.99"). Below
:data:`CLEAR` the neuron gets "no clear trait" (with its best guess); a neuron
whose best trait is a position one is a position neuron, and says so.
AUROCs use ranks over a fixed random sample of the calibration tokens
(:data:`SAMPLE`), computed for all traits at once as one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from brain.encoder import BAR, REST, word_note

CLEAR = 0.75
"""AUROC below which a neuron has no clear trait."""
SAMPLE = 200_000
MIN_POSITIVES = 100
"""A trait must occur this often in the sample to be a candidate (a rare note's AUROC is noise)."""
START, LATE = 8, 64
POSITION_TRAITS = (f"position < {START} (start of the window)", f"position ≥ {LATE} (late in the window)")


@dataclass
class Traits:
    names: list[str]
    matrix: np.ndarray  # [n_tokens, n_traits] bool

    def base_rates(self) -> np.ndarray:
        return self.matrix.mean(0)


def token_traits(words: list[str], chunk_index: np.ndarray, position: np.ndarray) -> Traits:
    """The candidate traits of each token, from its word, the previous note in its window and its position."""
    n = len(words)
    notes = np.array([word_note(w) if word_note(w) is not None else -1 for w in words])
    prev_note = np.full(n, -1)
    prev_word = [""] * n
    last = -1
    for i in range(n):
        if i and chunk_index[i] != chunk_index[i - 1]:
            last = -1
        prev_note[i] = last
        prev_word[i] = words[i - 1] if i and chunk_index[i] == chunk_index[i - 1] else ""
        if notes[i] >= 0:
            last = notes[i]
    is_note = notes >= 0
    step = np.where(is_note & (prev_note >= 0), notes - prev_note, 0)
    has_prev = is_note & (prev_note >= 0)
    columns = {
        "bar line": np.array([w == BAR for w in words]),
        "rest": np.array([w == REST for w in words]),
        "first note of a bar": is_note & np.array([p == BAR for p in prev_word]),
        "repeated note": has_prev & (step == 0),
        "rising step": has_prev & (step >= 1) & (step <= 2),
        "rising leap": has_prev & (step >= 3),
        "falling step": has_prev & (step <= -1) & (step >= -2),
        "falling leap": has_prev & (step <= -3),
        POSITION_TRAITS[0]: position < START,
        POSITION_TRAITS[1]: position >= LATE,
    }
    for note in sorted(set(notes[is_note].tolist())):
        columns[f"on {words[int(np.argmax(notes == note))]}"] = notes == note
    names = list(columns)
    return Traits(names, np.stack([columns[k] for k in names], axis=1))


def auroc(acts: torch.Tensor, traits: Traits) -> np.ndarray:
    """[n_traits, d_mlp] AUROC of each neuron's activation for each trait (ties share their mean rank)."""
    n = acts.shape[0]
    order = acts.float().argsort(dim=0)
    ranks = torch.empty_like(acts, dtype=torch.float32)
    ranks.scatter_(0, order, torch.arange(1, n + 1, dtype=torch.float32)[:, None].expand(n, acts.shape[1]).contiguous())
    ranks = _mean_ranks_of_ties(acts.float(), ranks, order)
    mask = torch.from_numpy(traits.matrix.astype(np.float32))  # [n, n_traits]
    pos = mask.sum(0)[:, None]  # [n_traits, 1]
    neg = n - pos
    rank_sum = mask.T @ ranks  # [n_traits, d_mlp]
    out = (rank_sum - pos * (pos + 1) / 2) / (pos * neg).clamp_min(1)
    return torch.where(pos * neg > 0, out, torch.tensor(0.5)).numpy()  # a trait never (or always) present: chance


def _mean_ranks_of_ties(acts: torch.Tensor, ranks: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """GELU neurons sit at exactly 0 (or one negative floor) on many tokens: tied values get their mean rank."""
    sorted_vals = acts.gather(0, order)
    for col in range(acts.shape[1]):
        v = sorted_vals[:, col]
        new = torch.ones_like(v, dtype=torch.bool)
        new[1:] = v[1:] != v[:-1]
        if bool(new.all()):
            continue
        group = new.cumsum(0) - 1  # tie-group index in sorted order
        starts = torch.nonzero(new).flatten().float() + 1
        ends = torch.cat([starts[1:] - 1, torch.tensor([float(len(v))])])
        mean = ((starts + ends) / 2)[group]
        ranks[order[:, col], col] = mean
    return ranks


@dataclass
class Label:
    trait: str
    auroc: float
    base_rate: float
    clear: bool

    @property
    def position(self) -> bool:
        return self.trait in POSITION_TRAITS

    def text(self) -> str:
        if not self.clear:
            return f"no clear trait (best: {self.trait}, AUROC {self.auroc:.2f})"
        if self.position:
            return f"position neuron: {self.trait}, AUROC {self.auroc:.2f}"
        return f"{self.trait}, AUROC {self.auroc:.2f}"


def best_labels(scores: np.ndarray, traits: Traits) -> list[Label]:
    """One label per neuron (column of ``scores``), among traits frequent enough to judge."""
    counts = traits.matrix.sum(0)
    usable = counts >= MIN_POSITIVES
    rates = traits.base_rates()
    masked = np.where(usable[:, None], scores, -1.0)
    best = masked.argmax(0)
    return [Label(traits.names[t], float(masked[t, j]), float(rates[t]), float(masked[t, j]) >= CLEAR)
            for j, t in enumerate(best)]
