"""Open and close real JACK MIDI ports many times while notes flow, in a process of its own.

Run by ``tests/test_midi_teardown.py`` under a watchdog (a hang or a crash here is the failure it looks for);
also by hand: ``python -m tests.midi_teardown_stress --ports 200 --rigs 50`` with a JACK server running
(``JACK_DEFAULT_SERVER`` names it). It uses only the rig's public port functions, so the same script
measures an older checkout.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import tempfile
import threading
import time

import mido

from neurojam.config import load_config
from neurojam.processes import free_port_pair
from rig.midi_io import open_input, open_output, open_virtual_input
from rig.node import RigNode

JACK = "mido.backends.rtmidi/UNIX_JACK"


class Flood:
    """Sends note on/off pairs to ``send`` from a thread of its own until stopped (errors from a port that closed
    under it end the flood, which is what a closing port does to a sender)."""

    def __init__(self, send, gap_s: float = 0.0005) -> None:
        self.sent = 0
        self._send, self._gap = send, gap_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        note = 40
        while not self._stop.is_set():
            try:
                self._send(mido.Message("note_on", note=note, velocity=90))
                self._send(mido.Message("note_off", note=note, velocity=0))
            except Exception:  # noqa: BLE001
                return
            self.sent += 1
            note = 40 + (note - 39) % 40
            time.sleep(self._gap)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def cycle_ports(cycles: int, tag: str) -> int:
    """Each cycle opens an input on a port that is playing and an output into a port that is listening, floods the
    output from a thread, and closes both while notes flow (the order alternates). Returns the messages received."""
    received = [0]

    def count(_msg) -> None:
        received[0] += 1

    source_name, sink_name = f"nj-stress-source-{tag}", f"nj-stress-sink-{tag}"
    source = open_output(None, JACK, source_name)  # plays all the time
    sink = open_virtual_input(sink_name, JACK, count)  # listens all the time
    source_flood = Flood(source.send)
    try:
        for i in range(cycles):
            listener = open_input(source_name, JACK, count)
            sender = open_output(sink_name, JACK)
            flood = Flood(sender.send)
            time.sleep(0.005)
            for port in ([listener, sender] if i % 2 else [sender, listener]):
                port.close()
            flood.stop()
    finally:
        source_flood.stop()
        sink.close()
        source.close()
    return received[0]


def cycle_rigs(cycles: int, tag: str, folder: str) -> int:
    """Each cycle: a rig with a virtual input and a port per source, started and closed while a DAW plays into
    it. Returns the human notes the rigs counted."""
    heard = 0
    for i in range(cycles):
        ports = free_port_pair()
        cfg = load_config(None, [f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}",
                                 f"session.dir={folder}", "rig.midi.backend=" + JACK,
                                 f"rig.midi.virtual_output=nj-stress-main-{tag}-{i}",
                                 f"rig.midi.outputs={{pet: 'virtual:nj-stress-pet-{tag}-{i}'}}",
                                 f"rig.midi.virtual_input=nj-stress-daw-{tag}-{i}", "rig.training.enabled=false",
                                 "rig.tempo_bpm=240"])
        node = RigNode(cfg, output=None, record=False)
        daw = open_output(next(n for n in mido.Backend(JACK).get_output_names() if f"nj-stress-daw-{tag}-{i}" in n),
                          JACK)
        flood = Flood(daw.send, gap_s=0.002)
        node.timeline.start()
        node.beats.start()
        time.sleep(0.03)
        node.close()
        heard += node.counts["human_notes"]
        daw.close()
        flood.stop()
    return heard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=200, help="port cycles (default 200)")
    parser.add_argument("--rigs", type=int, default=50, help="rig node cycles (default 50)")
    parser.add_argument("--watchdog", type=float, default=0,
                        help="seconds after which every thread's stack is printed and the process exits")
    args = parser.parse_args(argv)
    if args.watchdog:
        faulthandler.dump_traceback_later(args.watchdog, exit=True)  # a C thread: works with the GIL lost
    tag = str(os.getpid())
    started = time.monotonic()
    received = cycle_ports(args.ports, tag)
    print(f"ports: {args.ports} cycles, {received} messages received, {time.monotonic() - started:.1f} s", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        heard = cycle_rigs(args.rigs, tag, folder)
    print(f"rigs: {args.rigs} cycles, {heard} human notes heard, {time.monotonic() - started:.1f} s", flush=True)
    print("clean", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
