"""One node's end of the bridge: two one-way ZeroMQ pipes and their bookkeeping.

Socket layout (the brain binds, the rig connects, so either may restart)::

    rig  PUSH   --connect--> tcp://brain:events_port   --bind-- PULL   brain   events, pongs
    rig  DEALER --connect--> tcp://brain:commands_port --bind-- ROUTER brain   hello + heartbeats in;
                                                                                commands out, addressed

The two ends are two classes over one core (:class:`Link`: stamping,
non-blocking sends, decoding and sequence bookkeeping): :class:`BrainLink`
binds and keeps a view of every peer; :class:`PeerLink` connects to one brain.
``Link(role, ...)`` returns the one the role needs.

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
connects (:mod:`bridge.security`: a per-link token on loopback, CurveZMQ with an
allow-list otherwise), so no message code knows about it. Every frame reaches
the brain with its connection's identity, and :class:`bridge.identity.IdentityBook`
decides which connection may speak as which node (a frame claiming another's
id is dropped, ``identity_mismatch``); frames over ``max_frame_bytes`` are
dropped before anything decodes or records them (``oversized``). The brain
numbers what it sends each peer on its own (``seq`` per peer), so a rig's
loss count is its own.
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
from bridge.identity import IdentityBook
from bridge.messages import (
    MAX_FRAME_BYTES,
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
from core.errors import ConfigError

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
class LinkSnapshot:
    """A brain link's peers at one moment: who was heard when, their clocks and losses."""

    now: float = 0.0
    liveness_s: float = 2.0
    last_heard: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Peer → (clock offset s, round trip s), for peers whose pongs have settled it."""
    gaps: dict[str, int] = field(default_factory=dict)
    dropped_in: dict[str, int] = field(default_factory=dict)
    dropped_out: dict[str, int] = field(default_factory=dict)

    def alive(self, node: str) -> bool:
        last = self.last_heard.get(node)
        return last is not None and self.now - last < self.liveness_s


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


def _refusal_text(reason: str, hello: Hello) -> str:
    """What a refused peer is told: what is wrong and what to change."""
    key = {"rig": "rig.node_id", "stage": "stage.node_id"}.get(hello.role, "its node id")
    return {
        "identity_mismatch": f"another node called {hello.node!r} is already connected to this brain (with keys: "
                             f"another key owns that name): give this {hello.role} its own name ({key}), or stop "
                             f"the other one",
        "too_many_rigs": "this brain serves as many rigs as bridge.max_rigs allows: stop one, or raise it",
        "too_many_stages": "this brain has as many stages and tools as bridge.max_stages allows: close one, or raise it",
        "new_id_rate": "too many new names in the last minute (bridge.new_ids_per_minute): try again shortly",
    }.get(reason, reason)


class Link:
    """A node's bridge endpoint: the brain's (:class:`BrainLink`, binds, many peers) or a rig's, stage's or tool's
    (:class:`PeerLink`, connects to one brain). ``Link(role, ...)`` makes the right one. ``send`` may be called
    from any thread (pads fire from GPIO and timeline threads); ``receive`` from one thread only."""

    _readers: tuple[Callable[[], Message | None], ...]
    _readable: tuple[zmq.Socket, ...]
    _sends_on: zmq.Socket

    def __new__(cls, role: Role, *args, **kwargs) -> "Link":
        if cls is Link:
            cls = BrainLink if role == "brain" else PeerLink
        return super().__new__(cls)

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
        identity: IdentityBook | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.role, self.node_id, self.clock = role, node_id, clock
        self.heartbeat_s, self.liveness_s = heartbeat_s, liveness_s
        self.tap = tap
        self.stats = LinkStats()
        self.peer_gaps: Counter = Counter()
        """Messages lost in sequence gaps, per sending node."""
        self._seq = 0
        self.max_frame_bytes = max_frame_bytes
        self._seq_to: Counter = Counter()
        self._send_lock = threading.Lock()
        self._peer_seq: dict[str, int] = {}
        self._last_beat_sent = float("-inf")
        self._last_log: dict[str, float] = {}
        self._ctx = zmq.Context.instance()
        self.security = security or Security()
        self.refused: str | None = None
        """On a rig or tool: why the brain refused it (a duplicate node id), once it did."""
        self.peers: dict[str, Peer] = {}
        """On the brain: who is connected, node id → routing id and when last heard (a rig knows only its brain)."""
        self._sockets = self._open(host=host, events_port=events_port, commands_port=commands_port,
                                   bind_host=bind_host, hwm=hwm, identity=identity)
        self._poller = zmq.Poller()
        for sock in self._readable:
            self._poller.register(sock, zmq.POLLIN)
        self._started()
    def _open(self, **where) -> list[zmq.Socket]:
        raise NotImplementedError

    def _started(self) -> None:
        """After the sockets are open."""

    def _configure(self, sock: zmq.Socket, hwm: int) -> zmq.Socket:
        sock.linger = 0
        sock.sndhwm = hwm
        sock.rcvhwm = hwm
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self.security.apply(sock, server=isinstance(self, BrainLink))
        return sock

    # -- sending -------------------------------------------------------------
    def stamp(self, msg: Message, to: str | None = None) -> Message:
        """Our node, the next sequence number (the brain keeps one per peer: ``to``) and our clock."""
        seq = self._seq if to is None else self._seq_to[to]
        msg.node, msg.seq, msg.t = self.node_id, seq, self.clock()
        if not isinstance(msg, CONTROL):
            if to is None:
                self._seq += 1
            else:
                self._seq_to[to] += 1
        return msg

    def send(self, msg: Message, as_recorded: bool = False, to: str | None = None, record: bool = True) -> bool:
        """Stamp, encode and send without blocking; False (and counted) if dropped.
        ``as_recorded`` sends the message with its own node, seq and time (replay). On the brain, ``to`` names
        the node it is for (no ``to``: every live peer); on a rig, hello and heartbeats go on the command socket.
        ``record=False`` keeps it out of the session (a stage's copies of frames that are already in it)."""
        with self._send_lock:
            return self._send(msg, to, as_recorded, record)

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

    def writable(self, timeout_ms: float = 0) -> bool:
        """True once a peer is connected and a send would go out (consumes no sequence number)."""
        return bool(self._sends_on.poll(max(0, int(timeout_ms)), zmq.POLLOUT))

    def hello(self, session: str = "", software: str = "") -> bool:
        return self.send(Hello(role=self.role, software=software, session=session))

    def tick(self) -> None:
        """Send a heartbeat (and a clock ping from the brain) when one is due."""
        now = self.clock()
        if now - self._last_beat_sent >= self.heartbeat_s:
            self._last_beat_sent = now
            self.send(self._keepalive())

    # -- receiving -----------------------------------------------------------
    def poll(self, timeout_ms: float = 0) -> bool:
        return bool(self._poller.poll(max(0, int(timeout_ms))))

    def receive(self, timeout_ms: float = 0, max_frames: int = 1000) -> list[Message]:
        """Decoded, validated messages waiting (up to ``max_frames``); bad frames counted. On the brain the command
        socket is read first in each round: hellos and heartbeats say who is who."""
        out: list[Message] = []
        if not self.poll(timeout_ms):
            return out
        readers = self._readers
        for _ in range(max_frames):
            if not any([self._read_one(read, out) for read in readers]):
                break
        return out

    @staticmethod
    def _read_one(read: Callable[[], Message | None], out: list[Message]) -> bool:
        """One waiting frame through ``read`` into ``out``; False when none was waiting."""
        try:
            msg = read()
        except zmq.Again:
            return False
        if msg is not None:
            out.append(msg)
        return True

    def _oversized(self, frame) -> bool:
        if len(frame) <= self.max_frame_bytes:
            return False
        self.stats.dropped_in["oversized"] += 1
        self._log_once("oversized", f"dropped a {len(frame):,}-byte frame (limit {self.max_frame_bytes:,})")
        return True

    def accept(self, frame: bytes, track: bool = True, decoded: Message | None = None) -> Message | None:
        """Decode one raw frame (unless the caller already did: ``decoded``) and do the bookkeeping; None if it was
        dropped."""
        now = self.clock()
        if self._oversized(frame):  # before anything decodes or records it
            return None
        if self.tap:
            self.tap("in", frame, now)
        try:
            msg = decoded if decoded is not None else decode(frame)
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
            self._answer_ping(msg)
        elif isinstance(msg, Pong):
            self._pong(msg, now)
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
        return d

    def _log_once(self, reason: str, text: str, every_s: float = 60.0) -> None:
        now = time.monotonic()
        if now - self._last_log.get(reason, float("-inf")) >= every_s:
            self._last_log[reason] = now
            log.warning("%s: %s (further '%s' drops counted, logged once a minute)", self.role, text, reason)

    def close(self) -> None:
        """Safe to call twice."""
        with self._send_lock:
            for sock in self._sockets:
                if not sock.closed:
                    sock.close(linger=0)
        self.security.close()

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()




class BrainLink(Link):
    """The brain's end: binds a PULL for every peer's events and a ROUTER that knows each peer by its hello, and
    checks that each frame's connection owns the node id it claims."""

    def _open(self, *, host: str, events_port: int, commands_port: int, bind_host: str, hwm: int,
              identity: IdentityBook | None) -> list[zmq.Socket]:
        self.identity = identity or IdentityBook(keyed=self.security.name == "curve", clock=self.clock)
        """Which connection may speak as which node, and see and steer which rigs."""
        self.peer_offsets: dict[str, ClockOffsetEstimator] = {}
        """Each peer's clock, from its pongs (several rigs' clocks averaged together would mean nothing)."""
        self._roles: dict[str, str] = {}
        self._probed: dict[str, float] = {}
        self._in = self._ctx.socket(zmq.PULL)  # events from every rig
        self._cmd = self._ctx.socket(zmq.ROUTER)  # hellos in, addressed commands out
        self._cmd.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a closed connection fails: see _gone
        self._sockets = [self._in, self._cmd]
        for sock in self._sockets:  # close connections whose peer died without closing them
            sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.heartbeat_s * 1000))
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.liveness_s * 1000))
            self._configure(sock, hwm)
        for sock, port in ((self._in, events_port), (self._cmd, commands_port)):
            try:
                sock.bind(f"tcp://{bind_host}:{port}")
            except zmq.ZMQError as exc:
                self.close()
                raise ConfigError(
                    f"cannot listen on tcp://{bind_host}:{port}: {exc.strerror} (another brain, demo or replay "
                    f"still running?). Stop it, or pick free ports: --set bridge.events_port=N --set "
                    f"bridge.commands_port=N+1.") from None
        self._readers = (self._read_command, self._read_event)  # hellos and heartbeats first: who is who
        self._readable = (self._cmd, self._in)
        self._sends_on = self._cmd
        return self._sockets

    def _send(self, msg: Message, to: str | None, as_recorded: bool, record: bool) -> bool:
        """The brain's send: to one node's routing id, or to every live one, each stamped with that peer's own
        next sequence number."""
        if to is not None:
            targets = [(to, self.peers.get(to))]
        else:
            now = self.clock()
            targets = [(node, p) for node, p in self.peers.items() if now - p.last_heard < self.liveness_s]
            if not targets:
                self.stats.dropped_out["peer_absent"] += 1
                return False
        sent = True
        for node, peer in targets:
            frame = encode(msg if as_recorded else self.stamp(msg, node))
            if self.tap and record:  # record before sending: what the peer never got is still kept
                self.tap("out", frame, msg.t)
            if peer is None:
                self.stats.dropped_out["no_route"] += 1
                sent = False
            else:
                sent = self._push(self._cmd, frame, peer.routing_id) and sent
        return sent

    def _keepalive(self) -> Message:
        return Ping()  # each peer's pong measures its clock

    def _answer_ping(self, msg: Ping) -> None:
        self.send(Pong(ping_seq=msg.seq, ping_t=msg.t), to=msg.node)

    def _pong(self, msg: Pong, now: float) -> None:
        self.peer_offsets.setdefault(msg.node, ClockOffsetEstimator()).add(msg.ping_t, msg.t, now)

    def _read_command(self) -> Message | None:
        parts = self._cmd.recv_multipart(zmq.NOBLOCK, copy=False)
        return self._admit(parts[0].bytes, parts[-1]) if len(parts) >= 2 else None

    def _read_event(self) -> Message | None:
        return self._accept_event(self._in.recv(zmq.NOBLOCK, copy=False))

    @staticmethod
    def _identity_of(frame: zmq.Frame) -> str:
        try:
            return frame.get("User-Id") or ""
        except (zmq.ZMQError, UnicodeDecodeError):
            return ""

    def _admit(self, routing_id: bytes, frame: zmq.Frame) -> Message | None:
        """A frame on the brain's command socket: a disconnect notice, or a message whose sender must be who it
        says (its connection's identity owns its node id); register it, or refuse it with the reason."""
        identity = self._identity_of(frame)
        msg = self.accept(frame.bytes, track=False)
        if msg is None:
            return None
        role = msg.role if isinstance(msg, Hello) else (self._roles.get(msg.node) or "rig")
        reason = self.identity.claim(msg.node, identity, role, quiet=self._gone(msg.node, identity))
        if reason is not None:
            self.stats.dropped_in[reason] += 1
            self._log_once(reason, f"refused a {role} claiming to be {msg.node!r} ({reason})")
            if isinstance(msg, Hello):
                self.stats.refused_duplicates += 1
                self._push(self._cmd, encode(self.stamp(Refused(reason=_refusal_text(reason, msg)), msg.node)),
                           routing_id)
            return None
        self._roles[msg.node] = role
        now = self.clock()
        peer = self.peers.get(msg.node)
        if peer is not None and peer.routing_id != routing_id:
            self.stats.peer_restarts += 1  # the same identity on a new connection: a restart keeps its id
        self.peers[msg.node] = Peer(routing_id, now)
        if isinstance(msg, Hello):
            self._peer_seq.pop(msg.node, None)
            if peer is None or peer.routing_id != routing_id:
                self._seq_to.pop(msg.node, None)  # a new connection: its stream from us starts at 0
        return msg

    def _gone(self, node: str, claimant: str) -> bool:
        """Is the connection that owns ``node`` gone? A ping to a closed connection fails at once
        (ROUTER_MANDATORY), as after a ``kill -9``, so a restarted rig is taken back in well under a second; a
        connection that died without closing is closed by ZeroMQ's heartbeats within ``liveness_s``. Quiet is not
        gone: a rig that merely pauses keeps its name. Probed at most every 0.2 s per node, and only when another
        identity claims the id; an id claimed by events alone (no command connection) yields to a hello."""
        peer = self.peers.get(node)
        claim = self.identity.claims.get(node)
        if peer is None or claim is None or claim.identity == claimant:
            return True
        now = self.clock()
        if now - self._probed.get(node, float("-inf")) < 0.2:
            return False
        self._probed[node] = now
        try:
            self._cmd.send_multipart([peer.routing_id, encode(self.stamp(Ping(), node))], zmq.NOBLOCK)
        except zmq.Again:
            return False  # its queue is full: it is there
        except zmq.ZMQError:
            self.identity.disconnected(claim.identity)
            del self.peers[node]
            return True
        return False

    def _accept_event(self, frame: zmq.Frame) -> Message | None:
        """A frame on the brain's event socket: taken only from the connection that owns its node id."""
        if self._oversized(frame):
            return None
        identity = self._identity_of(frame)
        raw = frame.bytes
        try:
            msg = decode(raw)
        except FrameError:
            return self.accept(raw)  # counted by reason (and recorded as received) there
        node = msg.node
        if not self.identity.owns(node, identity):
            reason = self.identity.claim(node, identity, self._roles.get(node) or "rig", quiet=self._gone(node, identity))
            if reason is not None:
                self.stats.dropped_in[reason] += 1
                self._log_once(reason, f"dropped an event claiming to be {node!r} from another connection ({reason})")
                return None
            self._roles.setdefault(node, "rig")
        return self.accept(raw, decoded=msg)

    def snapshot(self) -> "LinkSnapshot":
        """What the brain's link knows of its peers now, as plain data (the brain core reads this, never the link)."""
        ready = {node: (o.offset, o.rtt) for node, o in self.peer_offsets.items() if o.ready}
        return LinkSnapshot(now=self.clock(), liveness_s=self.liveness_s,
                            last_heard={node: p.last_heard for node, p in self.peers.items()}, offsets=ready,
                            gaps=dict(self.peer_gaps), dropped_in=dict(self.stats.dropped_in),
                            dropped_out=dict(self.stats.dropped_out))

    def stats_dict(self) -> dict:
        d = super().stats_dict()
        if isinstance(self.security, CurveServer):
            d["refused_keys"] = self.security.allow.refused
        peers = {node: {"clock_offset_s": round(o.offset, 6), "rtt_ms": round(o.rtt * 1000, 3)}
                 for node, o in self.peer_offsets.items() if o.ready}
        for node, lost in self.peer_gaps.items():  # lost_in_gaps is every peer's: this says whose (the stage shows rigs')
            peers.setdefault(node, {})["lost_in_gaps"] = lost
        if peers:
            d["peers"] = peers
        return d

    def forget(self, node: str) -> None:
        """Drop what the brain knows of a peer (an idle rig): its route, its id's claim, its counters."""
        self.peers.pop(node, None)
        self.identity.release(node)
        for table in (self._roles, self._probed, self._peer_seq, self._seq_to, self.peer_offsets, self.peer_gaps):
            table.pop(node, None)



class PeerLink(Link):
    """A rig's, stage's or tool's end: a PUSH for its events and a DEALER for hello, heartbeats and the brain's
    answers, both connected to one brain."""

    def _open(self, *, host: str, events_port: int, commands_port: int, bind_host: str, hwm: int,
              identity: IdentityBook | None) -> list[zmq.Socket]:
        self.offset = ClockOffsetEstimator()
        """The brain's clock, from its pongs."""
        self._out = self._configure(self._ctx.socket(zmq.PUSH), hwm)
        self._cmd = self._ctx.socket(zmq.DEALER)
        self._cmd.setsockopt(zmq.ROUTING_ID, f"{self.node_id}:{os.getpid()}:{secrets.token_hex(4)}".encode())
        self._configure(self._cmd, hwm)
        self._out.setsockopt(zmq.IMMEDIATE, 1)
        self._out.connect(f"tcp://{host}:{events_port}")
        self._cmd.connect(f"tcp://{host}:{commands_port}")
        self._readers = (self._read_from_brain,)
        self._readable = (self._cmd,)
        self._sends_on = self._out
        return [self._out, self._cmd]

    def _started(self) -> None:
        self.send(Hello(role=self.role))  # at once (queued until connected), so the brain can answer even a ping

    def _send(self, msg: Message, to: str | None, as_recorded: bool, record: bool) -> bool:
        frame = encode(msg if as_recorded else self.stamp(msg))
        if self.tap and record:  # record before sending: what the peer never got is still kept
            self.tap("out", frame, msg.t)
        return self._push(self._cmd if isinstance(msg, CONTROL) else self._out, frame)

    def _keepalive(self) -> Message:
        return Heartbeat()

    def _answer_ping(self, msg: Ping) -> None:
        self.send(Pong(ping_seq=msg.seq, ping_t=msg.t))

    def _pong(self, msg: Pong, now: float) -> None:
        self.offset.add(msg.ping_t, msg.t, now)

    def _read_from_brain(self) -> Message | None:
        return self.accept(self._cmd.recv(zmq.NOBLOCK, copy=True))

    def stats_dict(self) -> dict:
        d = super().stats_dict()
        if self.offset.ready:
            d["clock_offset_s"] = round(self.offset.offset, 6)
            d["rtt_ms"] = round(self.offset.rtt * 1000, 3)
        return d


def brain_ready(host: str, events_port: int, commands_port: int, timeout_s: float = 60.0,
                security: Security | None = None, stop: Callable[[], bool] | None = None) -> bool:
    """Ask the brain over the wire whether it is ready: it binds only once its model is loaded and warm, so its
    first pong says so. False after ``timeout_s`` or as soon as ``stop()`` is true (its process died)."""
    deadline = time.monotonic() + timeout_s
    with Link("tool", f"ready-probe-{os.getpid()}-{secrets.token_hex(3)}", host=host, events_port=events_port,
              commands_port=commands_port, security=security) as link:
        while time.monotonic() < deadline and not (stop and stop()):
            ping = Ping()
            link.send(ping)
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                if any(isinstance(m, Pong) and m.ping_seq == ping.seq for m in link.receive(timeout_ms=50)):
                    return True
    return False
