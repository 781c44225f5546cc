"""`neurojam config show|check|schema`: the merged configuration, a file's check, every key."""

from __future__ import annotations

import argparse
import sys

from neurojam.cli.args import config_args, load_config_from


def cmd_config_show(args: argparse.Namespace) -> int:
    from core.config import dump_yaml

    print(dump_yaml(load_config_from(args)), end="")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from core.config import dump_yaml
    from neurojam.config import load_config

    config = load_config(args.file, args.overrides)
    if not args.quiet:
        print(dump_yaml(config), end="")
    print(f"{args.file}: OK", file=sys.stderr)
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from neurojam.cli.config_reference import render

    print(render())
    return 0


def register(sub, add) -> None:
    cfg = sub.add_parser("config", help="check or show configuration").add_subparsers(dest="sub", metavar="ACTION")
    p = add("show", cmd_config_show, "print the merged configuration (defaults + profile + --set)", cfg)
    config_args(p)
    p = add("check", cmd_config_check, "validate a config file layered on the defaults", cfg)
    p.add_argument("file", help="the YAML file to check")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set rig.tempo_bpm=100 (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="only say OK or what is wrong")
    add("schema", cmd_config_schema, "print every config key with its type, range and default", cfg)
