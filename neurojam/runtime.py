"""What a running demo or lab tells the other commands: its ports, its session, its stage's address.

``neurojam demo`` and ``neurojam lab`` write ``running.json`` while they run (and remove it when they stop);
``sessions``, ``steer``, ``stage`` and ``report`` read it, so during a demo they need no flags. A file left by
a demo that died is ignored (its process is gone).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


def runtime_dir() -> Path:
    return Path(os.environ.get("NEUROJAM_RUNTIME_DIR") or Path.home() / ".cache" / "neurojam")


@dataclass
class Running:
    """A demo or lab in progress."""

    pid: int
    kind: str
    """demo | lab"""
    events_port: int
    commands_port: int
    session: str = ""
    """The rig's session directory, being recorded."""
    out_dir: str = ""
    stage_url: str = ""

    @property
    def path(self) -> Path:
        return runtime_dir() / "running.json"

    def write(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")  # two demos started at once each write their own
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)
        return self.path

    def remove(self) -> None:
        if running() == self:
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> Running | None:
    """The demo or lab running on this machine now, if any."""
    path = runtime_dir() / "running.json"
    try:
        data = json.loads(path.read_text())
        found = Running(**data)
    except (OSError, ValueError, TypeError):
        return None
    return found if _alive(found.pid) else None
