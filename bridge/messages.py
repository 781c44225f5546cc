"""The wire: every message kind neurojam nodes exchange, defined once.

Frame layout: one ZeroMQ frame holding one msgpack map. Every map carries
``kind`` (the tag), ``v`` (protocol version), ``node`` (sender id), ``seq``
(per-sender, +1 per message) and ``t`` (the sender's monotonic clock, seconds).
The rest depends on the kind, as declared below.

``encode`` and ``decode`` are the documented pair. ``decode`` validates types
and ranges and raises :class:`FrameError` whose ``reason`` is one of
:data:`DROP_REASONS`; receivers count frames by that reason and never crash.

Compatibility: a frame from a newer protocol version is accepted when its
kind is known here; fields this version does not know are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024

Midi7 = Annotated[int, msgspec.Meta(ge=0, le=127)]
Channel = Annotated[int, msgspec.Meta(ge=0, le=15)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=60.0)]
Bpm = Annotated[float, msgspec.Meta(ge=20.0, le=300.0)]
Source = Literal["pet", "human", "brain", "metronome"]

DROP_REASONS = ("malformed", "oversized", "invalid", "unknown_kind", "old_version")


class FrameError(ValueError):
    """A frame that cannot become a message; ``reason`` says which way it failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Message(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=False):
    v: int = PROTOCOL_VERSION
    node: str = ""
    seq: Annotated[int, msgspec.Meta(ge=0)] = 0
    t: float = 0.0


class Hello(Message, tag="hello"):
    """First words after a (re)start; lets the peer reset its sequence tracking."""

    role: Literal["rig", "brain", "replay", "tool"] = "tool"
    software: str = ""
    session: str = ""


class Heartbeat(Message, tag="heartbeat"):
    """Liveness; sent by both nodes every ``bridge.heartbeat_s``."""


class Ping(Message, tag="ping"):
    """Clock probe: the peer answers with a Pong carrying its own clock."""


class Pong(Message, tag="pong"):
    ping_seq: int = 0
    ping_t: float = 0.0


class Pad(Message, tag="pad"):
    pad: Annotated[int, msgspec.Meta(ge=0, le=63)]
    down: bool


class Note(Message, tag="note"):
    source: Source
    note: Midi7
    velocity: Midi7 = 100
    on: bool = True
    channel: Channel = 0


class Beat(Message, tag="beat"):
    """A beat of the rig's grid. ``index`` counts beats since the clock started;
    ``time`` is the rig's monotonic time of the beat (the brain addresses
    later beats as ``time + (b - index) * 60 / tempo_bpm``)."""

    index: Annotated[int, msgspec.Meta(ge=0)]
    bar: Annotated[int, msgspec.Meta(ge=0)]
    beat: Annotated[int, msgspec.Meta(ge=0, le=31)]
    beats_per_bar: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4
    tempo_bpm: Bpm = 120.0
    time: float = 0.0


class AccompNote(msgspec.Struct, kw_only=True):
    """One note the rig should play. Exactly one of ``due_time`` (rig clock,
    seconds) or ``due_beat`` (fractional beat index on the rig's grid) is set."""

    note: Midi7
    velocity: Midi7 = 80
    channel: Channel = 1
    duration: Annotated[float, msgspec.Meta(gt=0.0, le=16.0)] = 0.25
    due_time: float | None = None
    due_beat: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    neurons: list[str] = []


class Accomp(Message, tag="accomp"):
    notes: Annotated[list[AccompNote], msgspec.Meta(max_length=64)]
    event_seq: int = -1


class Reward(Message, tag="reward"):
    action: Literal["request", "dispensed", "refused"]
    source: Literal["brain", "rig", "manual"] = "brain"
    request_id: int = 0
    reason: str = ""
    beat_index: int = -1


class NeuronHit(msgspec.Struct, kw_only=True, array_like=True):
    layer: Annotated[int, msgspec.Meta(ge=0)]
    index: Annotated[int, msgspec.Meta(ge=0)]
    activation: float
    normalized: float
    label: str = ""


class Neurons(Message, tag="neurons"):
    """Top-k neurons at one event's tokens."""

    event_seq: int = -1
    event_node: str = ""
    text: str = ""
    hits: Annotated[list[NeuronHit], msgspec.Meta(max_length=256)] = []
    step_ms: float = 0.0


class Control(Message, tag="control"):
    """Live control. ``steer``: multiply neuron ``layer.neuron`` by ``factor``;
    ``unsteer``: drop all steering; ``tempo``; ``mode``; ``treat`` (manual);
    ``ack`` / ``refused`` (with ``reason``) answer a request."""

    action: Literal["steer", "unsteer", "tempo", "mode", "treat", "stop", "ack", "refused"]
    layer: int = -1
    neuron: int = -1
    factor: float = 1.0
    tempo_bpm: float = 0.0
    mode: str = ""
    reason: str = ""


KINDS: dict[str, type[Message]] = {
    cls.__struct_config__.tag: cls
    for cls in (Hello, Heartbeat, Ping, Pong, Pad, Note, Beat, Accomp, Reward, Neurons, Control)
}
AnyMessage = Union[Hello, Heartbeat, Ping, Pong, Pad, Note, Beat, Accomp, Reward, Neurons, Control]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)
_header_decoder = msgspec.msgpack.Decoder(dict)


def encode(msg: Message) -> bytes:
    """Message → one frame (msgpack). Inverse of :func:`decode`."""
    return _encoder.encode(msg)


def decode(frame: bytes) -> Message:
    """One frame → a validated Message, or :class:`FrameError` saying why not."""
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError("oversized", f"{len(frame)} bytes > {MAX_FRAME_BYTES}")
    try:
        msg = _decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise _classify(frame, exc) from exc
    except Exception as exc:  # DecodeError, UnicodeDecodeError, RecursionError...: never crash a node
        raise FrameError("malformed", f"{type(exc).__name__}: {exc}") from exc
    if msg.v < MIN_PROTOCOL_VERSION:
        raise FrameError("old_version", f"protocol {msg.v} < {MIN_PROTOCOL_VERSION}")
    return msg


def _classify(frame: bytes, exc: Exception) -> FrameError:
    """Tell an unknown kind (skip quietly) from a known kind with bad fields."""
    try:
        header = _header_decoder.decode(frame)
    except Exception:
        return FrameError("malformed", str(exc))
    kind = header.get("kind")
    if isinstance(kind, str) and kind not in KINDS:
        return FrameError("unknown_kind", f"kind {kind!r}")
    return FrameError("invalid", str(exc))
