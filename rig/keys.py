"""The computer keyboard as pads, for people without a Pi: keys 1-9 press pads, t asks for a treat, q quits."""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from typing import Callable

from rig.gpio import SimInputPin
from rig.pads import Pad
from rig.timeline import Timeline


class KeyboardPads:
    """Presses sim pads from the terminal; gets only the pads, the timeline (to release), a treat request and stop."""

    def __init__(self, pads: list[Pad], timeline: Timeline, *, request_treat: Callable[[], object],
                 stop: Callable[[], None], hold_s: float = 0.12) -> None:
        self.pads, self.timeline, self.hold_s = pads, timeline, hold_s
        self.request_treat, self.stop = request_treat, stop
        self._stop = threading.Event()
        self._fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self._saved = termios.tcgetattr(self._fd) if self._fd is not None else None
        if self._fd is None:
            print("rig: stdin is not a terminal; keyboard pads are off", flush=True)
            return
        tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._run, name="keyboard-pads", daemon=True)
        self._thread.start()
        print("rig: keys 1-%d press pads, t = treat, q = quit" % len(pads), flush=True)

    def press(self, key: str) -> None:
        if key == "q":
            self.stop()
        elif key == "t":
            self.request_treat()
        elif key.isdigit() and 1 <= int(key) <= len(self.pads):
            pad = self.pads[int(key) - 1]
            if isinstance(pad.pin, SimInputPin):
                pressed = not pad.active_low
                pad.pin.drive(pressed)
                self.timeline.after(self.hold_s, pad.pin.drive, not pressed)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if ready:
                self.press(os.read(self._fd, 1).decode(errors="ignore"))

    def close(self) -> None:
        self._stop.set()
        if self._fd is not None and self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
