"""Next-note quality on held-out tunes: the model against four baselines (``brain/science/baselines.py``).

Every tune is cut into chunks of at most ``n_ctx`` tokens, each starting with
``<bos>``; the score is over positions whose *target* is a note word (bar
lines and rests are context, not predictions). The baselines are fitted on
the training split and scored on the same positions, so the numbers are
comparable. Top-1 is the argmax over note tokens ("given that a note comes
next, which one?"); perplexity uses the full distribution.

The test split is deduplicated: a test tune whose interval sequence (a
transposition-invariant fingerprint) also occurs in the training or
validation split, or earlier in the test split, is left out
(:func:`dedup_test`), so a tune the model memorised in another key does not
count as held out.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import torch


def tune_ids(tokenizer, text: str) -> list[int]:
    ids, _ = tokenizer.encode(text)
    return [tokenizer.bos_id, *ids]


def chunks(ids: list[int], n_ctx: int, bos: int) -> list[list[int]]:
    out, body = [], ids[1:]
    step = n_ctx - 1
    for i in range(0, max(1, len(body)), step):
        piece = body[i:i + step]
        if len(piece) >= 2:
            out.append([bos, *piece])
    return out


@torch.inference_mode()
def model_scores(model, texts: list[str], note_ids: set[int], batch: int = 32, forward=None, progress: bool = False) -> dict:
    """Top-1 accuracy and perplexity on note targets, batched over padded chunks. ``forward`` (token ids
    [B, T] → logits) replaces the model's own, e.g. a corrupted one (:mod:`brain.science.corruption_effects`)."""
    tok = model.tokenizer
    pieces = [c for t in texts for c in chunks(tune_ids(tok, t), model.n_ctx, tok.bos_id)]
    pieces.sort(key=len)
    inner = forward or model.bridge.original_model
    note_mask = torch.zeros(model.bridge.cfg.d_vocab, dtype=torch.bool)
    note_mask[list(note_ids)] = True
    correct = total = 0
    nll = 0.0
    starts = range(0, len(pieces), batch)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="scoring", unit="batch", leave=False)
    for i in starts:
        group = pieces[i:i + batch]
        width = max(len(p) for p in group)
        x = torch.zeros(len(group), width, dtype=torch.long)
        for j, p in enumerate(group):
            x[j, :len(p)] = torch.tensor(p)
        logits = inner(x.to(model.device)).float().cpu()
        for j, p in enumerate(group):
            target = torch.tensor(p[1:])
            keep = torch.tensor([t in note_ids for t in p[1:]])
            if not keep.any():
                continue
            lg = logits[j, :len(p) - 1][keep]
            tg = target[keep]
            correct += int((lg.masked_fill(~note_mask, float("-inf")).argmax(-1) == tg).sum())
            nll += float(torch.nn.functional.cross_entropy(lg, tg, reduction="sum"))
            total += int(keep.sum())
    return {"accuracy": correct / max(1, total), "perplexity": math.exp(nll / max(1, total)), "targets": total}


def fingerprint(text: str) -> str:
    """The tune's melody as intervals between successive notes: the same in every key."""
    from brain.encoder import word_note

    notes = [n for n in (word_note(w) for w in text.split()) if n is not None]
    return hashlib.sha1(",".join(str(b - a) for a, b in zip(notes, notes[1:])).encode()).hexdigest()


def dedup_test(tunes: list[dict]) -> tuple[list[dict], dict]:
    """The test tunes that are really held out, and the counts of what was left out and why."""
    train_text = {t["text"] for t in tunes if t["split"] != "test"}
    train_fp = {fingerprint(t["text"]) for t in tunes if t["split"] != "test"}
    kept_fp: set[str] = set()
    kept, counts = [], {"test_tunes": 0, "exact_duplicates": 0, "transpositions": 0, "repeated_within_test": 0}
    for t in (t for t in tunes if t["split"] == "test"):
        counts["test_tunes"] += 1
        fp = fingerprint(t["text"])
        if t["text"] in train_text:
            counts["exact_duplicates"] += 1
        elif fp in train_fp:
            counts["transpositions"] += 1
        elif fp in kept_fp:
            counts["repeated_within_test"] += 1
        else:
            kept.append(t)
            kept_fp.add(fp)
    counts["kept"] = len(kept)
    return kept, counts


def evaluate_all(model, tunes: list[dict]) -> dict:
    """The card's numbers: the split's counts, and the model and the four baselines on the deduplicated test
    split, all on the same windows and targets (``brain/science/check_card.py`` recomputes them)."""
    from brain.science.baselines import score_baselines

    tok = model.tokenizer
    ids = {split: [tune_ids(tok, t["text"]) for t in tunes if t["split"] == split] for split in ("train", "validation")}
    test, dedup = dedup_test(tunes)

    def pieces(seqs: list[list[int]]) -> list[list[int]]:
        return [c for s in seqs for c in chunks(s, model.n_ctx, tok.bos_id)]

    notes = note_id_set(model)
    scores = {"model": model_scores(model, [t["text"] for t in test], notes)}
    scores.update(score_baselines(pieces([tune_ids(tok, t["text"]) for t in test]), ids["train"],
                                  pieces(ids["validation"]), notes, model.bridge.cfg.d_vocab))
    data = {s: {"tunes": len(v), "tokens": sum(len(i) for i in v)} for s, v in ids.items()}
    data["test"] = {"tunes": len(test), "tokens": sum(len(tune_ids(tok, t["text"])) for t in test), "dedup": dedup}
    return {"data": data, "test": scores, "window": model.n_ctx, "pet_words": pet_words(model, tunes)}


PET_SCHEMES = ("as played", "rest", "repeat", "left out")


def with_pet(text: str, scheme: str, rate: float = 0.25, seed: int = 0, drums: tuple[int, ...] = (36, 38)) -> \
        tuple[list[str], list[bool]]:
    """The tune's words with a pet's drum presses after about ``rate`` of its notes, written as ``scheme`` says;
    and which words are the tune's own (only those are scored)."""
    import random

    from brain.encoder import REST, note_word, word_note

    rng = random.Random(seed)
    words, own, last = [], [], None
    for w in text.split():
        words.append(w)
        own.append(True)
        if word_note(w) is not None:
            last = w
            if rng.random() < rate and scheme != "left out":
                words.append({"as played": note_word(rng.choice(drums)), "rest": REST,
                              "repeat": last}[scheme])
                own.append(False)
    return words, own


PET_TUNES = 300


def pet_words(model, tunes: list[dict]) -> dict:
    """Each way of writing the pet's drum presses, scored on the first ``PET_TUNES`` deduplicated test tunes."""
    texts = [t["text"] for t in dedup_test(tunes)[0][:PET_TUNES]]
    return {scheme: pet_mix_perplexity(model, texts, scheme) for scheme in PET_SCHEMES}


@torch.inference_mode()
def pet_mix_perplexity(model, texts: list[str], scheme: str) -> dict:
    """Perplexity and top-1 on the tune's own next notes when a pet plays along, its presses written as ``scheme``:
    how much each way of writing the pet disturbs the model's reading of the tune."""
    tok, notes = model.tokenizer, note_id_set(model)
    vocab = tok.vocab()
    nll, correct, total = 0.0, 0, 0
    note_index = torch.tensor(sorted(notes))
    for k, text in enumerate(texts):
        words, own = with_pet(text, scheme, seed=k)
        ids = [vocab.get(w, vocab.get("<unk>", 0)) for w in words]
        step = model.n_ctx - 1
        for i in range(0, len(ids), step):
            piece, mine = ids[i:i + step], own[i:i + step]
            if len(piece) < 2:
                continue
            logits = model.bridge.original_model(torch.tensor([[tok.bos_id, *piece]], device=model.device))[0].float()
            for j in range(len(piece)):  # logits[j] predicts piece[j] (position 0 is BOS)
                if mine[j] and piece[j] in notes and j > 0:
                    lp = torch.log_softmax(logits[j], -1)
                    nll -= float(lp[piece[j]])
                    correct += int(note_index[int(logits[j][note_index].argmax())] == piece[j])
                    total += 1
    return {"perplexity": math.exp(nll / max(1, total)), "accuracy": correct / max(1, total), "targets": total}


def note_id_set(model) -> set[int]:
    return set(model.note_token_ids())


def counts_by(tunes: list[dict]) -> Counter:
    return Counter(t["split"] for t in tunes)


def corpus_splits(model) -> tuple[list[str], list[str], list[str]]:
    """(training, validation, deduplicated test) texts of the shipped corpus."""
    from brain import corpus
    from brain.models import MODELS_DIR

    tunes = list(corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz"))
    test, _ = dedup_test(tunes)
    return ([t["text"] for t in tunes if t["split"] == "train"], [t["text"] for t in tunes if t["split"] == "validation"],
            [t["text"] for t in test])
