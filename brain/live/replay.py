"""Replay a recorded jam through a brain again, over the real bridge, into a new session.

The recorded rig-side events (pads, pet and human notes, beats) are sent by a
``replay`` link exactly as recorded (node, seq, rig time: so the new session's
neuron frames name the source session's events) to a brain node on loopback
(its own thread, its own sockets: the same code a live brain runs). Brain
output is recorded with them in a new session whose meta names the source.
``--fast`` sends as fast as the brain keeps up (batches of 64, each closed by
a ping whose pong must return before the batch after next goes), otherwise
at the recorded pace divided by ``speed``.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.link import Link
from bridge.messages import Heartbeat, Note, Ping, Pong
from core.config import to_dict
from core.errors import SessionError
from recording.log import SessionRecorder, new_session_dir, read_session

log = logging.getLogger("neurojam.replay")

if TYPE_CHECKING:
    from brain.live.node import BrainSettings


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
           human: str | None = None, progress: bool = True, model=None, port: int | None = None) -> Path:
    from brain.live.node import BrainNode

    recorded = read_session(source)  # not ``log``: the module's logger is used below, in the brain's thread too
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
    config.bridge.hwm = max(config.bridge.hwm, 100_000)
    config.bridge.bind_host = config.bridge.host = "127.0.0.1"  # a private brain on loopback: no keys needed
    config.bridge.curve = False
    if port:
        config.bridge.events_port, config.bridge.commands_port = port, port + 1
    out_dir = Path(out) if out else new_session_dir(config.session.dir)
    brain = BrainNode(config, model=model)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                brain.step(timeout_ms=5)
            except Exception:  # keep answering: one bad step must not leave the replay waiting forever
                log.exception("replay: the brain failed on a batch of events; going on")

    thread = threading.Thread(target=serve, name="replay-brain", daemon=True)
    thread.start()
    meta = {"node": "replay", "source_session": str(Path(source).resolve()), "model": brain.model.name,
            "config": to_dict(config), "speed": "fast" if speed is None else speed, "human_midi": human,
            "corruption": brain.core.corruption_all.describe()}
    recorder = SessionRecorder(out_dir, meta)
    b = config.bridge
    node = events[0].node or "replay"  # the brain answers the node the events name: be that node
    link = Link("replay", node, host="127.0.0.1", events_port=b.events_port, commands_port=b.commands_port,
                hwm=100_000, tap=recorder)
    try:
        _wait_connected(link)
        _send_all(link, events, speed, progress)
        _drain(link)
    except SessionError:
        log.warning("replay: the brain when it stopped answering: %s", _brain_state(brain, thread))
        raise
    finally:
        stop.set()
        thread.join(timeout=5)
        link.close()
        brain.close()
        recorder.close(events_replayed=len(events))
    return out_dir


def _brain_state(brain, thread: threading.Thread) -> str:
    """What a stalled replay needs to be diagnosed: is the brain's thread alive, where is it, what did it drop."""
    import sys
    import traceback

    frame = sys._current_frames().get(thread.ident) if thread.is_alive() else None
    where = "".join(traceback.format_stack(frame)[-6:]) if frame else "(thread ended)"
    stats = brain.link.stats
    return (f"thread alive {thread.is_alive()}, events {brain.core.counts['events']}, peers {sorted(brain.link.peers)}, "
            f"received {stats.received}, sent {stats.sent}, dropped out {dict(stats.dropped_out)}, "
            f"dropped in {dict(stats.dropped_in)}; at\n{where}")


def _wait_connected(link: Link, timeout: float = 10.0) -> None:
    """Wait without sending, so the replayed events get the same sequence numbers every time."""
    if link.writable(timeout_ms=timeout * 1000):
        return
    raise SessionError("replay: the brain did not come up on loopback (is the port in use? try --set "
                       "bridge.events_port=...).")


def _send_all(link: Link, events: list, speed: float | None, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(events), desc="replaying", unit="event", disable=not progress)
    acked = -1
    batch = 64
    t_first = events[0].t
    wall0 = time.monotonic()
    pings: dict[int, int] = {}

    def receive(timeout_ms: float) -> None:
        """Every read counts the pongs in it: one answered during a drain must not be lost (the replay would
        wait 30 s for it)."""
        nonlocal acked
        for m in link.receive(timeout_ms=timeout_ms):
            if isinstance(m, Pong) and m.ping_seq in pings:
                acked = max(acked, pings[m.ping_seq])

    for i in range(0, len(events), batch):
        k = i // batch
        if speed is None:  # fast: at most two batches in flight
            waited = time.monotonic()
            while acked < k - 2:
                if time.monotonic() - waited > 30:
                    raise SessionError(f"replay: the brain stopped answering after {i} of {len(events)} events "
                                       f"(no pong in 30 s); the new session keeps what it answered.")
                receive(20)
        for m in events[i:i + batch]:
            if speed is not None:
                due = wall0 + (m.t - t_first) / speed
                while time.monotonic() < due:
                    receive(min(20, max(0, (due - time.monotonic()) * 1000)))
            msg = copy.copy(m)
            while not link.send(msg, as_recorded=True):
                receive(5)
            bar.update(1)
        ping = Ping()
        link.send(ping)
        pings[ping.seq] = k
        receive(0)
    bar.close()


def _drain(link: Link, quiet_s: float = 1.0, timeout: float = 120.0) -> None:
    """Wait for the brain's last answers: a final ping's pong, then a quiet spell."""
    final = Ping()
    link.send(final)
    deadline = time.monotonic() + timeout
    got_pong = False
    last = time.monotonic()
    while time.monotonic() < deadline:
        msgs = link.receive(timeout_ms=50)
        if any(not isinstance(m, (Ping, Pong, Heartbeat)) for m in msgs):  # heartbeats are not answers
            last = time.monotonic()
        got_pong = got_pong or any(isinstance(m, Pong) and m.ping_seq == final.seq for m in msgs)
        if got_pong and time.monotonic() - last > quiet_s:
            return
