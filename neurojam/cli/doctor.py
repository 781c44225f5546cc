"""``neurojam doctor``: check a node's set-up and say how to fix what is wrong.

Each check is a small function returning a :class:`Check`; ``ok`` is True
(pass), False (fail) or None (a warning: works, but maybe not as intended).
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from dataclasses import dataclass

from core.errors import NeurojamError
from neurojam.cli.args import config_args
from neurojam.config import Config


@dataclass
class Check:
    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def check_config(profile: str | None, overrides: list[str]) -> tuple[Check, Config | None]:
    from neurojam.config import load_config

    try:
        config = load_config(profile, overrides)
    except NeurojamError as exc:
        return Check("config", False, str(exc), "edit the file as the message says; `neurojam config schema` lists keys"), None
    return Check("config", True, f"valid ({profile or 'defaults'})"), config


def check_gpio(config: Config, gpio_module=None) -> Check:
    from rig.gpio import RPiPinFactory

    backend = config.rig.gpio.backend
    if backend == "sim":
        return Check("GPIO", None, "simulated pads (gpio.backend: sim)", "on a Pi set rig.gpio.backend: rpi")
    try:
        RPiPinFactory(gpio_module).close()
    except NeurojamError as exc:
        return Check("GPIO", False, str(exc), "pip install RPi.GPIO (Pi 5: rpi-lgpio), or use gpio.backend: sim")
    return Check("GPIO", True, "RPi.GPIO available (BCM numbering)")


def check_midi(config: Config) -> Check:
    from rig.midi_io import backend_hint, find_port, list_ports

    m = config.rig.midi
    try:
        inputs, outputs = list_ports(m.backend)
    except Exception as exc:  # backend or MIDI system missing
        return Check("MIDI", False, f"no MIDI system through {m.backend}: {exc}", backend_hint(m.backend))
    problems = []
    for wanted, ports, kind in ((m.input, inputs, "input"), (m.output, outputs, "output")):
        if wanted:
            try:
                find_port(wanted, ports, kind)
            except NeurojamError as exc:
                problems.append(str(exc))
    if problems:
        return Check("MIDI", False, " ".join(problems), "plug the device in, or fix rig.midi.input/output")
    return Check("MIDI", True, f"{len(inputs)} inputs, {len(outputs)} outputs"
                 + ("" if m.output else "; a virtual output port will be created"))


def check_dispenser(config: Config) -> Check:
    d = config.rig.dispenser
    pad_pins = {p.pin for p in config.rig.pads}
    if not d.enabled:
        return Check("dispenser", None, "disabled (rig.dispenser.enabled: false)", "enable it to reward the pet")
    if d.pin in pad_pins:
        return Check("dispenser", False, f"pin {d.pin} is also a pad's pin", "give the dispenser its own BCM pin")
    return Check("dispenser", True, f"BCM {d.pin}, {d.pulse_ms:g} ms pulse; caps: ≥{d.min_interval_s:g} s apart, "
                 f"≤{d.max_per_minute}/min, ≤{d.max_per_session}/session")


def check_keys(config: Config, node: str) -> Check:
    """CurveZMQ: is it on here, and does this side hold what it needs? Says which side is wrong."""
    import zmq.utils.z85

    from bridge.security import curve_wanted, keys_dir, load_keys

    b = config.bridge
    server = node == "brain"
    if not curve_wanted(b, server):
        return Check("keys", None, "CurveZMQ off (loopback)", "on by itself when the brain listens beyond loopback")
    name = config.brain.node_id if server else config.rig.node_id
    try:
        public, _ = load_keys(keys_dir(b), name)
    except NeurojamError as exc:
        return Check("keys", False, f"this {node} has no keys: {exc}", f"neurojam keys init --node {name}")
    listed = b.allowed_keys if server else [b.brain_public_key]
    bad = [k for k in listed if len(k.strip()) != 40 or _not_z85(k.strip(), zmq.utils.z85)]
    if server and not b.allowed_keys:
        return Check("keys", False, "the brain allows no rig (bridge.allowed_keys is empty)",
                     "add each rig's public key (printed by `neurojam keys init` on the rig) to bridge.allowed_keys")
    if not server and not b.brain_public_key:
        return Check("keys", False, "the rig does not know the brain's key (bridge.brain_public_key is empty)",
                     "paste the brain's public key, printed by `neurojam keys init --node brain` on the brain")
    if bad:
        return Check("keys", False, f"not a CurveZMQ public key: {bad[0][:44]!r}",
                     "keys are 40 characters of Z85; copy them again from `neurojam keys init`")
    return Check("keys", True, f"CurveZMQ on; this {node} is {name} ({public.decode()}); "
                 + (f"{len(b.allowed_keys)} rig key(s) allowed" if server else "the brain's key is pinned"),
                 "" if server else "if the brain does not answer, its bridge.allowed_keys must list this rig's key")


def _not_z85(key: str, z85) -> bool:
    try:
        z85.decode(key)
        return False
    except Exception:
        return True


def check_brain_reachable(config: Config, timeout: float = 2.0) -> Check:
    from bridge.link import Link
    from bridge.messages import Ping, Pong
    from bridge.security import TOOL_KEY, curve_wanted, security_for

    b = config.bridge
    try:
        security = security_for(b, TOOL_KEY, server=False)
    except NeurojamError as exc:
        return Check("brain reachable", False, str(exc), f"neurojam keys init --node {TOOL_KEY}, and allow its key "
                     f"on the brain")
    link = Link("tool", f"doctor-{os.getpid()}-{secrets.token_hex(3)}", host=b.host, events_port=b.events_port, commands_port=b.commands_port,
                security=security)
    try:
        deadline = time.monotonic() + timeout
        last_ping = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - last_ping > 0.1:
                link.send(Ping())
                last_ping = time.monotonic()
            for m in link.receive(timeout_ms=20):
                if isinstance(m, Pong) and m.node != link.node_id and link.offset.ready:
                    sample = link.offset.best()  # the link timed the pong as it arrived
                    return Check("brain reachable", True, f"{b.host}:{b.events_port} answers; RTT "
                                 f"{sample.rtt * 1000:.2f} ms, clock offset {sample.offset * 1000:+.1f} ms")
    finally:
        link.close()
    if curve_wanted(b, False):
        return Check("brain reachable", False, f"nothing answered at {b.host}:{b.events_port}/{b.commands_port} "
                     f"with CurveZMQ on", "either the brain is not running there, or it refused this key: its "
                     "bridge.allowed_keys must list this machine's 'tool' public key, and bridge.brain_public_key "
                     "here must be the brain's")
    return Check("brain reachable", False, f"nothing answered at {b.host}:{b.events_port}/{b.commands_port}",
                 "start `neurojam brain` there, check bridge.host and the firewall (the rig still plays alone)")


def check_model(config: Config) -> Check:
    start = time.perf_counter()
    try:
        from brain.models import load_model

        model = load_model(config.brain.model, "cpu")
    except ModuleNotFoundError as exc:  # the brain's packages load lazily: torch only when a model loads
        return Check("model", None if exc.name in ("torch", "transformer_lens") else False,
                     f"brain packages missing ({exc.name}): fine on a rig-only machine",
                     "pip install 'neurojam[brain]' where the brain runs")
    except NeurojamError as exc:
        return Check("model", False, str(exc), "fix brain.model")
    return Check("model", True, f"{model.name}: {model.n_layers}×{model.d_mlp} neurons, loaded in "
                 f"{time.perf_counter() - start:.2f} s")


def check_cuda() -> Check:
    try:
        import torch
    except ImportError:
        return Check("CUDA", None, "torch not installed (rig-only machine?)", "pip install 'neurojam[brain]'")
    if torch.cuda.is_available():
        return Check("CUDA", True, torch.cuda.get_device_name(0))
    return Check("CUDA", None, "no CUDA GPU visible; the brain runs on the CPU",
                 "fine for the default model; for big models install a CUDA torch and the NVIDIA driver")


def check_sync(config: Config, listen_s: float = 1.5) -> list[Check]:
    """Each configured sync target: Link (the binding, and peers seen), the clock-out port, the OSC targets."""
    import socket

    out = []
    sync = config.rig.sync
    if sync.source == "link":
        try:
            from rig.link_sync import link_module

            link = link_module().Link(config.rig.tempo_bpm)
            link.enabled = True
            import time

            time.sleep(listen_s)
            peers = link.numPeers()
            link.enabled = False
            out.append(Check("Ableton Link", True if peers else None, f"{peers} Link peer(s) seen in {listen_s:g} s",
                             "start Link in Live (or another Link app) on this network; a rig alone keeps time"))
        except Exception as exc:  # the binding missing, or no network for its multicast
            out.append(Check("Ableton Link", False, str(exc), "pip install 'neurojam[sync]'"))
    if sync.clock_out and sync.clock_out != "virtual":
        try:
            from rig.midi_io import find_port, list_ports

            find_port(sync.clock_out, list_ports(config.rig.midi.backend)[1], "output")
            out.append(Check("MIDI clock out", True, f"port {sync.clock_out!r} found"))
        except Exception as exc:
            out.append(Check("MIDI clock out", False, str(exc), "fix rig.sync.clock_out, or use 'virtual'"))
    elif sync.clock_out:
        out.append(Check("MIDI clock out", True, f"a virtual port {sync.clock_out_virtual!r} (connect your gear to it)"))
    for target in config.osc.targets:
        host, _, port = target.rpartition(":")
        try:
            socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_DGRAM)
            out.append(Check("OSC target", True, f"{target} resolves"))
        except OSError as exc:
            out.append(Check("OSC target", False, f"{target}: {exc}", "fix the host name in osc.targets"))
    return out


def run_checks(node: str, profile: str | None, overrides: list[str]) -> list[Check]:
    first, config = check_config(profile, overrides)
    checks = [first]
    if config is None:
        return checks
    if node in ("rig", "both"):
        checks += [check_gpio(config), check_midi(config), check_dispenser(config), check_keys(config, "rig"),
                   check_brain_reachable(config), *check_sync(config)]
    if node in ("brain", "both"):
        checks += [check_keys(config, "brain"), check_model(config), check_cuda()]
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    with console.status("checking this machine (config, GPIO, MIDI, network, the model) …"):
        checks = run_checks(args.node, args.config, args.overrides)
    table = Table(title=f"neurojam doctor ({args.node})")
    for col in ("", "check", "result", "fix"):
        table.add_column(col)
    for c in checks:
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[yellow]![/yellow]"}[c.ok]
        table.add_row(mark, escape(c.name), escape(c.detail), escape(c.fix) if c.ok is not True else "")
    console.print(table)
    return 1 if any(c.ok is False for c in checks) else 0


def register(sub, add) -> None:
    p = add("doctor", cmd_doctor, "check this machine's set-up (config, GPIO, MIDI, dispenser, network, model, CUDA)")
    config_args(p)
    p.add_argument("--node", choices=("rig", "brain", "both"), default="both", help="which machine's checks to run "
                   "(default both)")
