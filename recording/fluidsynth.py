"""FluidSynth, the one synth neurojam drives: rendering a session to WAV, and a live synth for the lab.

The soundfont search lives here, beside the processes that use it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from core.errors import DeviceError

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/soundfonts/default.sf2")


def find_soundfont() -> str | None:
    return next((p for p in SOUNDFONTS if Path(p).exists()), None)


def render_wav(midi_path: str | Path, wav_path: str | Path, soundfont: str | None = None,
               sample_rate: int = 44100) -> Path:
    """Render a MIDI file to WAV with FluidSynth and a General MIDI soundfont."""
    exe = shutil.which("fluidsynth")
    soundfont = soundfont or find_soundfont()
    if exe is None or soundfont is None:
        missing = " and ".join(x for x, ok in (("fluidsynth", exe), ("a General MIDI soundfont", soundfont)) if not ok)
        raise DeviceError(f"cannot render audio: {missing} not found. Install them with "
                          f"`sudo apt-get install fluidsynth fluid-soundfont-gm` (Debian/Ubuntu/Raspberry Pi OS) "
                          f"or `brew install fluid-synth` plus a GM .sf2 (macOS); the .mid was written anyway.")
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "-ni", "-q", "-g", "0.7", "-r", str(sample_rate), "-F", str(wav_path), "-T", "wav", soundfont,
           str(midi_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not wav_path.exists():
        raise DeviceError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return wav_path


SYNTH_NAME = "neurojam-synth"


class FluidSynthProcess:
    """FluidSynth as a MIDI synth (ALSA sequencer or JACK), until stopped."""

    def __init__(self, midi_backend: str, audio_driver: str | None = None) -> None:
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

    def wait_port(self, list_outputs: Callable[[], list[str]], timeout: float = 10.0) -> str:
        """Wait for the synth's MIDI port among ``list_outputs()`` (the rig's port listing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeviceError(f"FluidSynth exited: {self.proc.stderr.read().decode()[-400:]}")
            outputs = list_outputs()
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
