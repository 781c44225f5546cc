"""The brain as a real process over real ZeroMQ: events in, neurons and accompaniment out; bad input survived."""

import os
import subprocess
import sys
import time

import msgspec
import pytest

from bridge.link import Link
from bridge.messages import Accomp, Beat, Hello, MessageError, Neurons, Note, Pad, Ping, Steer, SteerReply
from neurojam import processes
from tests.conftest import LAYERS_VALID, NEURONS_VALID, ROOT, run_cli, run_cli_each


def start_brain(ports, *sets, security=None):
    """A brain process, ready (it answered a ping over the wire); ``security``: the probe's keys, when it wants
    them."""
    return processes.start_brain(ports, "--set", "brain.sonify.subdivision=2", *sets, cwd=ROOT, security=security)


def collect(link, seconds, until=None):
    got = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        link.tick()
        got += link.receive(timeout_ms=20)
        if until and until(got):
            break
    return got


def play(link, t0, beats=8, tempo=120.0):
    period = 60 / tempo
    for i in range(beats):
        bt = t0 + i * period
        link.send(Beat(index=i, bar=i // 4, beat=i % 4, tempo_bpm=tempo, time=bt))
        link.send(Note(source="human", note=62 + (i % 5), velocity=90, on=True))
        if i % 2:
            link.send(Pad(pad=0, down=True))
            link.send(Note(source="pet", note=60, velocity=110, on=True, channel=9))
        time.sleep(0.04)  # further apart than one onset (brain/corpus_style.py: ONSET_S)


def test_events_in_accomp_and_neurons_out_on_the_beat_grid(ports):
    brain = start_brain(ports)
    rig = Link("rig", "rig", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1)
    try:
        collect(rig, 3, until=lambda g: any(isinstance(m, (Hello, Ping)) for m in g))
        t0 = time.monotonic()
        play(rig, t0, beats=16)  # the band waits for 8 human notes to hear the key
        got = collect(rig, 10, until=lambda g: sum(isinstance(m, Neurons) for m in g) >= 24)
    finally:
        rig.close()
        brain.terminate()
        brain.wait(timeout=15)
    neurons = [m for m in got if isinstance(m, Neurons)]
    accomps = [m for m in got if isinstance(m, Accomp)]
    assert len(neurons) >= 12 and accomps
    assert all(len(n.hits) == 4 for n in neurons if n.hits)
    assert any(h.label for n in neurons for h in n.hits)  # labels from the shipped stats
    assert any(n.text.startswith(("C", "D", "E", "F", "G", "A", "B")) for n in neurons)
    for a in accomps:
        for note in a.notes:
            assert note.due_beat is not None and (note.due_beat * 2) == int(note.due_beat * 2)  # on the grid
            assert note.neurons == ["prediction"] or (note.neurons and all("." in x for x in note.neurons))
        assert len(a.chord) == 3 and a.key  # what the brain heard, recorded with what it played


def test_brain_survives_garbage_and_refuses_bad_requests(ports):
    import zmq

    brain = start_brain(ports)
    from bridge.security import Security

    raw = zmq.Context.instance().socket(zmq.PUSH)
    Security().apply(raw, server=False)  # a local process with its own connection token
    raw.connect(f"tcp://127.0.0.1:{ports}")
    rig = Link("rig", "rig", events_port=ports, commands_port=ports + 1, heartbeat_s=0.1)
    try:
        collect(rig, 2)
        for frame in (os.urandom(100), b"", b"\x00" * 100_000,
                      msgspec.msgpack.encode({"kind": "teleport"}),
                      msgspec.msgpack.encode({"kind": "note", "source": "pet", "note": 999})):
            raw.send(frame)
        rig.send(Steer(layer=0, neuron=100000, factor=0.0))
        rig.send(Steer(layer=99, neuron=1, factor=0.0))
        raw.send(msgspec.msgpack.encode({"kind": "steer", "v": 2, "node": "x", "layer": 0, "neuron": 5, "factor": 99.0}))
        rig.send(Steer(layer=1, neuron=5, factor=0.0))
        got = collect(rig, 10, until=lambda g: sum(isinstance(m, SteerReply) for m in g) >= 3)
        refusals = [m.reason for m in got if isinstance(m, SteerReply) and not m.applied]
        assert len(refusals) == 2
        assert any(NEURONS_VALID in r for r in refusals) and any(LAYERS_VALID in r for r in refusals)
        assert any(isinstance(m, SteerReply) and m.applied for m in got)
        with pytest.raises(MessageError, match="factor"):  # out of range fails at the sender, not at the brain
            rig.send(Steer(layer=0, neuron=5, factor=99.0))
        play(rig, time.monotonic(), beats=4)  # still working
        got = collect(rig, 10, until=lambda g: any(isinstance(m, Neurons) for m in g))
        assert any(isinstance(m, Neurons) for m in got)
        assert brain.poll() is None
    finally:
        raw.close(linger=0)
        rig.close()
        brain.terminate()
        brain.wait(timeout=15)


def test_friendly_errors_exit_2():
    cases = ((["--model", "solu-11"], "Did you mean 'solu-1l'"),
             (["--set", "brain.layers=[99]"], LAYERS_VALID),
             (["--set", "brain.steering=[{layer: 0, neuron: 100000}]"], NEURONS_VALID))
    for (_, text), r in zip(cases, run_cli_each([("brain", "--seconds", "1", *args) for args, _ in cases])):
        assert r.returncode == 2, r.stderr
        assert text in r.stderr and "Traceback" not in r.stderr


def test_steer_command_reaches_a_running_brain(ports):
    brain = start_brain(ports)
    sets = ["--set", f"bridge.events_port={ports}", "--set", f"bridge.commands_port={ports + 1}"]
    try:
        ok = run_cli("steer", "1.42", "0", *sets)
        assert ok.returncode == 0 and "the brain applied 1.42 × 0" in ok.stdout, ok.stdout + ok.stderr
        bad = run_cli("steer", "1.4200", "0", *sets)
        assert bad.returncode == 2 and NEURONS_VALID in bad.stderr
    finally:
        brain.terminate()
        brain.wait(timeout=15)
    gone = run_cli("steer", "1.42", "0", "--timeout", "1", *sets)
    assert gone.returncode == 2 and "no brain" in gone.stderr


def test_ctrl_c_while_the_model_loads_stops_the_brain(ports):
    """Importing torch and transformer_lens used to swallow the interrupt: the brain loaded and ran on."""
    import signal

    args = [sys.executable, "-m", "neurojam.cli", "brain", "--set", f"bridge.events_port={ports}",
            "--set", f"bridge.commands_port={ports + 1}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "loading" in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)  # while it loads
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130) and "stopped" in out, out


def test_demo_passes_set_to_both_nodes(tmp_path):
    """`neurojam demo --set KEY=VALUE` reaches the nodes as a --set (it used to arrive as a bare argument)."""
    r = run_cli("demo", "--seconds", "3", "--no-view", "--out", str(tmp_path), "--set", "rig.tempo_bpm=90",
                "--set", "brain.sonify.gate=0.9", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    from recording import open_session

    jam = open_session(tmp_path / "session").jam
    assert jam.beats and all(b.tempo_bpm == 90 for b in jam.beats)  # the user's value wins over the demo's 112
    bad = run_cli("demo", "--seconds", "3", "--no-view", "--out", str(tmp_path / "b"), "--set", "rig.tempoo=90")
    assert bad.returncode == 2 and "Did you mean 'tempo_bpm'" in bad.stderr
