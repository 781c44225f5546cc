"""The bridge over real ZeroMQ sockets between real processes."""

import json
import os
import subprocess
import sys
import time

import msgspec
import zmq

from bridge.link import Link
from bridge.messages import Heartbeat, Hello, Note, encode
from tests.conftest import ROOT, run_cli

RECEIVER = ROOT / "bridge" / "selftest.py"


def start_receiver(port: int, expect: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bridge.selftest", "--receive", str(port), str(expect)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def raw_sender(port: int) -> zmq.Socket:
    from bridge.security import Security

    sock = zmq.Context.instance().socket(zmq.PUSH)
    Security().apply(sock, server=False)  # a local process with its own connection token
    sock.linger = 1000
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_garbage_frames_are_counted_and_receiver_keeps_running(ports):
    proc = start_receiver(ports, expect=5)
    sock = raw_sender(ports)
    garbage = [
        os.urandom(64),  # random bytes
        encode(Note(source="pet", note=60))[:-3],  # truncated
        b"\x00" * (70 * 1024),  # huge
        msgspec.msgpack.encode({"kind": "note", "source": "pet", "note": "loud"}),  # wrong types
        msgspec.msgpack.encode({"kind": "note", "source": "pet", "note": 999}),  # out of range
        msgspec.msgpack.encode({"kind": "hologram", "v": 2}),  # unknown kind
    ]
    for frame in garbage:
        sock.send(frame)
    for i in range(5):  # then real notes: the receiver must still be listening
        sock.send(encode(Note(source="human", note=60 + i, node="raw", seq=i, t=time.monotonic())))
    res = result(proc)
    sock.close()
    assert proc.returncode == 0
    assert res["notes"] == 5
    assert res["dropped_in"] == {"malformed": 2, "oversized": 1, "invalid": 2, "unknown_kind": 1}


def test_gaps_are_detected(ports):
    proc = start_receiver(ports, expect=4)
    sock = raw_sender(ports)
    for seq in (0, 1, 5, 6):  # 2, 3, 4 lost
        sock.send(encode(Note(source="pet", note=60, node="r", seq=seq, t=time.monotonic())))
    res = result(proc)
    sock.close()
    assert res["gaps"] == 1 and res["lost_in_gaps"] == 3


def test_a_forged_sequence_number_is_not_counted_as_loss(ports):
    proc = start_receiver(ports, expect=4)
    sock = raw_sender(ports)
    for seq in (0, 1, 500_000_000, 500_000_001):  # a forger's number: no queue ever held 500 million messages
        sock.send(encode(Note(source="pet", note=60, node="r", seq=seq, t=time.monotonic())))
    res = result(proc)
    sock.close()
    assert res["gaps"] == 0 and res["lost_in_gaps"] == 0 and res["seq_jumps"] == 1


def test_sender_never_blocks_without_receiver_and_reconnects(ports):
    link = Link("rig", "rig-test", events_port=ports, commands_port=ports + 1, hwm=100)
    # No brain at all: 2,000 sends return at once, each dropped and counted.
    sent = sum(link.send(Note(source="pet", note=60)) for _ in range(2000))
    assert sent == 0
    assert link.stats.dropped_out["peer_absent"] == 2000

    first = start_receiver(ports, expect=10)
    deadline = time.monotonic() + 10
    delivered = 0
    while delivered < 10 and time.monotonic() < deadline:
        delivered += link.send(Note(source="pet", note=61))
        time.sleep(0.01)
    assert result(first)["notes"] == 10

    # The receiver is gone (restart): sends keep returning immediately.
    for _ in range(500):
        link.send(Note(source="pet", note=62))
    second = start_receiver(ports, expect=10)
    delivered = 0
    deadline = time.monotonic() + 10
    while delivered < 10 and time.monotonic() < deadline:
        delivered += link.send(Note(source="pet", note=63))
        time.sleep(0.01)
    assert result(second)["notes"] == 10
    link.close()
    link.close()  # safe twice


def test_commands_flow_back_and_clock_offset(ports):
    brain = Link("brain", "b", events_port=ports, commands_port=ports + 1, heartbeat_s=0.05)
    rig = Link("rig", "r", events_port=ports, commands_port=ports + 1, heartbeat_s=0.05)
    got_rig, got_brain = [], []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not ("r" in brain.peer_offsets and brain.peer_offsets["r"].ready
                                               and got_rig):
        rig.tick()
        brain.tick()
        got_brain += rig.receive(10)
        got_rig += brain.receive(10)
    assert any(isinstance(m, Heartbeat) for m in got_rig)
    offset = brain.peer_offsets["r"]
    assert abs(offset.offset) < 0.01 and offset.rtt < 0.05  # same machine, same clock
    assert not hasattr(brain, "offset")  # the brain keeps one clock per peer, never an average of them
    stats = brain.stats_dict()
    assert stats["peers"]["r"]["rtt_ms"] < 50 and stats["peer_alive"] and "rtt_ms" not in stats
    rig.close()
    brain.close()


def test_commands_reach_only_their_rig_and_a_duplicate_id_is_refused(ports):
    """Two rigs on one brain get only what is addressed to them; a second 'a' gets a refusal and nothing else."""
    from bridge.messages import Accomp, AccompNote, Refused

    brain = Link("brain", "b", events_port=ports, commands_port=ports + 1)
    a = Link("rig", "a", events_port=ports, commands_port=ports + 1)
    b = Link("rig", "b-rig", events_port=ports, commands_port=ports + 1)

    def pump(until, *links, seconds=5.0):
        got = {id(x): [] for x in links}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until(got):
            brain.receive(timeout_ms=10)
            for x in links:
                got[id(x)] += x.receive(timeout_ms=5)
        return got

    pump(lambda g: {"a", "b-rig"} <= set(brain.peers), a, b)
    for i in range(20):
        brain.send(Accomp(notes=[AccompNote(note=60, due_beat=1.0)], event_seq=i), to="a" if i % 2 else "b-rig")
    got = pump(lambda g: sum(isinstance(m, Accomp) for v in g.values() for m in v) >= 20, a, b)
    seqs = {name: sorted(m.event_seq for m in got[id(x)] if isinstance(m, Accomp)) for name, x in (("a", a), ("b", b))}
    assert seqs == {"a": list(range(1, 20, 2)), "b": list(range(0, 20, 2))}  # no cross-talk
    twin = Link("rig", "a", events_port=ports, commands_port=ports + 1)  # a second rig called 'a', while 'a' lives
    got = pump(lambda g: twin.refused is not None, a, twin)
    assert twin.refused and "already connected" in twin.refused and brain.stats.refused_duplicates == 1
    brain.send(Accomp(notes=[AccompNote(note=60, due_beat=1.0)], event_seq=99), to="a")
    got = pump(lambda g: any(isinstance(m, Accomp) for m in g[id(a)]), a, twin)
    assert any(isinstance(m, Accomp) for m in got[id(a)]) and not any(isinstance(m, Accomp) for m in got[id(twin)])
    assert not any(isinstance(m, Refused) for m in got[id(a)])
    for x in (a, b, twin, brain):
        x.close()


def test_a_restarted_rig_keeps_its_identity(ports):
    brain = Link("brain", "b", events_port=ports, commands_port=ports + 1, liveness_s=0.3)
    first = Link("rig", "a", events_port=ports, commands_port=ports + 1)
    deadline = time.monotonic() + 5
    while "a" not in brain.peers and time.monotonic() < deadline:
        brain.receive(timeout_ms=10)
    old = brain.peers["a"].routing_id
    first.close()  # the rig process dies
    time.sleep(0.4)  # longer than liveness_s
    again = Link("rig", "a", events_port=ports, commands_port=ports + 1)
    deadline = time.monotonic() + 5
    while brain.peers["a"].routing_id == old and time.monotonic() < deadline:
        brain.receive(timeout_ms=10)
    assert brain.peers["a"].routing_id != old and brain.stats.refused_duplicates == 0 and again.refused is None
    again.close()
    brain.close()


def test_hello_resets_sequence_tracking(ports):
    brain = Link("brain", "b", events_port=ports, commands_port=ports + 1)
    brain.accept(encode(Note(source="pet", note=60, node="r", seq=50)))
    brain.accept(encode(Hello(role="rig", node="r", seq=0)))
    brain.accept(encode(Note(source="pet", note=60, node="r", seq=1)))
    assert brain.stats.gaps == 0 and brain.stats.peer_restarts == 1
    brain.close()


def test_writable_waits_for_a_peer_without_consuming_sequence_numbers(ports):
    rig = Link("rig", "r", events_port=ports, commands_port=ports + 1)
    assert not rig.writable(timeout_ms=100)
    brain = Link("brain", "b", events_port=ports, commands_port=ports + 1)
    assert rig.writable(timeout_ms=5000)
    assert rig.send(Note(source="pet", note=60)) and rig.stats.sent == 2  # its hello, then the note
    got = []
    deadline = time.monotonic() + 5
    while not any(isinstance(m, Note) for m in got) and time.monotonic() < deadline:
        got += brain.receive(timeout_ms=50)
    assert next(m for m in got if isinstance(m, Note)).seq == 0  # nothing was spent while waiting, nor by hello
    rig.close()
    brain.close()


def test_selftest_draws_its_latencies(tmp_path, ports):
    r = run_cli("bridge", "selftest", "--count", "500", "--port", str(ports), "--plot", str(tmp_path / "lat.png"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "lat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "picture:" in r.stdout
