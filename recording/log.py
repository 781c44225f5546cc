"""Sessions on disk: an append-only, crash-safe log of every bridge frame.

A session is a directory::

    meta.json      config, model id, software versions, start/stop, source session
    events.njlog   the log (below)
    stats.json     the node's latest bridge/rig stats (rewritten each second)

Log layout: the 8-byte magic ``NJLOG1\\n\\0``, then records, each
``<u32 little-endian length><msgpack [direction, time, frame]>`` where
direction is ``"in"`` or ``"out"`` (as seen by the recording node), time its
monotonic clock, and frame the raw bridge frame (so nothing is re-encoded and
nothing is lost). A writer thread drains a bounded queue and flushes every
``flush_ms``; a ``kill -9`` loses at most that tail, and the reader tolerates a
truncated last record and reports it. Nothing recorded can make a log
unreadable: a frame too large for a record is not written (counted), and the
reader skips a damaged stretch, finds the next whole record and says how many
bytes it skipped. Recording stops, with a message in the log and the meta,
before the disk runs low (``min_free_mb``) or the log passes ``max_mb``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import platform
import queue
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import msgspec

from bridge.messages import Beat, FrameError, Message, Note, Pad, TreatRequest, TreatResult, decode
from core.errors import SessionError

MAGIC = b"NJLOG1\n\0"
LOG_NAME = "events.njlog"
META_NAME = "meta.json"
STATS_NAME = "stats.json"
_LEN = struct.Struct("<I")
_MAX_RECORD = 1 << 20
MAX_FRAME = _MAX_RECORD - 4096
"""The largest frame a record holds (the wire's own limit is far below it)."""
log = logging.getLogger("neurojam.session")


def new_session_dir(root: str | Path = "sessions") -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
    path = Path(root) / stamp
    path.mkdir(parents=True, exist_ok=False)
    return path


def software_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("neurojam", "pyzmq", "msgspec", "mido", "torch", "transformer-lens"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


class SessionRecorder:
    """Records frames off the hot path. ``record`` never blocks: when the
    bounded queue is full (disk too slow) the frame is dropped and counted."""

    def __init__(self, path: str | Path, meta: dict | None = None, *, buffer: int = 100_000,
                 flush_ms: float = 50.0, min_free_mb: float = 200.0, max_mb: float = 4096.0) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.min_free = int(min_free_mb * 1e6)
        self.max_bytes = int(max_mb * 1e6)
        self.stopped: str | None = None
        """Why recording stopped early (disk nearly full, log at its size cap), or None."""
        self.too_large = 0
        self._free_checked = 0.0
        self.dropped = 0
        self.recorded = 0
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._flush_s = flush_ms / 1000.0
        self._meta = {
            "format": "neurojam-session/1",
            "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
            "started_monotonic": time.monotonic(),
            "software": software_versions(),
            **(meta or {}),
        }
        self._write_meta()
        self._file = open(self.path / LOG_NAME, "ab", buffering=0)
        if self._file.tell() == 0:
            self._file.write(MAGIC)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-writer", daemon=True)
        self._thread.start()
        self._closed = False

    def record(self, direction: str, frame: bytes, t: float) -> None:
        if len(frame) > MAX_FRAME:
            self.too_large += 1
            return
        try:
            self._queue.put_nowait((direction, t, frame))
        except queue.Full:
            self.dropped += 1

    __call__ = record  # usable directly as a Link tap

    def update_meta(self, **values) -> None:
        self._meta.update(values)
        self._write_meta()

    def write_stats(self, stats: dict) -> None:
        tmp = self.path / (STATS_NAME + ".tmp")
        tmp.write_text(json.dumps(stats, indent=1, default=str))
        os.replace(tmp, self.path / STATS_NAME)

    def _write_meta(self) -> None:
        tmp = self.path / (META_NAME + ".tmp")
        tmp.write_text(json.dumps(self._meta, indent=1, default=str))
        os.replace(tmp, self.path / META_NAME)

    def _run(self) -> None:
        pack = msgspec.msgpack.encode
        while True:
            try:
                first = self._queue.get(timeout=self._flush_s)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            chunks = [first]
            deadline = time.monotonic() + self._flush_s
            while len(chunks) < 4096 and time.monotonic() < deadline:
                try:
                    chunks.append(self._queue.get_nowait())
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    time.sleep(min(0.005, self._flush_s / 4))
            if self.stopped or self._must_stop():
                self.dropped += len(chunks)
                continue
            buf = bytearray()
            for direction, t, frame in chunks:
                body = pack([direction, t, frame])
                buf += _LEN.pack(len(body))
                buf += body
            self._file.write(buf)  # unbuffered: in the OS after this call, safe from kill -9
            self.recorded += len(chunks)

    def _must_stop(self) -> bool:
        """Stop before the disk fills or the log passes its cap: say so once, in the log and the meta."""
        size = self._file.tell()
        reason = None
        if size >= self.max_bytes:
            reason = f"the session log reached session.max_mb ({self.max_bytes / 1e6:,.0f} MB)"
        elif time.monotonic() - self._free_checked > 1.0:
            self._free_checked = time.monotonic()
            free = shutil.disk_usage(self.path).free
            if free < self.min_free:
                reason = (f"the disk has {free / 1e6:,.0f} MB free, below session.min_free_mb "
                          f"({self.min_free / 1e6:,.0f} MB)")
        if reason is None:
            return False
        self.stopped = f"recording stopped: {reason}; what came before is kept. Free some space (or raise the limit)."
        log.error("%s: %s", self.path, self.stopped)
        self.update_meta(recording_stopped=self.stopped)
        return True

    def close(self, **meta) -> None:
        """Drain, write the stop time and close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=10)
        self._file.close()
        self.update_meta(stopped_utc=dt.datetime.now(dt.timezone.utc).isoformat(),
                         stopped_monotonic=time.monotonic(), recorded=self.recorded,
                         dropped=self.dropped, too_large=self.too_large, **meta)


BRAIN_SESSION = "brain-session"
"""Where a demo keeps the brain's own session, beside the rig's."""


class SessionMeta(msgspec.Struct, kw_only=True):
    """A session's meta.json, read typed (keys a newer version adds are ignored)."""

    format: str = ""
    node: str = ""
    """Who recorded it: rig, brain or replay."""
    started_utc: str = ""
    model: str = ""
    config: dict = {}
    """The whole configuration the node ran with: read a section with :meth:`section`."""
    source_session: str = ""
    """For a replay: the session it replays."""
    speed: str | float | None = None
    human_midi: str | None = None
    corruption: str = ""
    recording_stopped: str = ""
    events_replayed: int | None = None
    recorded: int | None = None
    """Frames written, once the recorder closed (None: it never closed)."""
    dropped: int | None = None
    too_large: int | None = None

    def section(self, name: str) -> dict:
        """One config section as recorded (``brain.config.BrainConfig.of_session`` reads the brain's typed)."""
        value = self.config.get(name) if isinstance(self.config, dict) else None
        return value if isinstance(value, dict) else {}

    @classmethod
    def of(cls, data: object) -> "SessionMeta":
        try:
            return msgspec.convert(data if isinstance(data, dict) else {}, cls, strict=False)
        except msgspec.ValidationError:  # a hand-edited meta.json: keep what reads, the rest defaults
            return cls(**{k: v for k, v in data.items() if k in cls.__struct_fields__ and isinstance(v, str)})


def brain_session_of(session: Path) -> Path | None:
    """The brain's session a demo recorded beside this rig session, if there is one."""
    path = Path(session).parent / BRAIN_SESSION
    return path if (path / META_NAME).exists() else None


@dataclass
class Record:
    direction: str
    time: float
    msg: Message


@dataclass
class SessionLog:
    records: list[Record]
    meta: SessionMeta
    undecodable: int = 0
    truncated_bytes: int = 0
    skipped_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def rig_side(self) -> list[Message]:
        """What the rig said about the music (:func:`is_rig_side`), in recorded order: what a rig or a replay
        sent, or what a brain received."""
        direction = "in" if self.meta.node == "brain" else "out"
        return [r.msg for r in self.records if r.direction == direction and is_rig_side(r.msg)]


def is_rig_side(msg: Message) -> bool:
    """Pads, beats and the pet's and the human's notes: the events a brain reads and a replay resends."""
    return isinstance(msg, (Pad, Beat)) or (isinstance(msg, Note) and msg.source in ("pet", "human"))


def _record_at(data: bytes, pos: int) -> tuple[int, tuple] | str:
    """The whole record at ``pos`` as (end, (direction, time, frame)), or why not: 'truncated' or 'corrupt'."""
    if pos + 4 > len(data):
        return "truncated"
    (n,) = _LEN.unpack_from(data, pos)
    if n > _MAX_RECORD:
        return "corrupt"
    if pos + 4 + n > len(data):
        return "truncated"
    try:
        direction, t, frame = msgspec.msgpack.decode(data[pos + 4: pos + 4 + n])
    except (msgspec.DecodeError, ValueError, TypeError):
        return "corrupt"
    if direction not in ("in", "out") or not isinstance(t, (int, float)) or not isinstance(frame, bytes):
        return "corrupt"
    return pos + 4 + n, (direction, t, frame)


def _resync(data: bytes, pos: int) -> int | None:
    """The next position after ``pos`` where a whole record starts and is followed by another (or by the end, or
    by a record still being written): two in a row do not happen by chance inside damaged bytes."""
    for start in range(pos + 1, len(data) - 4):
        first = _record_at(data, start)
        if isinstance(first, str):
            continue
        end = first[0]
        after = None if end == len(data) else _record_at(data, end)
        if after is None or after == "truncated" or not isinstance(after, str):
            return start
    return None


def _scan(data: bytes, pos: int, resync: bool = True) -> Iterator[tuple[int, tuple]]:
    """Records in ``data`` from ``pos``: (end position, (direction, time, frame)). A damaged stretch yields
    (pos, ('skipped', nbytes)) and the scan goes on at the next whole record (``resync``); a bad tail ends it
    with (pos, ('truncated', nbytes)) or, not resyncing, (pos, ('corrupt', offset))."""
    while pos < len(data):
        got = _record_at(data, pos)
        if got == "truncated":
            yield pos, ("truncated", len(data) - pos)
            return
        if got == "corrupt":
            if not resync:
                yield pos, ("corrupt", pos)
                return
            nxt = _resync(data, pos)
            yield pos, ("skipped", (nxt if nxt is not None else len(data)) - pos)
            if nxt is None:
                return
            pos = nxt
            continue
        pos, item = got
        yield pos, item


def iter_log(path: Path) -> Iterator[tuple[str, float, bytes] | tuple[str, int]]:
    """Raw records; ('skipped', nbytes) where a damaged stretch was passed over; a final ('truncated', nbytes) if
    the tail is a record still being written."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise SessionError(f"{path}: not a neurojam session log (it does not start with the "
                           f"neurojam log header). Pass a session directory made by `neurojam rig`, "
                           f"`demo` or `replay`.")
    for _, item in _scan(data, len(MAGIC)):
        yield item


class LogTail:
    """Reads a log while it is being written (the demo's live view): only whole records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.pos = 0

    def read(self) -> list[tuple[str, float, Message]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            data = f.read()
        if len(data) < len(MAGIC):
            return []
        out = []
        for end, item in _scan(data, max(self.pos, len(MAGIC)), resync=False):
            if len(item) == 2:  # a record still being written: read it next time
                break
            self.pos = end
            try:
                out.append((item[0], item[1], decode(item[2])))
            except FrameError:
                pass
        return out


def read_meta(session_dir: str | Path) -> SessionMeta:
    """A session's meta.json (defaults where it is missing or unreadable: the log is what counts)."""
    try:
        return SessionMeta.of(json.loads((Path(session_dir) / META_NAME).read_text()))
    except (OSError, json.JSONDecodeError):
        return SessionMeta()


def read_session(path: str | Path) -> SessionLog:
    """Every decodable record of a session, with what was wrong with the rest."""
    path = Path(path)
    log_path = path / LOG_NAME if path.is_dir() else path
    session_dir = log_path.parent
    if not log_path.exists():
        raise SessionError(f"{path}: no session here (expected {LOG_NAME} inside a session directory; "
                           f"`neurojam sessions` lists the ones under ./sessions).")
    out = SessionLog(records=[], meta=read_meta(session_dir))
    for item in iter_log(log_path):
        if item[0] == "truncated":
            out.truncated_bytes = item[1]
            out.problems.append(f"the last {item[1]} bytes are a truncated record (the recorder was "
                                f"stopped mid-write); everything before them was read")
            break
        if item[0] == "skipped":
            out.skipped_bytes += item[1]
            out.problems.append(f"skipped {item[1]:,} damaged bytes; read on from the next whole record")
            continue
        direction, t, frame = item
        try:
            out.records.append(Record(direction, t, decode(frame)))
        except FrameError as exc:
            msg = upgrade_v1(frame) if exc.reason == "unknown_kind" else None
            if msg is None:
                out.undecodable += 1
            else:
                out.records.append(Record(direction, t, msg))
    if out.meta.recording_stopped:
        out.problems.append(out.meta.recording_stopped)
    if out.undecodable:
        out.problems.append(f"{out.undecodable} frames could not be decoded (they were recorded as received)")
    return out


_V1_REFUSALS = {"max_per_session": "max_per_session", "min_interval": "min_interval",
                "max_per_minute": "max_per_minute", "dispenser": "disabled", "no": "no_beat", "a": "pending"}


def upgrade_v1(frame: bytes) -> Message | None:
    """A protocol-1 ``reward`` frame (request and result in one kind) as today's kinds; None for anything else.
    Old sessions keep their treats; v1 ``control`` frames (steering) carry nothing the jam view reads."""
    try:
        m = msgspec.msgpack.decode(frame)
    except Exception:
        return None
    if not isinstance(m, dict) or m.get("kind") != "reward":
        return None
    head = {k: m[k] for k in ("v", "node", "seq", "t") if k in m}
    source = m.get("source") if m.get("source") in ("brain", "rig", "manual") else "brain"
    reason = str(m.get("reason", ""))
    try:
        if m.get("action") == "request":
            return TreatRequest(**head, source=source, request_id=int(m.get("request_id", 0)), why=reason)
        if m.get("action") in ("dispensed", "refused"):
            refusal = _V1_REFUSALS.get(reason.split(" ")[0]) if m["action"] == "refused" else None
            return TreatResult(**head, outcome=m["action"], source=source, request_id=int(m.get("request_id", 0)),
                               refusal=refusal, detail=reason, beat_index=int(m.get("beat_index", -1)))
    except (TypeError, ValueError):
        return None
    return None


def latest_session(root: Path) -> Path:
    candidates = sorted(p for p in Path(root).glob("*") if (p / META_NAME).exists())
    if not candidates:
        raise SessionError(f"no sessions under {root}/ yet: run `neurojam demo` or `neurojam rig` first.")
    return candidates[-1]


def read_stats(session: Path) -> dict:
    path = Path(session) / STATS_NAME
    if not path.exists():
        raise SessionError(f"{session}: no {STATS_NAME} (the node writes it each second while running).")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path}: not readable stats ({exc}); the node rewrites it each second while it runs, "
                           f"so a running node fixes it, and a finished session's log holds everything anyway.") from exc
