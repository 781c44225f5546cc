"""Sessions: recording every frame, reading it back, the jam view, MIDI and audio export.

Sits between the nodes and the wire: it reads frames (``bridge.messages``) and
knows nothing of models. :func:`open_session` is the one way in for every
reader (export, the session list, the demo's summary, the report, replay).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import SessionError
from recording.jam import Jam, jam_from_log
from recording.log import SessionLog, SessionMeta, read_session


@dataclass
class Session:
    path: Path
    log: SessionLog
    jam: Jam

    @property
    def meta(self) -> SessionMeta:
        return self.log.meta


def open_session(path: str | Path, *, warn: bool = False) -> Session:
    """Read a session directory (or its log file). A log with no readable message is a SessionError;
    ``warn`` prints what was wrong with the rest (a truncated tail, undecodable frames) to stderr."""
    log = read_session(path)
    if warn:
        for problem in log.problems:
            print(f"note: {path}: {problem}", file=sys.stderr)
    if not log.records:
        raise SessionError(f"{path}: the session log holds no readable messages.")
    return Session(Path(path), log, jam_from_log(log))
