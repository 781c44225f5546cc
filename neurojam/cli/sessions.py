"""`neurojam replay|export|sessions`: what was recorded, played again, exported, listed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import SessionError
from neurojam.cli.args import config_args, load_config_from, units_arg
from recording.log import LOG_NAME

# -- sessions -----------------------------------------------------------------------------

def cmd_replay(args: argparse.Namespace) -> int:
    from brain.live.replay import replay

    config = load_config_from(args)
    if args.corrupt:
        config.brain.corrupt = list(args.corrupt)
    print(f"replay: loading {config.brain.model} (a few seconds) …", file=sys.stderr, flush=True)
    out = replay(args.session, config, speed=None if args.fast else args.speed, out=args.out, human=args.human)
    print(f"replay: new session {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from recording.export import write_midi
    from recording.fluidsynth import render_wav

    import tempfile

    if not args.midi and not args.wav:
        raise SessionError("export: say what to write: --midi FILE and/or --wav FILE.")
    if args.wav and Path(args.wav).suffix.lower() != ".wav":
        raise SessionError(f"export --wav writes WAV audio: give a name ending in .wav (got {args.wav}); convert "
                           f"it afterwards if you want another format (e.g. ffmpeg -i jam.wav jam.mp3).")
    from recording import open_session

    jam = open_session(args.session, warn=True).jam
    with tempfile.TemporaryDirectory() as tmp:  # --wav alone leaves no .mid behind
        midi_path = Path(args.midi) if args.midi else Path(tmp) / "jam.mid"
        write_midi(jam, midi_path)
        if args.midi:
            print(f"export: {midi_path} ({sum(jam.count_by_source().values())} notes, {len(jam.treats)} treat markers)")
        if args.wav:
            render_wav(midi_path, args.wav)
            print(f"export: {args.wav}")
    return 0


def session_summary(path: Path) -> dict:
    from recording import open_session

    session = open_session(path)
    log, jam = session.log, session.jam
    counts = jam.count_by_source()
    rate = jam.on_beat_rate()
    return {
        "session": str(path) if path.name.startswith("session") else path.name, "start": (log.meta.started_utc or "?")[:19].replace("T", " "),
        "duration_s": round(jam.duration, 1), "pet": counts.get("pet", 0), "human": counts.get("human", 0),
        "brain": counts.get("brain", 0), "treats": sum(t.action == "dispensed" for t in jam.treats),
        "refused": sum(t.action == "refused" for t in jam.treats),
        "on_beat": None if rate is None else round(rate, 3), "model": log.meta.model,
        "source": log.meta.source_session, "problems": log.problems,
    }


DEMO_OUT = Path("demo-out")
"""Where ``neurojam demo`` writes a folder per run (its rig sessions inside)."""


def session_dirs(root: Path) -> list[Path]:
    """Sessions directly under ``root``, and the rig sessions of each demo run under it."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("*") if (p / LOG_NAME).exists()]
    found += [p for p in root.glob("*/session*") if (p / LOG_NAME).exists()]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def default_session() -> Path:
    """The running demo's session, else the newest one recorded here (demo-out/ or session.dir)."""
    from neurojam.config import load_config
    from neurojam.runtime import running

    demo = running()
    if demo and demo.session:
        return Path(demo.session)
    found = session_dirs(DEMO_OUT) + session_dirs(Path(load_config().session.dir))
    if not found:
        raise SessionError("no session given and none found here: name one (neurojam sessions lists them), or "
                           "run `neurojam demo` first.")
    return max(found, key=lambda p: p.stat().st_mtime)


def cmd_sessions(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from neurojam.config import load_config

    from neurojam.runtime import running

    roots = [Path(args.dir)] if args.dir else [Path(load_config().session.dir), DEMO_OUT]
    demo = running()
    if demo and demo.out_dir and not args.dir and Path(demo.out_dir) not in [r.resolve() for r in roots]:
        roots.append(Path(demo.out_dir))  # the demo playing now, wherever its --out put it
    paths = list(dict.fromkeys(p.resolve() for root in roots for p in session_dirs(root)))
    root = " and ".join(f"{r}/" for r in roots)
    if not paths:
        raise SessionError(f"no sessions under {root}: run `neurojam demo` or `neurojam rig` first.")
    rows = []
    for p in paths:
        try:
            rows.append(session_summary(p))
        except SessionError as exc:
            rows.append({"session": p.name, "problems": [str(exc)]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title=f"sessions in {root}")
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


def cmd_score(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from recording import open_session
    from brain.config import BrainConfig
    from recording.score import score_rows, score_session

    session = open_session(args.session, warn=True)
    score = score_session(session, BrainConfig.of_session(session.meta).sonify, gate=args.gate)
    if args.json:
        out = score.as_dict()
        if args.controls:
            from brain.science.controls import run_controls

            out["controls"] = run_controls(args.session, load_config_from(args)).as_dict()
        print(json.dumps(out, indent=1))
        return 0
    table = Table(title=f"{args.session}: {score.brain_notes} brain notes, {score.human_notes} human notes, "
                        f"{score.minutes:.1f} min; keys {', '.join(score.keys) or '–'}")
    for col in ("figure", "the brain", "baseline", "target"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for row in score_rows(score):
        table.add_row(*row)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    for note in score.notes:
        console.print(f"note: {note}")
    if args.controls:
        _print_controls(args, console)
    return 0


def _print_controls(args: argparse.Namespace, console) -> None:
    """The session replayed through the trained model and three controls: is the band the model's?"""
    from rich.table import Table

    from brain.science.controls import MAX_JACCARD, MIN_HIST, run_controls
    config = load_config_from(args)
    result = run_controls(args.session, config, progress=True)
    table = Table(title=f"controls: each replayed from the same events; distance from the trained model's unit voices "
                        f"(and from everything it played, the prediction voice too) "
                        f"({result.trained_notes} notes, prediction hits "
                        f"{_pct(result.trained_prediction_hits)})")
    for col in ("control", "per-slot pitch-class Jaccard", "pitch-class mix distance", "onset overlap",
                "every voice: Jaccard / distance / onsets", "prediction hits", "notes"):
        table.add_column(col, justify="left" if col == "control" else "right")
    for r in result.rows:
        d, e = r.distance, r.distance.get("all_voices", {})
        table.add_row(r.name, _num(d["slot_jaccard"]), _num(d["pitch_class_distance"]), _num(d["onset_overlap"]),
                      " / ".join(_num(e.get(k)) for k in ("slot_jaccard", "pitch_class_distance", "onset_overlap")),
                      _pct(r.prediction_hits), str(r.brain_notes))
    console.print(table)
    console.print(f"the music depends on the trained model: [bold]{result.depends}[/] (the random-weight control "
                  f"shares ≤ {MAX_JACCARD} of each slot's pitch classes and its mix is ≥ {MIN_HIST} away: "
                  f"'yes'; one of the two: 'partly')")


def _num(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def register(sub, add) -> None:
    p = add("score", cmd_score, "how the accompaniment sounds (key fit, harmony, response, faithfulness, hygiene) "
            "beside baselines on the same session")
    p.add_argument("session", help="a session directory (neurojam sessions lists them)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--gate", type=float, default=None, help="activity threshold (default: the session's sonify.gate)")
    p.add_argument("--controls", action="store_true",
                   help="also replay the session through a random-weight model, shuffled voices and the sounding "
                        "neurons mean-ablated (about 15 s for the default model), and say how far each lands from "
                        "the trained model's band")
    units_arg(p, "replay the controls with neurons or the dictionary's features (a random-weight model then plays "
                 "its own dictionary); default: brain.units")
    config_args(p)
    p = add("replay", cmd_replay, "replay a recorded session through a brain into a new session")
    p.add_argument("session", help="the session to replay (neurojam sessions lists them)")
    config_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--speed", type=float, default=1.0, help="recorded pace × SPEED (default 1)")
    g.add_argument("--fast", action="store_true", help="as fast as the brain keeps up")
    p.add_argument("--model", default=None, help="replay through this model (default: brain.model from the config)")
    units_arg(p)
    p.add_argument("--human", metavar="MIDI_FILE", help="replace the human part with this MIDI file")
    p.add_argument("--corrupt", action="append", metavar="SPEC", help="replay through a corrupted model, e.g. "
                   "skip=2 (repeatable; see `neurojam model corrupt --help`): export it to hear the band without "
                   "a layer; the new session's meta says which corruption made it")
    p.add_argument("--out", metavar="DIR", help="where to write the new session (default sessions/<time>)")

    p = add("export", cmd_export, "write a session as a MIDI file (one track per source) and/or WAV audio")
    p.add_argument("session", help="the session to export (neurojam sessions lists them)")
    p.add_argument("--midi", metavar="FILE", help="write a MIDI file here (default: SESSION/jam.mid when neither "
                   "--midi nor --wav is given)")
    p.add_argument("--wav", metavar="FILE", help="render through FluidSynth with a General MIDI soundfont")

    p = add("sessions", cmd_sessions, "list recorded sessions")
    p.add_argument("dir", nargs="?", default=None, help="a folder of sessions (default: session.dir, and the demo's "
                   "demo-out/)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
