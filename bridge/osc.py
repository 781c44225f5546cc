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

UDP, fire and forget: a send never blocks the node (python-osc's message builder, one datagram per target).
"""

from __future__ import annotations

import logging
import socket

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

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def send(self, address: str, *args) -> None:
        if not self.targets:
            return
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
        if self.sock is not None:
            self.sock.close()
