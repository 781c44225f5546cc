"""What a neuron says directly: its push on each next-note logit, through the final LayerNorm.

A neuron's output adds ``a · W_out[n]`` to the residual stream. Before the
unembedding, ``ln_final`` centres the stream, divides by its norm and scales
each dimension by ``γ``. Treating the divisor as a positive constant (it is
shared by every token's logit, so it changes the size of the push, not its
ranking), the neuron's direct effect on the logits is::

    effect[n] = ((W_out[n] − mean(W_out[n])) ⊙ γ) @ W_U

``W_out`` centred because the LayerNorm removes the mean anyway; ``γ`` folded in
because it re-weights dimensions unevenly (0.81–1.11 in the default model).
Only *trained* note words are candidates: a word the training split holds
fewer than :data:`MIN_COUNT` times has a barely trained unembedding row, and
its large effects are noise, not a promoted note.
"""

from __future__ import annotations

import torch

MIN_COUNT = 50
"""Training occurrences a note word needs before a neuron can be said to promote it."""
MELODIC_RANGE = (36, 96)
"""C2..C7: the fallback for models without training counts (their card lacks them)."""


def direct_logit_effect(model, layer: int, neuron: int | None = None) -> torch.Tensor:
    """[vocab] (or [d_mlp, vocab] for the whole layer): the neuron's push on each logit through ``ln_final``."""
    w_out = model.bridge.W_out[layer].float().detach().cpu()
    if neuron is not None:
        w_out = w_out[neuron:neuron + 1]
    w_out = w_out - w_out.mean(-1, keepdim=True)
    gamma = _ln_final_scale(model)
    if gamma is not None:
        w_out = w_out * gamma
    effect = w_out @ model.bridge.W_U.float().detach().cpu()
    return effect[0] if neuron is not None else effect


def _ln_final_scale(model) -> torch.Tensor | None:
    state = model.bridge.state_dict()
    for name in ("ln_final.weight", "ln_final.w"):
        if name in state:
            return state[name].float().detach().cpu()
    return None


def trained_note_ids(model, min_count: int = MIN_COUNT) -> dict[int, int]:
    """token id → MIDI note for the note words the model was trained on at least ``min_count`` times (by the
    card's training counts; without them, the notes of the melodic range)."""
    notes = model.note_token_ids()
    counts = (getattr(model, "card", None) or {}).get("vocabulary", {}).get("train_counts")
    if counts:
        vocab = model.tokenizer.vocab()
        return {i: n for w, c in counts.items() if c >= min_count and (i := vocab.get(w)) in notes
                for n in (notes[i],)}
    lo, hi = MELODIC_RANGE
    return {i: n for i, n in notes.items() if lo <= n <= hi}


def promoted_notes(model, note_ids: dict[int, int] | None = None) -> torch.Tensor:
    """[n_layers, d_mlp] MIDI note each neuron promotes most among trained note words (-1: no note words)."""
    note_ids = trained_note_ids(model) if note_ids is None else note_ids
    out = torch.full((model.n_layers, model.d_mlp), -1, dtype=torch.long)
    if not note_ids:
        return out
    ids = torch.tensor(sorted(note_ids))
    notes = torch.tensor([note_ids[int(i)] for i in ids])
    for layer in range(model.n_layers):
        out[layer] = notes[direct_logit_effect(model, layer)[:, ids].argmax(-1)]
    return out


def top_promoted(model, layer: int, neuron: int, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` trained note words neuron ``layer.neuron`` pushes up most: (MIDI note, logit effect)."""
    note_ids = trained_note_ids(model)
    effect = direct_logit_effect(model, layer, neuron)
    ranked = sorted(note_ids, key=lambda i: float(effect[i]), reverse=True)[:k]
    return [(note_ids[i], float(effect[i])) for i in ranked]
