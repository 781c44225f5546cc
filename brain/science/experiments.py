"""The classic neuron experiments, on note text, batched.

- :func:`ablate`: zero or mean ablation of one neuron (set, not negate) and the
  change in next-note loss, with the notes it hurts most.
- :func:`attribute`: gradient × activation for the probability of the
  predicted next token at one event (Transluce's attribution).
- :func:`hypothesis_test`: does a neuron fire more on texts that match a
  pattern than on texts that don't? Mann-Whitney U, Cohen's d, a verdict.
- :func:`match_neurons`: for every neuron of model A, the most correlated
  neurons of model B over the same texts, with tokens aligned by character
  offsets (not token index) and one matrix product over all pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from brain.activations import capture_activations, pad_rows
from brain.models import LoadedModel


def _windows(model: LoadedModel, text: str) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """BOS-prefixed n_ctx windows of a long text, with each token's char offsets."""
    tok = model.tokenizer
    ids, offs = tok.encode(text)
    step = model.n_ctx - 1
    out_ids, out_offs = [], []
    for i in range(0, len(ids), step):
        out_ids.append([tok.bos_id, *ids[i:i + step]])
        out_offs.append([(0, 0), *offs[i:i + step]])
    return out_ids, out_offs


@torch.inference_mode()
def _per_token_loss(model: LoadedModel, x: torch.Tensor, hook=None, layer: int = 0) -> torch.Tensor:
    name = model.hook_name(layer)
    if hook is None:
        logits = model.bridge(x)
    else:
        logits = model.bridge.run_with_hooks(x, fwd_hooks=[(name, hook)])
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    return -logp.gather(-1, x[:, 1:, None])[..., 0]  # [B, T-1]


@dataclass
class AblationResult:
    neuron: str
    mode: str
    loss_before: float
    loss_after: float
    targets: int
    most_affected: list[tuple[str, float, int]]  # (note word, mean loss change, count)

    @property
    def delta(self) -> float:
        return self.loss_after - self.loss_before


def ablate(model: LoadedModel, text: str, layer: int, neuron: int, mode: str = "zero", dictionary=None) -> AblationResult:
    """Next-note loss over ``text`` with the neuron's activation set to 0 (zero) or to its mean (mean). With a
    ``dictionary`` (:mod:`brain.units.features`), ``neuron`` names a feature: its part of the layer's activations
    (``a_F · W_dec[F]``) is taken out, or held at its mean."""
    model.check_neuron(layer, None if dictionary is not None else neuron)
    if dictionary is not None:
        dictionary.check_feature(layer, neuron)
    if mode not in ("zero", "mean"):
        from core.errors import ModelError

        raise ModelError(f"ablation mode {mode!r}: use zero or mean.")
    windows, _ = _windows(model, text)
    x, mask = pad_rows(windows, model.device)
    note_ids = model.note_token_ids()
    targets = x[:, 1:]
    valid = mask[:, 1:] & torch.tensor([[int(t) in note_ids for t in row] for row in targets.tolist()],
                                       device=x.device) if note_ids else mask[:, 1:]
    value = 0.0
    if mode == "mean":
        cap = capture_activations(model, [text], layers=[layer])
        acts = cap.acts[layer] if dictionary is None else dictionary[layer].encode(cap.acts[layer])
        value = float(acts[:, neuron].mean())

    def hook(act, hook=None):
        if dictionary is not None:
            d = dictionary[layer]
            held = d.encode(act.float())[..., neuron:neuron + 1]
            return act + ((value - held) * d.W_dec[neuron]).to(act.dtype)
        act = act.clone()
        act[..., neuron] = value
        return act

    before = _per_token_loss(model, x)
    after = _per_token_loss(model, x, hook, layer)
    diff = (after - before)[valid]
    tok = model.tokenizer
    per_note: dict[str, list[float]] = {}
    for d, t in zip(diff.tolist(), targets[valid].tolist()):
        per_note.setdefault(tok.token_str(t), []).append(d)
    affected = sorted(((w, float(np.mean(v)), len(v)) for w, v in per_note.items()), key=lambda r: -abs(r[1]))
    n = int(valid.sum())
    return AblationResult(f"{layer}.{neuron}", mode, float(before[valid].mean()) if n else 0.0,
                          float(after[valid].mean()) if n else 0.0, n, affected[:8])


@dataclass
class Attribution:
    layer: int
    index: int
    score: float
    activation: float
    gradient: float


PREDICTED_NOTE = "predicted-note"


def resolve_target(model: LoadedModel, target: str) -> int | None:
    """``predicted-note`` → None (decided from the logits); a note word or any token → its id, or a clear error."""
    if target == PREDICTED_NOTE:
        return None
    vocab = model.tokenizer.vocab()
    for form in (target, "Ġ" + target, "▁" + target):
        if form in vocab:
            return vocab[form]
    from brain.encoder import word_note

    if word_note(target) is not None:  # a note word the tokenizer splits: its first piece (LoadedModel.note_token_ids)
        from brain.models import first_piece

        piece = first_piece(model.tokenizer, target)
        if piece is not None:
            return piece
    from core.errors import ModelError, did_you_mean

    raise ModelError(f"--target {target!r} is not a token of {model.name}: give a note word (e.g. G4), a token "
                     f"(e.g. '|'), or {PREDICTED_NOTE}.{did_you_mean(target, list(vocab))}")


def attribute(model: LoadedModel, text: str, char_end: int, top: int = 10,
              target: str = PREDICTED_NOTE) -> tuple[str, list[Attribution]]:
    """Gradient × activation of each neuron at the token ending at ``char_end`` for the probability of
    ``target`` next: by default the model's most likely next *note* (not a bar line or rest), else a note word
    or any token. ``text`` should be the window the brain read (:func:`brain.stream.live_window`)."""
    tok = model.tokenizer
    target_id = resolve_target(model, target)
    ids, offs = tok.encode(text[:char_end])
    ids = ids[-(model.n_ctx - 1):]
    x = torch.tensor([[tok.bos_id, *ids]], device=model.device)
    acts: dict[int, torch.Tensor] = {}

    def keep(layer):
        def hook(act, hook=None):
            act.retain_grad()
            acts[layer] = act
            return act
        return hook

    hooks = [(model.hook_name(layer), keep(layer)) for layer in range(model.n_layers)]
    with torch.enable_grad():
        logits = model.bridge.run_with_hooks(x, fwd_hooks=hooks)
        probs = torch.softmax(logits[0, -1].float(), -1)
        if target_id is None:
            notes = sorted(model.note_token_ids()) or list(range(probs.numel()))
            target_id = notes[int(probs.detach()[notes].argmax())]
        probs[target_id].backward()
    rows = []
    for layer, act in acts.items():
        a = act[0, -1].detach().float().cpu()
        g = act.grad[0, -1].float().cpu()
        score = a * g
        for i in score.abs().topk(min(top, score.numel())).indices.tolist():
            rows.append(Attribution(layer, i, float(score[i]), float(a[i]), float(g[i])))
    rows.sort(key=lambda r: -abs(r.score))
    return tok.token_str(target_id), rows[:top]


@dataclass
class HypothesisResult:
    neuron: str
    match_mean: float
    nomatch_mean: float
    cohens_d: float
    p_value: float
    n_match: int
    n_nomatch: int
    match_values: list[float] = field(default_factory=list)
    """Each matching text's maximum activation (the distributions the test compares)."""
    nomatch_values: list[float] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.p_value < 0.01 and self.cohens_d >= 0.5:
            return "supported: the neuron fires clearly more on matching texts"
        if self.p_value < 0.01 and self.cohens_d <= -0.5:
            return "reversed: the neuron fires clearly less on matching texts"
        if self.p_value < 0.05:
            return "weak: a difference, but small or not clearly significant"
        return "not supported: no reliable difference"


def neuron_maxima(model: LoadedModel, texts: list[str], layer: int, neuron: int) -> np.ndarray:
    """Each text's maximum activation of one neuron (batched)."""
    cap = capture_activations(model, texts, layers=[layer])
    act = cap.acts[layer][:, neuron]
    out = np.full(len(texts), -np.inf)
    np.maximum.at(out, cap.text_index.numpy(), act.numpy())
    return out


def hypothesis_test(model: LoadedModel, layer: int, neuron: int, match: list[str], nomatch: list[str]) -> HypothesisResult:
    from scipy.stats import mannwhitneyu

    model.check_neuron(layer, neuron)
    a = neuron_maxima(model, match, layer, neuron)
    b = neuron_maxima(model, nomatch, layer, neuron)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / max(1, len(a) + len(b) - 2))
    d = float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0
    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return HypothesisResult(f"{layer}.{neuron}", float(a.mean()), float(b.mean()), d, p, len(a), len(b),
                            [round(float(x), 5) for x in a], [round(float(x), 5) for x in b])


# -- cross-model search ---------------------------------------------------------------------------

def word_activations(model: LoadedModel, texts: list[str], batch_size: int | None = None, progress: bool = False,
                     dictionary=None) -> np.ndarray:
    """[n_words, n_layers * units]: each whitespace word's activations (its neurons', or with a ``dictionary`` its
    features'), read at the token covering the word's last character — the same text positions in every model."""
    cap = capture_activations(model, texts, batch_size=batch_size, progress=progress)
    acts = torch.cat([cap.acts[layer] if dictionary is None else dictionary[layer].encode(cap.acts[layer])
                      for layer in cap.layers], dim=1)  # [n_tokens, L*units]
    rows = []
    order = np.lexsort((cap.offsets[:, 0].numpy(), cap.text_index.numpy()))
    tix, ends = cap.text_index.numpy()[order], cap.offsets[:, 1].numpy()[order]
    starts = cap.offsets[:, 0].numpy()[order]
    for ti, text in enumerate(texts):
        sel = np.nonzero(tix == ti)[0]
        pos = 0
        for word in text.split():
            begin = text.index(word, pos)
            last = begin + len(word) - 1
            pos = begin + len(word)
            cover = sel[(starts[sel] <= last) & (ends[sel] > last)]
            rows.append(order[cover[-1]] if len(cover) else -1)
    index = np.array(rows)
    missing = index < 0
    out = acts.numpy()[np.where(missing, 0, index)]
    out[missing] = np.nan
    return out


def correlate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of a with every column of b: one matrix product, in float64 so that the
    answer does not depend on how many threads summed it (a study's serial and Ray runs agree to 1e-12)."""
    keep = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
    a, b = a[keep].astype(np.float64), b[keep].astype(np.float64)
    a = (a - a.mean(0)) / (a.std(0) + 1e-8)
    b = (b - b.mean(0)) / (b.std(0) + 1e-8)
    return a.T @ b / len(a)


@dataclass
class NeuronMatch:
    a: str
    b: str
    r: float


def match_neurons(model_a: LoadedModel, model_b: LoadedModel, texts: list[str], top: int = 1,
                  progress: bool = False, dictionaries: tuple | None = None) -> list[NeuronMatch]:
    """``dictionaries``: (A's, B's) to match features instead of neurons (a unit that never fires matches at r 0)."""
    da, db = dictionaries or (None, None)
    acts_a = word_activations(model_a, texts, progress=progress, dictionary=da)
    acts_b = word_activations(model_b, texts, progress=progress, dictionary=db)
    width_a = model_a.d_mlp if da is None else da.n_latents
    width_b = model_b.d_mlp if db is None else db.n_latents
    corr = correlate(acts_a, acts_b)  # [A, B]
    corr = np.nan_to_num(corr)
    best = np.argsort(-corr, axis=1)[:, :top]
    out = []
    for i in range(corr.shape[0]):
        la, na = divmod(i, width_a)
        for j in best[i]:
            lb, nb = divmod(int(j), width_b)
            out.append(NeuronMatch(f"{la}.{na}", f"{lb}.{nb}", float(corr[i, j])))
    return out


def note_event_index(events, event_index: int) -> int:
    """Index in ``events`` of the K-th note event (0 = the first note)."""
    notes = [i for i, e in enumerate(events) if e.kind == "note"]
    if not 0 <= event_index < len(notes):
        from core.errors import SessionError

        raise SessionError(f"event {event_index} is out of range: the session has {len(notes)} note events "
                           f"(valid: 0..{len(notes) - 1}).")
    return notes[event_index]
