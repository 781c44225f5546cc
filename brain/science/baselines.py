"""What the model must beat: count-based next-token predictors, scored on the model's own test tokens.

- ``unigram`` and ``bigram``: add-k smoothed counts (k = 0.1).
- ``5-gram``: interpolated Witten-Bell, down to a uniform distribution:
  ``P(w|h) = (c(h,w) + T(h)·P(w|h')) / (c(h) + T(h))``, with ``T(h)`` the number of distinct words seen after
  ``h`` and ``h'`` the history one word shorter. Parameter-free, so nothing is tuned on the test split.
- ``copy + 5-gram``: tunes repeat their sections, so copy. Find the most recent earlier place in the same
  window (what the model can see) whose preceding ``m`` words (the longest ``m`` ≤ 8, at least 2) match the
  current ones and predict the word that followed it; as a distribution, ``α_m·[copied word] +
  (1 − α_m)·P_5gram`` with one ``α_m`` per match length, fitted on the validation split.

Every predictor is fitted on the training split; all are scored on the same positions as the model
(:func:`brain.science.evaluate.chunks`: the same windows, targets that are note words, top-1 over note words).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

MAX_MATCH = 8
MIN_MATCH = 2


class NGram:
    def __init__(self, order: int, vocab_size: int) -> None:
        self.order, self.vocab_size = order, vocab_size
        self.tables: list[dict[tuple, tuple[np.ndarray, np.ndarray, float, int]]] = []

    def fit(self, sequences: list[list[int]]) -> "NGram":
        counts: list[dict[tuple, Counter]] = [defaultdict(Counter) for _ in range(self.order)]
        for seq in sequences:
            for i in range(1, len(seq)):
                for n in range(self.order):  # history length n
                    if i - n < 0:
                        break
                    counts[n][tuple(seq[i - n:i])][seq[i]] += 1
        self.tables = [{h: (np.fromiter(c.keys(), int), np.fromiter(c.values(), float), float(sum(c.values())), len(c))
                        for h, c in table.items()} for table in counts]
        return self

    def dist(self, history: list[int] | tuple) -> np.ndarray:
        """P(· | history) over the whole vocabulary."""
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        history = tuple(history)
        for n in range(self.order):
            if n > len(history):
                break
            entry = self.tables[n].get(history[len(history) - n:] if n else ())
            if entry is None:
                break  # a longer history that was never seen is not seen either
            idx, vals, total, types = entry
            p = p * types
            p[idx] += vals
            p /= total + types
        return p


def add_k(sequences: list[list[int]], vocab_size: int, k: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Unigram and bigram probabilities, add-k smoothed."""
    uni = np.full(vocab_size, k)
    bi = np.full((vocab_size, vocab_size), k)
    for ids in sequences:
        for a, b in zip(ids, ids[1:]):
            uni[b] += 1
            bi[a, b] += 1
    return uni / uni.sum(), bi / bi.sum(1, keepdims=True)


def copy_predictions(piece: list[int]) -> list[tuple[int, int]]:
    """For each position i (predicting ``piece[i+1]``): (copied word, match length), or (-1, 0) when nothing
    earlier in the window matches at least ``MIN_MATCH`` words."""
    last: dict[tuple, int] = {}
    out = []
    for i in range(len(piece) - 1):
        found = (-1, 0)
        for m in range(min(MAX_MATCH, i + 1), MIN_MATCH - 1, -1):
            j = last.get(tuple(piece[i - m + 1:i + 1]))
            if j is not None:
                found = (piece[j + 1], m)
                break
        out.append(found)
        for m in range(MIN_MATCH, min(MAX_MATCH, i + 1) + 1):  # now position i is an earlier place
            last[tuple(piece[i - m + 1:i + 1])] = i
    return out


class Scorer:
    """Top-1 over note words and perplexity (full vocabulary), accumulated target by target."""

    def __init__(self, note_index: np.ndarray) -> None:
        self.notes = note_index
        self.correct = self.total = 0
        self.nll = 0.0

    def add(self, p: np.ndarray, target: int) -> None:
        self.correct += int(self.notes[p[self.notes].argmax()] == target)
        self.nll -= math.log(max(p[target], 1e-12))
        self.total += 1

    def result(self) -> dict:
        return {"accuracy": self.correct / max(1, self.total), "perplexity": math.exp(self.nll / max(1, self.total)),
                "targets": self.total}


def fit_copy_weights(pieces: list[list[int]], ngram: NGram, note_ids: set[int]) -> dict[int, float]:
    """α per match length, by likelihood on held-out pieces (the validation split), on a grid."""
    grid = np.linspace(0.05, 0.95, 19)
    ll = {m: np.zeros(len(grid)) for m in range(MIN_MATCH, MAX_MATCH + 1)}
    for piece in pieces:
        for i, (word, m) in enumerate(copy_predictions(piece)):
            target = piece[i + 1]
            if m == 0 or target not in note_ids:
                continue
            p = ngram.dist(piece[max(0, i + 2 - ngram.order):i + 1])[target]
            ll[m] += np.log(grid * (word == target) + (1 - grid) * p)
    return {m: round(float(grid[v.argmax()]), 4) for m, v in ll.items()}


def score_baselines(test_pieces: list[list[int]], train: list[list[int]], validation_pieces: list[list[int]],
                    note_ids: set[int], vocab_size: int) -> dict:
    """All four baselines on the test pieces (each piece: one window, BOS first)."""
    notes = np.array(sorted(note_ids))
    uni, bi = add_k(train, vocab_size)
    ngram = NGram(5, vocab_size).fit(train)
    alpha = fit_copy_weights(validation_pieces, ngram, note_ids)
    scorers = {name: Scorer(notes) for name in ("unigram", "bigram", "5-gram", "copy + 5-gram")}
    copied = 0
    for piece in test_pieces:
        copies = copy_predictions(piece)
        for i in range(len(piece) - 1):
            target = piece[i + 1]
            if target not in note_ids:
                continue
            scorers["unigram"].add(uni, target)
            scorers["bigram"].add(bi[piece[i]], target)
            p5 = ngram.dist(piece[max(0, i + 2 - ngram.order):i + 1])
            scorers["5-gram"].add(p5, target)
            word, m = copies[i]
            if m:
                copied += 1
                p5 = (1 - alpha[m]) * p5
                p5[word] += alpha[m]
            scorers["copy + 5-gram"].add(p5, target)
    out = {name: s.result() for name, s in scorers.items()}
    out["copy + 5-gram"]["copied_share"] = copied / max(1, out["copy + 5-gram"]["targets"])
    out["copy + 5-gram"]["alpha"] = {str(m): a for m, a in alpha.items()}  # by match length (JSON keys)
    return out
