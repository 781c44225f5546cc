"""A session as a Standard MIDI File: one track per source, treat markers (audio: :mod:`recording.fluidsynth`)."""

from __future__ import annotations

from pathlib import Path

import mido

from core.errors import DeviceError
from recording.jam import Jam

TICKS_PER_BEAT = 480
TRACKS = ("pet", "human", "brain", "marker", "metronome")
PROGRAMS = {"human": 0, "brain": 11}  # piano, vibraphone


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


def load_midi(path: str | Path) -> mido.MidiFile:
    try:
        return mido.MidiFile(str(path))
    except FileNotFoundError as exc:
        raise DeviceError(f"{path}: MIDI file not found.") from exc
    except Exception as exc:
        raise DeviceError(f"{path}: not a readable Standard MIDI File ({exc}).") from exc
