"""Clicker training: a curriculum of levels that decides which press earns a treat.

Each pet press is a trial of the current level's criterion. A success that the
treat caps would allow at the next beat is *earned*: the marker sounds at
once (the click that tells the pet which press it was) and the treat follows
on the beat through the :class:`TreatDispenser`, whose caps stay the last
word. A success the caps would refuse is counted ("held back") but neither
marked nor requested: the marker always means food, and refusals stay the
exception. Level up after ``successes_to_level_up`` of the last ``window``
trials (CleverPet's 17 of 20); down after ``failures_to_level_down``
failures in a row. Everything runs on the rig's timeline, so tests drive it
in logical time.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from rig.beat import BeatClock
from rig.config import LevelConfig, TrainingConfig
from rig.dispenser import TreatDispenser
from rig.timeline import Timeline


@dataclass
class Trial:
    time: float
    pad: int
    level: int
    """1-based level the trial was judged at."""
    success: bool
    offset_ms: float
    """Signed distance to the nearest beat (negative = early)."""
    earned: bool = False
    """Marked and a treat requested (a success the caps allowed)."""


class Curriculum:
    def __init__(self, config: TrainingConfig, beats: BeatClock, timeline: Timeline, dispenser: TreatDispenser, *,
                 level: int = 1, on_trial: Callable[[Trial, int], None] | None = None,
                 on_earned: Callable[[Trial], None] | None = None) -> None:
        self.config, self.beats, self.timeline, self.dispenser = config, beats, timeline, dispenser
        self.level = max(1, min(level, len(config.levels)))
        self.on_trial = on_trial
        """Called with (trial, level after it) once a trial is judged."""
        self.on_earned = on_earned
        """Called the instant a press earns a treat: play the marker here."""
        self.recent: deque[bool] = deque(maxlen=config.window)
        self.failure_streak = 0
        self.trials: list[Trial] = []
        self.held_back: Counter = Counter()
        """Successes not marked because a cap would have refused the treat, by refusal code."""
        self._last_on_beat: int | None = None
        self._human_slots: dict[int, set[int]] = {}  # bar -> half-beat slots where the human started a note
        self._awaiting_brain: Trial | None = None

    @property
    def current(self) -> LevelConfig:
        return self.config.levels[self.level - 1]

    # -- inputs -----------------------------------------------------------------------
    def human_note(self, t: float) -> None:
        """An onset from the human (for ``copy_rhythm``)."""
        if not self.beats.running:
            return
        bar, slot = self._slot(t)
        self._human_slots.setdefault(bar, set()).add(slot)
        for old in [b for b in self._human_slots if b < bar - 1]:
            del self._human_slots[old]

    def press(self, pad: int, t: float) -> Trial | None:
        """A pet press at rig time t: judged now (or, for ``brain``, when the brain answers or a beat passes)."""
        if not self.beats.running:
            return None
        offset = self.beats.offset_from_nearest(t)
        trial = Trial(t, pad, self.level, False, round(offset * 1000, 2))
        level = self.current
        if level.criterion == "brain":
            if self._awaiting_brain is not None:  # the last press got no answer in time
                self._judge(self._awaiting_brain)
            self._awaiting_brain = trial
            self.timeline.at(t + self.beats.period, self._brain_window_closed, trial)
            return trial
        trial.success = self._meets(level, pad, t, offset)
        self._judge(trial)
        return trial

    def brain_request(self, t: float) -> bool:
        """The brain's neuron rule asked for a treat: a success if the level uses it and a press awaits."""
        trial, self._awaiting_brain = self._awaiting_brain, None
        if trial is None or self.current.criterion != "brain":
            return False
        trial.success = True
        self._judge(trial)
        return trial.earned

    # -- judging ----------------------------------------------------------------------
    def _meets(self, level: LevelConfig, pad: int, t: float, offset: float) -> bool:
        tol = level.tolerance_ms / 1000
        on_beat = abs(offset) <= tol
        beat = round(self.beats.beat_at(t))
        if level.criterion == "any_press":
            return True
        if level.criterion == "on_beat":
            return on_beat
        if level.criterion == "on_beat_pair":
            pair = on_beat and self._last_on_beat == beat - 1
            self._last_on_beat = beat if on_beat else None
            return pair
        if level.criterion == "pad_on_downbeat":
            return on_beat and pad == level.pad and beat % self.beats.beats_per_bar == 0
        if level.criterion == "copy_rhythm":
            bar, slot = self._slot(t)
            grid = self.beats.grid
            slot_time = grid.time_of_beat(bar * self.beats.beats_per_bar + slot / 2)
            return abs(t - slot_time) <= tol and slot in self._human_slots.get(bar - 1, set())
        return False

    def _slot(self, t: float) -> tuple[int, int]:
        """(bar, nearest half-beat slot within the bar)."""
        halves = round(self.beats.beat_at(t) * 2)
        bar, slot = divmod(halves, 2 * self.beats.beats_per_bar)
        return bar, slot

    def _brain_window_closed(self, trial: Trial) -> None:
        if self._awaiting_brain is trial:
            self._awaiting_brain = None
            self._judge(trial)

    def _judge(self, trial: Trial) -> None:
        if trial.success:
            refusal = self.dispenser.check(trial.time)
            if refusal is None:
                trial.earned = True
                if self.on_earned:
                    self.on_earned(trial)  # the marker: at the press, before anything else
                self.dispenser.request(source="rig", now=trial.time)
            else:
                self.held_back[refusal] += 1
        self.trials.append(trial)
        self.recent.append(trial.success)
        self.failure_streak = 0 if trial.success else self.failure_streak + 1
        c = self.config
        if sum(self.recent) >= c.successes_to_level_up and self.level < len(c.levels):
            self._move(+1)
        elif self.failure_streak >= c.failures_to_level_down and self.level > 1:
            self._move(-1)
        if self.on_trial:
            self.on_trial(trial, self.level)

    def _move(self, step: int) -> None:
        self.level += step
        self.recent.clear()
        self.failure_streak = 0
        self._last_on_beat = None
