"""Timed actions on the rig's monotonic clock: beats, scheduled notes, treat pulses.

One thread sleeps until just before the next action, then spins the last
half-millisecond, so actions run within tens of microseconds of their due
time (musicians hear ~1 ms of jitter). Tests drive the same object in
logical time with :class:`ManualClock` and :meth:`Timeline.advance_to`:
no sleeping, exact event lists.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger("neurojam.rig")


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class RealtimeThreads:
    """Every thread of this process at SCHED_FIFO ``priority`` while the rig plays (the timeline raises itself
    above). The timeline thread runs real-time, but it needs Python's interpreter lock to send anything, and a thread
    of the rig at normal priority holding that lock can be pre-empted by any busy process: the timeline then waits
    for it (a priority inversion, a clock tick 2-20 ms late on a loaded machine). Threads started later inherit
    the policy. :meth:`restore` puts each thread back (those that inherited it: the normal scheduler)."""

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self._before: dict[int, tuple[int, int]] = {}

    @staticmethod
    def _tasks() -> list[int]:
        try:
            return [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return []

    def raise_all(self) -> bool:
        """True if every thread now runs real-time (False without CAP_SYS_NICE, or off Linux: nothing changed)."""
        if not self.priority or not hasattr(os, "sched_setscheduler"):
            return False
        for tid in self._tasks():
            try:
                before = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
                if before[0] == os.SCHED_OTHER:
                    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.priority))
                    self._before[tid] = before
            except (PermissionError, OSError):
                self.restore()
                return False
        return True

    def restore(self) -> None:
        for tid in self._tasks():
            try:
                if tid in self._before or (os.sched_getscheduler(tid) == os.SCHED_FIFO and
                                           os.sched_getparam(tid).sched_priority == self.priority):
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:  # a thread that ended meanwhile
                pass
        self._before.clear()


class Timeline:
    def __init__(self, clock: Callable[[], float] = time.monotonic, spin_s: float = 0.0005,
                 realtime_priority: int = 0) -> None:
        self.clock = clock
        self.spin_s = spin_s
        self.realtime_priority = realtime_priority
        """SCHED_FIFO priority for the timeline thread (0: the default scheduler), as audio software runs: on a
        busy machine the beat, the clock ticks and the notes are not held up behind other processes."""
        self.realtime = False
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._live: set[int] = set()
        """Handles still in the heap; a cancel of anything else (already run) is a no-op, so nothing piles up."""
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self.lateness: deque[float] = deque(maxlen=10_000)
        """Actual minus due time of recent actions, seconds (for stats and benchmarks)."""
        self.errors = 0

    def at(self, when: float, fn: Callable, *args) -> int:
        """Run ``fn(*args)`` at clock time ``when``; returns a handle for :meth:`cancel`."""
        handle = next(self._ids)
        with self._cond:
            heapq.heappush(self._heap, (when, handle, fn, args))
            self._live.add(handle)
            self._cond.notify()
        return handle

    def after(self, delay: float, fn: Callable, *args) -> int:
        return self.at(self.clock() + delay, fn, *args)

    def cancel(self, handle: int) -> None:
        with self._cond:
            if handle in self._live:
                self._live.discard(handle)
                self._cancelled.add(handle)

    def _take(self) -> tuple[float, int, Callable, tuple] | None:
        """Pop the heap's head (under the lock); None if it was cancelled."""
        item = heapq.heappop(self._heap)
        if item[1] in self._cancelled:
            self._cancelled.discard(item[1])
            return None
        self._live.discard(item[1])
        return item

    @property
    def pending(self) -> int:
        """Actions still to run (for stats and the leak tests)."""
        with self._cond:
            return len(self._live)

    def next_due(self) -> float | None:
        with self._cond:
            return self._heap[0][0] if self._heap else None

    def _pop_due(self, now: float) -> list[tuple[float, Callable, tuple]]:
        due = []
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                item = self._take()
                if item is not None:
                    due.append((item[0], item[2], item[3]))
        return due

    def _run(self, when: float, fn: Callable, args: tuple) -> None:
        self.lateness.append(self.clock() - when)
        try:
            fn(*args)
        except Exception:  # one bad action must not stop the beat
            self.errors += 1
            log.exception("timeline action %s failed", getattr(fn, "__name__", fn))

    def advance_to(self, t: float) -> None:
        """Logical time (ManualClock): run everything due up to ``t`` in order."""
        while True:
            with self._cond:
                if not self._heap or self._heap[0][0] > t:
                    break
                item = self._take()
                if item is None:
                    continue
                when, _, fn, args = item
            if isinstance(self.clock, ManualClock):
                self.clock.now = max(self.clock.now, when)
            self._run(when, fn, args)
        if isinstance(self.clock, ManualClock):
            self.clock.now = max(self.clock.now, t)

    # -- real time --------------------------------------------------------------
    def start(self) -> "Timeline":
        if self._thread is None:
            self._running = True
            self._thread = threading.Thread(target=self._loop, name="timeline", daemon=True)
            self._thread.start()
        return self

    def _raise_priority(self) -> None:
        if not self.realtime_priority or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.realtime_priority))  # this thread only
            self.realtime = True
        except (PermissionError, OSError) as exc:
            log.info("timeline at normal priority (%s): give the rig CAP_SYS_NICE or a systemd "
                     "LimitRTPRIO (deploy/neurojam-rig.service) for steadier timing on a busy machine", exc)

    def _loop(self) -> None:
        self._raise_priority()
        while self._running:
            with self._cond:
                wait = None if not self._heap else self._heap[0][0] - self.clock() - self.spin_s
                if wait is None or wait > 0:
                    self._cond.wait(timeout=None if wait is None else min(wait, 0.5))
                    continue
            when = self.next_due()
            if when is None:
                continue
            while self.clock() < when:  # the last half millisecond: spin for precision
                pass
            for when, fn, args in self._pop_due(self.clock()):
                self._run(when, fn, args)

    def stop(self) -> None:
        """Stop the thread (pending actions are dropped). Safe to call twice."""
        self._running = False
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None
