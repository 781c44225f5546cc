"""MIDI in and out through mido (python-rtmidi backend by default).

Ports are found by exact name or a unique substring; a name that matches
nothing (or several) gets an error listing the ports there are. Outputs
share one small interface (:class:`NoteOutput`) so the scheduler, the pads
and the metronome do not care whether notes go to a synth, nowhere, or a
test's recording.

Why closing a port is safe (issue 43). A MIDI system delivers input on its own
native thread (JACK's process thread, ALSA's input thread). mido's rtmidi
backend puts a Python callback on that thread for every input, even with
``callback=None`` (it then fills mido's queue), and JACK ends that thread with
``pthread_cancel`` when a client closes. A thread cancelled while it waits for,
or holds, the interpreter's lock leaves that lock held by a dead thread: the
process hangs for good, or crashes (mido issue #368). So here no Python code
ever runs on a MIDI system's thread:

* :class:`MidiInput` opens rtmidi's input with **no callback**: the native
  thread only pushes bytes into rtmidi's C++ queue. A thread of ours drains it
  every millisecond and calls the rig's handler there.
* ``close()`` stops and joins that thread first, then closes the port: by the
  time JACK cancels its thread, nothing of ours is on it or waiting for it.
* Outputs (mido's rtmidi ``Output``) register no callback at all: sending
  writes JACK's ring buffer from the caller's thread. A send and a close take
  one lock (:class:`PortOutput`), since rtmidi frees that buffer on close.

``tests/test_midi_teardown.py`` opens and closes ports hundreds of times with
notes flowing both ways to hold this.

The rig's other native threads, and why none of them can do the same: Link
(LinkPython) gets no callbacks from the rig, whose timeline thread polls its
session state (``rig/link_sync.py``); OSC (python-osc) is plain sockets sent
from the caller's thread; FluidSynth runs as a process of its own and hears
the rig through a MIDI port; pygame's mixer plays samples on SDL's thread in
C, with no Python. One remains: on a Pi, RPi.GPIO calls a pad's edge callback
from a C thread of its own, and how that thread ends at ``cleanup`` is
RPi.GPIO's (not checked here: the stand-in GPIO module has no thread).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable, Iterator

import mido

from core.errors import DeviceError

log = logging.getLogger("neurojam.rig")


class NoteOutput:
    """Where the rig's notes go. Tracks sounding notes so nothing sticks."""

    def __init__(self) -> None:
        self.sounding: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def note_on(self, channel: int, note: int, velocity: int) -> None:
        with self._lock:
            self.sounding.add((channel, note))
        self._send(mido.Message("note_on", channel=channel, note=note, velocity=velocity))

    def note_off(self, channel: int, note: int) -> None:
        with self._lock:
            self.sounding.discard((channel, note))
        self._send(mido.Message("note_off", channel=channel, note=note, velocity=0))

    def all_notes_off(self) -> None:
        """Note-off for every sounding note, then CC 123 on every channel."""
        with self._lock:
            sounding, self.sounding = list(self.sounding), set()
        for channel, note in sounding:
            self._send(mido.Message("note_off", channel=channel, note=note, velocity=0))
        for channel in range(16):
            self._send(mido.Message("control_change", channel=channel, control=123, value=0))

    def send(self, msg: mido.Message) -> None:
        self._send(msg)

    def _send(self, msg: mido.Message) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullOutput(NoteOutput):
    """No synth: notes are still recorded on the bridge, just not heard."""

    def _send(self, msg: mido.Message) -> None:
        pass


class RecordingOutput(NoteOutput):
    """Keeps (time, message) for tests and benchmarks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.log: list[tuple[float, mido.Message]] = []

    def _send(self, msg: mido.Message) -> None:
        self.log.append((self.clock(), msg))


class PortOutput(NoteOutput):
    """A mido output port. Sending and closing take one lock: rtmidi frees the port's buffer on close, so a send
    from another thread (the timeline, a pad's edge) racing a close would write freed memory (a crash the teardown
    stress test found). A send after close is dropped and counted."""

    def __init__(self, port) -> None:
        super().__init__()
        self.port = port
        self.dropped_after_close = 0
        self._port_lock = threading.Lock()

    def _send(self, msg: mido.Message) -> None:
        with self._port_lock:
            if self.port.closed:
                self.dropped_after_close += 1
                return
            self.port.send(msg)

    def close(self) -> None:
        if self.port.closed:
            return
        self.all_notes_off()
        with self._port_lock:
            self.port.close()


def backend(name: str):
    try:
        return mido.Backend(name, load=True)
    except Exception as exc:
        raise DeviceError(f"MIDI backend {name!r} could not load ({exc}). The rig needs python-rtmidi: "
                          f"`pip install neurojam[rig]`.") from exc


def find_port(wanted: str, available: list[str], kind: str) -> str:
    if wanted in available:
        return wanted
    matches = [p for p in available if wanted.lower() in p.lower()]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(repr(p) for p in available) or "none"
    if not matches:
        raise DeviceError(f"no MIDI {kind} port matches {wanted!r}. Available {kind} ports: {listing}. "
                          f"Set rig.midi.{kind} to one of them (a unique part of the name is enough).")
    raise DeviceError(f"MIDI {kind} name {wanted!r} is ambiguous: it matches {', '.join(map(repr, matches))}. "
                      f"Use more of the name.")


def open_output(name: str | None, backend_name: str, virtual_name: str = "neurojam") -> PortOutput:
    be = backend(backend_name)
    try:
        if name is None:
            return PortOutput(be.open_output(virtual_name, virtual=True))
        return PortOutput(be.open_output(find_port(name, be.get_output_names(), "output")))
    except DeviceError:
        raise
    except Exception as exc:
        raise DeviceError(f"cannot open MIDI output ({exc}). Is a MIDI system running (ALSA sequencer "
                          f"or JACK)? `neurojam doctor` checks.") from exc


class MidiInput:
    """An input port read by a thread of ours, never by the MIDI system's (see the module's docstring).

    With a ``callback``, each message is handed to it on this port's reader thread; without one, messages wait in
    :meth:`iter_pending`, like a mido port's. A message's ``time`` is when it arrived (``time.monotonic()``),
    estimated from the MIDI system's own time stamps, so a 1 ms poll does not blur the gaps between messages.
    """

    POLL_S = 0.001
    """How often the reader looks: the most a message waits in rtmidi's queue before the rig sees it."""

    def __init__(self, source, name: str, callback: Callable[[mido.Message], None] | None = None,
                 poll_s: float = POLL_S) -> None:
        self._source = source
        self.name = name
        self.callback = callback
        self.poll_s = poll_s
        self.closed = False
        self.dropped = 0
        """Bytes that were not a MIDI message (ignored, counted)."""
        self._pending: deque[mido.Message] = deque()
        self._draining = threading.Lock()
        """One drain at a time, so messages keep their order whoever drains (the reader or iter_pending)."""
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"midi-in {name}", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._drain()

    def _fetch(self) -> list[tuple[bytes, float]]:
        """(bytes, seconds since the message before) for every message waiting in the port's own queue."""
        got = []
        if hasattr(self._source, "get_message"):  # rtmidi.MidiIn
            while (item := self._source.get_message()) is not None:
                got.append((bytes(item[0]), float(item[1])))
        else:  # a mido port of another backend, polled
            while (msg := self._source.poll()) is not None:
                got.append((bytes(msg.bytes()), 0.0))
        return got

    def _drain(self) -> None:
        with self._draining:
            self._drain_locked()

    def _drain_locked(self) -> None:
        batch = self._fetch()
        if not batch:
            return
        # the last message arrived about now; each earlier one by the gaps the MIDI system stamped after it
        t = time.monotonic()
        stamps = []
        for _, delta in reversed(batch):
            stamps.append(t)
            t -= delta
        for (data, _), stamp in zip(batch, reversed(stamps)):
            try:
                msg = mido.Message.from_bytes(data, time=stamp)
            except ValueError:
                self.dropped += 1
                continue
            callback = self.callback
            if callback is None:
                self._pending.append(msg)
                continue
            try:
                callback(msg)
            except Exception:  # noqa: BLE001  (a handler's bug must not stop the keyboard)
                log.exception("MIDI input %r: the handler failed on %s", self.name, msg)

    def iter_pending(self) -> Iterator[mido.Message]:
        """The messages that arrived since the last call (only when there is no callback)."""
        if not self.closed and self.callback is None:
            self._drain()
        while self._pending:
            yield self._pending.popleft()

    def stop(self) -> None:
        """Stop reading (the reader thread is joined); the port stays open until :meth:`close`. Safe twice."""
        self._stop.set()
        if threading.current_thread() is not self._reader:
            self._reader.join()

    def close(self) -> None:
        """Stop our reader, then close the port (the order is the safety: see the module's docstring). Safe twice."""
        if self.closed:
            return
        self.stop()
        self.closed = True
        if hasattr(self._source, "get_message"):
            self._source.close_port()
            self._source.delete()
        else:
            self._source.close()

    def __enter__(self) -> "MidiInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rtmidi_api(backend_name: str) -> int | None:
    """rtmidi's API constant for a mido backend name ('mido.backends.rtmidi/UNIX_JACK'); None if not rtmidi."""
    module, _, api = backend_name.partition("/")
    if module != "mido.backends.rtmidi":
        return None
    import rtmidi

    return getattr(rtmidi, f"API_{api}") if api else rtmidi.API_UNSPECIFIED


def _open_midi_input(backend_name: str, name: str, virtual: bool,
                     callback: Callable[[mido.Message], None] | None) -> MidiInput:
    api = _rtmidi_api(backend_name)
    if api is None:
        be = backend(backend_name)
        return MidiInput(be.open_input(name, virtual=virtual), name, callback)
    import rtmidi

    source = rtmidi.MidiIn(api)
    try:
        if virtual:
            source.open_virtual_port(name)
        else:
            source.open_port(source.get_ports().index(name))
        source.ignore_types(sysex=False, timing=False, active_sense=True)
    except Exception:
        source.delete()
        raise
    return MidiInput(source, name, callback)


def open_input(name: str, backend_name: str, callback: Callable[[mido.Message], None] | None = None) -> MidiInput:
    """An existing input port, by exact name or a unique part of it."""
    be = backend(backend_name)
    try:
        return _open_midi_input(backend_name, find_port(name, be.get_input_names(), "input"), False, callback)
    except DeviceError:
        raise
    except Exception as exc:
        raise DeviceError(f"cannot open MIDI input {name!r} ({exc}).") from exc


def open_virtual_input(name: str, backend_name: str,
                       callback: Callable[[mido.Message], None] | None = None) -> MidiInput:
    """A virtual input port other software (a DAW, a phone app over a MIDI bridge) can play into."""
    backend(backend_name)
    try:
        return _open_midi_input(backend_name, name, True, callback)
    except Exception as exc:
        raise DeviceError(f"cannot open a virtual MIDI input {name!r} ({exc}). Is a MIDI system running (ALSA "
                          f"sequencer or JACK)? `neurojam doctor` checks.") from exc


MIDI_BACKENDS = ("mido.backends.rtmidi", "mido.backends.rtmidi/LINUX_ALSA", "mido.backends.rtmidi/UNIX_JACK")
"""What ``rig.midi.backend`` can say on Linux: rtmidi's default API, ALSA's sequencer, or a JACK server."""


def working_backends() -> list[str]:
    """The backends that can list ports on this machine now (a running JACK server is used, never started). The
    C libraries' complaints about the ones that cannot are kept off the terminal: the answer says it."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    working = []
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        for name in MIDI_BACKENDS:
            try:
                be = backend(name)
                be.get_input_names(), be.get_output_names()
            except Exception:  # noqa: BLE001  (each fails in its own way; only whether it works matters here)
                continue
            working.append(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return working


def backend_hint(failed: str) -> str:
    """What to set when ``failed`` cannot reach a MIDI system: a backend that works here, else how to get one."""
    others = [b for b in working_backends() if b != failed]
    if others:
        return f"this machine's MIDI works through {others[-1]}: --set rig.midi.backend={others[-1]} (or put it in your config)"
    return "install python-rtmidi; on Linux start ALSA's sequencer or a JACK server (jackd -d dummy works)"


def list_ports(backend_name: str) -> tuple[list[str], list[str]]:
    """(inputs, outputs); a MIDI system that cannot be asked is a DeviceError with its cause."""
    be = backend(backend_name)
    try:
        return be.get_input_names(), be.get_output_names()
    except Exception as exc:
        raise DeviceError(f"cannot list MIDI ports with {backend_name} ({type(exc).__name__}: {exc}); "
                          f"{backend_hint(backend_name)}.") from exc
