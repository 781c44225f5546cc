"""``neurojam report`` and ``neurojam neuron ablate|attribute|test|match|patch``: tables, JSON with --json, rows
of one results table with --out (``brain/science/results.py``), and a PNG where a picture says more."""

from __future__ import annotations

import argparse
import sys
import json
from dataclasses import asdict
from pathlib import Path

from core.errors import SessionError
from core.units import NeuronId

MODEL_HELP = "model name (default: brain.model from the config)"


def _picture(draw, *what, path) -> None:
    """Draw a result to ``path`` and say where (on stderr: --json output stays clean)."""
    import sys

    print(f"picture: {draw(*what, path)}", file=sys.stderr)


def _model(args, default: str | None = None):
    from rich.console import Console

    from brain.models import load_model
    from neurojam.config import load_config

    name = getattr(args, "model", None) or default or load_config().brain.model
    with Console(stderr=True).status(f"loading {name} …"):
        return load_model(name, "cpu")


def _session_text(session: str):
    from brain.stream import session_text
    from recording.log import read_session

    log = read_session(session)
    text = session_text(log)
    if not text.spans:
        raise SessionError(f"{session}: no notes or beats in this session to analyse.")
    return log, text


def _texts(path: str) -> list[str]:
    p = Path(path)
    if not p.exists():
        raise SessionError(f"{path}: file not found (expected one text per line).")
    texts = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if not texts:
        raise SessionError(f"{path}: no texts in it (one text per line).")
    return texts


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{x:.4g}" if isinstance(x, float) else str(x) for x in r])
    Console().print(t)


def _rows(args: argparse.Namespace, experiment: str, model_name: str, **settings):
    """The run's rows for ``--out`` (None when not asked for)."""
    if not getattr(args, "out", None):
        return None
    from brain.science.results import ResultRows

    return ResultRows(experiment, model_name, session=str(getattr(args, "session", "") or ""), settings=settings)


def _save(rows, args: argparse.Namespace) -> None:
    if rows is not None:
        path = rows.write(args.out)
        print(f"results: {len(rows.rows)} rows → {path}", file=sys.stderr if getattr(args, "json", False) else sys.stdout)  # stdout stays JSON


def cmd_report(args: argparse.Namespace) -> int:
    from brain.science.report import build_report

    from rich.console import Console

    from neurojam.cli.sessions import default_session

    session = args.session or default_session()
    with Console(stderr=True).status(f"building the report of {session}: loading the model, reading the session "
                                     f"through it, drawing …"):
        settings = None
        if args.controls:
            from neurojam.cli.args import load_config_from

            settings = load_config_from(args)
        out = build_report(session, args.out, args.model, progress=True, controls=settings, units=args.units)
    print(f"report: {out}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from brain.science.experiments import ablate
    from brain.science import plots

    model = _model(args)
    dictionary = None
    if args.units == "features":
        from brain.units.features import load_features

        dictionary = load_features(model).dictionary
        try:
            layer, neuron = NeuronId.parse(args.neuron)
        except ValueError as exc:
            raise SessionError(str(exc)) from exc
    else:
        layer, neuron = model.parse_neuron(args.neuron)
    _, text = _session_text(args.session)
    r = ablate(model, text.text, layer, neuron, args.mode, dictionary=dictionary)
    rows = _rows(args, "ablate", model.name, mode=args.mode)
    site = "mlp.hook_post" if dictionary is None else "mlp.hook_post.feature"
    if rows is not None:
        rows.add("loss_before", r.loss_before, site=site, layer=layer, neuron=neuron)
        rows.add("loss_after", r.loss_after, site=site, layer=layer, neuron=neuron)
        rows.add("loss_change", r.delta, site=site, layer=layer, neuron=neuron)
        for word, change, _count in r.most_affected:
            rows.add("loss_change_on_note", change, site=site, layer=layer, neuron=neuron, token=word)
    _save(rows, args)
    _picture(plots.ablation, r, path=args.plot or Path(args.session) / f"ablate-{r.neuron}.png")
    if args.json:
        print(json.dumps({**asdict(r), "delta": r.delta}, indent=1))
        return 0
    _table(f"{args.mode} ablation of {'feature ' if dictionary is not None else ''}{r.neuron} over {r.targets} "
           f"next-note predictions", ["loss before", "after", "change"],
           [[r.loss_before, r.loss_after, r.delta]])
    _table("notes most affected (mean loss change)", ["note", "Δ loss", "count"], [list(x) for x in r.most_affected])
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from brain.science.experiments import attribute, note_event_index
    from brain.science import plots
    from brain.stream import live_window, session_events
    from neurojam.config import load_config

    model = _model(args)
    log, _ = _session_text(args.session)
    events = session_events(log)
    k = note_event_index(events, args.event)
    context = model.window_words(load_config().brain.context_tokens)  # in words, as the live brain cuts
    window = live_window(events, k, context)  # exactly what the brain had read at that event
    target, rows = attribute(model, window.text, window.spans[-1].end, top=args.top, target=args.target)
    table = _rows(args, "attribute", model.name, event=args.event, target=target)
    if table is not None:
        for r in rows:
            table.add("grad_x_act", r.score, site="mlp.hook_post", layer=r.layer, neuron=r.index, position=args.event,
                      token=target)
    _save(table, args)
    _picture(plots.attribution, rows, target, args.event, path=args.plot or Path(args.session) / f"attribute-event{args.event}.png")
    if args.json:
        print(json.dumps({"event": args.event, "target": target, "neurons": [asdict(r) for r in rows]}, indent=1))
        return 0
    what = f"the most likely next note, {target!r}" if args.target == "predicted-note" else repr(target)
    _table(f"event {args.event}: neurons by gradient × activation for {what} next",
           ["neuron", "score", "activation", "gradient"], [[f"{r.layer}.{r.index}", r.score, r.activation, r.gradient]
                                                           for r in rows])
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from brain.science.experiments import hypothesis_test
    from brain.science import plots

    model = _model(args)
    layer, neuron = model.parse_neuron(args.neuron)
    r = hypothesis_test(model, layer, neuron, _texts(args.match), _texts(args.nomatch))
    rows = _rows(args, "test", model.name, match=args.match, nomatch=args.nomatch)
    if rows is not None:
        for metric in ("match_mean", "nomatch_mean", "cohens_d", "p_value"):
            rows.add(metric, getattr(r, metric), site="mlp.hook_post", layer=layer, neuron=neuron)
    _save(rows, args)
    if args.plot:
        _picture(plots.hypothesis, r, path=args.plot)
    if args.json:
        print(json.dumps({**asdict(r), "verdict": r.verdict}, indent=1))
        return 0
    _table(f"neuron {r.neuron}: matching vs non-matching texts (max activation per text)",
           ["group", "n", "mean max activation"], [["match", r.n_match, r.match_mean], ["no match", r.n_nomatch, r.nomatch_mean]])
    print(f"Cohen's d = {r.cohens_d:.2f}, Mann-Whitney p = {r.p_value:.3g}\nverdict: {r.verdict}")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from brain.science.experiments import match_neurons
    from brain.science import plots
    from brain.models import load_model

    a, b = load_model(args.a, "cpu"), load_model(args.b, "cpu")
    matches = match_neurons(a, b, _texts(args.corpus), top=args.top, progress=True)
    matches.sort(key=lambda m: -m.r)
    rows = _rows(args, "match", a.name, model_b=b.name, corpus=args.corpus)
    if rows is not None:
        for m in matches:
            la, na = NeuronId.parse(m.a)
            rows.add("best_match_r", m.r, site="mlp.hook_post", layer=la, neuron=na, token=m.b)
    _save(rows, args)
    if args.plot:
        _picture(plots.matches, matches, a.name, b.name, path=args.plot)
    if args.json:
        print(json.dumps([asdict(m) for m in matches], indent=1))
        return 0
    _table(f"neurons of {a.name} and their best match in {b.name} (Pearson r over aligned words)", ["A", "B", "r"],
           [[m.a, m.b, m.r] for m in matches[:args.show]])
    return 0


def _patch_windows(args, model) -> tuple[str, str, str]:
    """The clean window, the corrupted one and how it was made: another session's event, another event of this
    session, or this window transposed or with its notes shuffled."""
    import dataclasses
    import random

    from brain.science.experiments import note_event_index
    from brain.stream import live_window, session_events
    from neurojam.config import load_config

    context = model.window_words(load_config().brain.context_tokens)  # in words, as the live brain cuts
    log, _ = _session_text(args.session)
    events = session_events(log)
    k = note_event_index(events, args.event if args.event >= 0 else _note_count(events) + args.event)
    clean = live_window(events, k, context)
    if args.against or args.against_event is not None:
        other = session_events(_session_text(args.against)[0]) if args.against else events
        j = args.against_event if args.against_event is not None else -1
        k2 = note_event_index(other, j if j >= 0 else _note_count(other) + j)
        return clean.text, live_window(other, k2, context).text, \
            f"{args.against or 'this session'}, note event {j}"
    window = events[:k + 1]
    if args.shuffle is not None:
        rng = random.Random(args.shuffle)
        idx = [i for i, e in enumerate(window) if e.kind == "note" and not e.drum]
        notes = [window[i].note for i in idx]
        rng.shuffle(notes)
        changed = {i: dataclasses.replace(window[i], note=n) for i, n in zip(idx, notes)}
        how = f"its notes shuffled (seed {args.shuffle})"
    else:
        step = args.transpose if args.transpose is not None else 2
        changed = {i: dataclasses.replace(e, note=min(127, max(0, e.note + step)))
                   for i, e in enumerate(window) if e.kind == "note" and not e.drum}
        how = f"transposed {step:+d} semitones"
    corrupt = [changed.get(i, e) for i, e in enumerate(window)]
    return clean.text, live_window(corrupt, k, context).text, how


def _note_count(events) -> int:
    return sum(e.kind == "note" for e in events)


def cmd_patch(args: argparse.Namespace) -> int:
    from brain.science.patching import SITES, aligned, patch, plot

    model = _model(args)
    clean_text, corrupt_text, how = _patch_windows(args, model)
    inputs = aligned(model, clean_text, corrupt_text, target=args.target)
    positions = None
    if args.positions == "last":
        positions = [len(inputs.clean) - 1]
    elif args.positions != "all":
        try:
            positions = [int(x) for x in args.positions.split(",")]
        except ValueError:
            raise SessionError(f"--positions {args.positions!r}: all, last, or token positions like 40,41.") from None
    sites = tuple(args.sites.split(",")) if args.sites else tuple(SITES)
    layer = args.layer
    if layer is None:  # the layer whose MLP output, patched everywhere, restores most
        probe = patch(model, inputs, sites=("mlp_out",))
        layer = int(probe.all_positions["mlp_out"].argmax())
    dictionary = None
    if args.units == "features":
        from brain.units.features import load_features

        dictionary = load_features(model).dictionary
    r = patch(model, inputs, sites=sites, neuron_layer=layer, top_k=args.top_k, positions=positions, progress=True,
              dictionary=dictionary)
    unit, site_name = ("feature", "mlp.hook_post.feature") if dictionary is not None else ("neuron", "mlp.hook_post")
    png = Path(args.plot) if args.plot else Path(args.session) / f"patch-event{args.event}.png"
    where = Path(args.session).resolve()
    name = f"{where.parent.name}/{where.name}" if where.name == "session" else where.name
    plot(r, png, title=f"{name}, note event {args.event}: clean vs {how} — predicts "
                        f"{r.clean_target!r} vs {r.corrupt_target!r}; 1 = fully restored", last=args.show_positions)
    rows = _rows(args, "patch", model.name, event=args.event, corrupted=how, clean_target=r.clean_target,
                 corrupt_target=r.corrupt_target, positions=args.positions)
    if rows is not None:
        for site, m in r.by_position.items():
            for L in range(m.shape[0]):
                rows.add("restored_all_positions", r.all_positions[site][L], site=site, layer=L)
                for pos in range(m.shape[1]):
                    rows.add("restored", m[L, pos], site=site, layer=L, position=pos, token=r.tokens[pos])
        for n, restored, diff in r.neurons:
            rows.add("restored", restored, site=site_name, layer=layer, neuron=n)
            rows.add("act_diff", diff, site=site_name, layer=layer, neuron=n)
    _save(rows, args)
    if args.json:
        print(json.dumps({"corrupted": how, "plot": str(png), **r.as_dict()}, indent=1))
        return 0
    print(f"clean: this session at note event {args.event}; corrupted: {how}.\nclean predicts {r.clean_target!r}, "
          f"corrupted {r.corrupt_target!r}; logit difference {r.clean_diff:.3f} → {r.corrupt_diff:.3f} "
          f"(restored = share of that gap a patch closes)")
    _table("patched at every position", ["site", *[f"layer {L}" for L in range(model.n_layers)]],
           [[site, *[float(v) for v in r.all_positions[site]]] for site in r.by_position])
    best = sorted(((float(m[L, p]), site, L, p) for site, m in r.by_position.items() for L in range(m.shape[0])
                   for p in range(m.shape[1])), reverse=True)[:8]
    _table("single positions that restore most", ["site", "layer", "position", "token (clean/corrupt)", "restored"],
           [[site, L, p, f"{r.tokens[p]}/{r.corrupt_tokens[p]}", v] for v, site, L, p in best])
    _table(f"layer {layer}'s {unit}s patched alone", [unit, "restored", "activation difference"],
           [[f"{layer}.{n}", v, d] for n, v, d in r.neurons[:args.show]])
    print(f"plot: {png}")
    return 0


def register(sub, add) -> None:
    p = add("report", cmd_report, "an HTML report of a session: piano roll, neuron heatmap and cards, the pet's stats")
    p.add_argument("session", nargs="?", help="the session (default: the running or latest demo's)")
    p.add_argument("--out", metavar="FILE", help="default SESSION/report.html")
    p.add_argument("--model", default=None, help="default: the model the session was played with")
    p.add_argument("--controls", action="store_true", help="add the score's controls (a random-weight model, "
                   "shuffled voices, the sounding neurons ablated: is the band the model's?), about 15 s more")
    p.add_argument("--units", choices=("neurons", "features"), default=None,
                   help="cards for the model's neurons or its dictionary's features (default: what the brain played)")

    neuron = sub.add_parser("neuron", help="neuron experiments: ablate, attribute, test, match, patch").add_subparsers(
        dest="sub", metavar="EXPERIMENT")
    p = add("ablate", cmd_ablate, "zero or mean ablation of neuron (or feature) L.N: change in next-note loss over a "
            "session", neuron)
    p.add_argument("neuron", metavar="L.N", help="the neuron: layer.index, e.g. 1.42 (a feature with --units features)")
    p.add_argument("session", help="the session whose note text is read")
    p.add_argument("--mode", choices=("zero", "mean"), default="zero", help="set it to 0, or to its mean over the "
                   "session (default zero)")
    p.add_argument("--units", choices=("neurons", "features"), default="neurons",
                   help="features: L.N names a feature of the model's dictionary; its part of layer L's activations "
                        "is taken out (zero) or held at its mean")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="where to draw the loss change per note (default SESSION/ablate-L.N.png)")
    _out_arg(p)
    p = add("attribute", cmd_attribute, "top neurons by gradient × activation for the next note (or any token) at "
            "event K", neuron)
    p.add_argument("session", help="the session whose note text is read")
    p.add_argument("--event", type=int, required=True, metavar="K", help="index of the note event (0 = first note)")
    p.add_argument("--target", default="predicted-note", help="what the attribution explains: predicted-note "
                   "(default: the model's most likely next note), a note word such as G4, or a token such as '|'")
    p.add_argument("--top", type=int, default=10, help="neurons to list (default 10)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="where to draw the neurons' bars (default SESSION/attribute-eventK.png)")
    _out_arg(p)
    p = add("test", cmd_test, "does neuron L.N fire more on texts matching a pattern? effect size, p, verdict", neuron)
    p.add_argument("neuron", metavar="L.N", help="the neuron: layer.index, e.g. 1.42")
    p.add_argument("--match", required=True, metavar="FILE", help="texts that match (one per line)")
    p.add_argument("--nomatch", required=True, metavar="FILE", help="texts that don't")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the two distributions here")
    _out_arg(p)
    p = add("match", cmd_match, "for each neuron of model A, the best-correlated neurons of model B", neuron)
    p.add_argument("--a", required=True, metavar="MODEL", help="the model whose neurons are matched")
    p.add_argument("--b", required=True, metavar="MODEL", help="the model searched for their matches")
    p.add_argument("--corpus", required=True, metavar="FILE", help="texts, one per line")
    p.add_argument("--top", type=int, default=1, help="matches kept per neuron of A (default 1)")
    p.add_argument("--show", type=int, default=20, help="rows to print (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the distribution of best-match correlations here")
    _out_arg(p)
    p = add("patch", cmd_patch, "activation patching: which layer, position and neuron carry the difference between "
            "a clean window and a corrupted one (1 = fully restored)", neuron)
    p.add_argument("session", help="the session whose note text is read")
    p.add_argument("--event", type=int, default=-1, metavar="K",
                   help="the clean window ends at note event K (0 = first note, -1 = last; default -1)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--transpose", type=int, metavar="N", help="corrupt = the same window transposed by N "
                     "semitones (the default, N=2)")
    src.add_argument("--shuffle", type=int, metavar="SEED", help="corrupt = the same window with its notes shuffled")
    src.add_argument("--against", metavar="SESSION", help="corrupt = a window of another session")
    p.add_argument("--against-event", type=int, metavar="K2", help="the corrupted window ends at note event K2 (of "
                   "--against, or of this session when given alone; -1 = last)")
    p.add_argument("--target", help="a note word the metric favours instead of the clean run's predicted next note")
    p.add_argument("--sites", help="comma-separated: resid_pre, attn_out, mlp_out (default: all three)")
    p.add_argument("--layer", type=int, help="whose neurons to patch one by one (default: the layer whose MLP "
                   "output restores most)")
    p.add_argument("--top-k", type=int, help="patch only the K neurons whose activation differs most (default: all)")
    p.add_argument("--units", choices=("neurons", "features"), default="neurons",
                   help="patch the layer's neurons one by one, or its dictionary's features")
    p.add_argument("--positions", default="all", help="where the neurons are patched: all (default), last, or "
                   "positions like 40,41")
    p.add_argument("--show", type=int, default=12, help="neurons to print (default 12)")
    p.add_argument("--show-positions", type=int, default=48, metavar="N", help="positions the heatmap shows, the "
                   "last N (default 48)")
    p.add_argument("--plot", metavar="FILE.png", help="default SESSION/patch-eventK.png")
    p.add_argument("--model", default=None, help="default: the configured brain model")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    _out_arg(p)


def parquet_out(text: str) -> str:
    """argparse type for --out: a *.parquet file or a folder, refused before any work is done."""
    if Path(text).suffix not in ("", ".parquet") and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: results are written as Parquet; name the file *.parquet or a folder")
    return text


def _out_arg(p) -> None:
    p.add_argument("--out", metavar="FILE.parquet", type=parquet_out, help="also write the result as rows of a results table (appends; "
                   "a folder gets one file per run): see docs/experiments.md")
