"""The codec alone, no sockets: every kind round-trips; bad frames fail with a reason."""

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.messages import (
    KINDS,
    MAX_FRAME_BYTES,
    Accomp,
    AccompNote,
    Beat,
    BrainStatus,
    CardExample,
    CardRequest,
    FrameError,
    Heartbeat,
    Hello,
    Monitor,
    NeuronCard,
    NeuronHit,
    Neurons,
    Note,
    Pad,
    Ping,
    Pong,
    Refused,
    RigHealth,
    Steer,
    SteerReply,
    Tempo,
    TrainingTrial,
    TreatRequest,
    TreatResult,
    decode,
    encode,
)

SAMPLES = [
    Hello(role="rig", software="0.1", session="s1"),
    Heartbeat(),
    Ping(),
    Pong(ping_seq=3, ping_t=1.5),
    Pad(pad=3, down=True),
    Note(source="pet", note=36, velocity=110, on=True, channel=9),
    Beat(index=17, bar=4, beat=1, beats_per_bar=4, tempo_bpm=112.0, time=123.25),
    Accomp(notes=[AccompNote(note=64, velocity=70, channel=2, duration=0.5, due_beat=18.5, neurons=["1.42"]),
                  AccompNote(note=52, due_time=124.0)], event_seq=9),
    TreatRequest(source="brain", request_id=4, why="neuron 1.42 at 0.91"),
    TreatResult(outcome="refused", source="brain", request_id=4, refusal="min_interval", detail="min_interval (8 s)",
                beat_index=20),
    Neurons(event_seq=9, event_node="rig", text="C4", hits=[NeuronHit(layer=1, index=42, activation=2.5, normalized=0.9, label="after a rising 4th")]),
    Steer(layer=0, neuron=5, factor=0.0, rig="dog"),
    Refused(reason="another node called 'dog' is already connected"),
    TrainingTrial(level=2, level_after=3, level_name="two in a row", pet="rex", pad=1, success=True, earned=True,
                  offset_ms=-12.5),
    SteerReply(applied=False, layer=0, neuron=5, factor=0.0, reason="no neuron 0.5000"),
    Tempo(bpm=96.0, rig="dog"),
    Monitor(rig="dog", direction="in", frame=encode(Note(source="pet", note=60))),
    BrainStatus(model="notes-default", device="cpu", n_layers=2, d_mlp=512, step_ms_p50=1.2, stage_clock_offset_s=0.001,
                rigs=[RigHealth(node="dog", clock_offset_s=0.0004, rtt_ms=0.3, events=12, steering={"1.42": 0.0})],
                dropped_in={"malformed": 1}),
    CardRequest(layer=1, neuron=42, rig="dog"),
    NeuronCard(layer=1, neuron=42, label="bar line", corpus=[CardExample(words=["C4", "|"], acts=[0.1, 2.0])],
               promotes=["G4 +0.81"]),
]


def test_every_kind_has_a_sample():
    assert {type(m) for m in SAMPLES} == set(KINDS.values())


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_every_kind(msg):
    msg.node, msg.seq, msg.t = "n1", 7, 42.5
    assert decode(encode(msg)) == msg


@settings(max_examples=200, deadline=None)
@given(note=st.integers(0, 127), vel=st.integers(0, 127), ch=st.integers(0, 15), on=st.booleans(),
       src=st.sampled_from(["pet", "human", "brain", "metronome", "marker"]), seq=st.integers(0, 2**62), t=st.floats(0, 1e9))
def test_note_round_trip_property(note, vel, ch, on, src, seq, t):
    msg = Note(source=src, note=note, velocity=vel, channel=ch, on=on, seq=seq, t=t, node="x")
    assert decode(encode(msg)) == msg


@settings(max_examples=100, deadline=None)
@given(notes=st.lists(st.builds(AccompNote, note=st.integers(0, 127), velocity=st.integers(0, 127),
                                channel=st.integers(0, 15), duration=st.floats(0.01, 16),
                                due_beat=st.floats(0, 1e6), neurons=st.lists(st.text(max_size=8), max_size=3)),
                      max_size=64))
def test_accomp_round_trip_property(notes):
    msg = Accomp(notes=notes)
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("frame,reason", [
    (b"", "malformed"),
    (b"\xc1\xc1\xc1", "malformed"),
    (encode(Note(source="pet", note=60))[:-2], "malformed"),
    (msgspec.msgpack.encode([1, 2, 3]), "malformed"),
    (msgspec.msgpack.encode({"kind": "teleport", "v": 1}), "unknown_kind"),
    (msgspec.msgpack.encode({"kind": "note", "source": "pet", "note": 128}), "invalid"),
    (msgspec.msgpack.encode({"kind": "note", "source": "cat", "note": 60}), "invalid"),
    (msgspec.msgpack.encode({"kind": "pad", "pad": "one", "down": True}), "invalid"),
    (msgspec.msgpack.encode({"kind": "heartbeat", "v": 0}), "old_version"),
    (b"\x00" * (MAX_FRAME_BYTES + 1), "oversized"),
])
def test_bad_frames_fail_with_reason(frame, reason):
    with pytest.raises(FrameError) as exc:
        decode(frame)
    assert exc.value.reason == reason


def test_newer_version_with_unknown_fields_is_accepted():
    frame = msgspec.msgpack.encode({"kind": "note", "v": 7, "source": "human", "note": 61, "mood": "happy"})
    msg = decode(frame)
    assert isinstance(msg, Note) and msg.note == 61 and msg.v == 7


def test_range_errors_state_the_range():
    with pytest.raises(FrameError, match="<= 127"):
        decode(msgspec.msgpack.encode({"kind": "note", "source": "pet", "note": 300}))
