"""What the brain reads: note-ons and beats from the rig, as plain events (the stream and its writing share them)."""

from __future__ import annotations

from dataclasses import dataclass

from core.units import PERCUSSION_CHANNEL


@dataclass
class StreamEvent:
    """What the brain reads: a note-on or a beat, with the rig's time."""

    kind: str  # note | beat
    time: float
    source: str = ""
    note: int = -1
    downbeat: bool = False
    seq: int = -1
    node: str = ""
    drum: bool = False
    """A percussion sound (General MIDI channel 10): written into the text as the encoder says."""
    beat: int = 0
    """A beat's place in its bar (0: the downbeat)."""
    beats_per_bar: int = 4
    period: float = 0.0
    """A beat's length in seconds at the rig's tempo (0 for notes)."""


def stream_event(msg) -> StreamEvent | None:
    """The brain's reading of a bridge message: note-ons and beats become events."""
    from bridge.messages import Beat, Note

    if isinstance(msg, Beat):
        return StreamEvent("beat", msg.time, downbeat=msg.beat == 0, seq=msg.seq, node=msg.node, beat=msg.beat,
                           beats_per_bar=msg.beats_per_bar, period=60.0 / msg.tempo_bpm)
    if isinstance(msg, Note) and msg.on and msg.source in ("pet", "human"):
        return StreamEvent("note", msg.t, source=msg.source, note=msg.note, seq=msg.seq, node=msg.node,
                           drum=msg.channel == PERCUSSION_CHANNEL)
    return None
