"""`neurojam model info|stats|train`: the model card, neuron statistics, training."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurojam.cli.args import config_args, load_config_from


def cmd_model_info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from brain.models import load_model
    from brain.node import load_stats

    config = load_config_from(args)
    model = load_model(config.brain.model, "cpu")
    console = Console()
    if model.directory is not None and (model.directory / "README.md").exists() and not args.short:
        text = (model.directory / "README.md").read_text()
        console.print(Markdown(text.split("## Neurons")[0]))
    else:
        console.print(f"[bold]{model.name}[/bold] ({model.kind}): {model.n_layers} layers × {model.d_mlp} MLP neurons, "
                      f"context {model.n_ctx}")
    stats = load_stats(model, config.brain.stats_dir)
    if stats is None:
        console.print("no neuron statistics yet: `neurojam model stats` computes them")
        return 0
    scale = stats.scale
    scores = stats.scores or {}
    if scores:  # the most selective neurons, with what they are selective for
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
        layer, n = map(int, nid.split("."))
        rate = f"{scores[nid]['base_rate']:.1%}" if nid in scores else "–"
        table.add_row(nid, stats.labels.get(nid, ""), rate, f"{float(scale[layer, n]):.2f}")
    console.print(table)
    return 0


def cmd_model_stats(args: argparse.Namespace) -> int:
    from brain import corpus
    from brain.models import MODELS_DIR, load_model
    from brain.neuron_stats import compute_stats
    from brain.node import stats_dir_for

    config = load_config_from(args)
    model = load_model(config.brain.model, config.brain.device, config.brain.dtype)
    corpus_path = Path(args.corpus) if args.corpus else MODELS_DIR / "notes-default" / "corpus.jsonl.gz"
    if corpus_path.suffix == ".gz":
        texts = [t["text"] for t in corpus.load(corpus_path) if t["split"] == "validation"][: args.limit]
    else:
        texts = [line.strip() for line in corpus_path.read_text().splitlines() if line.strip()][: args.limit]
    stats = compute_stats(model, texts)
    out = stats_dir_for(model, config.brain.stats_dir)
    stats.save(out)
    print(f"model stats: {len(texts)} texts, saved to {out}")
    return 0


def cmd_model_train(args: argparse.Namespace) -> int:
    from brain.train import main as train_main

    train_main(args.rest)
    return 0


def register(sub, add) -> None:
    model = sub.add_parser("model", help="the model: card, neuron statistics, training").add_subparsers(
        dest="sub", metavar="ACTION")
    p = add("info", cmd_model_info, "print the model card and its strongest neurons with labels", model)
    config_args(p)
    p.add_argument("--model", default=None)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--short", action="store_true", help="skip the card")
    p = add("stats", cmd_model_stats, "compute and cache neuron activation quantiles and labels", model)
    config_args(p)
    p.add_argument("--model", default=None)
    p.add_argument("--corpus", help="a text file (one text per line) or the shipped corpus (default)")
    p.add_argument("--limit", type=int, default=2000)
    p = add("train", cmd_model_train, "train the embedded note model (see python -m brain.train --help)", model)
    p.add_argument("rest", nargs=argparse.REMAINDER)
