"""A sparse dictionary over each layer's MLP neurons: features a listener can hear instead of polysemantic neurons.

One TopK sparse autoencoder per layer, on the neurons' activations (``blocks.L.mlp.hook_post``, the units the
brain plays today), so a feature is a direction in the same space a neuron is a basis vector of: its decoder
direction goes through the layer's ``W_out`` like a neuron's, which gives it a direct logit effect and a steering
direction, and the live step needs nothing but the hook it already reads. (A transcoder, MLP input → output, would
explain the MLP's computation rather than its neurons; the product plays what the model's units hold, so an SAE.)

TopK: a feature is on when it is among the ``k`` largest encoder outputs of its token, so L0 is ``k`` by
construction and no L1 penalty shrinks what is heard. EleutherAI's sparsify trains it (``brain/training/
dictionary.py``); this module only reads the weights with plain torch, so the brain image needs no extra package.

Files, in a ``dictionary/`` folder beside the model: ``dictionary.safetensors`` (per layer ``L.W_enc`` [latents,
d_mlp], ``L.b_enc``, ``L.W_dec`` [latents, d_mlp], ``L.b_dec``) and ``card.json`` (how it was trained and how well
it reconstructs: L0, FVU, dead latents, near-duplicates, next-note top-1 with it spliced in).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import ModelError

FILE = "dictionary.safetensors"
CARD = "card.json"
NEAR_DUPLICATE = 0.9
"""Decoder cosine above which two features of a layer are one voice to the ear (and counted on the card)."""


@dataclass
class LayerDictionary:
    W_enc: torch.Tensor  # [latents, d_mlp]
    b_enc: torch.Tensor  # [latents]
    W_dec: torch.Tensor  # [latents, d_mlp], unit rows
    b_dec: torch.Tensor  # [d_mlp]
    k: int

    @property
    def n_latents(self) -> int:
        return int(self.W_enc.shape[0])

    def pre_acts(self, acts: torch.Tensor) -> torch.Tensor:
        """[..., latents] encoder outputs before the top-k choice (ReLU'd)."""
        x = acts.to(self.W_enc.dtype) - self.b_dec
        return torch.relu(x @ self.W_enc.T + self.b_enc)

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        """[..., d_mlp] neuron activations → [..., latents] feature activations, ``k`` non-zero per token."""
        pre = self.pre_acts(acts)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.W_dec + self.b_dec

    def reconstruct(self, acts: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(acts)).to(acts.dtype)

    def near_duplicate_pairs(self) -> torch.Tensor:
        """[pairs, 2] feature indices (i < j) whose decoder directions' cosine exceeds :data:`NEAR_DUPLICATE`."""
        w = torch.nn.functional.normalize(self.W_dec.float(), dim=-1)
        cos = (w @ w.T).triu(diagonal=1)
        return (cos > NEAR_DUPLICATE).nonzero()

    def voice_of(self) -> torch.Tensor:
        """[latents] each feature's representative: the lowest index among the near-duplicates it is linked to
        (itself when it has none). Near-duplicates write the same direction; a listener hears them as one voice."""
        rep = torch.arange(self.n_latents)
        pairs = self.near_duplicate_pairs().tolist()
        changed = True
        while changed:  # a few passes join chains (a ~ b ~ c) into one group
            changed = False
            for i, j in pairs:
                low = min(int(rep[i]), int(rep[j]))
                if rep[i] != low or rep[j] != low:
                    rep[i] = rep[j] = low
                    changed = True
        return rep


class Dictionary:
    """Every layer's dictionary, loaded from a model's ``dictionary/`` folder."""

    def __init__(self, layers: dict[int, LayerDictionary], card: dict | None = None) -> None:
        self.layers, self.card = layers, card or {}

    def __getitem__(self, layer: int) -> LayerDictionary:
        return self.layers[layer]

    @property
    def n_latents(self) -> int:
        return next(iter(self.layers.values())).n_latents

    def check_feature(self, layer: int, feature: int) -> None:
        """A clear error for a feature index this dictionary does not have (the layer: ``check_neuron``'s)."""
        if not 0 <= feature < self.n_latents:
            raise ModelError(f"feature {feature} is out of range: layer {layer}'s dictionary has {self.n_latents} "
                             f"features (valid: 0..{self.n_latents - 1}).")

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"{layer}.{name}": getattr(d, name).detach().contiguous().half()
                   for layer, d in self.layers.items() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
        save_file(tensors, directory / FILE, metadata={"k": json.dumps({str(l): d.k for l, d in self.layers.items()})})
        (directory / CARD).write_text(json.dumps(self.card, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "Dictionary":
        from safetensors import SafetensorError, safe_open

        path = Path(directory) / FILE
        if not path.exists():
            raise ModelError(f"no dictionary at {directory}: train one with `python -m brain.training.dictionary "
                             f"--model MODEL` (a few minutes a layer on a CPU)")
        try:
            with safe_open(str(path), "pt") as f:
                ks = {int(l): k for l, k in json.loads(f.metadata()["k"]).items()}
                layers = {l: LayerDictionary(*(f.get_tensor(f"{l}.{n}").float()
                                               for n in ("W_enc", "b_enc", "W_dec", "b_dec")), k=k)
                          for l, k in ks.items()}
        except (OSError, KeyError, ValueError, SafetensorError) as exc:
            raise ModelError(f"the dictionary at {path} is damaged ({exc}); train it again") from exc
        card_path = Path(directory) / CARD
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        return cls(layers, card)
