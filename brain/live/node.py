"""The brain node: the brain core (``brain/live/core.py``) on the wire.

It binds its sockets and waits; rigs come and go. It receives, hands the
messages to the core, sends the answers, and once a second forgets idle rigs,
tells the stages and records its statistics. Bad frames are counted by the
bridge; nothing a peer sends can stop it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Protocol

from brain.config import BrainConfig
from brain.live.core import Answer, BrainCore
from brain.models import LoadedModel, load_model
from bridge.config import BridgeConfig, OscConfig
from bridge.identity import IdentityBook
from bridge.link import Link
from bridge.messages import BrainStatus, Message, Monitor, NeuronCard, Neurons
from bridge.osc import OscOut
from bridge.security import Security, security_for
from core.config import to_dict
from recording.config import SessionConfig
from recording.log import SessionRecorder

log = logging.getLogger("neurojam.brain")
SOFTWARE = "neurojam-brain/0.1"


class BrainSettings(Protocol):
    """What the brain node reads: its own section, the wire's and the recorder's (``neurojam.config.Config`` is one)."""

    brain: BrainConfig
    bridge: BridgeConfig
    session: SessionConfig
    osc: OscConfig


UNRECORDED = (Monitor, BrainStatus, NeuronCard)
"""What the brain sends stages: copies of frames already in the session, and views of it."""


def brain_link(config: BrainSettings, security: Security, identity: IdentityBook,
               tap: SessionRecorder | None = None) -> Link:
    """The brain's end of the wire, as configured."""
    b, bc = config.bridge, config.brain
    return Link("brain", bc.node_id, bind_host=b.bind_host, events_port=b.events_port,
                commands_port=b.commands_port, heartbeat_s=b.heartbeat_s, liveness_s=b.liveness_s,
                hwm=b.hwm, tap=tap, security=security, max_frame_bytes=b.max_frame_bytes, identity=identity)


class BrainNode:
    """A :class:`~brain.live.core.BrainCore` on a :class:`~bridge.link.Link`: receive, hand over, send the answers.

    ``link`` is made from the config unless given (a test or a replay can pass its own). It is bound only after
    the model is loaded and warm, so a peer's first pong means ready (:func:`bridge.link.brain_ready`)."""

    def __init__(self, config: BrainSettings, model: LoadedModel | None = None, *, session_dir: str | Path | None = None,
                 meta: dict | None = None, link: Link | None = None) -> None:
        self.config = config
        bc = config.brain
        model = model or load_model(bc.model, bc.device, bc.dtype)
        self.recorder = None
        if session_dir is not None:
            self.recorder = SessionRecorder(session_dir, {"node": "brain", "config": to_dict(config),
                                                          "model": model.name, **(meta or {})},
                                            buffer=config.session.buffer, flush_ms=config.session.flush_ms,
                                            min_free_mb=config.session.min_free_mb, max_mb=config.session.max_mb)
        try:
            security = link.security if link else security_for(config.bridge, bc.node_id, server=True)
            identity = link.identity if link else IdentityBook.from_config(config.bridge,
                                                                          keyed=security.name == "curve")
            self.core = BrainCore(bc, model, identity=identity)
            self.core.warm()
            self.link = link or brain_link(config, security, identity, tap=self.recorder)
        except BaseException:
            if self.recorder:
                self.recorder.close()
            raise
        osc = getattr(config, "osc", None)
        self.osc = OscOut(osc.targets, osc.prefix) if osc is not None else OscOut([])
        """Each event's top neurons, for visuals (``bridge/osc.py``)."""
        self.stop_event = threading.Event()
        self._closed = False

    @property
    def model(self) -> LoadedModel:
        return self.core.model

    # -- messages -------------------------------------------------------------------------
    def handle(self, msgs: list[Message]) -> list[Answer]:
        """Hand messages to the core and send its answers (stamped by the link)."""
        answers = self.core.handle(msgs, self.link.snapshot())
        self._send(answers)
        return answers

    def _send(self, answers: list[Answer]) -> None:
        for to, msg in answers:
            if isinstance(msg, Neurons) and self.osc.enabled:
                for h in msg.hits:
                    self.osc.neuron(f"{h.layer}.{h.index}", h.normalized, h.activation, h.label, to)
            self.link.send(msg, to=to, record=not isinstance(msg, UNRECORDED))
        for reason, n in self.core.dropped_in.items():
            self.link.stats.dropped_in[reason] += n
        self.core.dropped_in.clear()

    # -- run -------------------------------------------------------------------------------
    def step(self, timeout_ms: float = 5) -> list[Answer]:
        msgs = self.link.receive(timeout_ms=timeout_ms)
        self.link.tick()
        return self.handle(msgs) if msgs else []

    def every_second(self) -> None:
        """Forget idle rigs, tell the stages, record the statistics."""
        wire = self.link.snapshot()
        for node in self.core.forget_idle_rigs(wire, self.config.bridge.idle_rig_s):
            self.link.forget(node)
        self._send(self.core.status(wire))
        if self.recorder:
            self.recorder.write_stats(self.stats())

    def stats(self) -> dict:
        return {**self.core.stats(), "bridge": self.link.stats_dict()}

    def run(self, seconds: float | None = None) -> None:
        self.link.hello(software=SOFTWARE)
        end = None if seconds is None else time.monotonic() + seconds
        next_stats = time.monotonic() + 1
        while not self.stop_event.is_set() and (end is None or time.monotonic() < end):
            self.step()
            if time.monotonic() >= next_stats:
                next_stats += 1
                self.every_second()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.core.close()
        self.link.close()
        self.osc.close()
        if self.recorder:
            self.recorder.write_stats(self.stats())
            self.recorder.close()


def run_brain(config: BrainSettings, seconds: float | None = None, session_dir: str | None = None) -> int:
    stop = threading.Event()

    def on_signal(*_) -> None:
        if stop.is_set():  # a second Ctrl-C: now, whatever is loading
            os._exit(130)
        stop.set()

    # Installed before the model loads: importing torch/transformer_lens can swallow a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    import torch

    if config.brain.device in ("auto", "cpu") and not torch.cuda.is_available():
        torch.set_num_threads(config.brain.cpu_threads)
    print(f"brain: loading {config.brain.model} ... (Ctrl-C stops)", flush=True)
    try:
        node = BrainNode(config, session_dir=session_dir)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    node.stop_event = stop
    node.core.on_new_rig = lambda rig: print(f"brain: serving rig {rig} (rigs: {', '.join(node.core.rigs)})", flush=True)
    if stop.is_set():
        node.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("brain: stopped while loading the model.", flush=True)
        return 130
    b = config.bridge
    print(f"brain: {node.model.name} on {node.model.device} ({node.model.n_layers} layers × {node.model.d_mlp} "
          f"neurons), listening on tcp://{b.bind_host}:{b.events_port}/{b.commands_port}; Ctrl-C to stop", flush=True)
    try:
        node.run(seconds)
    finally:
        node.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    s = node.stats()
    print(f"brain: stopped. {s['counts']['events']} events, {s['counts']['accomp_notes']} accompaniment notes, "
          f"step p50 {s['step_ms_p50']} ms, p99 {s['step_ms_p99']} ms, max {s['step_ms_max']} ms (warm-up "
          f"excluded)", flush=True)
    return 0
