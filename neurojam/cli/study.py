"""``neurojam study``: many sessions × many models × many measures as one Parquet dataset, on Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import ConfigError
from neurojam.cli.args import config_args, load_config_from, units_arg

EXAMPLE = """\
example spec (study.yaml):
  sessions: ["sessions/*/"]          # globs of session folders, relative to the spec
  models: [notes-default, /models/notes-seed2]
  measures: [score, neuron_stats, layer_skip, match]

  neurojam study study.yaml --units features      the same about each model's dictionary features
  neurojam study study.yaml --out results/        run it (again: finished tasks are kept)
  neurojam study show results/                    the headline tables and plots"""


def cmd_study(args: argparse.Namespace) -> int:
    if args.spec == "show":
        return _show(args)
    from brain.science.study import require_ray, run_study

    if not args.serial:
        require_ray()  # said before anything loads
    out = Path(args.out or Path(args.spec).with_suffix("").name + "-results")
    run = run_study(args.spec, out, load_config_from(args), address=args.address, serial=args.serial,
                    workers=args.workers)
    print(f"study: {run.done} tasks done, {run.skipped} finished before (not recomputed), {len(run.failed)} failed, "
          f"in {run.seconds:.0f} s → {out}")
    if run.failed:
        print(f"failed tasks and their errors: {out / 'errors'} (a rerun tries them again)")
    print(f"read it: neurojam study show {out}")
    return 1 if run.failed else 0


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from brain.science.study import errors, headline_tables, write_plots

    out = Path(args.dir or "")
    if not args.dir or not out.is_dir():
        raise ConfigError(f"study show: name the results folder a study wrote (got {args.dir or 'nothing'}).")
    console = Console()
    tables = headline_tables(out)
    if not tables:
        console.print(f"{out}: no results yet (run `neurojam study SPEC --out {out}`)")
    heads = {"firing rate across sessions (top neurons per model)": ["model", "unit", "mean firing rate",
                                                                     "std across sessions", "sessions it fired in"],
             "layer-skip damage (next-note loss change)": ["model", "layer skipped", "mean", "worst session"],
             "cross-model match (best Pearson r of each neuron of A in B)": ["A", "B", "units of A", "best r ≥ 0.9",
                                                                            "median best r"]}
    for title, rows in tables.items():
        head = heads.get(title) or rows.pop(0)
        table = Table(title=title)
        for col in head:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for err in errors(out):
        console.print(f"failed: {err['measure']} {Path(err['session']).name or ''} {', '.join(err['models'])}: "
                      f"{err['error'].strip().splitlines()[-1]}")
    for png in write_plots(out):
        console.print(f"plot: {png}")
    return 0


def register(sub, add) -> None:
    p = add("study", cmd_study, "replay many sessions through many models and measures as one Parquet dataset "
            "(Ray: this machine's cores, or a cluster); `study show DIR` prints its tables")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLE
    p.add_argument("spec", help="the study's YAML spec (or `show`, then the results folder)")
    p.add_argument("dir", nargs="?", help="with `show`: the results folder")
    p.add_argument("--out", help="results folder (default: SPEC's name + -results); a rerun resumes it")
    p.add_argument("--address", help="a Ray cluster to run on (`ray start --head` prints it); default: local Ray")
    p.add_argument("--workers", type=int, default=None, help="local Ray: CPUs to use (default: all)")
    p.add_argument("--serial", action="store_true", help="no Ray: one task after another in this process")
    units_arg(p, "what the unit measures read: each model's MLP neurons (default) or its dictionary's features "
                 "(neuron_stats, match between the two models' dictionaries, score with features playing)")
    config_args(p)
