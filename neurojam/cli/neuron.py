"""``neurojam report`` and ``neurojam neuron ablate|attribute|test|match``: tables, or JSON with --json."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from core.errors import SessionError


def _model(args, default: str | None = None):
    from brain.models import load_model
    from neurojam.config import load_config

    name = getattr(args, "model", None) or default or load_config().brain.model
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


def cmd_report(args: argparse.Namespace) -> int:
    from brain.report import build_report

    out = build_report(args.session, args.out, args.model, progress=True)
    print(f"report: {out}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from brain.experiments import ablate

    model = _model(args)
    layer, neuron = model.parse_neuron(args.neuron)
    _, text = _session_text(args.session)
    r = ablate(model, text.text, layer, neuron, args.mode)
    if args.json:
        print(json.dumps({**asdict(r), "delta": r.delta}, indent=1))
        return 0
    _table(f"{args.mode} ablation of {r.neuron} over {r.targets} next-note predictions", ["loss before", "after", "change"],
           [[r.loss_before, r.loss_after, r.delta]])
    _table("notes most affected (mean loss change)", ["note", "Δ loss", "count"], [list(x) for x in r.most_affected])
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from brain.experiments import attribute, note_event_index
    from brain.stream import live_window, session_events
    from neurojam.config import load_config

    model = _model(args)
    log, _ = _session_text(args.session)
    events = session_events(log)
    k = note_event_index(events, args.event)
    context = min(load_config().brain.context_tokens, model.n_ctx)
    window = live_window(events, k, context)  # exactly what the brain had read at that event
    target, rows = attribute(model, window.text, window.spans[-1].end, top=args.top, target=args.target)
    if args.json:
        print(json.dumps({"event": args.event, "target": target, "neurons": [asdict(r) for r in rows]}, indent=1))
        return 0
    what = f"the most likely next note, {target!r}" if args.target == "predicted-note" else repr(target)
    _table(f"event {args.event}: neurons by gradient × activation for {what} next",
           ["neuron", "score", "activation", "gradient"], [[f"{r.layer}.{r.index}", r.score, r.activation, r.gradient]
                                                           for r in rows])
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from brain.experiments import hypothesis_test

    model = _model(args)
    layer, neuron = model.parse_neuron(args.neuron)
    r = hypothesis_test(model, layer, neuron, _texts(args.match), _texts(args.nomatch))
    if args.json:
        print(json.dumps({**asdict(r), "verdict": r.verdict}, indent=1))
        return 0
    _table(f"neuron {r.neuron}: matching vs non-matching texts (max activation per text)",
           ["group", "n", "mean max activation"], [["match", r.n_match, r.match_mean], ["no match", r.n_nomatch, r.nomatch_mean]])
    print(f"Cohen's d = {r.cohens_d:.2f}, Mann-Whitney p = {r.p_value:.3g}\nverdict: {r.verdict}")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from brain.experiments import match_neurons
    from brain.models import load_model

    a, b = load_model(args.a, "cpu"), load_model(args.b, "cpu")
    matches = match_neurons(a, b, _texts(args.corpus), top=args.top, progress=True)
    matches.sort(key=lambda m: -m.r)
    if args.json:
        print(json.dumps([asdict(m) for m in matches], indent=1))
        return 0
    _table(f"neurons of {a.name} and their best match in {b.name} (Pearson r over aligned words)", ["A", "B", "r"],
           [[m.a, m.b, m.r] for m in matches[:args.show]])
    return 0


def register(sub, add) -> None:
    p = add("report", cmd_report, "an HTML report of a session: piano roll, neuron heatmap and cards, the pet's stats")
    p.add_argument("session")
    p.add_argument("--out", metavar="FILE", help="default SESSION/report.html")
    p.add_argument("--model", default=None, help="default: the model the session was played with")

    neuron = sub.add_parser("neuron", help="neuron experiments: ablate, attribute, test, match").add_subparsers(
        dest="sub", metavar="EXPERIMENT")
    p = add("ablate", cmd_ablate, "zero or mean ablation of neuron L.N: change in next-note loss over a session", neuron)
    p.add_argument("neuron", metavar="L.N")
    p.add_argument("session")
    p.add_argument("--mode", choices=("zero", "mean"), default="zero")
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true")
    p = add("attribute", cmd_attribute, "top neurons by gradient × activation for the next note (or any token) at "
            "event K", neuron)
    p.add_argument("session")
    p.add_argument("--event", type=int, required=True, metavar="K", help="index of the note event (0 = first note)")
    p.add_argument("--target", default="predicted-note", help="what the attribution explains: predicted-note "
                   "(default: the model's most likely next note), a note word such as G4, or a token such as '|'")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true")
    p = add("test", cmd_test, "does neuron L.N fire more on texts matching a pattern? effect size, p, verdict", neuron)
    p.add_argument("neuron", metavar="L.N")
    p.add_argument("--match", required=True, metavar="FILE", help="texts that match (one per line)")
    p.add_argument("--nomatch", required=True, metavar="FILE", help="texts that don't")
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true")
    p = add("match", cmd_match, "for each neuron of model A, the best-correlated neurons of model B", neuron)
    p.add_argument("--a", required=True, metavar="MODEL")
    p.add_argument("--b", required=True, metavar="MODEL")
    p.add_argument("--corpus", required=True, metavar="FILE", help="texts, one per line")
    p.add_argument("--top", type=int, default=1)
    p.add_argument("--show", type=int, default=20)
    p.add_argument("--json", action="store_true")
