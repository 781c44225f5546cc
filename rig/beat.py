"""The rig's beat grid: internal tempo, following an external MIDI clock, or an Ableton Link session
(:mod:`rig.link_sync`); and the rig as MIDI clock master (:class:`MidiClockOut`).

Beats are counted from 0 since the clock started; times come from one
:class:`bridge.grid.BeatGrid` anchor, never accumulated, so the grid does not drift.
"""

from __future__ import annotations

from typing import Callable

from bridge.grid import BeatGrid
from core.units import MAX_BPM, MIN_BPM
from rig.timeline import Timeline

BeatListener = Callable[[int, int, int, float, float], None]
"""Called with (index, bar, beat_in_bar, tempo_bpm, time)."""

TICKS_PER_BEAT = 24
LATE_TICK_S = 0.002
"""A clock tick sent later than this after its grid time is counted late (a tenth of a tick at 120 BPM)."""


class BeatClock:
    def __init__(self, timeline: Timeline, tempo_bpm: float = 120.0, beats_per_bar: int = 4,
                 external: bool = False) -> None:
        self.timeline = timeline
        self._tempo_bpm = tempo_bpm
        self.beats_per_bar = beats_per_bar
        self.external = external
        self.listeners: list[BeatListener] = []
        self.grid: BeatGrid | None = None
        """None until started."""
        self.last_index = -1
        self._handle: int | None = None

    @property
    def tempo_bpm(self) -> float:
        return self.grid.tempo_bpm if self.grid is not None else self._tempo_bpm

    @tempo_bpm.setter
    def tempo_bpm(self, bpm: float) -> None:
        self._tempo_bpm = bpm
        if self.grid is not None:
            self.grid.tempo_bpm = bpm

    @property
    def period(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def running(self) -> bool:
        return self.grid is not None

    def start(self, t0: float | None = None, first_index: int = 0) -> None:
        """Beat 0 falls at ``t0``; the first beat played is ``first_index`` (later when joining a bar under way)."""
        self.grid = BeatGrid(self.timeline.clock() if t0 is None else t0, 0, self.tempo_bpm, self.beats_per_bar)
        self.last_index = first_index - 1
        if not self.external:
            self._schedule(first_index)

    def stop(self) -> None:
        if self._handle is not None:
            self.timeline.cancel(self._handle)
            self._handle = None
        self.grid = None

    def anchor(self, index: float, t: float) -> None:
        """Beat ``index`` is at time t (re-anchoring; tempo unchanged)."""
        if self.grid is not None:
            self.grid.anchor_index, self.grid.anchor_time = index, t

    def set_tempo(self, bpm: float) -> None:
        """Change tempo from the next beat on (re-anchored at the last beat)."""
        if self.grid is not None and self.last_index >= 0:
            self.anchor(self.last_index, self.time_of_beat(self.last_index))
        self.tempo_bpm = bpm
        if not self.external and self.grid is not None:
            if self._handle is not None:
                self.timeline.cancel(self._handle)
            self._schedule(self.last_index + 1)

    def follow(self, index: int, t: float, bpm: float) -> None:
        """An outside clock (Ableton Link) says beat ``index`` falls at ``t`` at ``bpm``: re-anchor the grid there,
        and move the pending beat if it was due elsewhere."""
        if self.grid is None:
            return
        old = self.time_of_beat(index)
        self.tempo_bpm = bpm
        self.anchor(index, t)
        if not self.external and self._handle is not None and abs(old - t) > 1e-4:
            self.timeline.cancel(self._handle)
            self._schedule(index)

    def _started(self) -> BeatGrid:
        if self.grid is None:
            raise RuntimeError("the beat clock has not started")
        return self.grid

    def time_of_beat(self, index: float) -> float:
        return self._started().time_of_beat(index)

    def beat_at(self, t: float) -> float:
        """Fractional beat index at time t."""
        return self._started().beat_at(t)

    def next_beat(self, after: float, downbeat: bool = False) -> int:
        """The first beat index strictly after time ``after`` (a bar's first beat if ``downbeat``)."""
        index = int(self.beat_at(after)) + 1
        index = max(index, self.last_index + 1)
        if downbeat:
            index += (-index) % self.beats_per_bar
        return index

    def offset_from_nearest(self, t: float) -> float:
        """Seconds from t to the nearest beat (signed: negative = early)."""
        return self._started().offset_from_nearest(t)

    def _schedule(self, index: int) -> None:
        self._handle = self.timeline.at(self.time_of_beat(index), self._tick, index)

    def _tick(self, index: int) -> None:
        self._emit(index, self.time_of_beat(index))
        self._schedule(index + 1)

    def _emit(self, index: int, t: float) -> None:
        self.last_index = index
        bar, beat = divmod(index, self.beats_per_bar)
        for listener in self.listeners:
            listener(index, bar, beat, self.tempo_bpm, t)


class MidiClockOut:
    """The rig as clock master: 24 clock ticks per beat laid on the beat grid by the timeline thread, ``start`` at
    beat 0 (or a song position pointer, in 16ths, and ``continue`` when the rig starts mid-song), ``stop`` when it
    stops. A drum machine or DAW set to external sync follows the pet jam."""

    def __init__(self, clock: BeatClock, send: Callable[[object], None]) -> None:
        import mido

        self._mido = mido
        self.clock, self.send = clock, send
        self.running = False
        self.ticks = 0
        self.late_ticks = 0
        """Ticks sent more than :data:`LATE_TICK_S` after their grid time."""

    def on_beat(self, index: int, bar: int, beat: int, tempo: float, t: float) -> None:  # noqa: ARG002
        mido = self._mido
        if not self.running:
            self.running = True
            if index == 0:
                self.send(mido.Message("start"))
            else:
                self.send(mido.Message("songpos", pos=min(16383, index * 4)))
                self.send(mido.Message("continue"))
        step = 60.0 / tempo / TICKS_PER_BEAT
        self._tick(t)
        for k in range(1, TICKS_PER_BEAT):  # each at its own grid time: a late wake-up never shifts the ticks after it
            self.clock.timeline.at(t + k * step, self._tick, t + k * step)

    def _tick(self, due: float) -> None:
        if self.running:
            self.ticks += 1
            if self.clock.timeline.clock() - due > LATE_TICK_S:
                self.late_ticks += 1  # in the rig's stats: a slaved drum machine heard a wobble
            self.send(self._mido.Message("clock"))

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.send(self._mido.Message("stop"))


class MidiClockFollower:
    """Turns external MIDI clock (0xF8, 24 per quarter; 0xFA start, 0xFC stop) into beats."""

    def __init__(self, clock: BeatClock, smoothing: int = 24) -> None:
        self.clock = clock
        self.ticks = 0
        self.running = False
        self._tick_times: list[float] = []
        self.smoothing = smoothing

    def handle(self, msg_type: str, t: float) -> None:
        if msg_type == "start":
            self.running, self.ticks, self._tick_times = True, 0, []
            self.clock.start(t)
            self.clock._emit(0, t)
        elif msg_type == "stop":
            self.running = False
            self.clock.stop()
        elif msg_type == "continue":
            self.running = True
        elif msg_type == "clock" and self.running:
            self.ticks += 1
            self._tick_times.append(t)
            self._tick_times = self._tick_times[-(self.smoothing + 1):]
            if len(self._tick_times) >= 2:
                per_tick = (self._tick_times[-1] - self._tick_times[0]) / (len(self._tick_times) - 1)
                if per_tick > 0:
                    self.clock.tempo_bpm = min(MAX_BPM, max(MIN_BPM, 60.0 / (per_tick * TICKS_PER_BEAT)))
            if self.ticks % TICKS_PER_BEAT == 0:
                index = self.ticks // TICKS_PER_BEAT
                self.clock.anchor(index, t)
                self.clock._emit(index, t)
