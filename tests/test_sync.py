"""With the rest of the studio: Ableton Link (a real second peer), MIDI clock out and routing (real JACK ports),
OSC (a real python-osc server), and the MIDI export's tracks."""

import socket
import threading
import time

import mido
import pytest

from bridge.messages import Tempo
from neurojam.config import load_config
from rig.midi_io import RecordingOutput, open_input
from rig.node import RigNode
from tests.conftest import ROOT

JACK = "mido.backends.rtmidi/UNIX_JACK"
MELODY = ROOT / "configs" / "melodies" / "soldiers-joy.mid"


def make_node(tmp_path, ports, *sets, ports_from_config=False):
    """A rig in this process; its notes recorded here, or (``ports_from_config``) on the MIDI ports it opens."""
    cfg = load_config(None, [f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}",
                             f"session.dir={tmp_path}", *([] if ports_from_config else ["rig.midi.virtual_input=null"]),
                             *sets])
    return RigNode(cfg, output=None if ports_from_config else RecordingOutput(), record=False)


def wait(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_link_peer_moves_the_rigs_tempo_and_the_rig_moves_the_session(tmp_path, ports):
    import link

    peer = link.Link(100.0)
    peer.enabled = True
    node = make_node(tmp_path, ports, "rig.sync.source=link", "rig.tempo_bpm=120", "rig.training.enabled=false")
    beats: list[tuple[int, float]] = []
    node.beats.listeners.append(lambda i, bar, b, tempo, t: beats.append((i, t)))
    try:
        assert wait(lambda: node.devices.link_sync.peers == 1)
        node.start()
        # one session: whichever tempo it settled on, the rig's grid has it
        assert wait(lambda: abs(node.beats.tempo_bpm - peer.captureSessionState().tempo()) < 0.01)
        state = peer.captureSessionState()
        state.setTempo(90.0, peer.clock().micros())
        peer.commitSessionState(state)
        assert wait(lambda: abs(node.beats.tempo_bpm - 90.0) < 0.01)  # a change in "Live" moves the rig
        node.handle(Tempo(bpm=140.0))  # the stage's control, on the rig
        assert wait(lambda: abs(peer.captureSessionState().tempo() - 140.0) < 0.01)  # ...moves the session
        assert wait(lambda: abs(node.beats.tempo_bpm - 140.0) < 0.01)
        time.sleep(1.5)
        # phase: where the peer says the rig's beats fell, in beats of the session (downbeats on bar lines)
        sync = node.devices.link_sync
        state = peer.captureSessionState()
        offset = peer.clock().micros() / 1e6 - time.monotonic()
        recent = [(i, t) for i, t in beats if t > time.monotonic() - 1.0]
        # Link agrees on the phase within a bar (quantum 4), not on beat numbers
        errors = [(state.beatAtTime(int((t + offset) * 1e6), 4) - (sync.base + i) + 2) % 4 - 2 for i, t in recent]
        assert len(recent) >= 2 and max(abs(e) for e in errors) * 60 / 140 < 0.003, errors
        assert sync.base % 4 == 0
    finally:
        node.close()
        peer.enabled = False


def test_the_rig_as_midi_clock_master_sends_start_and_24_ticks_a_beat(jack_server, tmp_path, ports):
    name = f"nj-clock-{id(tmp_path)}"
    node = make_node(tmp_path, ports, f"rig.midi.backend={JACK}", "rig.sync.clock_out=virtual",
                     f"rig.sync.clock_out_virtual={name}", "rig.tempo_bpm=120", "rig.training.enabled=false")
    backend = mido.Backend(JACK)
    assert wait(lambda: any(name in n for n in backend.get_input_names()))
    got: list[tuple[float, str]] = []
    port = open_input(next(n for n in backend.get_input_names() if name in n), JACK,
                      callback=lambda m: got.append((m.time, m.type)))  # m.time: when it arrived
    beat_times: list[float] = []
    node.beats.listeners.append(lambda i, bar, b, tempo, t: beat_times.append(t))
    try:
        node.start()
        time.sleep(2.6)
    finally:
        node.close()
        time.sleep(0.2)
        port.close()
    types = [t for _, t in got]
    assert types[0] == "start" and types[-1] == "stop"
    ticks = [t for t, kind in got if kind == "clock"]
    for a, b in zip(beat_times, beat_times[1:3]):  # whole beats: 24 ticks each, 1/24 beat apart
        inside = [t for t in ticks if a - 0.005 <= t < b - 0.005]
        assert len(inside) == 24
    gaps = [b - a for a, b in zip(ticks, ticks[1:])][:40]
    assert sum(gaps) / len(gaps) == pytest.approx(0.5 / 24, rel=0.05)


def test_a_late_wake_up_is_counted_and_never_shifts_skips_or_doubles_the_ticks_after_it():
    """Logical time: the timeline thread wakes 50 ms late into a beat; the ticks due by then go out at once (counted
    late), every later tick at its own grid time, 24 a beat, none twice."""
    from types import SimpleNamespace

    from rig.beat import LATE_TICK_S, TICKS_PER_BEAT, MidiClockOut
    from rig.timeline import ManualClock, Timeline

    clock = ManualClock()
    timeline = Timeline(clock)
    sent: list[tuple[float, str]] = []
    out = MidiClockOut(SimpleNamespace(timeline=timeline), lambda m: sent.append((clock.now, m.type)))
    step = 0.5 / TICKS_PER_BEAT
    for beat in range(2):
        clock.now = beat * 0.5  # the beat itself runs on time
        out.on_beat(beat, 0, beat, 120.0, beat * 0.5)
        if beat == 0:
            clock.now = 0.05  # the wake-up comes late: ticks 1 and 2 (20.8, 41.7 ms) are overdue
        timeline.advance_to(beat * 0.5 + 0.5 - 1e-9)
    ticks = [t for t, kind in sent if kind == "clock"]
    assert len(ticks) == 2 * TICKS_PER_BEAT and out.late_ticks == 2
    assert ticks[1:3] == [0.05, 0.05]  # sent at once when it woke, in order
    assert ticks[3:] == pytest.approx([k * step for k in range(3, 2 * TICKS_PER_BEAT)], abs=1e-9)
    assert all(t - k * step <= LATE_TICK_S for k, t in enumerate(ticks) if k >= 3)


def test_a_playing_rig_keeps_its_objects_out_of_the_garbage_collectors_full_scans(tmp_path, ports):
    """A full collection holds the GIL for every object it scans (the rig's ~33k: 5-9 ms on a busy machine, a clock
    tick late); while the rig plays, what it built before is frozen out of the scans, and thawed when it closes."""
    import gc

    node = make_node(tmp_path, ports, "rig.training.enabled=false")
    assert gc.get_freeze_count() == 0
    try:
        node.start()
        assert gc.get_freeze_count() > 10_000
    finally:
        node.close()
    assert gc.get_freeze_count() == 0


def test_while_a_rig_plays_its_threads_run_real_time_under_the_timeline_and_are_put_back_after(tmp_path, ports):
    """A rig thread holding the interpreter lock at normal priority, pre-empted by a busy process, holds up the
    real-time timeline waiting for that lock: while the rig plays every thread of it runs SCHED_FIFO (the timeline at
    rig.scheduler.realtime_priority, the rest at a quarter of it); after close, the normal scheduler again. Where the
    machine refuses real-time scheduling, nothing changes."""
    import os

    def policies():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                out[int(tid)] = (os.sched_getscheduler(int(tid)), os.sched_getparam(int(tid)).sched_priority)
            except OSError:
                pass
        return out

    before = policies()
    node = make_node(tmp_path, ports, "rig.training.enabled=false", "rig.scheduler.realtime_priority=20")
    try:
        node.start()
        time.sleep(0.3)
        during = policies()
        if node.timeline.realtime:
            assert set(during.values()) <= {(os.SCHED_FIFO, 5), (os.SCHED_FIFO, 20)}, during
            assert list(during.values()).count((os.SCHED_FIFO, 20)) == 1  # the timeline alone above the rest
        else:
            assert during[os.getpid()] == before[os.getpid()]
    finally:
        node.close()
    after = policies()
    assert all(after[tid] == before[tid] for tid in after if tid in before), (before, after)


def test_midi_routing_a_port_per_source_and_a_virtual_input(jack_server, tmp_path, ports):
    tag = id(tmp_path)
    node = make_node(tmp_path, ports, f"rig.midi.backend={JACK}", f"rig.midi.virtual_output=nj-main-{tag}",
                     f"rig.midi.outputs={{pet: 'virtual:nj-pet-{tag}'}}", f"rig.midi.virtual_input=nj-in-{tag}",
                     "rig.training.enabled=false", ports_from_config=True)
    backend = mido.Backend(JACK)
    assert wait(lambda: any(f"nj-pet-{tag}" in n for n in backend.get_input_names()))
    pet_port = open_input(next(n for n in backend.get_input_names() if f"nj-pet-{tag}" in n), JACK)
    main_port = open_input(next(n for n in backend.get_input_names() if f"nj-main-{tag}" in n), JACK)
    daw = backend.open_output(next(n for n in backend.get_output_names() if f"nj-in-{tag}" in n))
    try:
        node.timeline.start()
        node.beats.start()
        pad = node.pads[0]
        pad.pin.drive(not pad.active_low)
        daw.send(mido.Message("note_on", note=64, velocity=80))  # a DAW plays into the rig, as the human
        assert wait(lambda: node.counts["human_notes"] == 1)
        time.sleep(0.2)
        pet = [m for m in pet_port.iter_pending() if m.type == "note_on"]
        main = [m for m in main_port.iter_pending() if m.type == "note_on"]
    finally:
        node.close()
        for p in (pet_port, main_port, daw):
            p.close()
    assert [m.note for m in pet] == [36] and not [m for m in main if m.note == 36]


def test_osc_from_the_rig_and_the_brain_with_the_documented_addresses_and_types(tmp_path, ports):
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    from bridge.link import Link
    from tests.test_brain_node import collect, play, start_brain

    got: list[tuple[str, tuple]] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: got.append((address, args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"osc.targets=['127.0.0.1:{server.server_address[1]}']"
    node = make_node(tmp_path, ports, target, "rig.sim_pet.enabled=true", "rig.sim_pet.presses_per_beat=2",
                     "rig.tempo_bpm=240")
    node.play_midi_file(MELODY)
    try:
        node.start()
        time.sleep(2.0)
        node.dispenser.request(source="manual")
        time.sleep(1.0)
    finally:
        node.close()
    brain_ports = ports + 10
    brain = start_brain(brain_ports, "--set", target)
    rig = Link("rig", "osc-rig", events_port=brain_ports, commands_port=brain_ports + 1, heartbeat_s=0.1)
    try:
        collect(rig, 3, until=lambda g: len(g) > 0)
        play(rig, time.monotonic(), beats=8)
        collect(rig, 3)
    finally:
        rig.close()
        brain.terminate()
        brain.wait(timeout=20)
        server.shutdown()

    def kinds(address):
        return [tuple(type(a).__name__ for a in args) for addr, args in got if addr == address]

    assert set(kinds("/neurojam/beat")) == {("int", "int", "int", "float")}
    assert set(kinds("/neurojam/note")) == {("str", "int", "int", "int")}
    assert {args[0] for addr, args in got if addr == "/neurojam/note"} >= {"pet", "human"}
    assert set(kinds("/neurojam/pad")) == {("int",)}
    assert set(kinds("/neurojam/treat")) == {("str", "str", "str")}
    assert set(kinds("/neurojam/neuron")) == {("str", "float", "float", "str", "str")}
    neuron = next(args for addr, args in got if addr == "/neurojam/neuron")
    assert neuron[4] == "osc-rig" and "." in neuron[0]


def test_osc_is_built_and_sent_off_the_calling_thread_and_close_sends_what_is_queued():
    """A pad's callback or the timeline only queues: while building a message is held up, the call still returns."""
    from pythonosc.osc_message_builder import OscMessageBuilder

    from bridge.osc import OscOut

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    osc = OscOut([f"127.0.0.1:{receiver.getsockname()[1]}"])
    release = threading.Event()

    def held_builder(address):
        assert release.wait(5.0)
        return OscMessageBuilder(address=address)

    osc._builder = held_builder
    done = threading.Event()
    threading.Thread(target=lambda: (osc.pad(3), osc.note("pet", 60, 100, 9), done.set()), daemon=True).start()
    assert done.wait(1.0), "the sender waited for the message to be built"
    release.set()
    assert receiver.recv(2048).startswith(b"/neurojam/pad")
    for pad in range(20):
        osc.pad(pad)
    osc.close()  # the queue is flushed before the socket closes
    got = [receiver.recv(2048) for _ in range(21)]
    assert got[0].startswith(b"/neurojam/note") and osc.sent == 22 and osc.errors == 0
    osc.pad(1)  # after close: dropped, never an error
    receiver.close()


def test_the_export_gives_each_source_and_each_brain_voice_its_track_and_the_pet_the_drum_channel(tmp_path):
    from bridge.messages import Accomp, AccompNote
    from recording.export import jam_to_midi
    from recording.jam import Jam, PlayedNote

    notes = [PlayedNote("pet", 1.0, 1.2, 72, 100, 0), PlayedNote("human", 1.0, 1.5, 62, 90, 0),
             PlayedNote("brain", 1.0, 2.0, 50, 70, 1), PlayedNote("brain", 1.5, 2.0, 66, 70, 2),
             PlayedNote("brain", 2.0, 2.5, 69, 70, 5), PlayedNote("marker", 1.1, 1.2, 96, 127, 15)]
    jam = Jam(notes=notes, beats=[], treats=[], neurons=[], start=0.0, end=3.0)
    asked = [AccompNote(note=50, velocity=70, channel=1, duration=1.0, due_beat=2.0,
                        neurons=["0.7", "0.9", "0.11", "0.12"]),
             AccompNote(note=66, velocity=70, channel=2, duration=0.5, due_beat=3.0, neurons=["1.42"]),
             AccompNote(note=69, velocity=70, channel=5, duration=0.5, due_beat=4.0, neurons=["prediction"])]
    jam.accomps = [Accomp(notes=asked)]
    mid = jam_to_midi(jam)
    names = [t.name for t in mid.tracks]
    voices = ["brain: layer 0 units 0.7, 0.9, 0.11 ... (channel 2)", "brain: layer 1 units 1.42 (channel 3)",
              "brain: the model's prediction (channel 6)"]
    assert names == ["neurojam", "pet", "human", "marker", *voices, "metronome"]  # named by what plays there
    track = {t.name: t for t in mid.tracks}
    assert {m.channel for m in track["pet"] if m.type == "note_on"} == {9}
    programs = [next(m.program for m in track[n] if m.type == "program_change") for n in names if "brain" in n]
    assert len(set(programs)) == 3
    assert {m.channel for m in track[voices[1]] if m.type == "note_on"} == {2}
    mid.save(tmp_path / "jam.mid")  # MIDI track names are Latin-1: the names must encode


def test_doctor_checks_each_sync_target():
    from neurojam.cli import doctor

    cfg = load_config(None, ["rig.sync.source=link", "rig.sync.clock_out=virtual",
                             "osc.targets=['localhost:9000', 'no-such-host.invalid:9000']"])
    checks = {(c.name, c.detail.split(":")[0]): c for c in doctor.check_sync(cfg, listen_s=0.3)}
    assert checks[("OSC target", "localhost")].ok is True
    assert checks[("OSC target", "no-such-host.invalid")].ok is False
    link = next(c for (name, _), c in checks.items() if name == "Ableton Link")
    assert link.ok in (True, None) and "peer" in link.detail
    assert next(c for (name, _), c in checks.items() if name == "MIDI clock out").ok is True
