"""The brain core in-process, no sockets: the same answers as the brain process over the wire, and its rules
(steering, who may steer which rig, what stages see) checked as plain calls."""

import copy
import time

import msgspec
import pytest

from bridge.identity import IdentityBook
from bridge.link import Link, LinkSnapshot
from bridge.messages import (Accomp, Beat, CardRequest, Hello, Monitor, Neurons, Note, Ping, Pong, Steer, SteerReply,
                             TreatRequest)
from recording.log import read_session
from recording.synthetic import write_melody_session
from neurojam import processes
from tests.conftest import ROOT

Z = "Z" * 40  # a CurveZMQ key's shape: the book only compares them


@pytest.fixture(scope="module")
def model():
    from brain.models import load_model

    return load_model("notes-default", "cpu")


def core(model, *sets, identity=None):
    from brain.live.core import BrainCore
    from neurojam.config import load_config

    return BrainCore(load_config(None, list(sets)).brain, model, identity=identity)


def answers_of(messages) -> tuple[list[dict], list[float]]:
    """What a rig is told, without the link's stamps (node, seq, send time) or timing; the activations apart (a
    batched and a one-event forward differ in the 6th digit, so they are compared to a tolerance)."""
    out, values = [], []
    for m in messages:
        if isinstance(m, (Accomp, Neurons, TreatRequest)):
            d = msgspec.to_builtins(m)
            for k in ("node", "seq", "t", "step_ms"):
                d.pop(k, None)
            for hit in d.get("hits", []):
                values += [hit.pop(2), hit.pop(2)]  # activation, normalized
            out.append(d)
    return out, values


def over_the_wire(events: list, port: int) -> list:
    """The events sent as recorded to a `neurojam brain` process over real sockets; what came back."""
    brain = processes.start_brain(port, cwd=ROOT)
    got = []
    try:
        link = Link("replay", events[0].node, events_port=port, commands_port=port + 1, hwm=100_000)
        deadline, answered = time.monotonic() + 10, False  # until the brain can route answers to us (a pong)
        while not answered:
            assert time.monotonic() < deadline, "the brain never answered a ping"
            ping = Ping()
            link.send(ping)  # the first may go before the socket connects: sent again until answered
            answered = any(isinstance(m, Pong) and m.ping_seq == ping.seq for m in link.receive(timeout_ms=200))
        for i in range(0, len(events), 16):
            for m in events[i:i + 16]:
                while not link.send(copy.copy(m), as_recorded=True):
                    got += link.receive(timeout_ms=5)
            got += link.receive(timeout_ms=20)
        quiet = time.monotonic()
        while time.monotonic() - quiet < 2.0:  # until the brain has been silent for 2 s
            new = [m for m in link.receive(timeout_ms=50) if isinstance(m, (Accomp, Neurons, TreatRequest))]
            if new:
                got, quiet = got + new, time.monotonic()
        link.close()
    finally:
        processes.stop_process(brain)
    return got


def test_the_core_in_process_answers_as_the_brain_process_does_on_a_recorded_session(model, tmp_path, ports):
    melody = [(b * 0.5, 0.45, 60 + [0, 4, 7, 12, 7, 4][b % 6]) for b in range(48)]
    src = write_melody_session(tmp_path / "src", melody, tempo_bpm=120, pet_every_beats=3)
    events = read_session(src).rig_side()
    wire = answers_of(over_the_wire(events, ports))  # a real process, real sockets

    brain = core(model)
    in_process = []
    for i in range(0, len(events), 7):  # batched otherwise than over the wire: the answers must not depend on it
        in_process += [msg for to, msg in brain.handle(events[i:i + 7]) if to == events[0].node]
    mine, mine_values = answers_of(in_process)
    assert len(wire[0]) > 60 and any(isinstance(m, Accomp) for m in in_process)
    assert mine == wire[0]  # the same notes, chords, keys, treat requests, neurons and labels, in the same order
    assert mine_values == pytest.approx(wire[1], abs=1e-4)


def test_steering_is_answered_and_refused_with_reasons(model):
    brain = core(model)
    brain.handle([Beat(index=0, bar=0, beat=0, time=1.0, node="rig", seq=0)])
    [(to, ok)] = brain.handle([Steer(layer=1, neuron=42, factor=0.0, node="tool", seq=0)])
    assert to == "tool" and ok == SteerReply(applied=True, layer=1, neuron=42, factor=0.0, units="neurons")
    assert brain.rigs["rig"].stream.steering.factors == {(1, 42): 0.0}
    [(_, bad)] = brain.handle([Steer(layer=1, neuron=99_999, factor=2.0, node="tool", seq=1)])
    assert not bad.applied and "out of range" in bad.reason
    [(_, ghost)] = brain.handle([Steer(layer=1, neuron=1, factor=2.0, rig="nobody", node="tool", seq=2)])
    assert not ghost.applied and "no rig called 'nobody'" in ghost.reason
    assert brain.counts["refused_controls"] == 2


def test_a_rig_cannot_steer_or_treat_another(model):
    book = IdentityBook(identities={Z: "rig:a"}, keyed=True)
    assert book.claim("a", Z, "rig") is None and book.claim("b", "Y" * 40, "rig") is None
    brain = core(model, identity=book)
    brain.handle([Beat(index=0, bar=0, beat=0, time=1.0, node="a", seq=0), Beat(index=0, bar=0, beat=0, time=1.0, node="b", seq=0)])
    out = brain.handle([Steer(layer=0, neuron=1, factor=0.0, rig="b", node="a", seq=1),
                        TreatRequest(source="manual", rig="b", node="a", seq=2)])
    assert [(to, type(m).__name__, m.applied) for to, m in out] == [("a", "SteerReply", False)]
    assert brain.dropped_in["rig_key_control"] == 2 and brain.rigs["b"].stream.steering.factors == {}


def test_a_rig_key_controls_nothing_and_a_tool_key_for_one_rig_controls_only_it(model, caplog):
    """Issue 41: rig a's key saying hello as a tool (named ``rig:a``, or unnamed but owning rig a) may not retempo,
    treat or steer any rig, its own included; a key allowed as ``tool:a`` controls rig a and never rig b; ``tool``
    reaches both. Each refusal counted; logged once per sender, with the fix."""
    from bridge.messages import Tempo

    rig_key, tool_a, tool_all, other, unnamed = "R" * 40, "T" * 40, "A" * 40, "Y" * 40, "U" * 40
    book = IdentityBook(identities={rig_key: "rig:a", tool_a: "tool:a", tool_all: "tool"}, keyed=True)
    for node, key, role in (("a", rig_key, "rig"), ("b", other, "rig"), ("c", unnamed, "rig"),
                            ("rig-a-as-tool", rig_key, "tool"), ("rig-c-as-tool", unnamed, "tool"),
                            ("tool-a", tool_a, "tool"), ("tool-all", tool_all, "tool")):
        assert book.claim(node, key, role) is None, node
    brain = core(model, identity=book)
    brain.handle([Beat(index=0, bar=0, beat=0, time=1.0, node=r, seq=0) for r in ("a", "b", "c")])
    seq = iter(range(1, 200))

    def controls(node: str, rig: str) -> list:
        return brain.handle([Tempo(bpm=90, rig=rig, node=node, seq=next(seq)),
                             TreatRequest(source="manual", rig=rig, node=node, seq=next(seq)),
                             Steer(layer=0, neuron=1, factor=0.0, rig=rig, node=node, seq=next(seq))])

    for node, own in (("rig-a-as-tool", "a"), ("rig-c-as-tool", "c")):
        for rig in (own, "b", ""):
            before = brain.dropped_in["rig_key_control"]
            out = controls(node, rig)
            assert [(to, m.applied) for to, m in out if isinstance(m, SteerReply)] == [(node, False)], out
            assert not [m for to, m in out if to in ("a", "b", "c")], out
            assert brain.dropped_in["rig_key_control"] == before + 3
    assert all(brain.rigs[r].stream.steering.factors == {} for r in ("a", "b", "c"))
    told = [r.message for r in caplog.records if "rig_key_control" in r.message]
    assert len(told) == 2 and "bridge.identities" in told[0] and "keys init" in told[0]
    before = brain.dropped_in["not_your_rig"]
    out = controls("tool-a", "b")
    assert [(to, m.applied) for to, m in out if isinstance(m, SteerReply)] == [("tool-a", False)]
    assert not [m for to, m in out if to == "b"] and brain.dropped_in["not_your_rig"] == before + 3, out
    out = controls("tool-a", "a")
    assert [m.applied for _, m in out if isinstance(m, SteerReply)] == [True]
    assert {type(m).__name__ for to, m in out if to == "a"} >= {"Tempo", "TreatRequest"}, out
    out = controls("tool-all", "b")
    assert {type(m).__name__ for to, m in out if to == "b"} >= {"Tempo", "TreatRequest"}, out


def test_stages_get_copies_only_while_alive_and_only_of_rigs_they_may_see(model):
    brain = core(model)
    brain.handle([Hello(role="stage", node="stage-1", seq=0)])
    note = Note(source="human", note=62, velocity=90, t=1.0, node="rig", seq=1)
    alive = LinkSnapshot(now=10.0, liveness_s=2.0, last_heard={"stage-1": 9.5, "rig": 9.9})
    copies = [(to, m) for to, m in brain.handle([note], alive) if isinstance(m, Monitor)]
    assert {to for to, _ in copies} == {"stage-1"} and {m.direction for _, m in copies} == {"in", "out"}
    gone = LinkSnapshot(now=20.0, liveness_s=2.0, last_heard={"stage-1": 9.5, "rig": 19.9})
    assert not [m for _, m in brain.handle([msgspec.structs.replace(note, seq=2, t=2.0)], gone)
                if isinstance(m, Monitor)]
    [(to, status)] = brain.status(alive)
    assert to == "stage-1" and [r.node for r in status.rigs] == ["rig"] and status.rigs[0].events == 2


def test_a_card_for_a_neuron_out_of_range_says_so(model):
    [(to, card)] = core(model).handle([CardRequest(layer=99, neuron=0, node="stage-1", seq=0)])
    assert to == "stage-1" and "out of range" in card.error
