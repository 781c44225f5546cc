"""``neurojam``: one command, many subcommands.

Heavy imports (torch, transformer_lens) happen inside the brain-side
subcommands only, so the rig's subcommands run on a Pi with the ``rig`` extra.
User mistakes raise :class:`NeurojamError`: printed as one paragraph, exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from neurojam.errors import NeurojamError

EPILOG = """\
first time?  neurojam demo            30 s jam: simulated pet + a folk tune + the default model
             neurojam config show     the merged configuration
             neurojam doctor          check this machine's set-up
docs: README.md, docs/first-jam.md, docs/config-reference.md"""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="profile YAML layered on configs/default.yaml "
                   "(a path, or a name: lab, pi, gpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set rig.tempo_bpm=100 (repeatable)")


def _load(args: argparse.Namespace):
    from neurojam.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "model", None):
        overrides.append(f"brain.model={args.model}")
    return load_config(args.config, overrides)


# -- config ------------------------------------------------------------------

def cmd_config_show(args: argparse.Namespace) -> int:
    from neurojam.config import dump_yaml

    print(dump_yaml(_load(args)), end="")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from neurojam.config import dump_yaml, load_config

    config = load_config(args.file, args.overrides)
    if not args.quiet:
        print(dump_yaml(config), end="")
    print(f"{args.file}: OK", file=sys.stderr)
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from neurojam.config_reference import render

    print(render())
    return 0


# -- bridge ------------------------------------------------------------------

def cmd_bridge_selftest(args: argparse.Namespace) -> int:
    from bridge.selftest import run_selftest

    return run_selftest(count=args.count, port=args.port)


def cmd_bridge_stats(args: argparse.Namespace) -> int:
    from bridge.session import latest_session, read_stats

    session = Path(args.session) if args.session else latest_session(Path(args.dir))
    stats = read_stats(session)
    print(json.dumps(stats, indent=2))
    return 0


# -- nodes -------------------------------------------------------------------

def cmd_rig(args: argparse.Namespace) -> int:
    from rig.node import run_rig

    return run_rig(_load(args), seconds=args.seconds, session_dir=args.session, human=args.human,
                   keyboard_pads=args.keys)


def cmd_brain(args: argparse.Namespace) -> int:
    from brain.node import run_brain

    return run_brain(_load(args), seconds=args.seconds, session_dir=args.session)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="neurojam",
        description="A pet plays music with people; a language model plays back what its neurons hear.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    cfg = sub.add_parser("config", help="check or show configuration").add_subparsers(dest="sub", metavar="ACTION")
    p = add("show", cmd_config_show, "print the merged configuration (defaults + profile + --set)", cfg)
    _config_args(p)
    p = add("check", cmd_config_check, "validate a config file layered on the defaults", cfg)
    p.add_argument("file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-q", "--quiet", action="store_true", help="only say OK or what is wrong")
    add("schema", cmd_config_schema, "print every config key with its type, range and default", cfg)

    br = sub.add_parser("bridge", help="the ZeroMQ wire: self-test and stats").add_subparsers(dest="sub", metavar="ACTION")
    p = add("selftest", cmd_bridge_selftest, "send messages to a receiver process over loopback and report", br)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--port", type=int, default=15555)
    p = add("stats", cmd_bridge_stats, "print the bridge stats a node last wrote to its session", br)
    p.add_argument("session", nargs="?")
    p.add_argument("--dir", default="sessions")

    p = add("rig", cmd_rig, "run the rig node (pads, keyboard, beat clock, treats, accompaniment)")
    _config_args(p)
    p.add_argument("--seconds", type=float, default=None, help="stop after N seconds (default: run until Ctrl-C)")
    p.add_argument("--session", metavar="DIR", default=None, help="record into DIR (default sessions/<UTC time>)")
    p.add_argument("--human", metavar="MIDI_FILE", default=None, help="play this MIDI file as the human part")
    p.add_argument("--keys", action="store_true", help="computer keys 1-4 press pads 1-4")

    p = add("brain", cmd_brain, "run the brain node (model, sonification, treat requests)")
    _config_args(p)
    p.add_argument("--model", default=None, help="model name (default: brain.model from the config)")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--session", metavar="DIR", default=None)

    _register_optional(sub, add)
    return ap


def _register_optional(sub, add) -> None:
    """Subcommands defined in their own modules (each adds its own parser)."""
    import importlib

    for module in ("neurojam.commands",):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub, add, _config_args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fn = getattr(args, "fn", None)
    if fn is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(fn(args) or 0)
    except NeurojamError as exc:
        print(f"neurojam: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("neurojam: stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
