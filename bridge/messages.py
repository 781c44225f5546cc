"""The wire: every message kind neurojam nodes exchange, defined once.

Frame layout: one ZeroMQ frame holding one msgpack map. Every map carries
``kind`` (the tag), ``v`` (protocol version), ``node`` (sender id), ``seq``
(per-sender, +1 per message) and ``t`` (the sender's monotonic clock, seconds).
The rest depends on the kind, as declared below.

``encode`` and ``decode`` are the documented pair, and both validate types and
ranges: ``encode`` raises :class:`MessageError` at the sender (a bug there,
caught in tests, not a frame the peer silently drops); ``decode`` raises
:class:`FrameError` whose ``reason`` is one of :data:`DROP_REASONS`; receivers
count frames by that reason and never crash. One meaning per kind: a treat
request and its result, a steering command and its reply, are separate kinds.

Compatibility: a frame from a newer protocol version is accepted when its
kind is known here; fields this version does not know are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

from core.units import Bpm, Channel, Level, Midi7, PadIndex, SteerFactor

PROTOCOL_VERSION = 2
MIN_PROTOCOL_VERSION = 1
"""Version 2 split v1's ``reward`` and ``control`` into one kind per meaning (old logs are upgraded on read)."""
MAX_FRAME_BYTES = 64 * 1024

Source = Literal["pet", "human", "brain", "metronome", "marker"]
"""Who played a note; ``marker`` is the training click the rig plays when a press earns a treat."""
TreatSource = Literal["brain", "rig", "manual"]
Refusal = Literal["disabled", "no_beat", "pending", "max_per_session", "min_interval", "max_per_minute"]
"""Why the rig's dispenser said no: the first three are state, the last three the safety caps."""

DROP_REASONS = ("malformed", "oversized", "invalid", "unknown_kind", "old_version")


class MessageError(ValueError):
    """A message the sender built wrong (a field out of its range): raised by :func:`encode`."""


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

    role: Literal["rig", "brain", "replay", "tool", "stage"] = "tool"
    """A ``stage`` (the live web view) also gets a :class:`Monitor` copy of every rig's traffic."""
    software: str = ""
    session: str = ""


class Heartbeat(Message, tag="heartbeat"):
    """Liveness; sent by both nodes every ``bridge.heartbeat_s``."""


class Ping(Message, tag="ping"):
    """Clock probe: the peer answers with a Pong carrying its own clock."""


class Pong(Message, tag="pong"):
    ping_seq: int = 0
    ping_t: float = 0.0


class Refused(Message, tag="refused"):
    """The brain will not serve this peer (another with its node id is connected); ``reason`` says what to do."""

    reason: str = ""


class Pad(Message, tag="pad"):
    pad: PadIndex
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
    tie: bool = False
    """Extend this note if it is still sounding (a neuron that stays active rings on) instead of striking it
    again; if it is not sounding, play it."""


class Accomp(Message, tag="accomp"):
    notes: Annotated[list[AccompNote], msgspec.Meta(max_length=64)]
    event_seq: int = -1
    chord: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=11)]], msgspec.Meta(max_length=4)] = []
    """Pitch classes (root, third, fifth) of the chord the notes were voiced on: the brain's hearing of the human."""
    key: str = ""
    """The key the brain heard ("D major"), which sets each neuron's role."""


class TreatRequest(Message, tag="treat_request"):
    """Please dispense a treat on the next beat (or downbeat); the rig's caps decide. A ``manual`` request (the
    stage's button) goes to the brain, which passes it to rig ``rig``: it meets the same dispenser and caps."""

    source: TreatSource = "brain"
    request_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    why: str = ""
    rig: str = ""


class TreatResult(Message, tag="treat"):
    """What the rig's dispenser did with a request: dispensed on ``beat_index``, or refused and why."""

    outcome: Literal["dispensed", "refused"]
    source: TreatSource = "brain"
    request_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    refusal: Refusal | None = None
    detail: str = ""
    beat_index: int = -1


class TrainingTrial(Message, tag="trial"):
    """One pet press judged by the rig's curriculum: the level it was judged at, the level after it."""

    level: Level
    level_after: Level
    level_name: str = ""
    pet: str = ""
    pad: PadIndex = 0
    success: bool = False
    earned: bool = False
    """Marked and a treat requested (a success the caps allowed)."""
    offset_ms: float = 0.0
    """Signed distance of the press to the nearest beat."""


class NeuronHit(msgspec.Struct, kw_only=True, array_like=True):
    layer: Annotated[int, msgspec.Meta(ge=0)]
    index: Annotated[int, msgspec.Meta(ge=0)]
    activation: float
    normalized: float
    label: str = ""


Units = Literal["neurons", "features"]
"""What the brain reads and plays: MLP neurons, or the features of the model's sparse dictionary."""


class Neurons(Message, tag="neurons"):
    """Top-k units (neurons, or dictionary features: ``units``) at one event's tokens."""

    event_seq: int = -1
    event_node: str = ""
    text: str = ""
    hits: Annotated[list[NeuronHit], msgspec.Meta(max_length=256)] = []
    step_ms: float = 0.0
    units: Units = "neurons"


class Steer(Message, tag="steer"):
    """Multiply unit ``layer.neuron`` by ``factor`` (0 silences it); ``clear`` drops all steering; ``play`` switches
    what the brain reads and plays."""

    layer: Annotated[int, msgspec.Meta(ge=0)] = 0
    neuron: Annotated[int, msgspec.Meta(ge=0)] = 0
    factor: SteerFactor = 1.0
    clear: bool = False
    rig: str = ""
    """The rig whose brain state to steer ('' : every rig, and rigs yet to come)."""
    skip_layer: bool = False
    """Skip block ``layer`` (its attention and MLP) instead of multiplying a neuron: hear the band without it.
    Undone by ``clear``, like all steering."""
    units: Units | Literal[""] = ""
    """The kind of unit ``layer.neuron`` names ('' : the kind the brain plays now); a feature's factor scales its
    part of the reconstruction (``brain/units/features.py``)."""
    play: Units | Literal[""] = ""
    """Switch every rig's brain to read and play neurons or features (the other fields ignored; steering cleared,
    since a neuron's factor means nothing to a feature)."""


class SteerReply(Message, tag="steer_reply"):
    """The brain's answer to a :class:`Steer`: applied, or refused with the reason."""

    applied: bool
    layer: int = -1
    neuron: int = -1
    factor: float = 1.0
    clear: bool = False
    reason: str = ""
    skip_layer: bool = False
    units: str = ""
    """The kind of unit steered (or, after a ``play``, the kind the brain now plays)."""
    play: str = ""


class Tempo(Message, tag="tempo"):
    """Set rig ``rig``'s tempo from its next beat on (a tool sends it to the brain, which passes it on)."""

    bpm: Bpm
    rig: str = ""


class Monitor(Message, tag="monitor"):
    """The brain's copy, for a stage, of one frame it received from (``in``) or sent to (``out``) rig ``rig``.
    ``frame`` is that message's own encoded frame: a stage decodes it with :func:`decode`."""

    rig: str
    direction: Literal["in", "out"]
    frame: Annotated[bytes, msgspec.Meta(max_length=MAX_FRAME_BYTES - 512)]


class RigHealth(msgspec.Struct, kw_only=True):
    node: str
    alive: bool = True
    last_heard_age_s: float | None = None
    clock_offset_s: float | None = None
    """The rig's clock minus the brain's (add it to a brain time to get the rig's)."""
    rtt_ms: float | None = None
    lost_in_gaps: int = 0
    """Messages from this rig that never arrived (sequence gaps)."""
    events: int = 0
    steering: dict[str, float] = {}
    """'L.N' → factor in force for this rig."""
    corruption: str = ""
    """The layer corruption in force for this rig ('' : none), e.g. 'skip=2' (``brain/corruption.py``)."""


class BrainStatus(Message, tag="brain_status"):
    """Once a second to each stage: the model, the rigs served and the health of their links."""

    model: str = ""
    device: str = ""
    n_layers: int = 0
    d_mlp: int = 0
    rigs: list[RigHealth] = []
    dropped_in: dict[str, int] = {}
    """Frames the brain could not read, by reason (all peers)."""
    dropped_out: dict[str, int] = {}
    step_ms_p50: float | None = None
    step_ms_p99: float | None = None
    stage_clock_offset_s: float | None = None
    """The receiving stage's clock minus the brain's (from its pongs)."""
    units: Units = "neurons"
    """What the brain plays now (the stage's toggle shows it)."""
    labels: str = ""
    """One line on how far its units' labels are earned, beside the control's (features: both dictionaries)."""


class CardRequest(Message, tag="card_request"):
    """A stage asks for neuron ``layer.neuron``'s card."""

    layer: Annotated[int, msgspec.Meta(ge=0)] = 0
    neuron: Annotated[int, msgspec.Meta(ge=0)] = 0
    rig: str = ""


class CardExample(msgspec.Struct, kw_only=True, array_like=True):
    words: list[str]
    acts: list[float]
    """Activation at each word (0 where not known); the last word is where it fired."""


class NeuronCard(Message, tag="neuron_card"):
    """A neuron's card: its label, where it fired hardest in the calibration corpus and in this session, and the
    notes it pushes the model towards (direct logit effect); ``error`` when there is no such neuron."""

    layer: int = 0
    neuron: int = 0
    label: str = ""
    corpus: Annotated[list[CardExample], msgspec.Meta(max_length=20)] = []
    session: Annotated[list[CardExample], msgspec.Meta(max_length=20)] = []
    promotes: list[str] = []
    error: str = ""
    units: Units = "neurons"
    """A neuron's card, or a dictionary feature's (``layer.neuron`` then names the feature)."""
    expects: str = ""
    """Features: what the unit makes the model expect, its held-out hit rate and base rate, and the control's."""


ALL_KINDS = (Hello, Heartbeat, Ping, Pong, Refused, Pad, Note, Beat, Accomp, TreatRequest, TreatResult, TrainingTrial, Neurons,
             Steer, SteerReply, Tempo, Monitor, BrainStatus, CardRequest, NeuronCard)
KINDS: dict[str, type[Message]] = {cls.__struct_config__.tag: cls for cls in ALL_KINDS}
AnyMessage = Union[ALL_KINDS]  # type: ignore[valid-type]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyMessage)
_header_decoder = msgspec.msgpack.Decoder(dict)


def encode(msg: Message) -> bytes:
    """Message → one frame (msgpack), checked as the receiver will check it. Inverse of :func:`decode`."""
    frame = _encoder.encode(msg)
    try:
        _decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise MessageError(f"cannot send this {type(msg).__name__}: {exc}") from exc
    return frame


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
