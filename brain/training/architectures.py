"""Small models of real architectures, made here without a network: the lab's tests and a researcher's first try.

    python -m brain.training.architectures --arch gpt2 --out models/gpt2-notes          # a folder: --model DIR
    python -m brain.training.architectures --arch llama --hf-cache ~/.cache/huggingface/hub --repo me/llama-notes

1. a byte-level BPE tokenizer trained on the shipped corpus's training tunes (``tokenizers``); with a small
   vocabulary it splits note words as GPT-2's does (``C#5`` → ``ĠC``, ``#``, ``5``), which is what the lab must read
2. a transformers model of the architecture (GPT-2; LLaMA, a gated MLP; GPT-NeoX as Pythia), a few layers wide
3. a brief training on the same tunes (AdamW, next-token loss), so its neurons mean something
4. saved with ``save_pretrained`` as a folder, or as a snapshot in a Hugging Face cache, where ``--model REPO``
   finds it exactly as it finds ``gpt2`` after ``hf download gpt2``

Seeded: the same command gives the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import time
from pathlib import Path

ARCHITECTURES = ("gpt2", "llama", "neox")
BOS = "<|endoftext|>"


def corpus_texts(split: str = "train", limit: int | None = None) -> list[str]:
    from brain import corpus
    from brain.model_names import MODELS_DIR

    tunes = corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz")
    texts = [t["text"] for t in tunes if t["split"] == split]
    return texts[:limit] if limit else texts


def bpe_tokenizer(texts: list[str], vocab_size: int = 300):
    """A GPT-2 style byte-level BPE trained on ``texts``; small enough a vocabulary that note words split."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS)


def build(arch: str, vocab_size: int, *, layers: int = 2, d_model: int = 64, d_mlp: int = 256, n_ctx: int = 256,
          heads: int = 2, seed: int = 0):
    """A randomly initialised transformers model of ``arch`` (BOS/EOS/PAD: token 0, the tokenizer's BOS)."""
    import torch
    import transformers as tf

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: choose from {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    special = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab_size, n_positions=n_ctx, n_embd=d_model, n_layer=layers, n_head=heads,
                            n_inner=d_mlp, **special)
        return tf.GPT2LMHeadModel(cfg)
    if arch == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_mlp,
                             num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                             max_position_embeddings=n_ctx, **special)
        return tf.LlamaForCausalLM(cfg)
    cfg = tf.GPTNeoXConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_mlp,
                           num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=n_ctx,
                           **special)
    return tf.GPTNeoXForCausalLM(cfg)


def train_briefly(model, tokenizer, texts: list[str], *, steps: int = 200, batch: int = 16, ctx: int = 128,
                  lr: float = 3e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """Next-token training on BOS-led rows cut from the tunes, one after another; the losses, every step."""
    import torch
    from tqdm import tqdm

    ids: list[int] = []
    for text in texts:
        ids += [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    stream = torch.tensor(ids)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="training", unit="step", disable=not progress):
        starts = torch.randint(0, len(stream) - ctx - 1, (batch,), generator=gen)
        x = torch.stack([stream[s:s + ctx] for s in starts.tolist()])  # (B, T)
        x[:, 0] = tokenizer.bos_token_id
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def save_folder(model, tokenizer, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def save_to_hub_cache(model, tokenizer, cache: Path, repo: str) -> Path:
    """The layout ``hf download`` leaves (``models--ORG--NAME/snapshots/REV`` and ``refs/main``), so the lab finds
    ``--model ORG/NAME`` in ``HF_HUB_CACHE`` offline, as it would a downloaded model."""
    home = cache / f"models--{repo.replace('/', '--')}"
    staging = home / "staging"
    if staging.exists():
        shutil.rmtree(staging)
    save_folder(model, tokenizer, staging)
    digest = hashlib.sha1()
    for f in sorted(staging.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    revision = digest.hexdigest()
    snapshot = home / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(snapshot)
    (home / "refs").mkdir(exist_ok=True)
    (home / "refs" / "main").write_text(revision)
    return snapshot


def make(arch: str, *, steps: int = 200, layers: int = 2, d_model: int = 64, d_mlp: int = 256, vocab: int = 300,
         seed: int = 0, tunes: int = 3000, progress: bool = True):
    """(model, tokenizer, losses): a tokenizer and a model of ``arch`` trained ``steps`` steps on the corpus."""
    random.seed(seed)
    texts = corpus_texts("train", tunes)
    tokenizer = bpe_tokenizer(texts, vocab)
    model = build(arch, len(tokenizer), layers=layers, d_model=d_model, d_mlp=d_mlp, seed=seed)
    losses = train_briefly(model, tokenizer, texts, steps=steps, seed=seed, progress=progress) if steps else []
    return model, tokenizer, losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m brain.training.architectures",
                                     description="Make a small model of a real architecture, trained briefly on the "
                                                 "shipped corpus, for `--model` (no network).")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="gpt2", help="the architecture (default gpt2)")
    parser.add_argument("--out", type=Path, help="save as a folder here (then: neurojam demo --model OUT)")
    parser.add_argument("--hf-cache", type=Path, help="save into this Hugging Face cache (HF_HUB_CACHE) instead")
    parser.add_argument("--repo", default="", help="the repo id in the cache (default neurojam/ARCH-notes)")
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200; 0: random weights)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--d-mlp", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=300, help="BPE vocabulary (default 300: note words split)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.out and not args.hf_cache:
        parser.error("say where: --out DIR, or --hf-cache DIR (with --repo)")
    started = time.monotonic()
    model, tokenizer, losses = make(args.arch, steps=args.steps, layers=args.layers, d_model=args.d_model,
                                    d_mlp=args.d_mlp, vocab=args.vocab, seed=args.seed)
    where = save_folder(model, tokenizer, args.out) if args.out else \
        save_to_hub_cache(model, tokenizer, args.hf_cache, args.repo or f"neurojam/{args.arch}-notes")
    loss = f", loss {losses[0]:.2f} → {sum(losses[-20:]) / len(losses[-20:]):.2f}" if losses else ""
    print(f"{args.arch}: {args.layers} layers × {args.d_mlp} MLP neurons, vocabulary {len(tokenizer)}{loss}, "
          f"{time.monotonic() - started:.0f} s → {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
