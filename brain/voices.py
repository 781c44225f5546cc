"""Each neuron's voice: a home pitch a listener can learn, and the pitch classes it pushes the model towards.

Both come from the neuron's direct logit effect (:mod:`brain.logit_effect`):
``push[L, n, pc]`` is the largest push neuron ``L.n`` gives any trained note
word of pitch class ``pc``; its *home* is the note it promotes most, moved by
its layer's octave (so the layers sit in their own registers). The sonifier
plays, at each sounding event, the in-key pitch class the neuron pushes most,
at the place nearest its home: a model with other weights plays other notes,
and a neuron keeps one place in the band.

Models without note words get a stable hash instead (and say so: the band then
shows *when* neurons fire, not what they predict). :meth:`NeuronVoices.shuffled`
is the score's control that permutes the neuron → voice map.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

HOME_OCTAVE = 4
"""The octave of the promoted notes (the corpus's melodies sit around C4–C6); a layer's octave moves from it."""


@dataclass
class NeuronVoices:
    home: np.ndarray
    """[n_layers, d_mlp] MIDI note."""
    push: np.ndarray
    """[n_layers, d_mlp, 12] the neuron's largest logit push on a note word of each pitch class."""
    from_model: bool = True
    """False: hashed (the model has no note words)."""
    representative: np.ndarray | None = None
    """[n_layers, d_mlp] the unit whose voice each unit plays in (a dictionary's near-duplicates share one);
    None: each its own."""

    def voice_id(self, layer: int, unit: int) -> str:
        """The id of the unit whose place in the band ``L.unit`` takes: near-duplicates are one voice to the ear."""
        rep = unit if self.representative is None or unit >= self.representative.shape[1] else \
            int(self.representative[layer, unit])
        return f"{layer}.{rep}"

    def pitch(self, layer: int, neuron: int, allowed: tuple[int, ...] | list[int]) -> int:
        """The allowed pitch class this neuron pushes most, placed nearest its home."""
        push = self.push[layer, neuron]
        pc = max(allowed, key=lambda p: (push[p], -p))
        home = int(self.home[layer, neuron])
        up = (pc - home) % 12
        return home + up if up <= 6 else home + up - 12

    @classmethod
    def planted(cls, notes: dict[tuple[int, int], int], n_layers: int, d_mlp: int) -> "NeuronVoices":
        """Hashed voices, except that neuron (L, n) → note is at home on that note and pushes only its pitch class
        (a test's model whose neuron says one thing)."""
        voices = hashed_voices(n_layers, d_mlp, np.zeros(n_layers, dtype=np.int64))
        for (layer, n), note in notes.items():
            voices.home[layer, n] = note
            voices.push[layer, n] = 0.0
            voices.push[layer, n, note % 12] = 1.0
        return voices

    def shuffled(self, seed: int = 0) -> "NeuronVoices":
        """The same voices dealt to other neurons of the same layer: the control that must sound different."""
        rng = np.random.default_rng(seed)
        perm = np.stack([rng.permutation(self.home.shape[1]) for _ in range(self.home.shape[0])])
        rows = np.arange(self.home.shape[0])[:, None]
        return NeuronVoices(self.home[rows, perm], self.push[rows, perm], self.from_model)


def layer_shifts(n_layers: int, layer_octaves: list[int]) -> np.ndarray:
    """Semitones each layer's homes move from the promoted notes' octave (the last octave serves deeper layers)."""
    return np.array([12 * (layer_octaves[min(layer, len(layer_octaves) - 1)] - HOME_OCTAVE)
                     for layer in range(n_layers)])


def voices_of(model, layer_octaves: list[int], dictionary=None) -> NeuronVoices:
    """The voices of every neuron of ``model`` (its direct logit effects; a hash without note words); with a
    ``dictionary``, of every feature (its decoder direction's effects, :mod:`brain.units.features`)."""
    from brain.logit_effect import direct_logit_effect, trained_note_ids

    n_layers = model.n_layers
    d_mlp = model.d_mlp if dictionary is None else dictionary.n_latents
    shift = layer_shifts(n_layers, layer_octaves)
    notes = trained_note_ids(model) if model.note_token_ids() else {}
    if not notes:
        return hashed_voices(n_layers, d_mlp, shift)
    ids = np.array(sorted(notes))
    pcs = np.array([notes[int(i)] % 12 for i in ids])
    midi = np.array([notes[int(i)] for i in ids])
    home = np.zeros((n_layers, d_mlp), dtype=np.int64)
    push = np.full((n_layers, d_mlp, 12), -np.inf, dtype=np.float32)
    rep = np.tile(np.arange(d_mlp), (n_layers, 1))
    for layer in range(n_layers):
        effect = direct_logit_effect(model, layer)
        if dictionary is not None:
            rep[layer] = dictionary[layer].voice_of().numpy()
            effect = (dictionary[layer].W_dec @ effect)[rep[layer]]  # a near-duplicate sings its group's voice
        effect = effect[:, ids].numpy()  # [units, notes]
        home[layer] = midi[effect.argmax(-1)] + shift[layer]
        for pc in range(12):
            cols = pcs == pc
            if cols.any():
                push[layer, :, pc] = effect[:, cols].max(-1)
    return NeuronVoices(np.clip(home, 24, 108), push, representative=rep if dictionary is not None else None)


def hashed_voices(n_layers: int, d_mlp: int, shift: np.ndarray) -> NeuronVoices:
    home = np.zeros((n_layers, d_mlp), dtype=np.int64)
    push = np.zeros((n_layers, d_mlp, 12), dtype=np.float32)
    for layer in range(n_layers):
        for n in range(d_mlp):
            h = hashlib.sha1(f"{layer}.{n}".encode()).digest()
            home[layer, n] = 12 * (HOME_OCTAVE + 1) + h[0] % 24 + shift[layer]
            push[layer, n] = np.frombuffer(h[1:13], dtype=np.uint8)
    return NeuronVoices(np.clip(home, 24, 108), push, from_model=False)
