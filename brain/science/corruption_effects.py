"""What a layer corruption (:mod:`brain.corruption`) does to the model: next-note quality on the held-out test
split beside the card's baselines, loss on a session, the notes it makes more or less likely, and how the model
"speaks" (a greedy continuation, clean and corrupted side by side).

The corrupted forward is exact TransformerLens for skips and ablations (hooks on the bridge) and the TL-native
forward of ``brain/kv_cache.py`` for reordered layers; with no corruption it is the model itself, so "skip
nothing" reproduces the card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from brain.activations import pad_rows
from brain.corruption import CorruptionHooks, LayerCorruption, layer_output_means, reference_texts
from brain.models import LoadedModel
from core.errors import ModelError


def corrupted_forward(model: LoadedModel, plan: LayerCorruption, means: dict | None = None):
    """token ids [B, T] → logits [B, T, vocab] under ``plan``."""
    if plan.is_identity:
        return model.bridge.original_model if model.kind == "embedded" else model.bridge
    if plan.reorders:
        return _reordered(model, plan, means)
    hooks = CorruptionHooks(model, plan, means).hooks()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.bridge.run_with_hooks(x, fwd_hooks=hooks)
    return forward


def _reordered(model: LoadedModel, plan: LayerCorruption, means: dict | None):
    from brain.kv_cache import KVCachedForward, forward_batch, supports_kv_cache
    from brain.stream import Steering

    if not supports_kv_cache(model):
        raise ModelError(f"corruption {plan.describe()!r} changes the order of layers: that needs an embedded "
                         f"(TL-native) model; {model.name} takes skip, zero-* and mean-* only.")
    template = KVCachedForward(model)
    steering = Steering(model)
    steering.corrupt(plan, means)

    def forward(x: torch.Tensor) -> torch.Tensor:
        caches = []
        for _ in range(x.shape[0]):
            c = object.__new__(KVCachedForward)
            c.__dict__.update(template.__dict__)
            c.reset()
            caches.append(c)
        rows = forward_batch(caches, x.tolist(), [steering] * x.shape[0])
        return torch.stack([logits for logits, _ in rows])
    return forward


def means_for(model: LoadedModel, plan: LayerCorruption, texts: list[str] | None = None) -> dict | None:
    """Layer means when the plan mean-ablates: over the model's validation tunes, else over ``texts``."""
    if not plan.needs_means:
        return None
    ref = reference_texts(model) or texts or []
    if not ref:
        raise ModelError(f"mean ablation needs reference texts and {model.name} ships no corpus: use zero-* instead.")
    return layer_output_means(model, ref)


@dataclass
class CorruptionEffect:
    corruption: str
    test: dict | None = None
    """accuracy / perplexity / targets on the deduplicated test split (None if not asked)."""
    clean_test: dict | None = None
    session_loss: float | None = None
    clean_session_loss: float | None = None
    more_likely: list[tuple[str, float]] = field(default_factory=list)
    less_likely: list[tuple[str, float]] = field(default_factory=list)
    """(note word, mean change in probability at note positions)."""
    continuation: str = ""
    clean_continuation: str = ""
    prompt: str = ""

    def on_baseline_scale(self, baselines: dict) -> str:
        """Where its top-1 lands on the baselines' scale: 'below the 5-gram', 'above copy + 5-gram', ..."""
        if not self.test or not baselines:
            return ""
        acc = self.test["accuracy"]
        ranked = sorted(baselines.items(), key=lambda kv: -kv[1]["accuracy"])
        for name, score in ranked:
            if acc >= score["accuracy"]:
                return f"above {name}"
        return f"below {ranked[-1][0]}"


def test_texts(model: LoadedModel, limit: int | None = None) -> list[str]:
    """The deduplicated test split the card was scored on (its first ``limit`` tunes); for a model that ships no
    corpus (a Hugging Face model), the shipped corpus's test split, which the lab's own models never train on."""
    from brain import corpus
    from brain.models import MODELS_DIR
    from brain.science.evaluate import dedup_test

    path = model.directory / "corpus.jsonl.gz" if model.directory is not None else None
    if path is None or not path.exists():
        path = MODELS_DIR / "notes-default" / "corpus.jsonl.gz"
    if not path.exists():
        raise ModelError(f"{model.name} ships no corpus with a test split: corrupt it on a session instead.")
    kept, _ = dedup_test(corpus.load(path))
    return [t["text"] for t in kept[:limit]]


def session_loss(model: LoadedModel, text: str, forward) -> float:
    """Mean next-note loss over the session's windows (bar lines and rests are context, not targets)."""
    import math

    from brain.science.evaluate import model_scores, note_id_set

    return math.log(model_scores(model, [text], note_id_set(model), forward=forward)["perplexity"])


@torch.inference_mode()
def note_shifts(model: LoadedModel, texts: list[str], forward, clean_forward, top: int = 5,
                batch: int = 32) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Mean change in each note word's probability over every position, corrupted minus clean."""
    from brain.science.evaluate import chunks, tune_ids

    tok = model.tokenizer
    notes = sorted(model.note_token_ids())
    if not notes:
        return [], []
    index = torch.tensor(notes)
    pieces = [c for t in texts for c in chunks(tune_ids(tok, t), model.n_ctx, tok.bos_id)]
    total = torch.zeros(len(notes))
    count = 0
    for i in range(0, len(pieces), batch):
        x, mask = pad_rows(pieces[i:i + batch], model.device)
        diff = (torch.softmax(forward(x).float(), -1) - torch.softmax(clean_forward(x).float(), -1)).cpu()
        total += diff[mask.cpu()][:, index].sum(0)
        count += int(mask.sum())
    mean = total / max(1, count)
    order = mean.argsort()
    words = [tok.token_str(n) for n in notes]
    up = [(words[i], float(mean[i])) for i in order.flip(0)[:top].tolist() if mean[i] > 0]
    down = [(words[i], float(mean[i])) for i in order[:top].tolist() if mean[i] < 0]
    return up, down


@torch.inference_mode()
def greedy_continuation(model: LoadedModel, prompt: str, forward, n: int = 16) -> str:
    """How the model "speaks": its most likely next words after ``prompt``, one at a time."""
    tok = model.tokenizer
    ids, _ = tok.encode(prompt)
    ids = [tok.bos_id, *ids][-(model.n_ctx - n):]
    out = []
    for _ in range(n):
        logits = forward(torch.tensor([ids], device=model.device))[0, -1]
        nxt = int(logits.float().argmax())
        ids.append(nxt)
        out.append(tok.token_str(nxt))
    return " ".join(out)


def corruption_effect(model: LoadedModel, plan: LayerCorruption, *, test_limit: int | None = 0,
                      session_text: str | None = None, progress: bool = False) -> CorruptionEffect:
    """Everything ``neurojam model corrupt`` reports for one plan. ``test_limit``: 0 skips the test split,
    None scores all of it."""
    texts = test_texts(model, test_limit) if test_limit != 0 else []
    probe = [session_text] if session_text else texts[:200]
    means = means_for(model, plan, probe)
    forward = corrupted_forward(model, plan, means)
    clean = corrupted_forward(model, LayerCorruption.identity(model.n_layers))
    effect = CorruptionEffect(plan.describe())
    from brain.science.evaluate import model_scores, note_id_set

    notes = note_id_set(model)
    if texts:
        effect.test = model_scores(model, texts, notes, forward=forward, progress=progress)
    if session_text:
        effect.session_loss = session_loss(model, session_text, forward)
    if probe and notes:
        effect.more_likely, effect.less_likely = note_shifts(model, probe[:100], forward, clean)
    prompt_source = session_text or (texts[0] if texts else "")
    if prompt_source:
        effect.prompt = " ".join(prompt_source.split()[:24])
        effect.continuation = greedy_continuation(model, effect.prompt, forward)
    return effect


def clean_reference(model: LoadedModel, effect: CorruptionEffect, *, test_limit: int | None, session_text: str | None,
                    progress: bool = False) -> None:
    """The same figures for the model as trained, beside the corrupted ones."""
    clean = corrupted_forward(model, LayerCorruption.identity(model.n_layers))
    from brain.science.evaluate import model_scores, note_id_set

    if test_limit != 0:
        card = model.card.get("test", {}).get("model") if test_limit is None else None
        effect.clean_test = card or model_scores(model, test_texts(model, test_limit), note_id_set(model),
                                                 forward=clean, progress=progress)
    if session_text:
        effect.clean_session_loss = session_loss(model, session_text, clean)
    if effect.prompt:
        effect.clean_continuation = greedy_continuation(model, effect.prompt, clean)
