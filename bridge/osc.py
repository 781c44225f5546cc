"""OSC out, for visuals: every event as it happens, sent by the node that knows it first.

Address space (``osc.prefix`` is ``/neurojam`` by default); types in OSC's letters (i int32, f float32, s string):

=====================  ================================  ==================================================
address                arguments                         sent by, when
=====================  ================================  ==================================================
``/neurojam/beat``     i index, i bar, i beat, f bpm     the rig, on every beat of its grid
``/neurojam/note``     s source, i pitch, i velocity,    the rig, when a note sounds (source: pet, human,
                       i channel                         brain, marker); velocity 0 is a note-off
``/neurojam/pad``      i pad                             the rig, when the pet steps on a pad
``/neurojam/treat``    s outcome, s source, s refusal    the rig, for every treat decision (dispensed or
                                                         refused, with the cap that refused it)
``/neurojam/neuron``   s id, f normalized, f activation, the brain, for each top neuron of each event
                       s label, s rig                    ('L.N'; normalized 1.0 = its calibration top)
=====================  ================================  ==================================================

UDP, fire and forget, off the hot path: a call from the rig's timeline or a pad's callback only queues the address
and its arguments (under a microsecond); the ``osc-out`` thread builds each message (python-osc's builder, tens of
microseconds) and sends one datagram per target. A beat, a pad's sound or a clock tick never waits for a visual.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading

log = logging.getLogger("neurojam.osc")


class OscOut:
    def __init__(self, targets: list[str], prefix: str = "/neurojam") -> None:
        self.prefix = prefix
        self.targets: list[tuple[str, int]] = []
        for target in targets:
            host, _, port = target.rpartition(":")
            self.targets.append((host.strip("[]"), int(port)))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if self.targets else None
        self._builder = None
        if self.sock is not None:
            self.sock.setblocking(False)
            from pythonosc.osc_message_builder import OscMessageBuilder  # imported now, not on the first pad press

            self._builder = OscMessageBuilder
        self.sent = 0
        self.errors = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if self.sock is not None:
            self._thread = threading.Thread(target=self._send_queued, name="osc-out", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def send(self, address: str, *args) -> None:
        if self._thread is not None:
            self._queue.put((address, args))

    def _send_queued(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._send_now(*item)
            except Exception:  # an argument OSC cannot carry: counted, and the visuals go on
                self.errors += 1
                log.exception("OSC message %s not sent", item[0])

    def _send_now(self, address: str, args: tuple) -> None:
        builder = self._builder(address=self.prefix + address)
        for a in args:
            builder.add_arg(a, "s" if isinstance(a, str) else "f" if isinstance(a, float) else "i")
        dgram = builder.build().dgram
        for target in self.targets:
            try:
                self.sock.sendto(dgram, target)
                self.sent += 1
            except OSError as exc:  # unreachable, no route, full buffer: visuals never stop the jam
                self.errors += 1
                if self.errors == 1:
                    log.warning("OSC to %s:%s failed (%s); further failures are counted", *target, exc)

    # -- the address space ----------------------------------------------------------------------------------
    def beat(self, index: int, bar: int, beat: int, bpm: float) -> None:
        self.send("/beat", int(index), int(bar), int(beat), float(bpm))

    def note(self, source: str, pitch: int, velocity: int, channel: int) -> None:
        self.send("/note", source, int(pitch), int(velocity), int(channel))

    def pad(self, pad: int) -> None:
        self.send("/pad", int(pad))

    def treat(self, outcome: str, source: str, refusal: str) -> None:
        self.send("/treat", outcome, source, refusal or "")

    def neuron(self, neuron_id: str, normalized: float, activation: float, label: str, rig: str) -> None:
        self.send("/neuron", neuron_id, float(normalized), float(activation), label or "", rig)

    def close(self) -> None:
        """Sends what is queued, then closes: the last note-off of a session reaches the visuals too."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
