"""Per-neuron statistics over a calibration corpus: quantiles, top examples, labels.

Normalization follows Transluce's neuron viewer: a neuron's activation is
divided by its high quantile (1 − 1e-5) over a large corpus (≥ 1M distinct
contexts: the validation tunes, then transpositions of them), so 1.0 means "as
strong as this neuron gets". A context counts once however often it occurs:
every tune starts with ``|`` and thousands with ``| D4``, and counting those
identical activations thousands of times made a start-of-tune neuron's
quantile exactly its value there. Labels are by selectivity (``brain/neuron_labels.py``: the
trait whose presence the activation tells apart best, with its AUROC) plus the
trained note the neuron promotes most through the final LayerNorm
(``brain/logit_effect.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from brain.activations import Capture, capture_activations
from brain.encoder import note_word, word_note
from brain.logit_effect import MELODIC_RANGE, promoted_notes
from core.units import NeuronId
from brain.models import LoadedModel

_log = logging.getLogger("neurojam.brain")

QUANTILES = (0.5, 0.9, 0.99, 0.999, 1 - 1e-5)
MIN_TOKENS = 1_000_000
"""Distinct calibration contexts for the quantiles: the 1 − 1e-5 quantile of fewer is just the maximum."""
SAMPLE = 200_000
"""Tokens sampled per layer for the median and 0.9 quantile, and for the labels' selectivity; fewer where a layer is
wide (``sample_size``)."""
MEMORY_BUDGET = 2 << 30
"""Bytes each of the three big buffers may take (activations captured at once, the quantile sample, the label
sample), so gpt2-small's shape (12 × 3,072 neurons) fits a laptop: captured whole it held 14.7 GB per 100k tokens.
The shipped model keeps its full sample and is captured in one run, as before."""


def sample_size(model) -> int:
    return max(1000, min(SAMPLE, MEMORY_BUDGET // (4 * model.n_layers * model.d_mlp)))


def text_chunks(model, texts: list[str], lengths: list[int]) -> list[list[str]]:
    """The texts in runs whose activations fit the memory budget (one run for a small model: as captured before)."""
    per_token = 4 * model.n_layers * model.d_mlp
    runs, run, size = [], [], 0
    for text, n in zip(texts, lengths):
        if run and (size + n) * per_token > MEMORY_BUDGET:
            runs.append(run)
            run, size = [], 0
        run.append(text)
        size += n
    return runs + [run] if run else runs


@dataclass
class NeuronStats:
    quantiles: torch.Tensor  # [n_layers, d_mlp, len(QUANTILES)]
    model_fingerprint: str
    labels: dict[str, str]
    top_examples: dict[str, list[dict]]
    scores: dict[str, dict] | None = None
    """'L.N' → the label's trait, its AUROC, the trait's base rate, clear or not, position neuron or not."""
    calibration_tokens: int = 0

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
            {"fingerprint": self.model_fingerprint, "calibration_tokens": self.calibration_tokens,
             "labels": self.labels, "scores": self.scores or {}, "top_examples": self.top_examples}))

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
        return cls(quantiles, fingerprint, extra.get("labels", {}), extra.get("top_examples", {}),
                   extra.get("scores") or None, extra.get("calibration_tokens", 0))


def fingerprint(model) -> str:
    """A hash of the MLP output weights: stats belong to exactly these weights."""
    h = hashlib.sha1()
    for layer in range(model.n_layers):
        h.update(model.bridge.W_out[layer].detach().float().cpu().numpy().tobytes()[:1 << 20])
    return h.hexdigest()[:16]


def transposed(text: str, shift: int) -> str | None:
    """The tune moved by ``shift`` semitones, or None if a note would leave the melodic range."""
    out = []
    for w in text.split():
        n = word_note(w)
        if n is None:
            out.append(w)
        elif MELODIC_RANGE[0] <= n + shift <= MELODIC_RANGE[1]:
            out.append(note_word(n + shift))
        else:
            return None
    return " ".join(out)


def calibration_texts(texts: list[str], min_tokens: int = MIN_TOKENS) -> list[list[str]]:
    """The texts in their own key, then transposed (+1, -1, +2, -2, ... semitones) until there are at least
    ``min_tokens`` distinct word prefixes: a large-corpus quantile needs a large corpus. Returned pass by pass."""
    contexts = DistinctContexts()

    def distinct(pass_texts: list[str]) -> int:
        return sum(sum(contexts.new_prefixes(t.split())) for t in pass_texts)

    passes, total = [texts], distinct(texts)
    for shift in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
        if total >= min_tokens:
            break
        moved = [m for t in texts if (m := transposed(t, shift)) is not None]
        passes.append(moved)
        total += distinct(moved)
    return passes


class DistinctContexts:
    """Which captured tokens end a context (the piece's tokens up to and including this one) not seen before.

    The model's activation is a function of the context, so a repeated context is one measurement repeated."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def new_prefixes(self, items: list) -> list[bool]:
        """For each prefix of one piece (words or token ids), whether it is new; all are seen afterwards."""
        new, h = [], 0
        for item in items:
            h = hash((h, item))
            new.append(h not in self.seen)
            self.seen.add(h)
        return new

    def mask(self, token_ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Captured pieces lie one after another, each from position 0."""
        ids = token_ids.tolist()
        starts = [i for i, p in enumerate(position.tolist()) if p == 0 or i == 0] + [len(ids)]
        new = [f for a, b in zip(starts, starts[1:]) for f in self.new_prefixes(ids[a:b])]
        return torch.tensor(new, dtype=torch.bool)


class _Quantiles:
    """Exact high quantiles from a running top-K per neuron; the median and 0.9 from a uniform sample."""

    def __init__(self, capacity: int, d_mlp: int, seed: int = 0, sample: int = SAMPLE) -> None:
        """``capacity``: at least as many values as will be added; ``sample``: about how many to keep uniformly."""
        self.capacity, self.n_total, self.sample_size = capacity, 0, sample
        self.k = min(capacity, int(capacity * (1 - QUANTILES[2])) + 2)  # enough for the 0.99 quantile
        self.top = torch.full((self.k, d_mlp), float("-inf"))
        self.sample: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def add(self, acts: torch.Tensor) -> None:
        self.n_total += acts.shape[0]
        merged = torch.cat([self.top, acts.float()])
        self.top = merged.topk(min(self.k, merged.shape[0]), dim=0).values
        keep = torch.rand(acts.shape[0], generator=self.gen) < min(1.0, self.sample_size / self.capacity)
        self.sample.append(acts[keep].float())

    def result(self) -> torch.Tensor:  # [d_mlp, len(QUANTILES)]
        sample = torch.cat(self.sample)
        cols = []
        for q in QUANTILES:
            rank_from_top = int(round((1 - q) * (self.n_total - 1)))
            if rank_from_top < self.k:
                cols.append(self.top[rank_from_top])
            else:  # one order statistic, not a sort of the whole sample (12 × 3,072 neurons took 14 s)
                cols.append(sample.kthvalue(int(round(q * (sample.shape[0] - 1))) + 1, dim=0).values)
        return torch.stack(cols, dim=1)


def compute_stats(model, texts: list[str], top_k_examples: int = 3, window: int = 10,
                  progress: bool = True, min_tokens: int = MIN_TOKENS) -> NeuronStats:
    """Quantiles over ≥ ``min_tokens`` distinct calibration contexts (the texts, then transpositions of them); labels by
    selectivity (``brain/neuron_labels.py``) and max-activating examples on the texts as they are."""
    passes = calibration_texts(texts, min_tokens)
    tok = model.tokenizer
    lengths = [[len(tok.encode(t)[0]) for t in p] for p in passes]
    capacity = sum(map(sum, lengths))
    sample = sample_size(model)
    quant = [_Quantiles(capacity, model.d_mlp, seed=layer, sample=sample) for layer in range(model.n_layers)]
    contexts = DistinctContexts()
    first = _FirstPass(model, sum(lengths[0]), sample, top_k_examples * 4, window)
    for k, texts_k in enumerate(passes):
        done = 0
        for run in text_chunks(model, texts_k, lengths[k]):
            cap: Capture = capture_activations(model, run, progress=progress)
            new = contexts.mask(cap.token_ids, cap.position)
            for layer in cap.layers:
                quant[layer].add(cap.acts[layer][new])
            if k == 0:  # the texts as they are: kept for the labels and the examples
                cap.text_index = cap.text_index + done
                first.add(cap)
            done += len(run)
            del cap
    labels, scores, examples = first.labels(top_k_examples)
    quantiles = torch.stack([q.result() for q in quant])
    return NeuronStats(quantiles, fingerprint(model), labels, examples, scores, quant[0].n_total)


class _FirstPass:
    """What the labels and the max-activating examples need from the texts as they are, gathered run by run: the
    tokens, a uniform sample of activations, and each neuron's strongest tokens with the activations around them."""

    def __init__(self, model, n_tokens: int, sample: int, top: int, window: int) -> None:
        self.model, self.top, self.window = model, top, window
        gen = torch.Generator().manual_seed(0)
        self.pick = torch.randperm(n_tokens, generator=gen)[:sample].sort().values
        self.seen = 0
        self.token_ids, self.text_index, self.position = [], [], []
        self.sampled: dict[int, list[torch.Tensor]] = {}
        self.best: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # values, indices, windows

    def add(self, cap: Capture) -> None:
        lo, hi = self.seen, self.seen + cap.n_tokens
        here = self.pick[(self.pick >= lo) & (self.pick < hi)] - lo
        steps = torch.arange(-self.window, 1)
        for layer in cap.layers:
            acts = cap.acts[layer]
            self.sampled.setdefault(layer, []).append(acts[here])
            vals, idx = acts.topk(min(self.top, acts.shape[0]), dim=0)  # [m, d_mlp]
            around = (idx[None] + steps[:, None, None]).clamp(min=0)  # [window + 1, m, d_mlp]
            windows = acts.gather(0, around.reshape(-1, acts.shape[1])).reshape(around.shape)
            idx = idx + lo  # global token indices
            if layer in self.best:
                v0, i0, w0 = self.best[layer]
                vals, idx, windows = torch.cat([v0, vals]), torch.cat([i0, idx]), torch.cat([w0, windows], dim=1)
                order = vals.topk(min(self.top, vals.shape[0]), dim=0).indices
                vals, idx = vals.gather(0, order), idx.gather(0, order)
                windows = windows.gather(1, order[None].expand(windows.shape[0], -1, -1))
            self.best[layer] = (vals, idx, windows)
        self.token_ids.append(cap.token_ids)
        self.text_index.append(cap.text_index)
        self.position.append(cap.position)
        self.seen = hi

    def labels(self, top_k_examples: int) -> tuple[dict, dict, dict]:
        from brain.neuron_labels import auroc, best_labels, token_traits

        model, tok = self.model, self.model.tokenizer
        token_ids, text_index, position = (torch.cat(x) for x in (self.token_ids, self.text_index, self.position))
        words = [tok.token_str(int(t)) for t in token_ids]
        chunk = (position == 0).cumsum(0)  # pieces are stored one after another, each from position 0
        traits = token_traits(words, chunk.numpy(), position.numpy())
        sampled = type(traits)(traits.names, traits.matrix[self.pick.numpy()])
        promoted = promoted_notes(model)
        labels: dict[str, str] = {}
        scores: dict[str, dict] = {}
        examples: dict[str, list[dict]] = {}
        for layer in sorted(self.sampled):
            layer_labels = best_labels(auroc(torch.cat(self.sampled[layer]), sampled), sampled)
            _, top_idx, windows = self.best[layer]
            for n, label in enumerate(layer_labels):
                nid = f"{layer}.{n}"
                note = int(promoted[layer, n])
                labels[nid] = label.text() + (f" → {_word(note)}" if note >= 0 else "")
                scores[nid] = {"trait": label.trait, "auroc": round(label.auroc, 4),
                               "base_rate": round(label.base_rate, 5), "clear": label.clear,
                               "position": label.position}
                exs, seen = [], set()
                for j, i in enumerate(top_idx[:, n].tolist()):
                    lo = max(0, i - self.window)
                    same = text_index[lo:i + 1] == text_index[i]
                    lo = lo + int((~same).sum())
                    ctx = [tok.token_str(int(t)) for t in token_ids[lo:i + 1]]
                    if tuple(ctx) in seen:
                        continue
                    seen.add(tuple(ctx))
                    acts = windows[self.window - (i - lo):, j, n]
                    exs.append({"tokens": ctx, "acts": [round(float(a), 3) for a in acts]})
                    if len(exs) == top_k_examples:
                        break
                examples[nid] = exs
        return labels, scores, examples


LABEL_SHIFTS = (0, 1, -1, 2, -2)
"""Transpositions of the labelling texts: more gate passes per neuron, the same tunes."""


def with_transpositions(texts: list[str], shifts: tuple[int, ...] = LABEL_SHIFTS) -> list[str]:
    return [m for s in shifts for t in texts if (m := (t if s == 0 else transposed(t, s))) is not None]


def label_by_precision(model, stats: NeuronStats, choose_texts: list[str], check_texts: list[str], gate: float,
                       progress: bool = True) -> dict:
    """Relabel every neuron by its precision where it sounds (:func:`brain.neuron_labels.precise_labels`): the trait
    chosen on ``choose_texts``, its precision measured on ``check_texts`` (both held out from training), at the
    sonifier's ``gate``. Updates ``stats.labels`` and ``stats.scores``; returns the summary the card states."""
    from brain.neuron_labels import gate_counts, precise_labels

    choose = gate_counts(model, stats.scale, with_transpositions(choose_texts), gate, progress=progress)
    check = gate_counts(model, stats.scale, with_transpositions(check_texts), gate, progress=progress)
    promoted = promoted_notes(model)
    scores = stats.scores or {}
    for nid, label in precise_labels(choose, check).items():
        layer, n = NeuronId.parse(nid)
        note = int(promoted[layer, n])
        stats.labels[nid] = label.text() + (f" → {_word(note)}" if note >= 0 else "")
        old = scores.get(nid, {})
        scores[nid] = {"trait": label.trait, "precision": round(label.precision, 4), "firings": label.firings,
                       "held_out_precision": None if label.held_out_precision is None else
                       round(label.held_out_precision, 4), "held_out_firings": label.held_out_firings,
                       "clear": label.clear, "position": label.position, "gate": gate,
                       "auroc_trait": old.get("auroc_trait", old.get("trait")), "auroc": old.get("auroc"),
                       "base_rate": old.get("base_rate")}
    stats.scores = scores
    clear = [sc for sc in scores.values() if sc["clear"]]
    return {"gate": gate, "choosing_tokens": choose.tokens, "held_out_tokens": check.tokens,
            "neurons": len(scores), "clear": len(clear), "position_neurons": sum(sc["position"] for sc in clear),
            "too_rare": sum(1 for sc in scores.values() if not sc["trait"]),
            "chosen_at_80": sum(1 for sc in scores.values() if sc["trait"] and sc["precision"] >= 0.8),
            "median_held_out_precision_clear": round(float(sorted(sc["held_out_precision"] for sc in clear)[
                len(clear) // 2]), 4) if clear else None}


def compute_quantiles(model, texts: list[str], progress: bool = False) -> NeuronStats:
    """Only the quantiles, over the texts' distinct contexts as they are (no transpositions, no labels): a control
    model's own scale, in seconds rather than the full statistics' minutes."""
    cap: Capture = capture_activations(model, texts, progress=progress)
    new = DistinctContexts().mask(cap.token_ids, cap.position)
    quantiles = []
    for layer in range(model.n_layers):
        q = _Quantiles(int(new.sum()), model.d_mlp, seed=layer)
        q.add(cap.acts[layer][new])
        quantiles.append(q.result())
    return NeuronStats(torch.stack(quantiles), fingerprint(model), {}, {}, None, int(new.sum()))


def _word(note: int) -> str:
    from brain.encoder import note_word

    return note_word(note)


def stats_dir_for(model: LoadedModel, stats_dir: str) -> Path:
    if model.directory is not None:
        return model.directory
    return Path(stats_dir).expanduser() / model.name.replace("/", "__")


def load_stats(model: LoadedModel, stats_dir: str) -> NeuronStats | None:
    stats = NeuronStats.load(stats_dir_for(model, stats_dir))
    if stats is None:
        _log.warning("no neuron statistics for %s: using raw activations (run `neurojam model stats --model %s` "
                    "to compute them once)", model.name, model.name)
    elif stats.quantiles.shape[:2] != (model.n_layers, model.d_mlp):
        _log.warning("neuron statistics for %s do not match the model's shape; using raw activations", model.name)
        return None
    return stats
