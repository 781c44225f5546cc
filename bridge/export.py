"""Sessions out: a Standard MIDI File (one track per source, treat markers) and audio through FluidSynth."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mido

from bridge.jam import Jam
from neurojam.errors import DeviceError

TICKS_PER_BEAT = 480
TRACKS = ("pet", "human", "brain", "metronome")
PROGRAMS = {"human": 0, "brain": 11}  # piano, vibraphone
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/soundfonts/default.sf2")


def jam_to_midi(jam: Jam) -> mido.MidiFile:
    """One track per source plus a conductor track with tempo and treat markers."""
    tempo_bpm = jam.beats[0].tempo_bpm if jam.beats else 120.0
    tempo = mido.bpm2tempo(tempo_bpm)
    t0 = jam.beats[0].time if jam.beats else jam.start
    t0 = min([t0, jam.start] + [n.start for n in jam.notes])

    def tick(t: float) -> int:
        return max(0, int(round(mido.second2tick(t - t0, TICKS_PER_BEAT, tempo))))

    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = [(0, mido.MetaMessage("set_tempo", tempo=tempo)),
                 (0, mido.MetaMessage("time_signature", numerator=jam.beats[0].beats_per_bar if jam.beats else 4,
                                      denominator=4))]
    for treat in jam.treats:
        label = f"treat {treat.action}" + (f" ({treat.reason})" if treat.reason else "") + f" [{treat.source}]"
        conductor.append((tick(treat.time), mido.MetaMessage("marker", text=label)))
    mid.tracks.append(_track("neurojam", conductor))
    for source in TRACKS:
        events: list[tuple[int, object]] = []
        if source in PROGRAMS:
            for ch in sorted({n.channel for n in jam.notes if n.source == source}):
                events.append((0, mido.Message("program_change", channel=ch, program=PROGRAMS[source])))
        if source == "metronome":
            for b in jam.beats:
                note = 77 if b.beat == 0 else 76
                events.append((tick(b.time), mido.Message("note_on", channel=9, note=note, velocity=50)))
                events.append((tick(b.time + 0.05), mido.Message("note_off", channel=9, note=note, velocity=0)))
        else:
            for n in jam.notes:
                if n.source != source:
                    continue
                on = tick(n.start)
                off = max(on + 1, tick(n.end))
                events.append((on, mido.Message("note_on", channel=n.channel, note=n.note, velocity=max(1, n.velocity))))
                events.append((off, mido.Message("note_off", channel=n.channel, note=n.note, velocity=0)))
        mid.tracks.append(_track(source, events))
    return mid


def _track(name: str, events: list[tuple[int, object]]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    # note-offs before note-ons at the same tick, so a retrigger is not cut
    order = {"note_off": 0, "note_on": 1}
    now = 0
    for t, msg in sorted(events, key=lambda e: (e[0], order.get(getattr(e[1], "type", ""), -1))):
        track.append(msg.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def write_midi(jam: Jam, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    jam_to_midi(jam).save(str(path))
    return path


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
