"""The stage's web server: the page, a WebSocket of jam events, and the controls.

aiohttp, one process: ``GET /`` is the page (its script and style are served
from this package: no CDN, works offline), ``/ws`` streams the events of
:mod:`stage.jam_view` (a page that opens late first gets the recent history),
and ``POST /api/{steer,treat,tempo,card}`` become wire messages to the brain.
A treat is only ever a *request*: the brain passes it to the rig, whose
dispenser and caps decide, and the page shows what they decided.

Safe by default: bound to 127.0.0.1. On any other address a token is required
(``stage.token``, or a fresh one printed once in the URL) for the page, the
WebSocket and every control; without it they answer 403. On every address the
``Host`` must be one this stage serves (no DNS rebinding) and a browser's
``Origin`` must be the stage's own (no other web page may drive it: 403);
controls take only ``application/json`` (415), at most ``MAX_BODY`` bytes,
``MAX_DEPTH`` levels and ``MAX_DIGITS``-digit numbers (400, never 500).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from aiohttp import WSMsgType, web

from bridge.config import BridgeConfig
from bridge.messages import CardRequest, MessageError, Steer, Tempo, TreatRequest, encode
from core.errors import ConfigError
from core.units import NeuronId
from stage.config import StageConfig
from stage.jam_view import JamView
from stage.watcher import BrainWatcher

log = logging.getLogger("neurojam.stage")
STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
MAX_DEPTH = 8
MAX_DIGITS = 12
CLIENT_QUEUE = 2000
"""Events buffered per page; a page that falls further behind loses the oldest (counted), never the brain."""


class StageSettings(Protocol):
    stage: StageConfig
    bridge: BridgeConfig


@dataclass(eq=False)
class PageClient:
    """One open page: its queue of event batches, and the rig it shows (its other rigs' events are not sent)."""

    queue: asyncio.Queue
    rig: str = ""

    def wants(self, event: dict) -> bool:
        rig = event.get("rig")
        return not self.rig or rig is None or rig == self.rig


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StageServer:
    def __init__(self, config: StageSettings, say: Callable[[str], None] = print) -> None:
        self.config = config
        sc = config.stage
        self.token = sc.token or ("" if is_loopback(sc.host) else secrets.token_urlsafe(16))
        self.say = say
        self.view = JamView(sc.history_s)
        self.watcher = BrainWatcher(config.bridge, sc.node_id, self.view, self.publish, say=lambda s: say(f"stage: {s}"))
        self.clients: set[PageClient] = set()
        self.dropped = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.add_routes([web.get("/", self.page), web.get("/ws", self.websocket),
                             web.post("/api/{control}", self.control), web.static("/static", STATIC)])

    @property
    def url(self) -> str:
        sc = self.config.stage
        host = sc.host if sc.host not in ("0.0.0.0", "::") else _lan_address()
        return f"http://{host}:{sc.port}/" + (f"?token={self.token}" if self.token else "")

    # -- access ------------------------------------------------------------------------
    def hosts(self) -> set[str]:
        """The Host values this stage answers to: its own addresses, with its port."""
        sc = self.config.stage
        names = {sc.host, "localhost", "127.0.0.1", "[::1]"} if is_loopback(sc.host) else {sc.host}
        if sc.host in ("0.0.0.0", "::"):
            names |= {"localhost", "127.0.0.1", "[::1]", _lan_address(), socket.gethostname()}
        return {f"{n}:{sc.port}" for n in names} | ({n for n in names} if sc.port == 80 else set())

    def same_origin(self, request: web.Request) -> bool:
        """Host is ours, and a browser's Origin (sent with every POST and WebSocket) is our own page's."""
        if request.host not in self.hosts():
            return False
        origin = request.headers.get("Origin")
        return origin is None or origin in {f"http://{h}" for h in self.hosts()}

    def allowed(self, request: web.Request) -> bool:
        if not self.same_origin(request):
            return False
        if not self.token:
            return True
        given = request.query.get("token") or request.headers.get("X-Neurojam-Token", "")
        return secrets.compare_digest(given.encode(), self.token.encode())

    def _forbidden(self) -> web.Response:
        return web.Response(status=403, text="403: this stage answers only its own page, at the address it printed "
                                             "(and, off loopback, with its token: open the URL `neurojam stage` printed)")

    # -- page and events --------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        if not self.allowed(request):
            return self._forbidden()
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.allowed(request):
            return self._forbidden()
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        client = PageClient(asyncio.Queue(CLIENT_QUEUE))
        self.clients.add(client)
        await ws.send_str(json.dumps([self.watcher.link_event(), *self.view.snapshot()]))
        sender = asyncio.create_task(self._send_loop(ws, client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._from_page(ws, client, msg.data)
        finally:
            self.clients.discard(client)
            sender.cancel()
        return ws

    async def _send_loop(self, ws: web.WebSocketResponse, client: "PageClient") -> None:
        while True:
            batch = [await client.queue.get()]
            while not client.queue.empty():
                batch.append(client.queue.get_nowait())
            events = [e for events in batch for e in events if client.wants(e)]
            if events:
                await ws.send_str(json.dumps(events))

    async def _from_page(self, ws: web.WebSocketResponse, client: "PageClient", data: str) -> None:
        """Clock sync: the page's performance.now() (ms) answered with our monotonic clock (s); ``watch``: the rig
        the page shows (only its events are sent on)."""
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") == "watch" and isinstance(msg.get("rig"), str):
            client.rig = msg["rig"][:200]
        elif isinstance(msg, dict) and msg.get("type") == "sync":
            await ws.send_str(json.dumps([{"type": "sync", "p": msg.get("p"), "s": time.monotonic()}]))

    def publish(self, events: list[dict]) -> None:
        """From the watcher's thread: hand events to every page."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._fan_out, events)

    def _fan_out(self, events: list[dict]) -> None:
        for client in self.clients:
            if client.queue.full():
                client.queue.get_nowait()
                self.dropped += 1
            client.queue.put_nowait(events)

    # -- controls ---------------------------------------------------------------------------
    async def control(self, request: web.Request) -> web.Response:
        if not self.allowed(request):
            return self._forbidden()
        if request.content_type != "application/json":
            return web.json_response({"sent": False, "error": "controls take Content-Type: application/json"},
                                     status=415)
        try:
            body = parse_control(await request.read())
            msg = self._message(request.match_info["control"], body)
            encode(msg)
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"sent": False, "error": f"a control is at most {MAX_BODY} bytes"}, status=413)
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError, MessageError) as exc:
            return web.json_response({"sent": False, "error": str(exc)[:300]}, status=400)
        if not self.watcher.brain_alive:
            return web.json_response({"sent": False, "error": "no brain connected"}, status=503)
        sent = self.watcher.send(msg)
        return web.json_response({"sent": sent}, status=200 if sent else 503)

    @staticmethod
    def _message(control: str, body: dict):
        rig = str(body.get("rig") or "")
        if control == "steer":
            if body.get("clear"):
                return Steer(clear=True, rig=rig)
            if "skip_layer" in body:
                layer = body["skip_layer"]
                if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < 1000:
                    raise ValueError("skip_layer is a layer number")
                return Steer(layer=layer, skip_layer=True, rig=rig)
            if "play" in body:
                if body["play"] not in ("neurons", "features"):
                    raise ValueError("play is neurons or features")
                return Steer(play=body["play"])
            layer, neuron = NeuronId.parse(body["neuron"])  # ValueError: a 400
            factor = float(body["factor"])
            if not 0 <= factor <= 3:
                raise ValueError("the stage steers between 0× and 3×")
            units = body.get("units", "")
            if units not in ("", "neurons", "features"):
                raise ValueError("units is neurons or features")
            return Steer(layer=layer, neuron=neuron, factor=factor, rig=rig, units=units)
        if control == "treat":
            return TreatRequest(source="manual", why="the stage's treat button", rig=rig)
        if control == "tempo":
            return Tempo(bpm=float(body["bpm"]), rig=rig)
        if control == "card":
            layer, neuron = NeuronId.parse(body["neuron"])  # ValueError: a 400
            return CardRequest(layer=layer, neuron=neuron, rig=rig)
        raise KeyError(f"no control called {control!r} (steer, treat, tempo, card)")

    # -- run --------------------------------------------------------------------------------
    async def serve(self, seconds: float | None = None, stop: asyncio.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        sc = self.config.stage
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, sc.host, sc.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"the stage cannot listen on {sc.host}:{sc.port} ({exc.strerror}): choose another "
                              f"port with --port or stage.port") from exc
        self.watcher.start()
        self.say(f"stage: open {self.url}" + ("" if is_loopback(sc.host) else
                                             "  (the token in this URL is needed from any other device)"))
        try:
            if stop is None:
                stop = asyncio.Event()
            await (asyncio.wait_for(stop.wait(), seconds) if seconds else stop.wait())
        except asyncio.TimeoutError:
            pass
        finally:
            self.watcher.stop()
            await runner.cleanup()


def parse_control(raw: bytes) -> dict:
    """A control's JSON body, bounded: an object, at most MAX_DEPTH deep, no number longer than MAX_DIGITS."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw.decode("utf-8"):  # nesting counted before the parser recurses into it
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise ValueError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
        elif ch in "]}":
            depth -= 1

    def number(text: str):
        if len(text.lstrip("-").replace(".", "").split("e")[0].split("E")[0]) > MAX_DIGITS:
            raise ValueError(f"a number in the JSON is longer than {MAX_DIGITS} digits")
        return float(text) if any(c in text for c in ".eE") else int(text)

    def constant(text: str):
        raise ValueError(f"{text} is not a number a control takes")

    body = json.loads(raw, parse_int=number, parse_float=number, parse_constant=constant)
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def _lan_address() -> str:
    """This machine's address as seen on the LAN (for the printed URL of a 0.0.0.0 bind)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def run_stage(config: StageSettings, seconds: float | None = None, open_browser: bool = False) -> int:
    server = StageServer(config)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        asyncio.run(server.serve(seconds))
    except KeyboardInterrupt:
        pass
    print("stage: stopped.", flush=True)
    return 0
