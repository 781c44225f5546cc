"""Plays the brain's accompaniment at the rig time or beat it is due.

A note whose slot has passed (by more than the tolerance) is dropped and
counted, or played at once if ``late: play``. Every note-on schedules its
note-off; a polyphony cap refuses extra voices; :meth:`all_notes_off`
cancels what is pending and silences what sounds. No stuck notes. An
:class:`~rig.arranger.Arranger` keeps the notes clear of rubs with the human and the pet (:meth:`give_way`).
"""

from __future__ import annotations

import threading
from collections import Counter

from bridge.grid import due_time
from bridge.messages import Accomp, AccompNote
from rig.arranger import MIN_NOTE_S, Arranger, rubs
from rig.beat import BeatClock
from rig.midi_io import NoteOutput
from rig.timeline import Timeline


class AccompScheduler:
    def __init__(self, timeline: Timeline, beats: BeatClock, output: NoteOutput, *, late: str = "drop",
                 late_tolerance_s: float = 0.005, max_voices: int = 16, arranger: Arranger | None = None) -> None:
        """``arranger``: keeps each note clear of semitone rubs with what the human and the pet sound
        (:mod:`rig.arranger`); None plays every note as asked."""
        self.timeline, self.beats, self.output = timeline, beats, output
        self.arranger = arranger
        self.late, self.tolerance, self.max_voices = late, late_tolerance_s, max_voices
        self.counts: Counter = Counter()
        self._pending: set[int] = set()
        self._voices: dict[tuple[int, int], int] = {}  # (channel, note) -> note-off handle
        self._started: dict[tuple[int, int], float] = {}  # (channel, note) -> when it was struck
        self._lock = threading.Lock()
        self.on_note = None  # optional callback(on: bool, channel, note, velocity): what was really played

    def due_time(self, note: AccompNote) -> float | None:
        return due_time(note, self.beats.grid if self.beats.running else None)

    def schedule(self, accomp: Accomp, now: float | None = None) -> None:
        now = self.timeline.clock() if now is None else now
        for note in accomp.notes:
            due = self.due_time(note)
            if due is None:
                self.counts["no_clock"] += 1
                continue
            if due < now - self.tolerance:
                if self.late == "drop":
                    self.counts["late_dropped"] += 1
                    continue
                self.counts["late_played"] += 1
                due = now
            with self._lock:  # held until the handle is stored, so _note_on always finds it
                cell: list[int] = []
                cell.append(self.timeline.at(due, self._note_on, note, due, cell))
                self._pending.add(cell[0])
            self.counts["scheduled"] += 1

    def _note_on(self, note: AccompNote, due: float, cell: list[int]) -> None:
        key = (note.channel, note.note)
        with self._lock:
            self._pending.discard(cell[0])
            if note.tie:  # still sounding: let it ring on, no new attack; already ended: it starts nothing
                if key in self._voices:  # (struck now, it would be a note cut off an instant later)
                    self.timeline.cancel(self._voices[key])
                    self._voices[key] = self.timeline.at(due + note.duration, self._note_off, key)
                    self.counts["tied"] += 1
                else:
                    self.counts["tie_after_end"] += 1
                return
            if self.arranger is not None:
                pitch = self.arranger.place(note.note, {k[1] for k in self._voices if k != key})
                if pitch is None:
                    return
                key = (note.channel, pitch)
            if key in self._voices and self.arranger is not None:  # sounding already (a note moved onto it): it
                self.timeline.cancel(self._voices[key])  # rings on, as a tie would, with no second attack
                self._voices[key] = self.timeline.at(max(due + note.duration, self._started.get(key, due)),
                                                     self._note_off, key)
                self.counts["merged"] += 1
                return
            if key in self._voices:  # same note again: restart it cleanly
                self.timeline.cancel(self._voices.pop(key))
                self.output.note_off(*key)
            elif len(self._voices) >= self.max_voices:
                self.counts["voice_cap"] += 1
                return
            self._voices[key] = self.timeline.at(due + note.duration, self._note_off, key)
            self._started[key] = due
        self.output.note_on(key[0], key[1], note.velocity)
        self.counts["played"] += 1
        if self.on_note:
            self.on_note(True, key[0], key[1], note.velocity)

    def _note_off(self, key: tuple[int, int]) -> None:
        with self._lock:
            self._voices.pop(key, None)
        self.output.note_off(*key)
        if self.on_note:
            self.on_note(False, key[0], key[1], 0)

    def give_way(self, pitch: int, now: float | None = None) -> None:
        """A human or pet note ``pitch`` starts now: the brain's notes that rub against it end here (one struck an
        instant ago lasts :data:`~rig.arranger.MIN_NOTE_S`)."""
        now = self.timeline.clock() if now is None else now
        ending = []
        with self._lock:
            for key in [key for key in self._voices if rubs(key[1], pitch)]:
                self.counts["clash_cut"] += 1
                end = self._started.get(key, now) + MIN_NOTE_S
                if end <= now:
                    self.timeline.cancel(self._voices.pop(key))
                    ending.append(key)
                else:
                    self.timeline.cancel(self._voices[key])
                    self._voices[key] = self.timeline.at(end, self._note_off, key)
        for key in ending:
            self.output.note_off(*key)
            if self.on_note:
                self.on_note(False, key[0], key[1], 0)

    @property
    def voices(self) -> int:
        return len(self._voices)

    def all_notes_off(self) -> None:
        """Cancel pending notes and silence sounding ones (stop, Ctrl-C, brain gone)."""
        with self._lock:
            for handle in list(self._pending) + list(self._voices.values()):
                self.timeline.cancel(handle)
            self._pending.clear()
            keys = list(self._voices)
            self._voices.clear()
        for key in keys:
            self.output.note_off(*key)
            if self.on_note:
                self.on_note(False, key[0], key[1], 0)
        self.counts["all_notes_off"] += 1
