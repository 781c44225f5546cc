"""Per-neuron statistics over a calibration corpus: quantiles, top examples, labels.

Normalization follows Transluce's neuron viewer: a neuron's activation is
divided by its high quantile (1 − 1e-5) over the corpus, so 1.0 means "as
strong as this neuron ever gets". Labels are short and automatic: the most
common trait of the contexts where the neuron fires hardest (the note, the
interval from the previous note, a bar line) and the note it promotes most
through its direct effect on the logits (``W_out[n] @ W_U``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from brain.activations import Capture, capture_activations
from brain.encoder import BAR, REST, word_note

QUANTILES = (0.5, 0.9, 0.99, 0.999, 1 - 1e-5)
INTERVALS = {0: "unison", 1: "half step", 2: "step", 3: "minor 3rd", 4: "major 3rd", 5: "4th", 6: "tritone",
             7: "5th", 8: "minor 6th", 9: "major 6th", 10: "minor 7th", 11: "major 7th", 12: "octave"}


@dataclass
class NeuronStats:
    quantiles: torch.Tensor  # [n_layers, d_mlp, len(QUANTILES)]
    model_fingerprint: str
    labels: dict[str, str]
    top_examples: dict[str, list[dict]]

    @property
    def scale(self) -> torch.Tensor:
        """[n_layers, d_mlp] divisor for normalization (the 1 − 1e-5 quantile, floored)."""
        return self.quantiles[..., -1].clamp_min(1e-6)

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({"quantiles": self.quantiles.contiguous()}, str(directory / "neuron_quantiles.safetensors"),
                  metadata={"fingerprint": self.model_fingerprint, "levels": json.dumps(QUANTILES)})
        (directory / "neuron_labels.json").write_text(json.dumps(
            {"fingerprint": self.model_fingerprint, "labels": self.labels, "top_examples": self.top_examples}))

    @classmethod
    def load(cls, directory: Path) -> "NeuronStats | None":
        from safetensors import safe_open

        qpath, lpath = directory / "neuron_quantiles.safetensors", directory / "neuron_labels.json"
        if not qpath.exists():
            return None
        with safe_open(str(qpath), "pt") as f:
            quantiles = f.get_tensor("quantiles")
            fingerprint = f.metadata().get("fingerprint", "")
        extra = json.loads(lpath.read_text()) if lpath.exists() else {}
        return cls(quantiles, fingerprint, extra.get("labels", {}), extra.get("top_examples", {}))


def fingerprint(model) -> str:
    """A hash of the MLP output weights: stats belong to exactly these weights."""
    h = hashlib.sha1()
    for layer in range(model.n_layers):
        h.update(model.bridge.W_out[layer].detach().float().cpu().numpy().tobytes()[:1 << 20])
    return h.hexdigest()[:16]


def direct_logit_effect(model, layer: int, neuron: int) -> torch.Tensor:
    """``W_out[layer, neuron] @ W_U``: how the neuron pushes each token's logit."""
    return (model.bridge.W_out[layer, neuron].float() @ model.bridge.W_U.float()).detach().cpu()


MELODIC_RANGE = (36, 96)
"""C2..C7: where melodies live. Notes outside it are rare in any corpus, so their
unembedding rows are barely trained and their direct-effect maxima are noise."""


def promoted_notes(model) -> torch.Tensor:
    """[n_layers, d_mlp] MIDI note (within the melodic range) each neuron promotes most
    through ``W_out @ W_U`` (-1 if the model has no note tokens)."""
    lo, hi = MELODIC_RANGE
    note_ids = {i: n for i, n in model.note_token_ids().items() if lo <= n <= hi}
    out = torch.full((model.n_layers, model.d_mlp), -1, dtype=torch.long)
    if not note_ids:
        return out
    ids = torch.tensor(sorted(note_ids))
    notes = torch.tensor([note_ids[int(i)] for i in ids])
    W_U = model.bridge.W_U.float().detach().cpu()[:, ids]
    for layer in range(model.n_layers):
        effect = model.bridge.W_out[layer].float().detach().cpu() @ W_U  # [d_mlp, n_note_tokens]
        out[layer] = notes[effect.argmax(-1)]
    return out


def _context_traits(words: list[str]) -> list[str]:
    """Traits of the last word in context, for labelling."""
    cur = words[-1]
    traits = []
    if cur == BAR:
        traits.append("bar line")
    elif cur == REST:
        traits.append("rest")
    else:
        traits.append(f"on {cur}")
        prev = next((w for w in reversed(words[:-1]) if word_note(w) is not None), None)
        if prev is not None:
            step = word_note(cur) - word_note(prev)
            name = INTERVALS.get(abs(step) % 13 if abs(step) <= 12 else 12, "leap")
            traits.append("repeated note" if step == 0 else f"after {'rising' if step > 0 else 'falling'} {name}")
        if len(words) >= 2 and words[-2] == BAR:
            traits.append("first note of a bar")
    return traits


def compute_stats(model, texts: list[str], top_k_examples: int = 3, window: int = 10,
                  progress: bool = True) -> NeuronStats:
    cap: Capture = capture_activations(model, texts, progress=progress)
    q = torch.tensor(QUANTILES)
    quantiles = torch.zeros(model.n_layers, model.d_mlp, len(QUANTILES))
    promoted = promoted_notes(model)
    labels: dict[str, str] = {}
    examples: dict[str, list[dict]] = {}
    tok = model.tokenizer
    for layer in cap.layers:
        acts = cap.acts[layer]  # [n_tokens, d_mlp]
        sorted_acts, _ = acts.sort(dim=0)
        idx = (q * (acts.shape[0] - 1)).round().long()
        quantiles[layer] = sorted_acts[idx].T
        top_vals, top_idx = acts.topk(min(20, acts.shape[0]), dim=0)  # [20, d_mlp]
        for n in range(model.d_mlp):
            nid = f"{layer}.{n}"
            traits: Counter = Counter()
            exs = []
            for rank, i in enumerate(top_idx[:, n].tolist()):
                lo = max(0, i - window)
                same = cap.text_index[lo:i + 1] == cap.text_index[i]
                lo = lo + int((~same).sum())
                ctx = [tok.token_str(int(t)) for t in cap.token_ids[lo:i + 1]]
                traits.update(_context_traits(ctx))
                if rank < top_k_examples:
                    exs.append({"tokens": ctx, "acts": [round(float(a), 3) for a in acts[lo:i + 1, n]]})
            trait, count = traits.most_common(1)[0] if traits else ("?", 0)
            share = count / max(1, top_idx.shape[0])
            note = int(promoted[layer, n])
            arrow = f" → {_word(note)}" if note >= 0 else ""
            labels[nid] = f"{trait} ({share:.0%}){arrow}"
            examples[nid] = exs
    return NeuronStats(quantiles, fingerprint(model), labels, examples)


def _word(note: int) -> str:
    from brain.encoder import note_word

    return note_word(note)
