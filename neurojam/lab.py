"""``neurojam lab``: the two nodes on one laptop with real devices.

The brain runs in the background; the rig runs in this terminal with the
computer keys 1-4 as pads (t = treat, q = quit). A MIDI keyboard is used when
one is plugged in (or named in ``rig.midi.input``). With no synth configured,
FluidSynth with a General MIDI soundfont is started as the synth, connected,
and stopped with the lab.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time

from neurojam.errors import DeviceError

SYNTH_NAME = "neurojam-synth"
NOT_KEYBOARDS = ("through", "fluid", SYNTH_NAME, "neurojam", "rtmidi")


class FluidSynthProcess:
    """FluidSynth as a MIDI synth (ALSA sequencer or JACK), until stopped."""

    def __init__(self, midi_backend: str, audio_driver: str | None = None) -> None:
        from bridge.export import find_soundfont

        exe, soundfont = shutil.which("fluidsynth"), find_soundfont()
        if not exe or not soundfont:
            raise DeviceError("no synth: neither rig.midi.output is set nor FluidSynth with a GM soundfont installed "
                              "(`sudo apt-get install fluidsynth fluid-soundfont-gm`).")
        jack = "JACK" in midi_backend
        cmd = [exe, "-is", "-m", "jack" if jack else "alsa_seq", "-o", f"midi.jack.id={SYNTH_NAME}",
               "-o", f"midi.alsa_seq.id={SYNTH_NAME}", "-o", f"audio.jack.id={SYNTH_NAME}"]
        if audio_driver or jack:
            cmd += ["-a", audio_driver or "jack"]
        if jack:
            cmd += ["-j"]  # connect its audio to the system outputs
        self.proc = subprocess.Popen(cmd + [soundfont], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.midi_backend = midi_backend

    def wait_port(self, timeout: float = 10.0) -> str:
        from rig.midi_io import list_ports

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeviceError(f"FluidSynth exited: {self.proc.stderr.read().decode()[-400:]}")
            _, outputs = list_ports(self.midi_backend)
            found = [p for p in outputs if SYNTH_NAME in p]
            if found:
                return SYNTH_NAME
            time.sleep(0.2)
        raise DeviceError("FluidSynth started but its MIDI port did not appear; is a MIDI system (ALSA sequencer or "
                          "JACK) running?")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def find_keyboard(midi_backend: str) -> str | None:
    from rig.midi_io import list_ports

    try:
        inputs, _ = list_ports(midi_backend)
    except Exception:
        return None
    keyboards = [p for p in inputs if not any(x in p.lower() for x in NOT_KEYBOARDS)]
    return keyboards[0] if keyboards else None


def run_lab(profile: str | None, overrides: list[str], model: str | None, seconds: float | None,
            audio_driver: str | None) -> int:
    from neurojam.config import load_config
    from neurojam.demo import stop_process

    config = load_config(profile or "lab", overrides)
    sets = list(overrides)
    synth = None
    if config.rig.midi.output is None:
        synth = FluidSynthProcess(config.rig.midi.backend, audio_driver)
        sets.append(f"rig.midi.output={synth.wait_port()}")
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
    brain = subprocess.Popen(brain_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = brain.stdout.readline()
            if not line and brain.poll() is not None:
                raise DeviceError(f"the brain did not start (exit {brain.returncode})")
        print(line.strip(), flush=True)
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
        if synth:
            synth.stop()


def cmd_lab(args: argparse.Namespace) -> int:
    return run_lab(args.config, args.overrides, args.model, args.seconds, args.audio)


def register(sub, add, config_args) -> None:
    p = add("lab", cmd_lab, "both nodes on this laptop with real devices: keys 1-4 as pads, your MIDI keyboard, "
            "FluidSynth as the synth")
    config_args(p)
    p.add_argument("--model", default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--audio", default=None, help="FluidSynth audio driver (pulseaudio, alsa, jack, coreaudio...)")
