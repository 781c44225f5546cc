"""One node's end of the bridge: two one-way ZeroMQ pipes and their bookkeeping.

Socket layout (the brain binds, the rig connects, so either may restart)::

    rig  PUSH   --connect--> tcp://brain:events_port   --bind-- PULL   brain   events, pongs
    rig  DEALER --connect--> tcp://brain:commands_port --bind-- ROUTER brain   hello + heartbeats in;
                                                                                commands out, addressed

Commands are addressed: each rig (and tool) says ``hello`` on its DEALER
(routing id ``node:pid:random``), so the brain's ROUTER knows which routing id
is which node and sends each one only what answers its own events
(``send(msg, to=node)``; no ``to``: every live peer, e.g. pings). A second
peer saying hello under a node id that is alive elsewhere gets a ``refused``
and nothing else; a rig that restarts (its old routing id gone quiet for
``liveness_s``) keeps its identity. Hello and heartbeats take no sequence
number, so the data stream's ``seq`` stays gapless on its own socket.

Sends never block: ``zmq.NOBLOCK`` with a bounded high-water mark and
``IMMEDIATE`` (queue only to live peers). A send that cannot go is dropped and
counted (``peer_absent`` when we have not heard the peer lately, else
``queue_full``). ZeroMQ reconnects by itself; a ``hello`` after a restart
resets sequence tracking. Incoming frames that fail :func:`decode` are
counted by reason and logged at most once per reason per minute.

Security: every socket passes through ``security.apply`` before it binds or
connects (:mod:`bridge.security`: none on loopback, CurveZMQ with an
allow-list otherwise), so no message code knows about it.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Literal

import zmq

from bridge.clock import ClockOffsetEstimator
from bridge.messages import (
    FrameError,
    Heartbeat,
    Hello,
    Message,
    Ping,
    Pong,
    Refused,
    decode,
    encode,
)
from bridge.security import CurveServer, Security

log = logging.getLogger("neurojam.bridge")

MAX_PLAUSIBLE_GAP = 1_000_000
"""More messages than every queue on the path could hold: a larger jump in ``seq`` is not a loss."""

Role = Literal["rig", "brain", "replay", "tool", "stage"]
FrameTap = Callable[[str, bytes, float], None]
"""Called with (direction 'in'|'out', raw frame, local monotonic time) for recording."""


CONTROL = (Hello, Heartbeat)
"""Say who is there, on the command socket, without a sequence number."""


@dataclass
class Peer:
    routing_id: bytes
    last_heard: float


@dataclass
class LinkStats:
    sent: int = 0
    received: int = 0
    dropped_out: Counter = field(default_factory=Counter)
    dropped_in: Counter = field(default_factory=Counter)
    gaps: int = 0
    lost_in_gaps: int = 0
    seq_jumps: int = 0
    refused_duplicates: int = 0
    """Peers refused because another with their node id was alive."""
    """Sequence numbers that leapt further than any queue could have lost (counted, not added to the gaps)."""
    peer_restarts: int = 0
    last_heard: float | None = None

    def as_dict(self, now: float) -> dict:
        return {
            "sent": self.sent,
            "received": self.received,
            "dropped_out": dict(self.dropped_out),
            "dropped_in": dict(self.dropped_in),
            "gaps": self.gaps,
            "lost_in_gaps": self.lost_in_gaps,
            "seq_jumps": self.seq_jumps,
            "refused_duplicates": self.refused_duplicates,
            "peer_restarts": self.peer_restarts,
            "last_heard_age_s": None if self.last_heard is None else round(now - self.last_heard, 3),
        }


class Link:
    """A node's bridge endpoint. ``send`` may be called from any thread (pads fire
    from GPIO and timeline threads); ``receive`` from one thread only."""

    def __init__(
        self,
        role: Role,
        node_id: str,
        *,
        host: str = "127.0.0.1",
        events_port: int = 5555,
        commands_port: int = 5556,
        bind_host: str = "127.0.0.1",
        heartbeat_s: float = 0.5,
        liveness_s: float = 2.0,
        hwm: int = 1000,
        security: Security | None = None,
        tap: FrameTap | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role, self.node_id, self.clock = role, node_id, clock
        self.heartbeat_s, self.liveness_s = heartbeat_s, liveness_s
        self.tap = tap
        self.stats = LinkStats()
        self.offset = ClockOffsetEstimator()
        """The brain's clock, on a rig, stage or tool. The brain has no single peer: see ``peer_offsets``."""
        self.peer_offsets: dict[str, ClockOffsetEstimator] = {}
        """On the brain: each peer's clock, from its pongs."""
        self.peer_gaps: Counter = Counter()
        """Messages lost in sequence gaps, per sending node."""
        self._seq = 0
        self._send_lock = threading.Lock()
        self._peer_seq: dict[str, int] = {}
        self._last_beat_sent = float("-inf")
        self._last_log: dict[str, float] = {}
        self._ctx = zmq.Context.instance()
        self.security = security = security or Security()
        self.server = server = role == "brain"
        self.peers: dict[str, Peer] = {}
        """The brain's view of who is connected: node id → routing id and when last heard."""
        self.refused: str | None = None
        """On a rig or tool: why the brain refused it (a duplicate node id), once it did."""
        if server:
            self._in = self._ctx.socket(zmq.PULL)  # events from every rig
            self._cmd = self._ctx.socket(zmq.ROUTER)  # hellos in, addressed commands out
            self._cmd.setsockopt(zmq.ROUTER_MANDATORY, 1)
        else:
            self._out = self._ctx.socket(zmq.PUSH)
            self._cmd = self._ctx.socket(zmq.DEALER)
            self._cmd.setsockopt(zmq.ROUTING_ID, f"{node_id}:{os.getpid()}:{secrets.token_hex(4)}".encode())
        for sock in (self._in, self._cmd) if server else (self._out, self._cmd):
            sock.linger = 0
            sock.sndhwm = hwm
            sock.rcvhwm = hwm
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            security.apply(sock, server=server)
        if server:
            self._in.bind(f"tcp://{bind_host}:{events_port}")
            self._cmd.bind(f"tcp://{bind_host}:{commands_port}")
        else:
            self._out.setsockopt(zmq.IMMEDIATE, 1)
            self._out.connect(f"tcp://{host}:{events_port}")
            self._cmd.connect(f"tcp://{host}:{commands_port}")
        self._poller = zmq.Poller()
        self._poller.register(self._cmd, zmq.POLLIN)
        if server:
            self._poller.register(self._in, zmq.POLLIN)
        else:  # say who we are at once (queued until connected), so the brain can answer even a tool's ping
            self.send(Hello(role=role))

    # -- sending -------------------------------------------------------------
    def stamp(self, msg: Message) -> Message:
        msg.node, msg.seq, msg.t = self.node_id, self._seq, self.clock()
        if not isinstance(msg, CONTROL):
            self._seq += 1
        return msg

    def send(self, msg: Message, as_recorded: bool = False, to: str | None = None, record: bool = True) -> bool:
        """Stamp, encode and send without blocking; False (and counted) if dropped.
        ``as_recorded`` sends the message with its own node, seq and time (replay). On the brain, ``to`` names
        the node it is for (no ``to``: every live peer); on a rig, hello and heartbeats go on the command socket.
        ``record=False`` keeps it out of the session (a stage's copies of frames that are already in it)."""
        with self._send_lock:
            frame = encode(msg if as_recorded else self.stamp(msg))
            if self.tap and record:  # record before sending: what the peer never got is still kept
                self.tap("out", frame, msg.t)
            if self.server:
                return self._route(frame, to)
            return self._push(self._cmd if isinstance(msg, CONTROL) else self._out, frame)

    def _push(self, sock: zmq.Socket, frame: bytes, *envelope: bytes) -> bool:
        try:
            sock.send_multipart([*envelope, frame], zmq.NOBLOCK) if envelope else sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.stats.dropped_out["queue_full" if self.peer_alive() else "peer_absent"] += 1
            return False
        except zmq.ZMQError as exc:  # a peer that left (ROUTER_MANDATORY), a closed socket
            reason = "peer_gone" if exc.errno == zmq.EHOSTUNREACH else "socket_error"
            self.stats.dropped_out[reason] += 1
            self._log_once(reason, f"send failed: {exc}")
            return False
        self.stats.sent += 1
        return True

    def _route(self, frame: bytes, to: str | None) -> bool:
        """The brain's send: to one node's routing id, or to every live one."""
        if to is not None:
            peer = self.peers.get(to)
            if peer is None:
                self.stats.dropped_out["no_route"] += 1
                return False
            return self._push(self._cmd, frame, peer.routing_id)
        now = self.clock()
        live = [p for p in self.peers.values() if now - p.last_heard < self.liveness_s]
        if not live:
            self.stats.dropped_out["peer_absent"] += 1
            return False
        return all([self._push(self._cmd, frame, p.routing_id) for p in live])

    def writable(self, timeout_ms: float = 0) -> bool:
        """True once a peer is connected and a send would go out (consumes no sequence number)."""
        sock = self._cmd if self.server else self._out
        return bool(sock.poll(max(0, int(timeout_ms)), zmq.POLLOUT))

    def hello(self, session: str = "", software: str = "") -> bool:
        return self.send(Hello(role=self.role, software=software, session=session))

    def tick(self) -> None:
        """Send a heartbeat (and a clock ping from the brain) when one is due."""
        now = self.clock()
        if now - self._last_beat_sent >= self.heartbeat_s:
            self._last_beat_sent = now
            self.send(Ping() if self.role == "brain" else Heartbeat())

    # -- receiving -----------------------------------------------------------
    def poll(self, timeout_ms: float = 0) -> bool:
        return bool(self._poller.poll(max(0, int(timeout_ms))))

    def receive(self, timeout_ms: float = 0, max_frames: int = 1000) -> list[Message]:
        """Decoded, validated messages waiting (up to ``max_frames``); bad frames counted."""
        out: list[Message] = []
        if not self.poll(timeout_ms):
            return out
        for _ in range(max_frames):
            got = False
            if self.server:  # hellos and heartbeats first: they say who is who
                try:
                    parts = self._cmd.recv_multipart(zmq.NOBLOCK)
                    got = True
                    msg = self._admit(parts[0], parts[-1]) if len(parts) >= 2 else None
                    if msg is not None:
                        out.append(msg)
                except zmq.Again:
                    pass
            try:
                frame = (self._in if self.server else self._cmd).recv(zmq.NOBLOCK, copy=True)
                got = True
                msg = self.accept(frame)
                if msg is not None:
                    out.append(msg)
            except zmq.Again:
                pass
            if not got:
                break
        return out

    def _admit(self, routing_id: bytes, frame: bytes) -> Message | None:
        """A frame on the brain's command socket: register its sender, or refuse a duplicate node id."""
        msg = self.accept(frame, track=False)
        if msg is None:
            return None
        now = self.clock()
        peer = self.peers.get(msg.node)
        if peer is not None and peer.routing_id != routing_id:
            if now - peer.last_heard < self.liveness_s:  # the node id is alive elsewhere: refuse this one
                if isinstance(msg, Hello):
                    self.stats.refused_duplicates += 1
                    self._log_once("duplicate", f"refused a second {msg.role} calling itself {msg.node!r} (one is "
                                                f"already connected)")
                    reason = (f"another node called {msg.node!r} is already connected to this brain: give this one "
                              f"its own name (rig.node_id)")
                    self._push(self._cmd, encode(self.stamp(Refused(reason=reason))), routing_id)
                return None
            self.stats.peer_restarts += 1  # the old one went quiet: a restart keeps its identity
        self.peers[msg.node] = Peer(routing_id, now)
        if isinstance(msg, Hello):
            self._peer_seq.pop(msg.node, None)
        return msg

    def accept(self, frame: bytes, track: bool = True) -> Message | None:
        """Decode one raw frame and do the bookkeeping; None if it was dropped."""
        now = self.clock()
        if self.tap:
            self.tap("in", frame, now)
        try:
            msg = decode(frame)
        except FrameError as exc:
            self.stats.dropped_in[exc.reason] += 1
            self._log_once(exc.reason, f"dropped a frame ({exc.detail[:200]})")
            return None
        self.stats.received += 1
        self.stats.last_heard = now
        if track and not isinstance(msg, CONTROL):
            self._track_seq(msg)
        peer = self.peers.get(msg.node) if track else None  # the command socket registers its own senders
        if peer is not None:
            peer.last_heard = now
        if isinstance(msg, Ping):
            self.send(Pong(ping_seq=msg.seq, ping_t=msg.t), to=msg.node if self.server else None)
        elif isinstance(msg, Pong):
            if self.server:  # one estimate per peer: several rigs' clocks averaged together mean nothing
                self.peer_offsets.setdefault(msg.node, ClockOffsetEstimator()).add(msg.ping_t, msg.t, now)
            else:
                self.offset.add(msg.ping_t, msg.t, now)
        elif isinstance(msg, Refused):
            self.refused = msg.reason
            log.error("the brain refused this %s: %s", self.role, msg.reason)
        return msg

    def _track_seq(self, msg: Message) -> None:
        last = self._peer_seq.get(msg.node)
        if last is not None and msg.seq <= last:
            self.stats.peer_restarts += 1
        elif last is not None and msg.seq > last + 1 + MAX_PLAUSIBLE_GAP:
            self.stats.seq_jumps += 1  # no queue holds that many: a forged or corrupt number, not lost messages
            self._log_once("seq_jump", f"{msg.node} jumped from seq {last} to {msg.seq}; resynchronised")
        elif last is not None and msg.seq > last + 1:
            self.stats.gaps += 1
            self.stats.lost_in_gaps += msg.seq - last - 1
            self.peer_gaps[msg.node] += msg.seq - last - 1
        self._peer_seq[msg.node] = msg.seq

    # -- state ---------------------------------------------------------------
    def peer_alive(self) -> bool:
        last = self.stats.last_heard
        return last is not None and self.clock() - last < self.liveness_s

    def stats_dict(self) -> dict:
        d = self.stats.as_dict(self.clock())
        d["peer_alive"] = self.peer_alive()
        d["security"] = self.security.name
        if isinstance(self.security, CurveServer):
            d["refused_keys"] = self.security.allow.refused
        if self.offset.ready:
            d["clock_offset_s"] = round(self.offset.offset, 6)
            d["rtt_ms"] = round(self.offset.rtt * 1000, 3)
        peers = {node: {"clock_offset_s": round(o.offset, 6), "rtt_ms": round(o.rtt * 1000, 3)}
                 for node, o in self.peer_offsets.items() if o.ready}
        if peers:
            d["peers"] = peers
        return d

    def _log_once(self, reason: str, text: str, every_s: float = 60.0) -> None:
        now = time.monotonic()
        if now - self._last_log.get(reason, float("-inf")) >= every_s:
            self._last_log[reason] = now
            log.warning("%s: %s (further '%s' drops counted, logged once a minute)", self.role, text, reason)

    def close(self) -> None:
        """Safe to call twice."""
        with self._send_lock:
            for sock in (self._in, self._cmd) if self.server else (self._out, self._cmd):
                if not sock.closed:
                    sock.close(linger=0)
        self.security.close()

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
