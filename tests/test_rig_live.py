"""The rig as a real process: real JACK MIDI ports (jackd -d dummy), real ZeroMQ to a brain-side Link here."""

import json
import os
import signal
import subprocess
import sys
import time

import mido

from bridge.link import Link
from bridge.messages import Accomp, AccompNote, Beat, Note, Pad
from rig.midi_io import open_input
from tests.conftest import ROOT

JACK = "mido.backends.rtmidi/UNIX_JACK"


class RigProcess:
    def __init__(self, tmp_path, ports, *sets, name="t"):
        self.out_name = f"nj-out-{name}-{os.getpid()}"
        self.keys_name = f"nj-keys-{name}-{os.getpid()}"
        self.backend = mido.Backend(JACK)
        self.keys = self.backend.open_output(self.keys_name, virtual=True)
        self.session = tmp_path / f"session-{name}"
        args = [sys.executable, "-m", "neurojam.cli", "rig", "--session", str(self.session),
                "--set", f"rig.midi.backend={JACK}", "--set", "rig.midi.output=null",
                "--set", f"rig.midi.virtual_output={self.out_name}", "--set", f"rig.midi.input={self.keys_name}",
                "--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}",
                "--set", "bridge.heartbeat_s=0.1", "--set", "bridge.liveness_s=0.5", *sets]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        self.listen = None
        while time.monotonic() < deadline and self.listen is None:
            names = [n for n in self.backend.get_input_names() if self.out_name in n]
            if names:
                self.listen = open_input(names[0], JACK)  # read on our thread, never JACK's
            time.sleep(0.05)
        assert self.listen is not None, self.stop()

    def midi(self, wait=0.0, link=None):
        if link is not None:  # keep the brain alive while we listen
            link.tick()
            link.receive(0)
        time.sleep(wait)
        return [(time.monotonic(), m) for m in self.listen.iter_pending()]

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out

    def close(self):
        self.stop()
        for port in (self.keys, self.listen):
            if port is not None:
                port.close()


def brain_link(ports):
    return Link("brain", "test-brain", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1, liveness_s=0.5)


def wait_for(link, predicate, timeout=10.0):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link.tick()
        for m in link.receive(timeout_ms=20):
            got.append(m)
            if predicate(m):
                return m, got
    raise AssertionError(f"timed out; got {[type(m).__name__ for m in got][-20:]}")


def wait_offset(link, timeout=10.0):
    """Ping until the brain side knows the (one) rig's clock offset; return that estimate."""
    deadline = time.monotonic() + timeout
    while not any(o.ready for o in link.peer_offsets.values()) and time.monotonic() < deadline:
        link.tick()
        link.receive(timeout_ms=20)
    ready = [o for o in link.peer_offsets.values() if o.ready]
    assert ready, "no pong from the rig"
    return ready[0]


def test_keyboard_note_reaches_brain_and_accomp_plays_on_time(jack_server, tmp_path, ports):
    rig = RigProcess(tmp_path, ports, "--set", "rig.training.enabled=false", name="a")
    link = brain_link(ports)
    try:
        wait_for(link, lambda m: isinstance(m, Beat))
        # A human note into the rig's input port arrives here over ZeroMQ.
        rig.keys.send(mido.Message("note_on", note=67, velocity=90))
        note, _ = wait_for(link, lambda m: isinstance(m, Note) and m.source == "human")
        assert (note.note, note.velocity, note.on) == (67, 90, True)

        # Accompaniment addressed to rig time comes out of the rig's output port at that time.
        rig_clock = wait_offset(link)
        rig.midi()
        rig_now = rig_clock.to_peer(time.monotonic())
        due = rig_now + 0.4
        link.send(Accomp(notes=[AccompNote(note=72, velocity=80, channel=3, duration=0.2, due_time=due),
                                AccompNote(note=40, channel=3, due_time=rig_now - 1.0)]))  # late: dropped
        deadline = time.monotonic() + 3
        heard = []
        while time.monotonic() < deadline and not any(m.type == "note_off" and m.note == 72 for _, m in heard):
            heard += rig.midi(0.001, link)
        ons = [(t, m) for t, m in heard if m.type == "note_on" and m.channel == 3]
        assert [m.note for _, m in ons] == [72]
        error = rig_clock.to_peer(ons[0][0]) - due
        assert -0.002 < error < 0.05, f"played {error * 1000:.1f} ms from its due time"
        offs = [t for t, m in heard if m.type == "note_off" and m.note == 72]
        assert offs and 0.15 < offs[0] - ons[0][0] < 0.3, (error, offs[0] - ons[0][0])
    finally:
        link.close()
        rig.close()
    stats = json.loads((rig.session / "stats.json").read_text())
    assert stats["scheduler"]["late_dropped"] == 1


def test_stop_mid_note_sends_note_off(jack_server, tmp_path, ports):
    rig = RigProcess(tmp_path, ports, name="b")
    link = brain_link(ports)
    try:
        wait_for(link, lambda m: isinstance(m, Beat))
        rig_clock = wait_offset(link)
        link.send(Accomp(notes=[AccompNote(note=77, channel=4, duration=10.0,
                                           due_time=rig_clock.to_peer(time.monotonic()) + 0.2)]))
        heard = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(m.type == "note_on" and m.note == 77 for _, m in heard):
            heard += rig.midi(0.01, link)
        assert any(m.type == "note_on" and m.note == 77 for _, m in heard)
        rig.stop(signal.SIGINT)  # Ctrl-C mid-note
        heard += rig.midi(0.3)
        assert any(m.type == "note_off" and m.note == 77 and m.channel == 4 for _, m in heard)
        assert rig.proc.returncode == 0
    finally:
        link.close()
        rig.close()


def test_pads_play_without_brain_and_rig_reconnects(jack_server, tmp_path, ports):
    rig = RigProcess(tmp_path, ports, "--set", "rig.sim_pet.enabled=true", "--set", "rig.sim_pet.presses_per_beat=1.0",
                     "--set", "rig.tempo_bpm=240", name="c")
    try:
        heard = rig.midi(2.0)  # no brain anywhere: pads still sound
        assert sum(1 for _, m in heard if m.type == "note_on" and m.channel in (0, 9)) >= 2

        link = brain_link(ports)
        wait_for(link, lambda m: isinstance(m, Pad))
        link.close()  # the brain dies

        heard = rig.midi(1.5)
        assert sum(1 for _, m in heard if m.type == "note_on") >= 2  # still playing
        assert rig.proc.poll() is None

        link = brain_link(ports)  # the brain comes back
        wait_for(link, lambda m: isinstance(m, Pad))
        link.close()
    finally:
        out = rig.close()
    assert rig.proc.returncode == 0
