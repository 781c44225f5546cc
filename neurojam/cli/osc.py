"""`neurojam osc monitor`: watch the OSC messages the rig and the brain send (the addresses: docs/osc.md)."""

from __future__ import annotations

import argparse
import time

from core.errors import DeviceError


def cmd_osc_monitor(args: argparse.Namespace) -> int:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from rich.console import Console

    console = Console(highlight=False)
    start = time.monotonic()
    seen = {"n": 0}

    def show(address: str, *values) -> None:
        seen["n"] += 1
        if args.only and not any(address.endswith(o) for o in args.only):
            return
        console.print(f"{time.monotonic() - start:8.3f}  [bold]{address}[/bold]  "
                      + "  ".join(repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)
                                  for v in values))

    dispatcher = Dispatcher()
    dispatcher.set_default_handler(show)
    try:
        server = ThreadingOSCUDPServer((args.host, args.port), dispatcher)
    except OSError as exc:
        raise DeviceError(f"cannot listen for OSC on {args.host}:{args.port} ({exc.strerror}): pick another --port "
                          f"(and add it to osc.targets on the rig and the brain).") from exc
    console.print(f"osc: listening on {args.host}:{args.port}; point osc.targets at it "
                  f"(--set \"osc.targets=['127.0.0.1:{args.port}']\"); Ctrl-C to stop")
    try:
        if args.seconds:
            import threading

            threading.Timer(args.seconds, server.shutdown).start()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    console.print(f"osc: {seen['n']} messages")
    return 0


def register(sub, add) -> None:
    osc = sub.add_parser("osc", help="OSC for visuals: watch what the rig and brain send").add_subparsers(
        dest="sub", metavar="ACTION")
    p = add("monitor", cmd_osc_monitor, "print every OSC message that arrives on a UDP port", osc)
    p.add_argument("--port", type=int, default=9000, help="UDP port to listen on (default 9000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: from other machines)")
    p.add_argument("--only", nargs="*", metavar="ADDRESS", help="show only these, e.g. /beat /neuron")
    p.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
