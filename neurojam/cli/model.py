"""`neurojam model info|stats|train|corrupt`: the model card, neuron statistics, training, layer corruption."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.errors import ConfigError
from core.units import NeuronId
from neurojam.cli.args import config_args, load_config_from, units_arg
from neurojam.cli.neuron import parquet_out


def cmd_model_info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from brain.models import load_model
    from brain.neuron_stats import load_stats

    config = load_config_from(args)
    console = Console()
    with console.status(f"loading {config.brain.model} …"):
        model = load_model(config.brain.model, "cpu")
    if model.directory is not None and (model.directory / "README.md").exists() and not args.short:
        text = (model.directory / "README.md").read_text()
        console.print(Markdown(text.split("## Neurons")[0]))
    else:
        console.print(f"[bold]{model.name}[/bold] ({model.kind}): {model.n_layers} layers × {model.d_mlp} MLP neurons, "
                      f"context {model.n_ctx}")
    console.print(f"neurons read at {model.hook_name(0).replace('blocks.0.', 'blocks.L.')}"
                  + (" (the SoLU's output, before its LayerNorm: neuron_site mid)" if model.neuron_site == "mid" else ""))
    stats = load_stats(model, config.brain.stats_dir)
    if stats is None:
        console.print("no neuron statistics yet: `neurojam model stats` computes them")
        return 0
    scale = stats.scale
    scores = stats.scores or {}
    if scores and any("held_out_precision" in sc for sc in scores.values()):  # labels by precision at the gate
        clear = [nid for nid, sc in scores.items() if sc["clear"]]
        gate = next(iter(scores.values())).get("gate")
        console.print(f"{len(clear)} of {len(scores)} neurons have a clear label (≥ 80 % of the held-out tokens where "
                      f"they pass the gate, {gate} × their top quantile, carry its trait), "
                      f"{sum(scores[n]['position'] for n in clear)} of them position neurons; quantiles over "
                      f"{stats.calibration_tokens:,} calibration tokens")
        ids = sorted(clear, key=lambda nid: (-scores[nid]["held_out_precision"], -scores[nid]["held_out_firings"]))
        ids = ids[:args.top]
        title = f"top {args.top} neurons by held-out precision of their label"
    elif scores:  # older statistics: labels by selectivity
        clear = [nid for nid, sc in scores.items() if sc["clear"]]
        console.print(f"{len(clear)} of {len(scores)} neurons have a clear trait (AUROC ≥ 0.75), "
                      f"{sum(scores[n]['position'] for n in clear)} of them position neurons; quantiles over "
                      f"{stats.calibration_tokens:,} calibration tokens")
        ids = sorted(scores, key=lambda nid: -scores[nid]["auroc"])[:args.top]
        title = f"top {args.top} neurons by selectivity (AUROC of their best trait)"
    else:
        ids = [f"{i // model.d_mlp}.{i % model.d_mlp}" for i in scale.flatten().argsort(descending=True)[:args.top].tolist()]
        title = f"top {args.top} neurons by 1−1e-5 activation quantile"
    table = Table(title=title)
    for col in ("neuron", "label", "base rate", "quantile"):
        table.add_column(col)
    for nid in ids:
        layer, n = NeuronId.parse(nid)
        rate = f"{scores[nid]['base_rate']:.1%}" if scores.get(nid, {}).get("base_rate") is not None else "–"
        table.add_row(nid, stats.labels.get(nid, ""), rate, f"{float(scale[layer, n]):.2f}")
    console.print(table)
    return 0


def cmd_model_stats(args: argparse.Namespace) -> int:
    from brain import corpus
    from brain.models import MODELS_DIR, load_model
    from brain.neuron_stats import compute_stats
    from brain.neuron_stats import stats_dir_for

    config = load_config_from(args)
    model = load_model(config.brain.model, config.brain.device, config.brain.dtype)
    if config.brain.units == "features":
        return _feature_stats(model, args.tokens)
    corpus_path = Path(args.corpus) if args.corpus else MODELS_DIR / "notes-default" / "corpus.jsonl.gz"
    if corpus_path.suffix == ".gz":
        texts = [t["text"] for t in corpus.load(corpus_path) if t["split"] == "validation"][: args.limit]
    else:
        texts = [line.strip() for line in corpus_path.read_text().splitlines() if line.strip()][: args.limit]
    if args.tokens < 1000:
        raise ConfigError(f"model stats: --tokens {args.tokens} is too few for a 1-in-1000 quantile; give 1000 or more")
    start = time.perf_counter()
    stats = compute_stats(model, texts, min_tokens=args.tokens)
    out = stats_dir_for(model, config.brain.stats_dir)
    stats.save(out)
    print(f"model stats: {len(texts)} texts, {stats.calibration_tokens:,} calibration tokens, "
          f"{time.perf_counter() - start:.0f} s; saved to {out}")
    return 0


def _feature_stats(model, tokens: int) -> int:
    """The dictionary's features' quantiles (what ``--units features`` plays by), over the tunes it was trained on
    (up to ``tokens`` of them; the shipped ones: 300,000)."""
    from brain.units.dictionary import Dictionary
    from brain.units.features import CALIBRATION_TOKENS, calibrate, dictionary_dir

    folder = dictionary_dir(model)
    dictionary = Dictionary.load(folder)  # a clear error naming the trainer when there is none
    start = time.perf_counter()
    tokens = calibrate(model, dictionary, folder, progress=True, tokens=min(tokens, CALIBRATION_TOKENS))
    print(f"model stats: {dictionary.n_latents} features × {len(dictionary.layers)} layers, {tokens:,} calibration "
          f"tokens, {time.perf_counter() - start:.0f} s; saved to {folder} (labels: python -m "
          f"brain.training.dictionary --relabel)")
    return 0


def cmd_model_train(args: argparse.Namespace) -> int:
    from brain.training.train import main as train_main

    train_main(args.rest)
    return 0


EACH = ("skip", "repeat", "zero-mlp", "zero-attn", "mean-mlp", "mean-attn")


def cmd_model_corrupt(args: argparse.Namespace) -> int:
    from brain.corruption import LayerCorruption
    from brain.science.corruption_effects import clean_reference, corruption_effect
    from brain.models import load_model

    config = load_config_from(args)
    model = load_model(args.model or config.brain.model, "cpu")
    if not args.corrupt and not args.each:
        from core.errors import ModelError

        raise ModelError("model corrupt: say what to corrupt: --corrupt skip=2 (repeatable, applied in turn) or "
                         "--each skip (every layer, one at a time).")
    plans = [LayerCorruption.parse(args.corrupt, model.n_layers)] if args.corrupt else \
        [LayerCorruption.parse([f"{args.each}={L}"], model.n_layers) for L in range(model.n_layers)]
    session_text = None
    if args.session:
        from neurojam.cli.neuron import _session_text

        session_text = _session_text(args.session)[1].text
    limit = None if args.test_limit < 0 else args.test_limit
    if limit is None and model.directory is None:
        limit = 200  # a hub model is scored on the shipped corpus's test tunes (its first 200: no card to read)
    from rich.progress import track

    effects = [corruption_effect(model, plan, test_limit=limit, session_text=session_text)
               for plan in track(plans, description=f"corrupting {model.name}", transient=True)]
    clean = effects[0]
    clean_reference(model, clean, test_limit=limit, session_text=session_text)
    baselines = {k: v for k, v in model.card.get("test", {}).items() if k != "model"} if limit is None else {}
    rows = None
    if args.out:
        from brain.science.results import ResultRows

        rows = ResultRows("corrupt", model.name, session=str(args.session or ""),
                          settings={"test_tunes": "all" if limit is None else limit})
        for e in effects:
            for metric, value in [("top1", (e.test or {}).get("accuracy")), ("perplexity", (e.test or {}).get("perplexity")),
                                  ("session_loss", e.session_loss)]:
                if value is not None:
                    rows.add(metric, value, site="corruption", token=e.corruption)
        for metric, value in [("top1", (clean.clean_test or {}).get("accuracy")),
                              ("perplexity", (clean.clean_test or {}).get("perplexity")),
                              ("session_loss", clean.clean_session_loss)]:
            if value is not None:
                rows.add(metric, value, site="corruption", token="none")
        path = rows.write(args.out)
        print(f"results: {len(rows.rows)} rows → {path}", file=sys.stderr if getattr(args, "json", False) else sys.stdout)  # stdout stays JSON
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"model": model.name, "clean": {"test": clean.clean_test, "session_loss": clean.clean_session_loss,
                                                         "continuation": clean.clean_continuation},
                          "baselines": baselines, "corruptions": [{**asdict(e), "clean_test": None, "clean_session_loss":
                                                                   None, "on_baselines": e.on_baseline_scale(baselines)}
                                                                  for e in effects]}, indent=1))
        return 0
    _corrupt_tables(model, clean, effects, baselines, limit)
    if args.plot:
        _corrupt_plot(clean, effects, baselines, args.plot, model.name)
        print(f"plot: {args.plot}")
    return 0


def _corrupt_tables(model, clean, effects, baselines: dict, limit) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    split = "the whole deduplicated test split" if limit is None else f"the first {limit} test tunes"
    t = Table(title=f"{model.name} corrupted: next-note top-1 and perplexity on {split}"
                    + (", and loss on the session" if clean.clean_session_loss is not None else ""))
    for col in ("corruption", "top-1", "Δ top-1", "perplexity", "on the baselines' scale", "session loss", "Δ loss"):
        t.add_column(col, justify="left" if col in ("corruption", "on the baselines' scale") else "right")
    ct = clean.clean_test or {}

    def row(name, test, loss, scale):
        return [name, f"{test['accuracy']:.1%}" if test else "–",
                f"{(test['accuracy'] - ct['accuracy']) * 100:+.1f} pt" if test and ct else "–",
                f"{test['perplexity']:.2f}" if test else "–", scale,
                f"{loss:.3f}" if loss is not None else "–",
                f"{loss - clean.clean_session_loss:+.3f}" if loss is not None and clean.clean_session_loss is not None
                else "–"]

    from brain.science.corruption_effects import CorruptionEffect

    t.add_row(*row("none (as trained)", ct or None, clean.clean_session_loss,
                   CorruptionEffect("none", test=ct).on_baseline_scale(baselines) if ct else ""))
    for e in effects:
        t.add_row(*row(e.corruption, e.test, e.session_loss, e.on_baseline_scale(baselines)))
    console.print(t)
    if baselines:
        console.print("baselines (the card's, same split): " + ", ".join(
            f"{k} {v['accuracy']:.1%}" for k, v in sorted(baselines.items(), key=lambda kv: -kv[1]["accuracy"])))
    for e in effects[:1] if len(effects) > 1 else effects:
        if e.more_likely or e.less_likely:
            console.print(f"[bold]{e.corruption}[/bold]: notes made more likely "
                          + ", ".join(f"{w} {d:+.3f}" for w, d in e.more_likely)
                          + "; less likely " + ", ".join(f"{w} {d:+.3f}" for w, d in e.less_likely)
                          + " (mean change in probability)")
    if clean.prompt:
        console.print(f"prompt:      {clean.prompt}\nas trained:  {clean.clean_continuation}")
        for e in effects:
            console.print(f"{e.corruption + ':':<12} {e.continuation}")


def _corrupt_plot(clean, effects, baselines: dict, path: str, model_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["none", *[e.corruption for e in effects]]
    accs = [(clean.clean_test or {}).get("accuracy", float("nan")), *[(e.test or {}).get("accuracy", float("nan"))
                                                                   for e in effects]]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.4))
    ax.bar(range(len(names)), [a * 100 for a in accs], color=["#4c72b0"] + ["#dd8452"] * len(effects))
    for i, a in enumerate(accs):
        ax.text(i, a * 100 + 0.5, f"{a:.1%}", ha="center", fontsize=8)
    for name, score in baselines.items():
        ax.axhline(score["accuracy"] * 100, ls="--", lw=0.8, color="gray")
        ax.text(len(names) - 0.5, score["accuracy"] * 100, name, fontsize=7, va="bottom", ha="right", color="gray")
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("next-note top-1 (%)")
    ax.set_title(f"{model_name}: layer corruption on the held-out test split (dashed: baselines)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def register(sub, add) -> None:
    model = sub.add_parser("model", help="the model: card, neuron statistics, training").add_subparsers(
        dest="sub", metavar="ACTION")
    p = add("info", cmd_model_info, "print the model card and its strongest neurons with labels", model)
    config_args(p)
    p.add_argument("--model", default=None, help="model name (default: brain.model from the config)")
    p.add_argument("--top", type=int, default=10, help="strongest neurons to list (default 10)")
    p.add_argument("--short", action="store_true", help="skip the card")
    p = add("stats", cmd_model_stats, "compute and cache neuron activation quantiles and labels", model)
    config_args(p)
    p.add_argument("--model", default=None, help="model name (default: brain.model from the config)")
    p.add_argument("--corpus", help="a text file (one text per line) or the shipped corpus (default)")
    p.add_argument("--limit", type=int, default=2000, help="texts read from the corpus (default 2000)")
    p.add_argument("--tokens", type=int, default=1_000_000,
                   help="distinct contexts the quantiles are read on, the texts then transpositions of them "
                        "(default 1,000,000; 100,000 is quicker for a big model, its top quantiles coarser)")
    units_arg(p, "neurons (default): quantiles and labels of the MLP's neurons; features: the quantiles of the "
                 "model's dictionary's features (its dictionary/ folder)")
    p = add("corrupt", cmd_model_corrupt, "skip, repeat or permute layers, or zero/mean-ablate a layer's attention "
            "or MLP: next-note quality on the test split beside the baselines, on a session, and a sample", model)
    config_args(p)
    p.add_argument("--model", default=None, help="default: the configured brain model")
    p.add_argument("--corrupt", action="append", default=[], metavar="SPEC",
                   help="skip=L, repeat=L, permute=L0,L1,..., zero-mlp=L, zero-attn=L, mean-mlp=L, mean-attn=L; "
                   "repeat the flag to combine (applied in turn)")
    p.add_argument("--each", choices=EACH, help="one corruption per layer, e.g. --each skip: the layer-skip table")
    p.add_argument("--session", help="also the next-note loss on this session, and a sample continuing it")
    p.add_argument("--test-limit", type=int, default=-1, metavar="N",
                   help="score the first N deduplicated test tunes (default -1: all of them; 0: none)")
    p.add_argument("--plot", metavar="FILE.png", help="a bar chart of top-1 per corruption beside the baselines")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--out", metavar="FILE.parquet", type=parquet_out,
                   help="also write rows of a results table (docs/experiments.md)")
    p = add("train", cmd_model_train, "train the embedded note model (see python -m brain.training.train --help)", model)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="passed to python -m brain.training.train (its --help "
                   "lists them)")
