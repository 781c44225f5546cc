"""Subcommands beyond the nodes: sessions, models, the demo, doctor, analysis.

Each ``cmd_*`` imports what it needs when it runs, so ``neurojam --help``
stays fast and the rig's commands never load torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neurojam.errors import SessionError


def _load_config(args):
    from neurojam.config import load_config

    overrides = list(getattr(args, "overrides", []))
    if getattr(args, "model", None):
        overrides.append(f"brain.model={args.model}")
    return load_config(getattr(args, "config", None), overrides)


# -- sessions -----------------------------------------------------------------------------

def cmd_replay(args: argparse.Namespace) -> int:
    from neurojam.replay import replay

    config = _load_config(args)
    out = replay(args.session, config, speed=None if args.fast else args.speed, out=args.out, human=args.human)
    print(f"replay: new session {out}")
    return 0


def _jam(session: str):
    from bridge.jam import jam_from_log
    from bridge.session import read_session

    log = read_session(session)
    for problem in log.problems:
        print(f"note: {session}: {problem}", file=sys.stderr)
    if not log.records:
        raise SessionError(f"{session}: the session log holds no readable messages.")
    return jam_from_log(log)


def cmd_export(args: argparse.Namespace) -> int:
    from bridge.export import render_wav, write_midi

    if not args.midi and not args.wav:
        raise SessionError("export: say what to write: --midi FILE and/or --wav FILE.")
    jam = _jam(args.session)
    midi_path = Path(args.midi) if args.midi else Path(args.wav).with_suffix(".mid")
    write_midi(jam, midi_path)
    print(f"export: {midi_path} ({sum(jam.count_by_source().values())} notes, {len(jam.treats)} treat markers)")
    if args.wav:
        render_wav(midi_path, args.wav)
        print(f"export: {args.wav}")
    return 0


def session_summary(path: Path) -> dict:
    from bridge.jam import jam_from_log
    from bridge.session import read_session

    log = read_session(path)
    jam = jam_from_log(log)
    counts = jam.count_by_source()
    rate = jam.on_beat_rate()
    return {
        "session": path.name, "start": log.meta.get("started_utc", "?")[:19].replace("T", " "),
        "duration_s": round(jam.duration, 1), "pet": counts.get("pet", 0), "human": counts.get("human", 0),
        "brain": counts.get("brain", 0), "treats": sum(t.action == "dispensed" for t in jam.treats),
        "refused": sum(t.action == "refused" for t in jam.treats),
        "on_beat": None if rate is None else round(rate, 3), "model": log.meta.get("model", ""),
        "source": log.meta.get("source_session", ""), "problems": log.problems,
    }


def cmd_sessions(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    root = Path(args.dir)
    paths = sorted(p for p in root.glob("*") if (p / "events.njlog").exists()) if root.is_dir() else []
    if not paths:
        raise SessionError(f"no sessions under {root}/: run `neurojam demo` or `neurojam rig` first.")
    rows = []
    for p in paths:
        try:
            rows.append(session_summary(p))
        except SessionError as exc:
            rows.append({"session": p.name, "problems": [str(exc)]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title=f"sessions in {root}/")
    for col in ("session", "start (UTC)", "length", "pet", "human", "brain", "treats", "refused", "pet on beat", "note"):
        table.add_column(col, justify="right" if col not in ("session", "start (UTC)", "note") else "left")
    for r in rows:
        if "duration_s" not in r:
            table.add_row(r["session"], "", "", "", "", "", "", "", "", "unreadable: " + r["problems"][0].split(": ", 1)[-1][:50])
            continue
        note = ("replay of " + Path(r["source"]).name) if r["source"] else ("; ".join(r["problems"])[:60])
        table.add_row(r["session"], r["start"], f"{r['duration_s']:.0f} s", str(r["pet"]), str(r["human"]),
                      str(r["brain"]), str(r["treats"]), str(r["refused"]),
                      "–" if r["on_beat"] is None else f"{r['on_beat']:.0%}", note)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return 0


def cmd_steer(args: argparse.Namespace) -> int:
    """Send a steering control to a running brain and wait briefly for its answer."""
    import time

    from bridge.link import Link
    from bridge.messages import Control

    config = _load_config(args)
    b = config.bridge
    if args.clear:
        msg = Control(action="unsteer")
    else:
        if args.neuron is None or args.factor is None:
            raise SessionError("steer: give L.N FACTOR (e.g. `neurojam steer 1.42 0` silences it) or --clear.")
        try:
            layer, neuron = (int(x) for x in args.neuron.split("."))
        except ValueError as exc:
            raise SessionError(f"{args.neuron!r} is not a neuron id: write LAYER.NEURON, e.g. 1.42.") from exc
        msg = Control(action="steer", layer=layer, neuron=neuron, factor=args.factor)
    link = Link("tool", "steer", host=b.host, events_port=b.events_port, commands_port=b.commands_port)
    try:
        deadline = time.monotonic() + args.timeout
        while not link.send(msg):
            if time.monotonic() > deadline:
                raise SessionError(f"no brain at {b.host}:{b.events_port} (start `neurojam brain`, check bridge.host).")
            time.sleep(0.05)
        while time.monotonic() < deadline:
            for m in link.receive(timeout_ms=50):
                if isinstance(m, Control) and m.action in ("ack", "refused"):
                    if m.action == "refused":
                        raise SessionError(f"the brain refused: {m.reason}")
                    print(f"steer: the brain applied {msg.action} {args.neuron or ''} {args.factor or ''}".rstrip())
                    return 0
    finally:
        link.close()
    print("steer: sent (the brain's answer went to the rig, which records it in its session)")
    return 0


# -- models -------------------------------------------------------------------------------

def cmd_model_info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from brain.models import load_model
    from brain.node import load_stats

    config = _load_config(args)
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
    order = scale.flatten().argsort(descending=True)[:args.top]
    table = Table(title=f"top {args.top} neurons by 1−1e-5 activation quantile")
    for col in ("neuron", "quantile", "label"):
        table.add_column(col)
    for i in order.tolist():
        layer, n = divmod(i, model.d_mlp)
        table.add_row(f"{layer}.{n}", f"{float(scale[layer, n]):.2f}", stats.labels.get(f"{layer}.{n}", ""))
    console.print(table)
    return 0


def cmd_model_stats(args: argparse.Namespace) -> int:
    from brain import corpus
    from brain.models import MODELS_DIR, load_model
    from brain.neuron_stats import compute_stats
    from brain.node import stats_dir_for

    config = _load_config(args)
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


def register(sub, add, config_args) -> None:
    p = add("replay", cmd_replay, "replay a recorded session through a brain into a new session")
    p.add_argument("session")
    config_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--speed", type=float, default=1.0, help="recorded pace × SPEED (default 1)")
    g.add_argument("--fast", action="store_true", help="as fast as the brain keeps up")
    p.add_argument("--model", default=None)
    p.add_argument("--human", metavar="MIDI_FILE", help="replace the human part with this MIDI file")
    p.add_argument("--out", metavar="DIR", help="where to write the new session (default sessions/<time>)")

    p = add("export", cmd_export, "write a session as a MIDI file (one track per source) and/or WAV audio")
    p.add_argument("session")
    p.add_argument("--midi", metavar="FILE")
    p.add_argument("--wav", metavar="FILE", help="render through FluidSynth with a General MIDI soundfont")

    p = add("sessions", cmd_sessions, "list recorded sessions")
    p.add_argument("dir", nargs="?", default="sessions")
    p.add_argument("--json", action="store_true")

    p = add("steer", cmd_steer, "steer a running brain live: multiply neuron L.N by FACTOR (0 silences, 2 doubles)")
    p.add_argument("neuron", nargs="?", metavar="L.N")
    p.add_argument("factor", nargs="?", type=float)
    p.add_argument("--clear", action="store_true", help="remove all steering")
    p.add_argument("--timeout", type=float, default=3.0)
    config_args(p)

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

    for extra in ("neurojam.demo", "neurojam.lab", "neurojam.doctor", "neurojam.analysis_commands"):
        try:
            module = __import__(extra, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != extra:
                raise
            continue
        module.register(sub, add, config_args)
