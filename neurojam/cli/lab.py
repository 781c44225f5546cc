"""``neurojam lab``: the two nodes on one laptop with real devices.

The brain runs in the background; the rig runs in this terminal with the
computer keys 1-4 as pads (t = treat, q = quit). A MIDI keyboard is used when
one is plugged in (or named in ``rig.midi.input``). With no synth configured,
FluidSynth with a General MIDI soundfont is started as the synth, connected,
and stopped with the lab.
"""

from __future__ import annotations

import argparse
import os
import logging
import signal
import subprocess
import sys
from pathlib import Path

from core.errors import DeviceError
from neurojam.cli.args import config_args, positive_seconds
from recording.fluidsynth import SYNTH_NAME, FluidSynthProcess

log = logging.getLogger("neurojam.cli.lab")
NOT_KEYBOARDS = ("through", "fluid", SYNTH_NAME, "neurojam", "rtmidi")

def find_keyboard(midi_backend: str) -> str | None:
    """The first MIDI input that is not a synth or a virtual port; None (with the reason logged) if none."""
    from rig.midi_io import list_ports

    try:
        inputs, _ = list_ports(midi_backend)
    except DeviceError as exc:
        log.warning("lab: cannot list MIDI inputs, so no keyboard is used: %s", exc)
        return None
    keyboards = [p for p in inputs if not any(x in p.lower() for x in NOT_KEYBOARDS)]
    return keyboards[0] if keyboards else None


def run_lab(profile: str | None, overrides: list[str], model: str | None, seconds: float | None,
            audio_driver: str | None, stage: bool = False) -> int:
    from rich.console import Console

    from bridge.link import brain_ready
    from bridge.security import security_for
    from neurojam.cli.demo import open_stage
    from neurojam.config import load_config
    from neurojam.processes import stop_process
    from neurojam.runtime import Running
    from rig.midi_io import list_ports

    overrides = ["rig.sim_pet.enabled=false", *overrides]  # your keys 1-4 are the pads (--set turns the sim back on)
    config = load_config(profile or "lab", overrides)
    sets = list(overrides)
    synth = None
    if config.rig.midi.output is None:
        synth = FluidSynthProcess(config.rig.midi.backend, audio_driver)
        sets.append(f"rig.midi.output={synth.wait_port(lambda: list_ports(config.rig.midi.backend)[1])}")
        print(f"lab: FluidSynth is the synth ({SYNTH_NAME})", flush=True)
    if config.rig.midi.input is None:
        keyboard = find_keyboard(config.rig.midi.backend)
        if keyboard:
            sets.append(f"rig.midi.input={keyboard}")
            sets.append("rig.midi.echo_human=true")
            print(f"lab: MIDI keyboard {keyboard!r}", flush=True)
    base = [sys.executable, "-m", "neurojam.cli"]
    set_args = [x for s in sets for x in ("--set", s)]
    brain_cmd = base + ["brain", "--config", profile or "lab", *set_args] + (["--model", model] if model else [])
    brain = subprocess.Popen(brain_cmd)  # its lines on this terminal
    stage_proc, here = None, None
    try:
        b = config.bridge
        if not brain_ready(b.host, b.events_port, b.commands_port, 120, stop=lambda: brain.poll() is not None,
                           security=security_for(b, "lab-probe", server=False)):
            raise DeviceError(f"the brain did not start (exit {brain.poll()})")
        url = ""
        if stage:
            stage_proc, url = open_stage(b.events_port, config.stage.port, ["--config", profile or "lab", *set_args],
                                         Path("stage.log"), Console())
        here = Running(pid=os.getpid(), kind="lab", events_port=b.events_port, commands_port=b.commands_port,
                       stage_url=url)
        here.write()  # `neurojam steer` and `stage` find this lab without flags
        rig_cmd = base + ["rig", "--config", profile or "lab", *set_args, "--keys"]
        if seconds:
            rig_cmd += ["--seconds", str(seconds)]
        rig = subprocess.Popen(rig_cmd)  # this terminal: keys 1-4 are pads
        try:
            return rig.wait()
        except KeyboardInterrupt:
            rig.send_signal(signal.SIGINT)
            return rig.wait(timeout=15)
    finally:
        stop_process(brain)
        if stage_proc is not None:
            stop_process(stage_proc)
        if here is not None:
            here.remove()
        if synth:
            synth.stop()


def cmd_lab(args: argparse.Namespace) -> int:
    return run_lab(args.config, args.overrides, args.model, args.seconds, args.audio, stage=args.stage)


def register(sub, add) -> None:
    p = add("lab", cmd_lab, "both nodes on this laptop with real devices: keys 1-4 as pads, your MIDI keyboard, "
            "FluidSynth as the synth")
    config_args(p)
    p.add_argument("--model", default=None, help="model name (default: brain.model from the config)")
    p.add_argument("--seconds", type=positive_seconds, default=None, help="stop after N seconds (default: run until "
                   "Ctrl-C)")
    p.add_argument("--audio", default=None, help="FluidSynth audio driver (pulseaudio, alsa, jack, coreaudio...)")
    p.add_argument("--stage", action="store_true", help="also serve the live web page (neurojam stage) and open it")
