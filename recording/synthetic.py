"""Sessions written from a melody, as a rig would have recorded them: for benchmarks, tests and demos of scoring.

The rig's side only (beats, the human's notes, the pet's drum pads); replay
them through a brain (``neurojam replay`` / :func:`brain.live.replay.replay`) to
hear and score the accompaniment. Players stop ``rest_bars`` before the end,
so silence after stopping can be measured.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from pathlib import Path

from bridge.messages import Beat, Note, Pad, encode
from recording.log import SessionRecorder


def write_melody_session(path: str | Path, melody: list[tuple[float, float, int]], *, tempo_bpm: float = 112.0,
                         beats_per_bar: int = 4, transpose: int = 0, pet_every_beats: float = 0.0,
                         rest_bars: int = 2, seed: int = 0, node: str = "rig", pet_beats: float = 0.0) -> Path:
    """``melody``: (start beat, length in beats, MIDI note) for the human; the pet presses the kick or snare pad
    about every ``pet_every_beats`` beats (0: no pet) while the melody lasts, or for ``pet_beats`` beats.
    Returns the session directory."""
    rng = random.Random(seed)
    period, t0 = 60.0 / tempo_bpm, 1000.0
    end_beat = max([s + d for s, d, _ in melody] + [pet_beats])
    n_beats = (int(end_beat // beats_per_bar) + 1 + rest_bars) * beats_per_bar
    events: list = []
    for b in range(n_beats):
        events.append(Beat(index=b, bar=b // beats_per_bar, beat=b % beats_per_bar, beats_per_bar=beats_per_bar,
                           tempo_bpm=tempo_bpm, time=t0 + b * period, t=t0 + b * period))
    for start, length, note in melody:
        n = note + transpose
        if 0 <= n <= 127:
            events.append(Note(source="human", note=n, velocity=90, on=True, channel=0, t=t0 + start * period))
            events.append(Note(source="human", note=n, velocity=0, on=False, channel=0,
                               t=t0 + (start + 0.9 * length) * period))
    if pet_every_beats > 0:
        b = 0.0
        while b < end_beat:
            pad, note = rng.choice([(0, 36), (1, 38)])
            t = t0 + b * period + rng.gauss(0, 0.03)
            events += [Pad(pad=pad, down=True, t=t), Note(source="pet", note=note, velocity=110, channel=9, t=t),
                       Note(source="pet", note=note, velocity=0, on=False, channel=9, t=t + 0.25)]
            b += pet_every_beats * rng.uniform(0.5, 1.5)
    events.sort(key=lambda m: m.t)
    recorder = SessionRecorder(path, {"node": "rig", "synthetic": True, "tempo_bpm": tempo_bpm,
                                      "transpose": transpose})
    for seq, m in enumerate(events):
        m.node, m.seq = node, seq
        recorder.record("out", encode(m), m.t)
    recorder.close()
    return Path(path)


def melody_from_midi(path: str | Path, tempo_bpm: float = 112.0) -> list[tuple[float, float, int]]:
    """A MIDI file's notes as (start beat, length in beats, note) at ``tempo_bpm``."""
    from recording.export import load_midi

    beat_s = 60.0 / tempo_bpm
    t, starts, out = 0.0, {}, []
    for msg in load_midi(path):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            starts[msg.note] = t
        elif msg.type in ("note_on", "note_off") and msg.note in starts:
            s = starts.pop(msg.note)
            out.append((s / beat_s, max(0.1, (t - s) / beat_s), msg.note))
    return sorted(out)


def played_by_rigs(messages: list, rigs: Sequence[str]) -> list:
    """The same recorded messages as if each rig played them at once (interleaved), rig k's notes k semitones up,
    so the rigs' contexts differ: a many-rig jam for the brain's tests and benches."""
    out = []
    for m in messages:
        for k, rig in enumerate(rigs):
            c = copy.copy(m)
            c.node = rig
            if hasattr(c, "note") and k:
                c.note += k
            out.append(c)
    return out
