"""``neurojam``: one command, many subcommands, one module per command group.

Each command imports what it needs when it runs, so ``neurojam --help`` stays
fast and the rig's commands never load torch (a Pi has only ``neurojam[rig]``).
User mistakes raise :class:`NeurojamError`: printed as one paragraph, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from core.errors import NeurojamError
from neurojam.extras import missing_extra_message
from neurojam.cli import (
    bridge_commands,
    config_commands,
    demo,
    doctor,
    keys,
    lab,
    model,
    neuron,
    nodes,
    osc,
    pet,
    sessions,
    stage,
    study,
)

COMMAND_GROUPS = (demo, lab, stage, nodes, sessions, pet, neuron, study, model, config_commands, bridge_commands, osc,
                  keys, doctor)
"""Every command group, in the order ``--help`` lists them."""

EPILOG = """\
first time?  neurojam demo            30 s jam: simulated pet + a folk tune + the default model
             neurojam config show     the merged configuration
             neurojam doctor          check this machine's set-up
docs: README.md, docs/first-jam.md, docs/config-reference.md"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neurojam")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="neurojam",
        description="A pet plays music with people; a language model plays back what its neurons hear.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log more")
    ap.add_argument("--version", action="version", version=f"neurojam {_version()}", help="print the version")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    for group in COMMAND_GROUPS:
        group.register(sub, add)
    return ap


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
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"neurojam {args.command}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neurojam: stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
