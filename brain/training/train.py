"""Train the embedded note model, top to bottom, in one sitting.

    python -m brain.training.train                      # the shipped model (CPU: about 50 minutes on 2 cores)
    python -m brain.training.train --steps 200 --out /tmp/m   # a quick look
    python -m brain.training.train --layers 2 --score-only --out /tmp/m   # try a setting: test score only, no card

1. read the tunes (music21's public-domain corpus as note text, `brain/corpus.py`)
2. build a word-level tokenizer over every word the encoder can emit
3. boot a TL-native transformer (`TransformerBridge.boot_native`) and train it
   on rows shaped like the windows it is read at: <bos>, then a tune from its start or from a later note, then
   the next tunes (AdamW, warmup + cosine decay)
4. score it on the deduplicated test tunes beside four baselines (unigram, bigram, 5-gram, copy + 5-gram)
5. compute neuron statistics (quantiles, labels, top examples) on validation
6. write weights (safetensors), config, tokenizer, stats, a curve and a card
Seeded: the same command gives the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from brain import corpus
from brain.science import evaluate
from brain.encoder import note_word, vocabulary, word_note
from brain.models import MODELS_DIR, load_embedded, native_config
from brain.neuron_stats import compute_stats

SUBSET_TUNES = 200
"""The card also states accuracy on the first 200 test tunes, so a test can check it in seconds."""


def build_tokenizer(path: Path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocabulary())}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.save(str(path))
    return tok


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="Train the embedded note-language model.")
    ap.add_argument("--out", type=Path, default=MODELS_DIR / "notes-default")
    ap.add_argument("--corpus", type=Path, default=MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    ap.add_argument("--steps", type=int, default=9000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=128, help="training window (tokens)")
    ap.add_argument("--n-ctx", type=int, default=None,
                    help="model context (default: the training window; a longer one leaves positions untrained)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-mlp", type=int, default=512)
    ap.add_argument("--act", default="gelu", choices=["gelu", "solu_ln", "relu"])
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--windows", default="packed", choices=["packed", "tune", "stream"],
                    help="packed: each row opens as the brain and the evaluation read (<bos> + a tune from its start or "
                         "a later note) and the next tunes fill it; tune: the same opening, padded; stream: random "
                         "windows of all tunes run together (the first model's way)")
    ap.add_argument("--dropout", type=float, default=0.15,
                    help="dropout on what each attention and MLP block writes to the residual stream, in training only")
    ap.add_argument("--transpose", type=int, default=0,
                    help="augment: each training window moved by a random shift in -N..N+1 semitones (0: off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu",
                    help="where to train: cpu, cuda (or cuda:N), auto. Batches are drawn on the CPU with the same "
                         "generator, so a GPU run sees the same windows in the same order")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: the forward and backward under bfloat16 autocast (weights and optimizer in fp32)")
    ap.add_argument("--score-only", action="store_true",
                    help="train, save and score on the test split only (no neuron statistics, no card): to try settings")
    ap.add_argument("--stats-only", action="store_true",
                    help="keep the trained weights; redo evaluation, neuron statistics and the card (also after "
                         "--score-only, to promote a run that was worth it)")
    args = ap.parse_args(argv)
    args.n_ctx = args.n_ctx or args.ctx
    from brain.models import resolve_device
    from core.errors import NeurojamError

    try:
        device = resolve_device(args.device)
    except NeurojamError:
        ap.exit(2, f"brain.train: --device {args.device} asked for, but torch sees no CUDA GPU here: train with "
                   f"--device cpu (or auto).\n")
    import transformer_lens.model_bridge.sources.native  # noqa: F401
    from tqdm import tqdm
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    # 1-2. data and tokenizer
    tunes = corpus.load(args.corpus)
    tok = build_tokenizer(args.out / "tokenizer.json")
    bos = tok.token_to_id("<bos>")
    split_ids = {s: [[bos, *tok.encode(t["text"]).ids] for t in tunes if t["split"] == s]
                 for s in ("train", "validation", "test")}
    stream = torch.tensor([i for ids in split_ids["train"] for i in ids])
    val_stream = torch.tensor([i for ids in split_ids["validation"] for i in ids])

    if args.stats_only:
        old = saved_run(args.out)
        model = load_embedded(args.out, "cpu", torch.float32)
        return finish(args, model, tunes, split_ids, old["model"] | {"n_ctx": model.n_ctx}, old["training"], old["curve"])

    # 3. model and training
    cfg = native_config(tok.get_vocab_size(), n_layers=args.layers, d_model=args.d_model, d_mlp=args.d_mlp,
                        n_ctx=args.n_ctx, seed=args.seed, act_fn=args.act)
    bridge = TransformerBridge.boot_native(cfg, device=device, model_name="notes-default")
    net = bridge.original_model
    add_dropout(net, args.dropout)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    gen = torch.Generator().manual_seed(args.seed)

    shifted = transposition_table(tok, args.transpose)  # [shifts, vocab]: token id → the same word moved

    def batch_from(data: torch.Tensor, n: int, augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(data) - args.ctx - 1, (n,), generator=gen)
        x = torch.stack([data[s:s + args.ctx + 1] for s in starts.tolist()])
        x, y = x[:, :-1], x[:, 1:]
        return transpose_rows(shifted, x, y, gen) if augment else (x, y)

    def tune_batch(tunes_ids: list[list[int]], n: int, augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = piece_batch(tunes_ids, n, args.ctx, bos, gen)
        return transpose_rows(shifted, x, y, gen) if augment else (x, y)

    if args.windows == "packed":
        tune_starts = torch.tensor([0, *itertools.accumulate(len(t) for t in split_ids["train"])][:-1])
        tune_lens = torch.tensor([len(t) for t in split_ids["train"]])
        val_x, val_y = tune_batch(split_ids["validation"], 256)

        def next_batch():
            x, y = packed_batch(stream, tune_starts, tune_lens, args.batch, args.ctx, bos, gen)
            return transpose_rows(shifted, x, y, gen)
    elif args.windows == "tune":
        train_tunes, val_tunes = split_ids["train"], split_ids["validation"]
        val_x, val_y = tune_batch(val_tunes, 256)

        def next_batch():
            return tune_batch(train_tunes, args.batch, augment=True)
    else:
        val_x, val_y = batch_from(val_stream, 64)

        def next_batch():
            return batch_from(stream, args.batch, augment=True)

    curve = []
    t0 = time.time()
    val_x, val_y = val_x.to(device), val_y.to(device)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    bar = tqdm(range(args.steps), desc=f"training on {device}", unit="step")
    for step in bar:
        x, y = (t.to(device, non_blocking=True) for t in next_batch())
        with autocast:
            logits = net(x)  # (B, T, vocab)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            net.eval()
            with torch.no_grad(), autocast:
                vl = F.cross_entropy(net(val_x).reshape(-1, logits.shape[-1]).float(), val_y.reshape(-1),
                                     ignore_index=IGNORE).item()
            net.train()
            curve.append({"step": step, "train_loss": round(loss.item(), 4), "val_loss": round(vl, 4)})
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{vl:.3f}")
    train_s = time.time() - t0
    net.eval()

    # 6a. weights first, so evaluation runs on exactly what ships
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in bridge.state_dict().items()},
              str(args.out / "model.safetensors"))
    (args.out / "config.json").write_text(json.dumps(cfg, indent=1))
    model = load_embedded(args.out, "cpu", torch.float32)
    training = {**{k: v for k, v in vars(args).items() if k not in ("out", "corpus", "stats_only", "score_only")},
                "seconds": round(train_s, 1), "torch": torch.__version__, "threads": torch.get_num_threads()}
    model_info = {**cfg, "parameters": sum(p.numel() for p in net.parameters())}
    if args.score_only:
        (args.out / "training.json").write_text(json.dumps({"model": model_info, "training": training, "curve": curve}))
        test = [t["text"] for t in evaluate.dedup_test(tunes)[0]]
        scores = evaluate.model_scores(model, test, evaluate.note_id_set(model))
        print(json.dumps({"test": scores, "training": training, "val_loss": curve[-1]["val_loss"]}))
        return scores
    return finish(args, model, tunes, split_ids, model_info, training, curve)


IGNORE = -100
"""Target id for padding: no loss there."""


def piece_batch(tunes_ids: list[list[int]], n: int, ctx: int, bos: int, gen: torch.Generator) \
        -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of <bos> + a piece of one tune, the shape of every window the model is read at: a tune's opening
    (live until the first cut, and the evaluation's first chunk), or <bos> + a later stretch (live after a cut, the
    evaluation's later chunks). Half the rows start at the tune's beginning. Right-padded; padding has no loss."""
    x = torch.zeros(n, ctx, dtype=torch.long)
    y = torch.full((n, ctx), IGNORE, dtype=torch.long)
    picks = torch.randint(0, len(tunes_ids), (n,), generator=gen).tolist()
    coins = torch.rand(n, generator=gen).tolist()
    offsets = torch.rand(n, generator=gen).tolist()
    for row, (k, coin, u) in enumerate(zip(picks, coins, offsets)):
        body = tunes_ids[k][1:]  # each tune's ids start with <bos>
        start = 0 if coin < 0.5 or len(body) < 3 else int(u * (len(body) - 2))
        piece = [bos, *body[start:start + ctx]]
        t = len(piece) - 1
        x[row, :t] = torch.tensor(piece[:-1])
        y[row, :t] = torch.tensor(piece[1:])
    return x, y


def packed_batch(stream: torch.Tensor, tune_starts: torch.Tensor, tune_lens: torch.Tensor, n: int, ctx: int, bos: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that start like :func:`piece_batch` (<bos> + a tune from its beginning, or from a later note) and go on
    into the next tunes of the stream, each after its own <bos>: no padding."""
    picks = torch.randint(0, len(tune_starts), (n,), generator=gen)
    later = torch.rand(n, generator=gen) >= 0.5
    offset = (torch.rand(n, generator=gen) * (tune_lens[picks] - 2).clamp(min=1)).long() * later
    first = (tune_starts[picks] + 1 + offset).clamp(max=len(stream) - ctx)
    rows = torch.stack([stream[f:f + ctx] for f in first.tolist()])
    rows = torch.cat([torch.full((n, 1), bos), rows], dim=1)
    return rows[:, :-1], rows[:, 1:]


def add_dropout(net: torch.nn.Module, p: float) -> None:
    """Dropout on each block's attention and MLP output, the places GPT-2 has it. TL-native blocks have none of
    their own, so it rides on their ``hook_out`` points; it is off in eval mode and leaves the weights' shapes alone."""
    if p <= 0:
        return

    def drop(module, inputs, output):
        return F.dropout(output, p, training=net.training)

    for name, module in net.named_modules():
        if name.endswith(("attn.hook_out", "mlp.hook_out")) and name.count(".") == 4:
            module.register_forward_hook(drop)


def transpose_rows(table: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) \
        -> tuple[torch.Tensor, torch.Tensor]:
    """Each row (inputs and targets alike) moved by one random shift from ``table``: a tune in another key is still
    the same tune."""
    if table is None:
        return x, y
    moves = table[torch.randint(0, len(table), (len(x),), generator=gen)]
    return torch.gather(moves, 1, x), torch.where(y == IGNORE, y, torch.gather(moves, 1, y.clamp(min=0)))


def transposition_table(tok, n: int) -> torch.Tensor | None:
    """[2n+2, vocab] token maps, one per shift in -n..n+1 semitones; a note moved out of the melodic range stays
    where it is (rare: the corpus lives in C3..C6)."""
    if n <= 0:
        return None
    from brain.logit_effect import MELODIC_RANGE

    vocab = tok.get_vocab()
    rows = []
    for shift in range(-n, n + 2):
        row = torch.arange(tok.get_vocab_size())
        for word, i in vocab.items():
            note = word_note(word)
            if note is not None and MELODIC_RANGE[0] <= note + shift <= MELODIC_RANGE[1]:
                row[i] = vocab[note_word(note + shift)]
        rows.append(row)
    return torch.stack(rows)


def saved_run(out: Path) -> dict:
    """The model, settings and curve of the weights in ``out``. A --score-only run leaves training.json beside the
    weights it just wrote, and it wins over the card there, which describes the weights it replaced."""
    for path in (out / "training.json", out / "card.json"):
        if path.exists():
            return json.loads(path.read_text())
    raise SystemExit(f"--stats-only: {out} has neither training.json nor card.json; train there first")


def finish(args, model, tunes, split_ids, model_info: dict, training: dict, curve: list[dict]) -> dict:
    """Steps 4-6 on the weights as saved: evaluation against the baselines, neuron statistics, card."""
    # 4. quality on the deduplicated held-out tunes, beside four baselines on the same tokens
    numbers = evaluate.evaluate_all(model, tunes)
    words = Counter(w for ids in split_ids["train"] for w in (model.tokenizer.token_str(i) for i in ids))
    card = {
        "name": args.out.name,
        "data": numbers["data"],
        "window": numbers["window"],
        "model": model_info,
        "training": training,
        "test": numbers["test"],
        "pet_words": numbers["pet_words"],
        "vocabulary": {"train_counts": {w: c for w, c in sorted(words.items()) if word_note(w) is not None}},
        "curve": curve,
    }
    model.card = card  # promoted notes are chosen among the trained note words

    # 5. neuron statistics: the validation tunes, transposed up to 1M distinct contexts
    val_texts = [t["text"] for t in tunes if t["split"] == "validation"]
    stats = compute_stats(model, val_texts)
    stats.save(args.out)
    clear = [s for s in stats.scores.values() if s["clear"]]
    card["neurons"] = {"calibration_tokens": stats.calibration_tokens, "clear_labels": len(clear),
                       "position_neurons": sum(s["position"] for s in clear), "neurons": len(stats.scores)}
    card["fingerprint"] = stats.model_fingerprint
    card["labels"] = label_card(model, stats, tunes)
    stats.save(args.out)

    # 6b. card
    (args.out / "card.json").write_text(json.dumps(card, indent=1))
    (args.out / "training.json").unlink(missing_ok=True)  # the card now describes these weights
    write_curve_png(curve, args.out / "training_curve.png", card["test"]["bigram"]["perplexity"])
    write_card_md(card, stats, args.out / "README.md")
    print(json.dumps(card["test"], indent=1))
    return card


def label_card(model, stats, tunes: list[dict]) -> dict:
    """Labels by precision where the neuron sounds: traits chosen on the validation tunes, precision measured on the
    test tunes, at the sonifier's default gate (``python -m brain.science.check_card`` recomputes it)."""
    from brain.config import SonifyConfig
    from brain.neuron_stats import label_by_precision

    return label_by_precision(model, stats, [t["text"] for t in tunes if t["split"] == "validation"],
                              [t["text"] for t in tunes if t["split"] == "test"], SonifyConfig().gate)


def write_curve_png(curve: list[dict], path: Path, bigram_ppl: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    steps = [c["step"] for c in curve]
    ax.plot(steps, [c["train_loss"] for c in curve], label="train loss (batch)", color="#8da0cb")
    ax.plot(steps, [c["val_loss"] for c in curve], label="validation loss", color="#e78ac3", linewidth=2)
    ax.axhline(math.log(bigram_ppl), color="#999", linestyle="--", label="bigram baseline (test, notes)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("notes-default training")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def training_rows(tr: dict) -> str:
    """How the rows were made and regularized, in words (older cards lack the keys)."""
    rows = {"packed": "Each row is `<bos>` + a tune from its start or from a later note, as the model is read, then "
                      "the next tunes",
            "tune": "Each row is `<bos>` + a tune from its start or from a later note, as the model is read, padded",
            "stream": "Rows are random windows of all tunes run together"}[tr.get("windows", "stream")]
    extra = []
    if tr.get("dropout"):
        extra.append(f"dropout {tr['dropout']} on each block's attention and MLP output")
    if tr.get("transpose"):
        extra.append(f"each row moved by a random shift of −{tr['transpose']}..+{tr['transpose'] + 1} semitones")
    return rows + ("; " + "; ".join(extra) if extra else "") + "."


def write_card_md(card: dict, stats, path: Path) -> None:
    t, m, tr, d = card["test"], card["model"], card["training"], card["data"]
    dd = d["test"]["dedup"]
    rows = "\n".join(f"| {name} | {t[key]['accuracy'] * 100:.2f}% | {t[key]['perplexity']:.2f} |"
                     for name, key in (("**notes-default**", "model"), ("copy + 5-gram", "copy + 5-gram"),
                                       ("interpolated 5-gram", "5-gram"), ("bigram", "bigram"), ("unigram", "unigram")))
    clear = {nid: s for nid, s in stats.scores.items() if s["clear"]}
    top = sorted(clear, key=lambda nid: (-clear[nid]["held_out_precision"], -clear[nid]["held_out_firings"]))[:8]
    neurons = "\n".join(f"| `{nid}` | {stats.labels[nid]} | {clear[nid]['held_out_firings']} |" for nid in top)
    nn, lab = card["neurons"], card["labels"]
    path.write_text(f"""# {card['name']}

A small note-language model: it reads melodies written as note words (`| G4 A4 B4 | C5 ...`) and predicts
the next one. The brain's default model, shipped in the repository so the lab runs with no network.

## Data
Public-domain melodies from the corpus bundled with `music21` (Ryan's Mammoth Collection, O'Neill's 1850,
the Essen folk songs, Aird's Airs), top voice only, converted by the brain's own encoder
(`brain/encoder.py`, via `brain/corpus.py`). Split by tune with a stable hash of the tune id; the test split is then
deduplicated by a transposition-invariant fingerprint (the tune's interval sequence): of {dd['test_tunes']:,} test tunes,
{dd['exact_duplicates']} are exact copies of a training or validation tune, {dd['transpositions']} are transpositions of one and
{dd['repeated_within_test']} repeat an earlier test tune; the {dd['kept']:,} others are the test split below.

| split | tunes | tokens |
| --- | --- | --- |
""" + "\n".join(f"| {s} | {v['tunes']:,} | {v['tokens']:,} |" for s, v in d.items()) + f"""

## Model
TL-native transformer booted with `TransformerBridge.boot_native`: {m['n_layers']} layers, d_model {m['d_model']},
{m['n_heads']} heads, d_mlp {m['d_mlp']} ({m['act_fn']}), context {m['n_ctx']} tokens, vocabulary {m['d_vocab']} words,
{m['parameters']:,} parameters. The context is the training window: the model is never read at a position it was not
trained at (live, in calibration, evaluation, the report and the experiments; longer texts are read in windows).

## Training
{tr['steps']} steps of AdamW (lr {tr['lr']}, batch {tr['batch']} × {tr['ctx']} tokens, warmup + cosine), seed {tr['seed']},
{tr['seconds']:.0f} s on CPU ({tr['threads']} thread{'s' if tr['threads'] != 1 else ''}, torch {tr['torch']}). {training_rows(tr)}
Reproduce: `python -m brain.training.train`.

![training curve](training_curve.png)

## Results: next-note prediction on the deduplicated test tunes
Windows of {card['window']} tokens, scored only where the next word is a note ({t['model']['targets']:,} targets); every
baseline fitted on the training tunes and scored on the same targets (`brain/science/baselines.py`). Copy + 5-gram
copies the continuation of the latest earlier match in the same window ({t['copy + 5-gram']['copied_share']:.0%} of targets have
one), else backs off to the interpolated 5-gram.

| model | top-1 accuracy | perplexity |
| --- | --- | --- |
{rows}

Recompute every number here from the shipped weights: `python -m brain.science.check_card` (fails on a mismatch).

## The pet's words
A pet's kick and snare pads have no pitch the tunes know (their own words, C2 and D2, never occur in training).
Scored on the tune's own next notes with a pet pressing after about a quarter of them (the first {evaluate.PET_TUNES} deduplicated test tunes):

| pet presses written as | perplexity | top-1 |
| --- | --- | --- |
""" + "\n".join(f"| {scheme} | {r['perplexity']:.2f} | {r['accuracy'] * 100:.2f}% |" for scheme, r in card["pet_words"].items())
                    + f"""

The brain writes them as a repeat of the last melody note (`brain/encoder.py`): every word it reads was trained,
and of the ways that keep the pet in the text it disturbs the tune least.

## Neurons
Quantiles over {nn['calibration_tokens']:,} distinct calibration contexts (the validation tunes, then transpositions of them,
each context counted once;
`neuron_quantiles.safetensors`, levels {', '.join(f'{q:g}' for q in (0.5, 0.9, 0.99, 0.999, 1 - 1e-5))}) normalize live
activations. Each neuron's label (`neuron_labels.json`, `brain/neuron_labels.py`) says what is true where the neuron
*sounds*: among the tokens where it passes the sonifier's gate ({lab['gate']} × its top quantile), the trait of the
current token (a note, a bar line, a rest, the first note of a bar, a step or leap, a repeat, a place in the window)
that most of them carry. The trait is chosen on the validation tunes ({lab['choosing_tokens']:,} tokens with
transpositions) and its precision measured again on the test tunes ({lab['held_out_tokens']:,} tokens), both never
trained on; a label is **clear** when both precisions are ≥ 80 %, and it shows the held-out one ("on F#4 (100 % of
155 held-out firings)"). {lab['clear']} of {lab['neurons']} neurons have a clear label ({lab['position_neurons']} of
them position neurons; median held-out precision {lab['median_held_out_precision_clear']:.0%}); {lab['chosen_at_80']}
reached 80 % on the validation tunes, so {lab['chosen_at_80'] - lab['clear']} fell short on the test tunes and say
"fires on many things"; {lab['too_rare']} pass the gate too rarely to label. Each label ends with the trained note
the neuron promotes most through the final LayerNorm (`brain/logit_effect.py`). The earlier AUROC labels
(selectivity over all tokens, not where the neuron sounds) are kept in the scores: {nn['clear_labels']} neurons had
an AUROC ≥ 0.75. `python -m brain.science.check_card` recomputes these counts. The most precise:

| neuron | label | held-out firings |
| --- | --- | --- |
{neurons}
""")

if __name__ == "__main__":
    main()
