"""How the accompaniment sounds, from a recorded session alone, beside baselines on the same session.

``neurojam score SESSION`` and ``bench/music.py`` print these figures:

- **key fit**: share of brain notes in the human's key. The key is found from
  the human part by music21's Krumhansl–Schmuckler analysis over a 4-bar
  window ending at each bar (an independent method: the sonifier tracks keys
  with its own code).
- **harmony** (note-in-chord ratio, as ReaLchords reports it): share of brain
  notes that are tones of the chord of their beat, the chord being the
  diatonic triad covering most of what the human sounds in that beat; and
  semitone clashes with a sounding human note, per minute.
- **response**: Spearman ρ between per-beat neuron activity (the sum of the
  normalized activations at or above the gate) and the neuron voices the brain played
  in the beat (struck, or held on by a tie; the prediction voice left out), over the beats while someone
  plays; and how many beats the brain kept
  playing after the human and the pet stopped.
- **faithfulness** (true by construction of the sonifier: read them beside ``--controls``): share of neurons that
  keep their place (one channel, and ≥ 90 % of their notes within a tritone of their median pitch); ρ between a
  note's velocity and its neurons' activation.
- **hygiene**: restrikes of a still-sounding note, double onsets (one note struck twice at once on one channel),
  notes under 20 ms (a tie that started a note its end cut off at once, before the fix),
  stuck notes, notes off the grid.
- **prediction**: how often the prediction voice named the human's next note.

Baselines, on the brain's own onset slots: random notes of the key;
the brain's own pitches shuffled in time; and the chord tones of the human's
previous beat (an oracle that knows the human's last beat: the ceiling).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Protocol

from bridge.messages import Beat
from recording import Session
from recording.arrangement import crowds
from recording.harmony import Key, beat_chord
from recording.jam import PlayedNote

BASELINE_DRAWS = 20
STABLE_SHARE = 0.9
SHORT_NOTE_S = 0.02


@dataclass
class Score:
    brain_notes: int
    human_notes: int
    minutes: float
    key_fit: float | None = None
    harmony: float | None = None
    clashes_per_min: float | None = None
    clashes_asked_per_min: float | None = None
    crowded: float | None = None
    """Share of the brain's notes sounding with a human or pet note a step or less away (a unison included): lost
    in it, one voice to the ear."""
    crowded_asked: float | None = None
    """A replay's: the brain's own choice, before the rig's arranger (a live session records what the rig played)."""
    response_rho: float | None = None
    beats_after_stop: float | None = None
    stable_voices: float | None = None
    velocity_rho: float | None = None
    restrikes: int = 0
    double_onsets: int = 0
    stuck: int = 0
    off_grid: int = 0
    short_notes: int = 0
    """Brain notes shorter than :data:`SHORT_NOTE_S`: a click, not a note."""
    prediction_hits: float | None = None
    baselines: dict = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What could not be measured, and why."""

    def as_dict(self) -> dict:
        return asdict(self)


def find_key(notes: list[int]) -> Key | None:
    """music21's Krumhansl–Schmuckler key of these MIDI notes (equal weights)."""
    if len(notes) < 4:
        return None
    from music21 import note as m21note
    from music21 import stream

    s = stream.Stream()
    for n in notes:
        s.append(m21note.Note(midi=n, quarterLength=1))
    k = s.analyze("key")
    return Key(k.tonic.pitchClass, "minor" if k.mode == "minor" else "major")


class _Timeline:
    """The session's human part and grid, with a key per bar."""

    def __init__(self, session: Session, subdivision: int) -> None:
        jam = session.jam
        self.jam, self.subdivision = jam, subdivision
        self.human = [n for n in jam.notes if n.source == "human" and n.channel != 9]
        self.players = sorted(n.start for n in jam.notes if n.source in ("human", "pet"))
        self.bpb = jam.beats[0].beats_per_bar if jam.beats else 4
        self._keys: dict[int, Key | None] = {}

    def beat(self, t: float) -> float | None:
        return self.jam.beat_at(t)

    def keys_heard(self) -> list[str]:
        return sorted({str(k) for k in self._keys.values() if k is not None})

    def key_at(self, t: float) -> Key | None:
        b = self.beat(t)
        if b is None:
            return None
        bar = int(b // self.bpb)
        if bar not in self._keys:
            lo, hi = self.jam.time_of_beat((bar - 3) * self.bpb), self.jam.time_of_beat((bar + 1) * self.bpb)
            self._keys[bar] = find_key([n.note for n in self.human if lo <= n.start < hi])
        return self._keys[bar]

    def sounding_in_beat(self, t: float, offset: int = 0) -> list[int]:
        """Human notes sounding during the beat holding t (offset −1: the beat before)."""
        b = self.beat(t)
        if b is None:
            return []
        lo = self.jam.time_of_beat(int(b // 1) + offset)
        hi = self.jam.time_of_beat(int(b // 1) + offset + 1)
        return [n.note for n in self.human if n.start < hi and n.end > lo]

    def chord_at(self, t: float, offset: int = 0) -> tuple[int, int, int] | None:
        key = self.key_at(t)
        return None if key is None else beat_chord(key, self.sounding_in_beat(t, offset))


class BandSettings(Protocol):
    """What the score needs of the band's settings: ``brain.config.SonifyConfig`` is one (read the session's own
    with ``BrainConfig.of_session(session.meta).sonify``)."""

    gate: float
    subdivision: int
    prediction_channel: int


def score_session(session: Session, band: BandSettings, *, gate: float | None = None, seed: int = 0) -> Score:
    """``gate`` overrides the band's, to ask what the score would be at another threshold."""
    jam = session.jam
    gate = band.gate if gate is None else gate
    tl = _Timeline(session, band.subdivision)
    brain = [n for n in jam.notes if n.source == "brain"]
    out = Score(brain_notes=len(brain), human_notes=len(tl.human), minutes=round(jam.duration / 60, 3))
    if not jam.beats:
        out.notes.append("no beats in this session: nothing can be placed on a grid")
        return out
    if not brain:
        out.notes.append("the brain played nothing in this session")
    if not tl.human:
        out.notes.append("no human part in this session: key fit, harmony and clashes need one")
    else:
        _harmony(out, tl, brain, random.Random(seed))
        if jam.asked is not None and out.clashes_per_min is not None:
            out.clashes_asked_per_min = round(_clashes(jam.asked, tl.human) / max(1e-9, out.minutes), 2)
        if brain:
            out.crowded = round(_crowded(brain, tl.human) / len(brain), 3)
        if jam.asked:
            out.crowded_asked = round(_crowded(jam.asked, tl.human) / len(jam.asked), 3)
    _response(out, tl, jam, brain, gate, band.prediction_channel)
    _faithfulness(out, tl, jam)
    _hygiene(out, tl, jam, brain)
    _prediction(out, tl, session)
    return out


def _harmony(out: Score, tl: _Timeline, brain: list[PlayedNote], rng: random.Random) -> None:
    keyed = [(n, tl.key_at(n.start)) for n in brain]
    keyed = [(n, k) for n, k in keyed if k is not None]
    if keyed:
        out.key_fit = round(sum(n.note % 12 in k.scale for n, k in keyed) / len(keyed), 3)
    out.keys = tl.keys_heard()
    judged = [(n, tl.chord_at(n.start), tl.chord_at(n.start, -1), k) for n, k in keyed]
    judged = [x for x in judged if x[1] is not None]
    if not judged:
        out.notes.append("no brain note fell in a beat where the human played: harmony not measured")
        return
    out.harmony = round(sum(n.note % 12 in chord for n, chord, _, _ in judged) / len(judged), 3)
    minutes = max(1e-9, out.minutes)
    out.clashes_per_min = round(_clashes(brain, tl.human) / minutes, 2)
    pcs = [n.note % 12 for n, *_ in judged]
    rand = shuf = rand_clashes = 0.0
    for _ in range(BASELINE_DRAWS):
        rand += sum(rng.choice(k.scale) in chord for _, chord, _, k in judged) / len(judged)
        randomized = [PlayedNote("brain", n.start, n.end, 12 * (n.note // 12) + rng.choice(k.scale), 0, 0)
                      for n, k in keyed]
        rand_clashes += _clashes(randomized, tl.human) / minutes
        perm = pcs[:]
        rng.shuffle(perm)
        shuf += sum(pc in chord for pc, (_, chord, _, _) in zip(perm, judged)) / len(judged)
    with_prev = [(chord, prev) for _, chord, prev, _ in judged if prev is not None]
    oracle = sum(sum(pc in chord for pc in prev) / 3 for chord, prev in with_prev) / len(with_prev) if with_prev else None
    out.baselines = {"random_in_key": {"key_fit": 1.0, "harmony": round(rand / BASELINE_DRAWS, 3),
                                       "clashes_per_min": round(rand_clashes / BASELINE_DRAWS, 2)},
                     "shuffled_brain": {"harmony": round(shuf / BASELINE_DRAWS, 3)},
                     "oracle_last_beat_chord": {"harmony": None if oracle is None else round(oracle, 3)}}


CLASH_OVERLAP_S = 0.03
"""Two notes must sound together this long to rub: a brain note ended as the human's clashing note starts (the rig's
arranger, ``rig/arranger.py``) overlaps it by the rig's reaction time alone, which no ear hears."""


def _clashes(notes: list[PlayedNote], human: list[PlayedNote]) -> int:
    """Pairs of a note and a sounding human note a semitone apart (or a major seventh, the same rub), sounding
    together at least :data:`CLASH_OVERLAP_S`."""
    return sum(1 for n in notes for h in human if min(h.end, n.end) - max(h.start, n.start) >= CLASH_OVERLAP_S
               and (n.note - h.note) % 12 in (1, 11))


def _crowded(notes: list[PlayedNote], human: list[PlayedNote]) -> int:
    """Notes sounding at least :data:`CLASH_OVERLAP_S` with a human or pet note :data:`CROWD` semitones or fewer
    away."""
    return sum(1 for n in notes if any(min(h.end, n.end) - max(h.start, n.start) >= CLASH_OVERLAP_S
                                       and crowds(n.note, h.note) for h in human))


def _response(out: Score, tl: _Timeline, jam, brain: list[PlayedNote], gate: float, prediction_channel: int) -> None:
    from scipy.stats import spearmanr

    activity: Counter = Counter()
    event_time = _event_times(jam)
    for m in jam.neurons:
        t = event_time.get((m.event_node, m.event_seq))
        b = None if t is None else tl.beat(t)
        if b is not None:
            activity[int(b)] += sum(h.normalized for h in m.hits if h.normalized >= gate)
    onsets: Counter = Counter()  # neuron voices the brain played in each beat: struck, or held on by a tie
    for a in jam.accomps:
        for n in a.notes:
            t = jam.accomp_time(n)
            b = None if t is None or n.channel == prediction_channel else tl.beat(t)
            if b is not None:
                onsets[int(b)] += 1
    first, last = (tl.beat(tl.players[0]), tl.beat(tl.players[-1])) if tl.players else (None, None)
    beats = sorted(b for b in set(activity) | set(onsets)  # while someone plays: silence after is measured below
                   if first is None or first - 1 <= b <= last + 1)
    if len(beats) >= 4 and len({activity[b] for b in beats}) > 1 and len({onsets[b] for b in beats}) > 1:
        out.response_rho = round(float(spearmanr([activity[b] for b in beats], [onsets[b] for b in beats])[0]), 3)
    if tl.players and brain:
        last_played = tl.beat(tl.players[-1])
        last_beat = tl.beat(jam.beats[-1].time)
        if last_played is not None and last_beat is not None and last_beat - last_played >= 2:
            after = [tl.beat(n.start) for n in brain if n.start > tl.players[-1]]
            out.beats_after_stop = round(max(after) - last_played, 2) if after else 0.0
        else:
            out.notes.append("the players never stopped for 2 beats: silence after stopping not measured")


def _event_times(jam) -> dict[tuple[str, int], float]:
    return {(m.node, m.seq): (m.time if isinstance(m, Beat) else m.t) for m in jam.events}


def _faithfulness(out: Score, tl: _Timeline, jam) -> None:
    from scipy.stats import spearmanr

    hits = {(m.event_node, m.event_seq): {f"{h.layer}.{h.index}": h.normalized for h in m.hits} for m in jam.neurons}
    node = _accomp_node(jam)
    voices: dict[str, list[tuple[int, int]]] = defaultdict(list)
    vel, act = [], []
    for a in jam.accomps:
        acts = hits.get((node, a.event_seq), {})
        for n in a.notes:
            if n.neurons == ["prediction"] or n.tie:
                continue
            t = jam.accomp_time(n)
            if t is None:
                continue
            for nid in n.neurons:
                voices[nid].append((n.channel, n.note))
            a_max = max((acts.get(nid, 0.0) for nid in n.neurons), default=0.0)
            if a_max:
                vel.append(n.velocity)
                act.append(a_max)
    if voices:
        out.stable_voices = round(sum(_keeps_its_place(v) for v in voices.values()) / len(voices), 3)
    if len(vel) >= 4 and len(set(vel)) > 1:
        out.velocity_rho = round(float(spearmanr(vel, act)[0]), 3)


def _keeps_its_place(notes: list[tuple[int, int]]) -> bool:
    """One channel, and ≥ :data:`STABLE_SHARE` of the notes within a tritone of the neuron's median pitch."""
    channel = Counter(c for c, _ in notes).most_common(1)[0][0]
    pitches = sorted(p for c, p in notes if c == channel)
    middle = pitches[len(pitches) // 2]
    return sum(abs(p - middle) <= 6 for p in pitches) / len(notes) >= STABLE_SHARE


def _accomp_node(jam) -> str:
    """The rig's node id (the accompaniment answers its events)."""
    return next((m.node for m in jam.events if isinstance(m, Beat)), "")


def _hygiene(out: Score, tl: _Timeline, jam, brain: list[PlayedNote]) -> None:
    out.restrikes = jam.restrikes.get("brain", 0)
    starts = Counter((round(n.start, 3), n.channel, n.note) for n in brain)
    out.double_onsets = sum(c - 1 for c in starts.values() if c > 1)
    out.stuck = sum(1 for n in jam.stuck if n.source == "brain")
    out.short_notes = sum(1 for n in brain if n.end - n.start < SHORT_NOTE_S)
    for n in brain:
        b = tl.beat(n.start)
        if b is not None and abs(b * tl.subdivision - round(b * tl.subdivision)) > 0.05:
            out.off_grid += 1


def _prediction(out: Score, tl: _Timeline, session: Session) -> None:
    jam = session.jam
    times = _event_times(jam)
    human_onsets = sorted((n.start, n.note) for n in tl.human)
    hits = total = repeat_hits = 0
    for a in jam.accomps:
        t = times.get((_accomp_node(jam), a.event_seq))
        for n in a.notes:
            if n.neurons != ["prediction"] or t is None:
                continue
            nxt = next(((s, note) for s, note in human_onsets if s > t + 1e-6), None)
            prev = [note for s, note in human_onsets if s <= t + 1e-6]
            if nxt is None:
                continue
            total += 1
            hits += nxt[1] % 12 == n.note % 12
            repeat_hits += bool(prev) and prev[-1] % 12 == nxt[1] % 12
    if total:
        out.prediction_hits = round(hits / total, 3)
        out.baselines["repeat_last_human_note"] = {"prediction_hits": round(repeat_hits / total, 3)}


SCORE_ROWS = (
    ("key fit (brain notes in the human's key)", "key_fit", "random_in_key", "key_fit", "≥ 95 %"),
    ("harmony (note-in-chord ratio)", "harmony", "random_in_key", "harmony", "random + 15 points"),
    ("  same, the brain's notes shuffled in time", None, "shuffled_brain", "harmony", ""),
    ("  same, chord tones of the human's last beat (ceiling)", None, "oracle_last_beat_chord", "harmony", ""),
    ("semitone clashes with a sounding human note, per minute", "clashes_per_min", "random_in_key", "clashes_per_min",
     "fewer than the baseline"),
    ("  same, the brain's own choice before the rig's arranger (a replay)", "clashes_asked_per_min", None, None, ""),
    ("brain notes crowding a sounding human note (a step or less: one voice to the ear)", "crowded", None, None, ""),
    ("  same, the brain's own choice before the rig's arranger (a replay)", "crowded_asked", None, None, ""),
    ("response: ρ(neuron activity, notes) per beat", "response_rho", None, None, "≥ 0.5"),
    ("beats played after everyone stopped", "beats_after_stop", None, None, "≤ 1"),
    ("neurons with a stable voice", "stable_voices", None, None, "≥ 95 %"),
    ("ρ(velocity, activation)", "velocity_rho", None, None, "≥ 0.8"),
    ("restrikes / double onsets / stuck / off the grid (played late) / under 20 ms", "hygiene", None, None,
     "0 / 0 / 0 / 0 / 0"),
    ("prediction named the human's next note", "prediction_hits", "repeat_last_human_note", "prediction_hits", ""),
)


BASELINE_NAMES = {"random_in_key": "random notes in key", "shuffled_brain": "its notes shuffled in time",
                  "oracle_last_beat_chord": "last beat's chord tones", "repeat_last_human_note": "repeat the human's last note"}
"""What each baseline is, in the words a table cell can hold."""


def score_rows(score) -> list[tuple[str, str, str, str]]:
    """(figure, the brain, baseline (named), target) as text, for the terminal and the report."""
    def fmt(v, key=""):
        if v is None:
            return "–"
        if isinstance(v, float) and key not in ("clashes_per_min", "clashes_asked_per_min", "beats_after_stop") and not key.endswith("rho"):
            return f"{v:.0%}"
        return f"{v:g}" if isinstance(v, float) else str(v)

    d = score.as_dict()
    rows = []
    for label, key, base, base_key, target in SCORE_ROWS:
        if key == "hygiene":
            value = f"{d['restrikes']} / {d['double_onsets']} / {d['stuck']} / {d['off_grid']} / {d['short_notes']}"
        else:
            value = fmt(d[key], key) if key else ""
        baseline = f"{fmt(d['baselines'].get(base, {}).get(base_key), base_key)} ({BASELINE_NAMES[base]})" if base else ""
        rows.append((label, value, baseline, target))
    return rows


def _neuron_slots(session: Session, prediction_channel: int, every_voice: bool = False) -> dict[float, set[int]]:
    """Pitch classes the neuron voices asked for on each slot (by beat), struck or tied; the prediction voice apart
    (``every_voice``: with it, all the brain played: what the ear hears)."""
    slots: dict[float, set[int]] = defaultdict(set)
    for a in session.jam.accomps:
        for n in a.notes:
            if every_voice or (n.neurons != ["prediction"] and n.channel != prediction_channel):
                slots[round(n.due_beat, 3)].add(n.note % 12)
    return slots


def band_distance(reference: Session, other: Session, prediction_channel: int) -> dict:
    """How far ``other``'s neuron voices land from ``reference``'s, replays of the same events:

    - ``slot_jaccard``: per slot where either plays, |shared pitch classes| / |pitch classes of either|, averaged;
    - ``pitch_class_distance``: total variation between the two pitch-class mixes (0 same, 1 disjoint);
    - ``onset_overlap``: Jaccard of the slots where each plays at all;
    - ``all_voices``: the three over every note the brain played, the prediction voice included (what the ear hears).
    """
    out = _distance(_neuron_slots(reference, prediction_channel), _neuron_slots(other, prediction_channel))
    out["all_voices"] = _distance(_neuron_slots(reference, prediction_channel, every_voice=True),
                                  _neuron_slots(other, prediction_channel, every_voice=True))
    return out


def _distance(a: dict[float, set[int]], b: dict[float, set[int]]) -> dict:
    slots = set(a) | set(b)
    if not slots:
        return {"slot_jaccard": None, "pitch_class_distance": None, "onset_overlap": None}
    jac = [len(a.get(s, set()) & b.get(s, set())) / len(a.get(s, set()) | b.get(s, set())) for s in slots]
    ha, hb = Counter(pc for v in a.values() for pc in v), Counter(pc for v in b.values() for pc in v)
    na, nb = max(1, sum(ha.values())), max(1, sum(hb.values()))
    tv = 0.5 * sum(abs(ha[pc] / na - hb[pc] / nb) for pc in range(12)) if ha and hb else 1.0
    return {"slot_jaccard": round(sum(jac) / len(jac), 3), "pitch_class_distance": round(tv, 3),
            "onset_overlap": round(len(set(a) & set(b)) / len(slots), 3)}
