"""`neurojam bridge selftest|stats`: the wire measured between two processes, and a session's link stats."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_bridge_selftest(args: argparse.Namespace) -> int:
    from bridge.selftest import run_selftest

    return run_selftest(count=args.count, port=args.port, plot=args.plot)


def cmd_bridge_stats(args: argparse.Namespace) -> int:
    from recording.log import latest_session, read_stats

    session = Path(args.session) if args.session else latest_session(Path(args.dir))
    stats = read_stats(session)
    print(json.dumps(stats, indent=2))
    return 0


def register(sub, add) -> None:
    br = sub.add_parser("bridge", help="the ZeroMQ wire: self-test and stats").add_subparsers(dest="sub", metavar="ACTION")
    p = add("selftest", cmd_bridge_selftest, "send messages to a receiver process over loopback and report", br)
    p.add_argument("--count", type=int, default=5000, help="messages to send (default 5000)")
    p.add_argument("--port", type=int, default=15555, help="loopback port pair to use (default 15555/15556)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the latencies here")
    p = add("stats", cmd_bridge_stats, "print the bridge stats a node last wrote to its session", br)
    p.add_argument("session", nargs="?", help="the session (default: the newest in --dir)")
    p.add_argument("--dir", default="sessions", help="where to look for the newest session (default sessions)")
