"""``neurojam stage``: the live web view of a running brain, for a projector or a tablet."""

from __future__ import annotations

import argparse

from core.errors import ConfigError
from neurojam.cli.args import config_args, load_config_from, positive_seconds
from neurojam.runtime import Running, running


def stage_overrides(args: argparse.Namespace) -> list[str]:
    sets = []
    if args.host:
        sets.append(f"stage.host={args.host}")
    if args.port:
        sets.append(f"stage.port={args.port}")
    return sets


def running_stage(args: argparse.Namespace) -> Running | None:
    """The demo or lab whose stage this command would only start again (no other --host or --port asked for)."""
    from urllib.parse import urlsplit

    found = running()
    if found is None or not found.stage_url or args.host:
        return None
    if args.port and urlsplit(found.stage_url).port != args.port:
        return None
    return found


def cmd_stage(args: argparse.Namespace) -> int:
    if found := running_stage(args):  # a second server would only fail on the port: show the one that runs
        print(f"stage: the {found.kind} (pid {found.pid}) already serves it: open {found.stage_url}")
        return 0
    try:
        from stage.server import run_stage
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the stage needs its web server ({exc.name} is missing): pip install 'neurojam[stage]'") from exc
    args.overrides = list(args.overrides) + stage_overrides(args)
    return run_stage(load_config_from(args, follow_running=True), seconds=args.seconds, open_browser=args.open)


def register(sub, add) -> None:
    p = add("stage", cmd_stage, "the jam live in a web page (piano roll, neurons, steering, treat button) for a "
            "projector or tablet; watches a running brain")
    config_args(p)
    p.add_argument("--host", help="address to serve on (default 127.0.0.1; any other needs the printed token)")
    p.add_argument("--port", type=int, help="port (default 8770)")
    p.add_argument("--open", action="store_true", help="open the page in this computer's browser")
    p.add_argument("--seconds", type=positive_seconds, default=None, help="stop after this long (default: Ctrl-C)")
