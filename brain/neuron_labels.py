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

import math
from dataclasses import dataclass

import numpy as np
import torch

from brain.encoder import BAR, REST, word_note
from recording.harmony import key_scores

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


CONTEXT_TRAITS = ("on the tonic (key so far)", "on the fifth (key so far)", "outside the key so far",
                  "note 2 of a bar", "note 3 of a bar", "note 4 or later of a bar", "cadence (tonic on a downbeat)")
"""Traits that need the window before the token: the key so far (the live key tracker's estimate over the window's
notes, once it has heard enough), the note's place in its bar, and a cadence (the tonic as the first note of a
bar, after the second, fifth or seventh degree)."""


KEY_AFTER = 8
"""Notes a window needs before its key so far is estimated (the live key tracker's ``min_notes``)."""


def context_traits(words: list[str], chunk_index: np.ndarray) -> np.ndarray:
    """[n_tokens, len(CONTEXT_TRAITS)] bool, reading each window from its start: the key so far is the
    Krumhansl–Schmuckler key of the window's notes up to and including this one (``recording.harmony``)."""
    out = np.zeros((len(words), len(CONTEXT_TRAITS)), dtype=bool)
    hist, notes, in_bar, prev_pc = [0.0] * 12, 0, -1, None
    for i, word in enumerate(words):
        if i and chunk_index[i] != chunk_index[i - 1]:
            hist, notes, in_bar, prev_pc = [0.0] * 12, 0, -1, None
        if word == BAR:
            in_bar = 0
            continue
        note = word_note(word)
        if note is None:
            continue
        hist[note % 12] += 1
        notes += 1
        in_bar += in_bar >= 0
        out[i] = _context_of(note, hist, notes, in_bar, prev_pc)
        prev_pc = note % 12
    return out


def _context_of(note: int, hist: list[float], notes: int, in_bar: int, prev_pc: int | None) -> list[bool]:
    """One note's :data:`CONTEXT_TRAITS`: ``hist``/``notes`` the window's notes so far (this one included),
    ``in_bar`` its place in its bar (1 = first; -1 before the window's first bar line), ``prev_pc`` the note before."""
    row = [False] * len(CONTEXT_TRAITS)
    if in_bar >= 2:  # note 2, note 3, note 4 or later
        row[CONTEXT_TRAITS.index("note 2 of a bar") + min(in_bar, 4) - 2] = True
    if notes >= KEY_AFTER:
        scores = key_scores(hist)
        key = max(scores, key=scores.get)
        degree = (note - key.tonic) % 12
        row[0], row[1], row[2] = degree == 0, degree == 7, note % 12 not in key.scale
        row[6] = degree == 0 and in_bar == 1 and prev_pc is not None and (prev_pc - key.tonic) % 12 in (2, 7, 11)
    return row


def token_traits(words: list[str], chunk_index: np.ndarray, position: np.ndarray,
                 notes_named: list[str] | None = None, context: bool = False) -> Traits:
    """The candidate traits of each token, from its word, the previous note in its window and its position
    (``context``: and :data:`CONTEXT_TRAITS`). ``notes_named``: the note words to make "on X" traits for (default:
    those in ``words``), so that tables built over several batches have the same columns."""
    n = len(words)
    notes = np.array([word_note(w) if word_note(w) is not None else -1 for w in words], dtype=np.int64)
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
        "bar line": np.array([w == BAR for w in words], dtype=bool),
        "rest": np.array([w == REST for w in words], dtype=bool),
        "first note of a bar": is_note & np.array([p == BAR for p in prev_word], dtype=bool),
        "repeated note": has_prev & (step == 0),
        "rising step": has_prev & (step >= 1) & (step <= 2),
        "rising leap": has_prev & (step >= 3),
        "falling step": has_prev & (step <= -1) & (step >= -2),
        "falling leap": has_prev & (step <= -3),
        POSITION_TRAITS[0]: position < START,
        POSITION_TRAITS[1]: position >= LATE,
    }
    if notes_named is None:
        for note in sorted(set(notes[is_note].tolist())):
            columns[f"on {words[int(np.argmax(notes == note))]}"] = notes == note
    else:
        for word in notes_named:
            columns[f"on {word}"] = np.array([w == word for w in words], dtype=bool)
    if context:
        for name, column in zip(CONTEXT_TRAITS, context_traits(words, chunk_index).T):
            columns[name] = column
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
        if not self.clear:  # rounded down: a best trait under the bar never reads as "AUROC 0.75"
            return f"no clear trait (best: {self.trait}, AUROC {math.floor(self.auroc * 100) / 100:.2f})"
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


# -- labels by precision where the neuron sounds --------------------------------------------------------------------
PRECISE = 0.8
"""A clear label: at least this share of the held-out tokens where the neuron passes the sonifier's gate carry it."""
MIN_FIRINGS = 20
"""Gate passes a neuron needs on the choosing tokens before any trait is claimed for it."""
MIN_HELD_OUT = 10
"""Gate passes on the held-out tokens before a label's precision there is trusted."""


@dataclass
class GateCounts:
    """Per neuron: how often it passed the gate, and how often each trait was present when it did."""

    names: list[str]
    firings: np.ndarray  # [n_layers, d_mlp]
    with_trait: np.ndarray  # [n_layers, d_mlp, n_traits]
    tokens: int = 0

    def precision(self) -> np.ndarray:
        return self.with_trait / np.maximum(1, self.firings)[..., None]


def gate_counts(model, scale: torch.Tensor, texts: list[str], gate: float, batch_texts: int = 200,
                progress: bool = False) -> GateCounts:
    """Count, over ``texts``, each neuron's gate passes (activation ≥ ``gate`` × its scale) and the traits then."""
    from brain.activations import capture_activations
    from brain.encoder import note_word
    from brain.logit_effect import MELODIC_RANGE

    named = [note_word(n) for n in range(MELODIC_RANGE[0], MELODIC_RANGE[1] + 1)]
    names = token_traits([], np.zeros(0), np.zeros(0), named).names
    firings = np.zeros((model.n_layers, model.d_mlp), dtype=np.int64)
    with_trait = np.zeros((model.n_layers, model.d_mlp, len(names)), dtype=np.int64)
    tokens = 0
    starts = range(0, len(texts), batch_texts)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="labelling by precision", unit="batch", leave=False)
    tok = model.tokenizer
    for i in starts:
        cap = capture_activations(model, texts[i:i + batch_texts])
        words = [tok.token_str(int(t)) for t in cap.token_ids]
        chunk = (cap.position == 0).cumsum(0).numpy()
        traits = torch.from_numpy(token_traits(words, chunk, cap.position.numpy(), named).matrix.astype(np.float32))
        tokens += cap.n_tokens
        for layer in cap.layers:
            passes = (cap.acts[layer] >= gate * scale[layer]).float()  # [tokens, d_mlp]
            firings[layer] += passes.sum(0).long().numpy()
            with_trait[layer] += (passes.T @ traits).round().long().numpy()
    return GateCounts(names, firings, with_trait, tokens)


@dataclass
class PreciseLabel:
    trait: str
    precision: float
    """On the choosing tokens."""
    firings: int
    held_out_precision: float | None
    held_out_firings: int
    clear: bool

    @property
    def position(self) -> bool:
        return self.trait in POSITION_TRAITS

    def text(self) -> str:
        if not self.trait:
            return f"fires too rarely to label ({self.firings} gate passes)"
        shown = _held_out(self)
        if not self.clear:
            return f"fires on many things (best: {self.trait}, {shown})"
        kind = "position neuron: " if self.position else ""
        return f"{kind}{self.trait} ({shown})"


def _held_out(label: PreciseLabel) -> str:
    if label.held_out_precision is None:
        return f"{label.precision:.0%} of {label.firings} firings"
    return f"{label.held_out_precision:.0%} of {label.held_out_firings} held-out firings"


def precise_labels(choose: GateCounts, check: GateCounts) -> dict[str, PreciseLabel]:
    """The trait each neuron is most precise for on ``choose``'s tokens (≥ :data:`MIN_FIRINGS` passes), its precision
    measured again on ``check``'s tokens; clear when both are ≥ :data:`PRECISE` (held out: ≥ :data:`MIN_HELD_OUT`
    passes). The label shows the held-out figure."""
    out: dict[str, PreciseLabel] = {}
    prec, check_prec = choose.precision(), check.precision()
    n_layers, d_mlp = choose.firings.shape
    for layer in range(n_layers):
        for n in range(d_mlp):
            fired = int(choose.firings[layer, n])
            if fired < MIN_FIRINGS:
                out[f"{layer}.{n}"] = PreciseLabel("", 0.0, fired, None, int(check.firings[layer, n]), False)
                continue
            t = int(np.argmax(prec[layer, n]))
            held = int(check.firings[layer, n])
            held_prec = float(check_prec[layer, n, t]) if held else None
            clear = float(prec[layer, n, t]) >= PRECISE and held >= MIN_HELD_OUT and held_prec >= PRECISE
            out[f"{layer}.{n}"] = PreciseLabel(choose.names[t], float(prec[layer, n, t]), fired, held_prec, held, clear)
    return out


def traits_now(window_words: list[str]) -> set[str]:
    """The traits of the last word of a live window, by the rules of :func:`token_traits` (a test holds the two
    equal) but for one word: the brain asks this once per event."""
    if not window_words:
        return set()
    word, i = window_words[-1], len(window_words) - 1
    out = set()
    if word == BAR:
        out.add("bar line")
    elif word == REST:
        out.add("rest")
    note = word_note(word)
    if note is not None:
        out.add(f"on {word}")
        if i and window_words[i - 1] == BAR:
            out.add("first note of a bar")
        prev = next((n for w in reversed(window_words[:-1]) if (n := word_note(w)) is not None), None)
        if prev is not None:
            step = note - prev
            out.add("repeated note" if step == 0 else "rising step" if 1 <= step <= 2 else "rising leap" if step >= 3
                    else "falling step" if -2 <= step <= -1 else "falling leap")
    if i < START:
        out.add(POSITION_TRAITS[0])
    if i >= LATE:
        out.add(POSITION_TRAITS[1])
    if note is not None:  # the last note's context alone (one key estimate: this runs once per live event)
        notes = [n for w in window_words if (n := word_note(w)) is not None]
        hist = [0.0] * 12
        for n in notes:
            hist[n % 12] += 1
        bar = max((j for j, w in enumerate(window_words) if w == BAR), default=-1)
        in_bar = sum(word_note(w) is not None for w in window_words[bar + 1:]) if bar >= 0 else -1
        prev_pc = notes[-2] % 12 if len(notes) >= 2 else None
        out |= {name for name, on in zip(CONTEXT_TRAITS, _context_of(note, hist, len(notes), in_bar, prev_pc)) if on}
    return out


def present_now(trait: str, window_words: list[str] | set[str]) -> bool | None:
    """Whether the last word of a live window (or its :func:`traits_now`) has ``trait``; None for no trait."""
    if not trait or not window_words:
        return None
    return trait in (window_words if isinstance(window_words, set) else traits_now(window_words))
