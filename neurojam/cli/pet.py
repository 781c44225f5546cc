"""`neurojam pet NAME`: a pet's training across sessions, as a table and a picture."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.errors import SessionError
from neurojam.cli.args import config_args, load_config_from


def cmd_pet(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rig.progress import PetProgress, draw_progress

    root = Path(args.dir) if args.dir else Path(load_config_from(args).session.dir)
    path = root / "pets" / f"{args.name}.json"
    if not path.exists():
        known = sorted(p.stem for p in (root / "pets").glob("*.json")) if (root / "pets").is_dir() else []
        raise SessionError(f"no progress for {args.name!r} under {root}/pets/: a pet's file is written when a rig "
                           f"session with rig.training.pet={args.name} ends."
                           + (f" Pets found: {', '.join(known)}." if known else ""))
    progress = PetProgress.load(root, args.name)
    if progress.problem:
        raise SessionError(progress.problem)
    rows = progress.sessions
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"name": progress.name, "level": progress.level,
                          "sessions": [asdict(s) for s in rows]}, indent=1))
        return 0
    console = Console(width=None if console_is_tty() else 160)
    console.print(f"[bold]{progress.name}[/bold]: level {progress.level}; last trials (◉ success, ○ miss; the "
                  f"report also marks which earned a treat ●) {''.join('◉' if ok else '○' for ok in progress.recent) or '–'}")
    if not rows:
        console.print("no sessions recorded yet")
        return 0
    table = Table()
    for col in ("session", "started (UTC)", "min", "level", "presses", "on beat", "timing error", "presses/min",
                "treats", "refused"):
        table.add_column(col, justify="left" if col in ("session", "started (UTC)") else "right")
    for s in rows:
        table.add_row(s.session, s.started_utc[:16].replace("T", " "), f"{s.minutes:.1f}",
                      f"{s.level_start}→{s.level_end}", str(s.presses),
                      "–" if s.on_beat is None else f"{s.on_beat:.0%}",
                      "–" if s.mean_abs_offset_ms is None else f"{s.mean_abs_offset_ms:.0f} ms",
                      f"{s.presses_per_minute:.1f}", str(s.treats), str(s.refused))
    console.print(table)
    png = Path(args.png) if args.png else path.with_suffix(".png")
    try:
        draw_progress(progress, png, levels=len(load_config_from(args).rig.training.levels))
    except ModuleNotFoundError:
        console.print("no picture: matplotlib is not installed (`pip install 'neurojam\\[brain]'`)")
        return 0
    console.print(f"picture: {png}")
    return 0


def console_is_tty() -> bool:
    import sys

    return sys.stdout.isatty()


def register(sub, add) -> None:
    p = add("pet", cmd_pet, "a pet's training across sessions: level, on-beat share, timing, treats, and a plot")
    p.add_argument("name", help="the pet's name (rig.training.pet)")
    p.add_argument("--dir", help="the sessions folder (default: session.dir from the config)")
    p.add_argument("--png", metavar="FILE", help="where to draw the plot (default: sessions/pets/NAME.png)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    config_args(p)
