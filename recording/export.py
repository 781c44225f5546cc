"""A session as a Standard MIDI File: one track per source, treat markers (audio: :mod:`recording.fluidsynth`)."""

from __future__ import annotations

from pathlib import Path

import mido

from core.errors import DeviceError
from recording.jam import Jam

TICKS_PER_BEAT = 480
DRUMS = 9
"""General MIDI's drum channel (10, counted from 1): the pet's track plays there."""
PROGRAMS = {"human": 0, "marker": 115}  # acoustic grand piano; woodblock
VOICE_PROGRAMS = (11, 4, 48, 73, 80, 12, 19, 56)
"""A distinct General MIDI program per brain voice (channel), in the order the channels appear: vibraphone,
electric piano, strings, flute, square lead, marimba, organ, trumpet; so each neuron layer is its own timbre."""


def jam_to_midi(jam: Jam) -> mido.MidiFile:
    """A conductor track (tempo, metre, treat markers), then one track per source: the pet on the drum channel,
    the human, each brain voice (one per channel: a layer of neurons, or the prediction) with its own program,
    the marker, the metronome."""
    tempo_bpm = jam.beats[0].tempo_bpm if jam.beats else 120.0
    tempo = mido.bpm2tempo(tempo_bpm)
    t0 = jam.beats[0].time if jam.beats else jam.start
    t0 = min([t0, jam.start] + [n.start for n in jam.notes])

    def tick(t: float) -> int:
        return max(0, int(round(mido.second2tick(t - t0, TICKS_PER_BEAT, tempo))))

    def notes_of(notes, channel: int | None = None) -> list[tuple[int, object]]:
        events: list[tuple[int, object]] = []
        for n in notes:
            ch = n.channel if channel is None else channel
            on, off = tick(n.start), max(tick(n.start) + 1, tick(n.end))
            events.append((on, mido.Message("note_on", channel=ch, note=n.note, velocity=max(1, n.velocity))))
            events.append((off, mido.Message("note_off", channel=ch, note=n.note, velocity=0)))
        return events

    def program(channel: int, number: int) -> tuple[int, object]:
        return 0, mido.Message("program_change", channel=channel, program=number)

    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = [(0, mido.MetaMessage("set_tempo", tempo=tempo)),
                 (0, mido.MetaMessage("time_signature", numerator=jam.beats[0].beats_per_bar if jam.beats else 4,
                                      denominator=4))]
    for treat in jam.treats:
        label = f"treat {treat.action}" + (f" ({treat.reason})" if treat.reason else "") + f" [{treat.source}]"
        conductor.append((tick(treat.time), mido.MetaMessage("marker", text=label)))
    mid.tracks.append(_track("neurojam", conductor))
    by_source = {source: [n for n in jam.notes if n.source == source] for source in ("pet", "human", "brain", "marker")}
    mid.tracks.append(_track("pet", notes_of(by_source["pet"], channel=DRUMS)))
    for source in ("human", "marker"):
        channels = sorted({n.channel for n in by_source[source]})
        mid.tracks.append(_track(source, [program(ch, PROGRAMS[source]) for ch in channels if ch != DRUMS]
                                 + notes_of(by_source[source])))
    roles = voice_roles(jam)
    for k, ch in enumerate(sorted({n.channel for n in by_source["brain"]})):
        voice = [n for n in by_source["brain"] if n.channel == ch]
        head = [] if ch == DRUMS else [program(ch, VOICE_PROGRAMS[k % len(VOICE_PROGRAMS)])]
        mid.tracks.append(_track(f"brain: {roles.get(ch, 'a voice')} (channel {ch + 1})", head + notes_of(voice)))
    clicks = []
    for b in jam.beats:
        note = 77 if b.beat == 0 else 76
        clicks.append((tick(b.time), mido.Message("note_on", channel=DRUMS, note=note, velocity=50)))
        clicks.append((tick(b.time + 0.05), mido.Message("note_off", channel=DRUMS, note=note, velocity=0)))
    mid.tracks.append(_track("metronome", clicks))
    return mid


def voice_roles(jam) -> dict[int, str]:
    """What plays on each brain channel, from the notes the brain asked for: "the model's prediction", or "layer L"
    (its units' layer) with the units heard most there."""
    from collections import Counter, defaultdict

    units: dict[int, Counter] = defaultdict(Counter)
    for a in jam.accomps:
        for n in a.notes:
            units[n.channel].update(n.neurons)
    roles = {}
    for ch, heard in units.items():
        if heard.get("prediction", 0) >= sum(heard.values()) / 2:
            roles[ch] = "the model's prediction"
            continue
        ids = [u for u, _ in heard.most_common() if "." in u]
        layers = Counter(u.split(".")[0] for u in ids)
        top = ", ".join(ids[:3]) + (" ..." if len(ids) > 3 else "")  # MIDI track names are Latin-1
        roles[ch] = f"layer {layers.most_common(1)[0][0]} units {top}" if layers else "a voice"
    return roles


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
