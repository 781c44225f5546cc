"""`neurojam lab` on a JACK server: FluidSynth started as the synth, both nodes run, all stopped after."""

import subprocess
import sys

from neurojam.config import load_config
from rig.keys import KeyboardPads
from rig.midi_io import RecordingOutput
from rig.node import RigNode
from tests.conftest import ROOT


def test_lab_runs_with_fluidsynth_as_the_synth(jack_server, tmp_path, ports):
    r = subprocess.run([sys.executable, "-m", "neurojam.cli", "lab", "--seconds", "4",
                        "--set", "rig.midi.backend=mido.backends.rtmidi/UNIX_JACK", "--set", f"session.dir={tmp_path}",
                        "--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FluidSynth is the synth" in r.stdout and "listening on" in r.stdout and "rig: stopped" in r.stdout
    assert len([p for p in tmp_path.iterdir() if (p / "events.njlog").exists()]) == 1  # the rig's session
    assert subprocess.run(["pgrep", "-f", "neurojam-synth"], capture_output=True).returncode == 1  # synth stopped


def test_number_keys_press_pads(tmp_path, ports):
    cfg = load_config(None, [f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}",
                             f"session.dir={tmp_path}"])
    node = RigNode(cfg, output=RecordingOutput())
    node.beats.start()
    keys = KeyboardPads(node.pads, node.timeline, request_treat=lambda: None, stop=node.stop_event.set)  # stdin is not a terminal here: no reader thread, press() still works
    keys.press("2")
    keys.press("9")  # no such pad: ignored
    assert node.counts["pad_presses"] == 1 and node.pads[1].presses == 1
    keys.close()
    node.close()


def test_a_failed_keyboard_probe_is_logged_with_its_cause(caplog):
    from neurojam.cli.lab import find_keyboard

    with caplog.at_level("WARNING"):
        assert find_keyboard("mido.backends.no_such_backend") is None
    assert "cannot list MIDI inputs" in caplog.text and "no_such_backend" in caplog.text
