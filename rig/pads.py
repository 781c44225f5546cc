"""Pressure pads: debounced presses from an input pin.

Foil pads bounce for a few milliseconds. :class:`Debouncer` takes the first
edge at once (so the sound is immediate) and ignores edges for
``debounce_ms`` after it; when that window closes it re-reads the level so a
press shorter than the window still ends in the right state.
"""

from __future__ import annotations

from typing import Callable

from rig.gpio import InputPin
from rig.timeline import Timeline

PressCallback = Callable[["Pad", float], None]


class Debouncer:
    def __init__(self, debounce_s: float, pressed: bool = False) -> None:
        self.debounce_s = debounce_s
        self.pressed = pressed
        self._locked_until = float("-inf")

    def feed(self, pressed: bool, t: float) -> bool | None:
        """A raw edge; returns the new state if it changed, else None."""
        if t < self._locked_until or pressed == self.pressed:
            return None
        self.pressed = pressed
        self._locked_until = t + self.debounce_s
        return pressed


class Pad:
    """One pad. ``when_pressed`` / ``when_released`` get (pad, time)."""

    def __init__(self, index: int, pin: InputPin, *, active_low: bool = True, debounce_ms: float = 30,
                 timeline: Timeline | None = None, name: str = "") -> None:
        self.index, self.pin, self.name = index, pin, name or f"pad{index}"
        self.active_low = active_low
        self.timeline = timeline
        self.debouncer = Debouncer(debounce_ms / 1000.0, pressed=self._is_pressed(pin.read()))
        self.when_pressed: PressCallback | None = None
        self.when_released: PressCallback | None = None
        self.presses = 0
        pin.on_edge(self._edge)

    def _is_pressed(self, level: bool) -> bool:
        return level != self.active_low

    @property
    def is_pressed(self) -> bool:
        return self.debouncer.pressed

    def _edge(self, level: bool, t: float) -> None:
        changed = self.debouncer.feed(self._is_pressed(level), t)
        if changed is not None:
            self._emit(changed, t)
            if self.timeline is not None:
                self.timeline.at(t + self.debouncer.debounce_s, self._settle)

    def _settle(self) -> None:
        t = self.timeline.clock() if self.timeline else 0.0
        # the level at the end of the window: a change the window hid comes out here
        changed = self.debouncer.feed(self._is_pressed(self.pin.read()), t)
        if changed is not None:
            self._emit(changed, t)

    def _emit(self, pressed: bool, t: float) -> None:
        if pressed:
            self.presses += 1
            if self.when_pressed:
                self.when_pressed(self, t)
        elif self.when_released:
            self.when_released(self, t)

    def close(self) -> None:
        self.pin.close()
