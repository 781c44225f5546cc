"""Replay a recorded jam through a brain again, in this process, into a new session.

The recorded rig-side events (pads, pet and human notes, beats) go to a
:class:`~brain.live.core.BrainCore` exactly as recorded (node, seq, rig time:
so the new session's neuron frames name the source session's events): the
code a live brain runs, without its sockets, so replays bind no ports and any
number can run at once (a study's tasks do). The answers are stamped as the
brain's link stamps them (its node, a sequence number per rig, its clock) and
recorded with the events in a new session whose meta names the source.
``--fast`` feeds batches of 64 (the answers do not depend on batching),
otherwise each event at the recorded pace divided by ``speed``.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bridge.link import LinkSnapshot
from bridge.messages import Note, encode
from core.config import to_dict
from core.errors import SessionError
from recording.log import SessionRecorder, new_session_dir, read_session

log = logging.getLogger("neurojam.replay")

if TYPE_CHECKING:
    from brain.live.core import BrainCore
    from brain.live.node import BrainSettings

FAST_BATCH = 64


def human_from_midi(path: str, start: float) -> list[Note]:
    from recording.export import load_midi

    notes, t = [], start
    for msg in load_midi(path):
        t += msg.time
        if msg.type in ("note_on", "note_off"):
            on = msg.type == "note_on" and msg.velocity > 0
            notes.append(Note(source="human", note=msg.note, velocity=msg.velocity if on else 0, on=on,
                              channel=msg.channel, t=t))
    return notes


def replay(source: str | Path, config: "BrainSettings", *, speed: float | None = 1.0, out: str | Path | None = None,
           human: str | None = None, progress: bool = True, model=None, stats=None, features=None,
           prepare: "Callable[[BrainCore], None] | None" = None) -> Path:
    """``model``/``stats``: a loaded model and its calibration instead of the configured ones; ``prepare`` changes
    the core before the first event (the score's controls: shuffled voices, ablated neurons)."""
    from brain.live.core import BrainCore
    from brain.models import load_model

    recorded = read_session(source)
    for problem in recorded.problems:  # a truncated or damaged log still replays; say what was missing
        print(f"note: {source}: {problem}", file=sys.stderr)
    events = recorded.rig_side()
    if not events:
        raise SessionError(f"{source}: no rig events to replay (is it a session recorded by `neurojam rig` or "
                           f"`demo`?).")
    if human:
        first = min(m.t for m in events)
        rig = next((m.node for m in events if m.node), "replay")
        events = [m for m in events if not (isinstance(m, Note) and m.source == "human")]
        events = sorted(events + human_from_midi(human, first), key=lambda m: m.t)
        start = max(0, events[0].seq)
        for i, m in enumerate(events):  # the new human part is the rig's, in one gapless stream (it was sent as
            m.node, m.seq = rig, start + i  # another rig, "replay-human", whose answers went nowhere)
    config = copy.deepcopy(config)
    bc = config.brain
    out_dir = Path(out) if out else new_session_dir(config.session.dir)
    core = BrainCore(bc, model or load_model(bc.model, bc.device, bc.dtype), stats=stats, features=features)
    if prepare is not None:
        prepare(core)
    meta = {"node": "replay", "source_session": str(Path(source).resolve()), "model": core.model.name,
            "config": to_dict(config), "speed": "fast" if speed is None else speed, "human_midi": human,
            "corruption": core.corruption_all.describe()}
    recorder = SessionRecorder(out_dir, meta)
    try:
        _feed(core, events, speed, progress, recorder)
    finally:
        core.close()
        recorder.close(events_replayed=len(events))
    return out_dir


def _feed(core: "BrainCore", events: list, speed: float | None, progress: bool, recorder: SessionRecorder) -> None:
    """Events in (recorded as sent), answers out (stamped as the brain's link would, recorded as received)."""
    from tqdm import tqdm

    seqs: Counter = Counter()  # the brain numbers what it sends each rig on its own
    node = core.config.node_id
    batch = FAST_BATCH if speed is None else 1
    t_first, wall0 = events[0].t, time.monotonic()
    for i in tqdm(range(0, len(events), batch), desc="replaying", unit_scale=batch, unit="event", disable=not progress):
        msgs = [copy.copy(m) for m in events[i:i + batch]]
        if speed is not None:  # the recorded pace, divided by speed
            time.sleep(max(0.0, wall0 + (msgs[0].t - t_first) / speed - time.monotonic()))
        for m in msgs:
            recorder.record("out", encode(m), m.t)
        try:
            answers = core.handle(msgs, LinkSnapshot(now=time.monotonic()))
        except Exception:  # keep going: one bad step must not lose the rest of the session
            log.exception("replay: the brain failed on a batch of events; going on")
            continue
        for to, msg in answers:
            now = time.monotonic()
            msg.node, msg.seq, msg.t = node, seqs[to], now
            seqs[to] += 1
            recorder.record("in", encode(msg), now)
