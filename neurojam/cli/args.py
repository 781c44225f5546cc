"""Arguments every command group shares: the config layers, and loading them."""

from __future__ import annotations

import argparse
import sys


def positive_seconds(text: str) -> float:
    """argparse type: a duration that must be more than 0 (a jam of -5 s records nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} s: give a duration above 0, e.g. 30")
    return value


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="profile YAML layered on the defaults "
                   "(a path, or a name: lab, pi, gpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set rig.tempo_bpm=100 (repeatable)")


def load_config_from(args: argparse.Namespace, follow_running: bool = False):
    """The merged config: defaults, ``--config``, ``--set``, and ``--model`` / ``--units`` where the command has them.
    ``follow_running``: when the user names no brain port, talk to the demo or lab running here
    (``neurojam/runtime.py``)."""
    from neurojam.config import load_config
    from neurojam.runtime import running

    overrides = list(getattr(args, "overrides", []))
    if getattr(args, "model", None):
        overrides.append(f"brain.model={args.model}")
    if getattr(args, "units", None):
        overrides.append(f"brain.units={args.units}")
    demo = running() if follow_running else None
    if demo and not any(o.startswith(("bridge.events_port", "bridge.commands_port", "bridge.host")) for o in overrides):
        print(f"neurojam: talking to the running {demo.kind} (pid {demo.pid}) on ports {demo.events_port}/"
              f"{demo.commands_port}", file=sys.stderr)
        overrides = [f"bridge.events_port={demo.events_port}", f"bridge.commands_port={demo.commands_port}",
                     *overrides]
    return load_config(getattr(args, "config", None), overrides)


UNITS_HELP = ("what the brain reads and plays: neurons (the MLP's), or features (the model's sparse dictionary, each "
              "labelled by what it reads and what it makes the model expect); default brain.units")


def units_arg(p: argparse.ArgumentParser, help: str = UNITS_HELP) -> None:
    p.add_argument("--units", choices=("neurons", "features"), default=None, help=help)
