"""`neurojam rig`, `neurojam brain`, and `neurojam steer` (a running brain, live)."""

from __future__ import annotations

import argparse
import os
import secrets

from core.errors import SessionError
from core.units import NeuronId
from neurojam.cli.args import config_args, load_config_from, positive_seconds, units_arg


def cmd_rig(args: argparse.Namespace) -> int:
    from rig.node import run_rig

    return run_rig(load_config_from(args), seconds=args.seconds, session_dir=args.session, human=args.human,
                   keyboard_pads=args.keys)


def cmd_brain(args: argparse.Namespace) -> int:
    from brain.live.node import run_brain

    return run_brain(load_config_from(args), seconds=args.seconds, session_dir=args.session)


def cmd_steer(args: argparse.Namespace) -> int:
    """Send a steering control to a running brain and wait briefly for its answer."""
    import time

    from bridge.link import Link
    from bridge.messages import MessageError, Steer, SteerReply, encode
    from bridge.security import TOOL_KEY, security_for

    config = load_config_from(args, follow_running=True)
    b = config.bridge
    if args.play:
        msg = Steer(play=args.play)
    elif args.clear:
        msg = Steer(clear=True, rig=args.rig or "")
    elif args.skip_layer is not None:
        msg = Steer(layer=args.skip_layer, skip_layer=True, rig=args.rig or "")
    else:
        if args.neuron is None or args.factor is None:
            raise SessionError("steer: give L.N FACTOR (e.g. `neurojam steer 1.42 0` silences it) or --clear.")
        try:
            layer, neuron = NeuronId.parse(args.neuron)
        except ValueError as exc:
            raise SessionError(str(exc)) from exc
        msg = Steer(layer=layer, neuron=neuron, factor=args.factor, rig=args.rig or "")
        try:
            encode(msg)
        except MessageError as exc:
            raise SessionError(f"steer: {args.neuron} {args.factor:g} cannot be sent: {exc}. The factor is "
                               f"-10..10 (0 silences a neuron, 1 leaves it alone, 2 doubles it).") from exc
    link = Link("tool", f"steer-{os.getpid()}-{secrets.token_hex(3)}", host=b.host, events_port=b.events_port, commands_port=b.commands_port,
                security=security_for(b, TOOL_KEY, server=False))
    try:
        deadline = time.monotonic() + args.timeout
        while not link.send(msg):
            if time.monotonic() > deadline:
                raise SessionError(f"no brain at {b.host}:{b.events_port} (start `neurojam brain`, check bridge.host).")
            time.sleep(0.05)
        while time.monotonic() < deadline:
            for m in link.receive(timeout_ms=50):
                if isinstance(m, SteerReply):
                    if not m.applied:
                        raise SessionError(f"the brain refused: {m.reason}")
                    what = (f"now plays {m.units}" if msg.play else "cleared all steering" if msg.clear else
                            f"skipped layer {msg.layer}" if msg.skip_layer else
                            f"applied {'feature ' if m.units == 'features' else ''}{args.neuron} × {args.factor:g}")
                    print(f"steer: the brain {what}")
                    return 0
    finally:
        link.close()
    print("steer: sent (the brain's answer went to the rig, which records it in its session)")
    return 0


def register(sub, add) -> None:
    p = add("rig", cmd_rig, "run the rig node (pads, keyboard, beat clock, treats, accompaniment)")
    config_args(p)
    p.add_argument("--seconds", type=positive_seconds, default=None, help="stop after N seconds (default: run until Ctrl-C)")
    p.add_argument("--session", metavar="DIR", default=None, help="record into DIR (default sessions/<UTC time>)")
    p.add_argument("--human", metavar="MIDI_FILE", default=None, help="play this MIDI file as the human part")
    p.add_argument("--keys", action="store_true", help="computer keys 1-4 press pads 1-4")

    p = add("brain", cmd_brain, "run the brain node (model, sonification, treat requests)")
    config_args(p)
    p.add_argument("--model", default=None, help="model name (default: brain.model from the config)")
    units_arg(p)
    p.add_argument("--seconds", type=positive_seconds, default=None, help="stop after N seconds (default: run until "
                   "Ctrl-C)")
    p.add_argument("--session", metavar="DIR", default=None, help="record the brain's side into DIR (default: no "
                   "recording; the rig records the jam)")

    p = add("steer", cmd_steer, "steer a running brain live: multiply unit L.N by FACTOR (0 silences, 2 doubles)")
    p.add_argument("neuron", nargs="?", metavar="L.N", help="the unit the brain plays (a neuron, or a feature with "
                   "--units features): layer.index, e.g. 1.42 (neurojam model info lists strong neurons)")
    p.add_argument("factor", nargs="?", type=float, help="what its activation is multiplied by: 0 silences, 1 leaves "
                   "it, 2 doubles (-10..10)")
    p.add_argument("--clear", action="store_true", help="remove all steering (skipped layers too)")
    p.add_argument("--skip-layer", type=int, metavar="L", help="skip layer L (its attention and MLP) until --clear: "
                   "hear the band without it")
    p.add_argument("--play", choices=("neurons", "features"), help="switch what the brain reads and plays (every "
                   "rig; clears steering): the MLP's neurons or its dictionary's features")
    p.add_argument("--rig", help="steer only this rig's brain state (default: every rig the brain serves)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the brain's answer (default 3)")
    config_args(p)
