"""The stage's end of the wire: a ``stage`` link to the brain, read in its own thread.

The brain may not be running yet, may restart, or may stop: the watcher keeps
dialling (ZeroMQ reconnects by itself), says hello again whenever the brain
comes back (a restarted brain has forgotten its stages), and tells the page
and the terminal which it is. Controls (steer, tempo, treat, card) are sent
from the web server's thread; :meth:`Link.send` is thread-safe.
"""

from __future__ import annotations

import os
import logging
import threading
from typing import Callable

from bridge.config import BridgeConfig
from bridge.link import Link
from bridge.messages import Hello, Message
from bridge.security import TOOL_KEY, security_for
from stage.jam_view import JamView

log = logging.getLogger("neurojam.stage")
SOFTWARE = "neurojam-stage/0.1"


class BrainWatcher:
    def __init__(self, bridge: BridgeConfig, node_id: str, view: JamView,
                 publish: Callable[[list[dict]], None], say: Callable[[str], None] = print) -> None:
        self.bridge, self.view, self.publish, self.say = bridge, view, publish, say
        node_id = node_id or f"stage-{os.getpid()}"
        self.link = Link("stage", node_id, host=bridge.host, events_port=bridge.events_port,
                         commands_port=bridge.commands_port, heartbeat_s=bridge.heartbeat_s,
                         liveness_s=bridge.liveness_s, hwm=bridge.hwm,
                         security=security_for(bridge, TOOL_KEY, server=False))
        self.brain_alive = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage-watcher", daemon=True)

    @property
    def where(self) -> str:
        return f"{self.bridge.host}:{self.bridge.events_port}/{self.bridge.commands_port}"

    def link_event(self) -> dict:
        if self.link.refused:
            return {"type": "link", "alive": False, "message": f"the brain refused this stage: {self.link.refused}"}
        if self.brain_alive:
            return {"type": "link", "alive": True, "message": f"connected to the brain at {self.where}"}
        return {"type": "link", "alive": False,
                "message": f"no brain at {self.where} yet: start one (`neurojam brain` or `neurojam demo`); "
                           f"this page connects when it does"}

    def start(self) -> None:
        self.say(self.link_event()["message"])
        self._thread.start()

    def send(self, msg: Message) -> bool:
        return self.link.send(msg)

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self.link.receive(timeout_ms=20)
            self.link.tick()
            alive = self.link.peer_alive()
            if alive != self.brain_alive:
                self.brain_alive = alive
                if alive:  # a (re)started brain knows us only from heartbeats: tell it we watch
                    self.link.send(Hello(role="stage", software=SOFTWARE))
                event = self.link_event()
                self.say(event["message"] if alive else f"lost the brain at {self.where}; waiting for it")
                self.publish([event])
            events = [e for m in msgs for e in self.view.read(m)]
            if events:
                self.publish(events)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.link.close()

