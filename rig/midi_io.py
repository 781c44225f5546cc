"""MIDI in and out through mido (python-rtmidi backend by default).

Ports are found by exact name or a unique substring; a name that matches
nothing (or several) gets an error listing the ports there are. Outputs
share one small interface (:class:`NoteOutput`) so the scheduler, the pads
and the metronome do not care whether notes go to a synth, nowhere, or a
test's recording.
"""

from __future__ import annotations

import os

import threading
import time
from typing import Callable

import mido

from core.errors import DeviceError


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
    def __init__(self, port) -> None:
        super().__init__()
        self.port = port

    def _send(self, msg: mido.Message) -> None:
        self.port.send(msg)

    def close(self) -> None:
        if not self.port.closed:
            self.all_notes_off()
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


def open_input(name: str, backend_name: str, callback: Callable[[mido.Message], None]):
    be = backend(backend_name)
    try:
        return be.open_input(find_port(name, be.get_input_names(), "input"), callback=callback)
    except DeviceError:
        raise
    except Exception as exc:
        raise DeviceError(f"cannot open MIDI input {name!r} ({exc}).") from exc


def open_virtual_input(name: str, backend_name: str, callback: Callable[[mido.Message], None]):
    """A virtual input port other software (a DAW, a phone app over a MIDI bridge) can play into."""
    be = backend(backend_name)
    try:
        return be.open_input(name, virtual=True, callback=callback)
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
