"""A pet's progress between sessions: its level, its last trials, and one row per session.

One small JSON file per pet, ``<session.dir>/pets/<name>.json``, written
atomically (temp file + rename) so a crash leaves the old file or the new
one, never half of one. A file that cannot be read is moved aside (kept for
the owner, never deleted) and the pet starts fresh, with a message that says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bridge.grid import ON_BEAT_S

log = logging.getLogger("neurojam.rig")
FORMAT = "neurojam-pet/1"


@dataclass
class SessionSummary:
    session: str
    started_utc: str
    minutes: float
    level_start: int
    level_end: int
    presses: int
    on_beat: float | None
    """Share of presses on the beat (``bridge.grid.ON_BEAT_S``)."""
    mean_abs_offset_ms: float | None
    presses_per_minute: float
    treats: int
    refused: int

    @classmethod
    def of(cls, trials: list, *, minutes: float, treats: int, refused: int, level_start: int,
           level_end: int, started_utc: str, session: str = "") -> "SessionSummary":
        """A session's row from its trials (``rig.curriculum.Trial``: ``offset_ms`` to the nearest beat)."""
        offsets = [abs(t.offset_ms) for t in trials]
        return cls(session=session, started_utc=started_utc,
                   minutes=round(minutes, 2), level_start=level_start, level_end=level_end, presses=len(trials),
                   on_beat=round(sum(o <= ON_BEAT_S * 1000 for o in offsets) / len(offsets), 3) if offsets else None,
                   mean_abs_offset_ms=round(sum(offsets) / len(offsets), 1) if offsets else None,
                   presses_per_minute=round(len(trials) / minutes, 1) if minutes > 0 else 0.0,
                   treats=treats, refused=refused)


@dataclass
class PetProgress:
    name: str
    path: Path
    level: int = 1
    recent: list[bool] = field(default_factory=list)
    """The last trials' outcomes (the curriculum's window), oldest first."""
    sessions: list[SessionSummary] = field(default_factory=list)
    problem: str = ""
    """Why an existing file was not used (empty when all was well)."""

    @classmethod
    def load(cls, root: str | Path, name: str) -> "PetProgress":
        path = Path(root) / "pets" / f"{name}.json"
        fresh = cls(name, path)
        if not path.exists():
            return fresh
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            return cls(name, path, level=int(data["level"]), recent=[bool(x) for x in data.get("recent", [])],
                       sessions=[SessionSummary(**s) for s in data.get("sessions", [])])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            aside = path.with_name(f"{path.name}.unreadable-{stamp}")
            try:
                path.rename(aside)
            except OSError:
                aside = path
            fresh.problem = (f"{path}: the progress file could not be read ({type(exc).__name__}: {exc}); it was kept "
                             f"as {aside.name} and {name} starts again at level 1.")
            log.warning(fresh.problem)
            return fresh

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "name": self.name, "level": self.level, "recent": self.recent,
                "sessions": [asdict(s) for s in self.sessions]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def draw_progress(progress: "PetProgress", png: Path, levels: int | None = None) -> Path:
    """On-beat share, timing error and level per session, one panel each, sessions in order (matplotlib: not
    needed on a Pi until a plot is asked for)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = progress.sessions
    x = list(range(1, len(rows) + 1))
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True)
    on_beat = [None if s.on_beat is None else 100 * s.on_beat for s in rows]
    axes[0].plot(x, on_beat, "o-", color="#2a9d8f")
    axes[0].set_ylabel("on the beat (%)")
    axes[0].set_ylim(0, 100)
    axes[1].plot(x, [s.mean_abs_offset_ms for s in rows], "o-", color="#e76f51")
    axes[1].set_ylabel("timing error (ms)")
    axes[1].set_ylim(bottom=0)
    for xi, s in zip(x, rows):  # each session from the level it started at to the one it ended at
        axes[2].plot([xi, xi], [s.level_start, s.level_end], color="#264653", linewidth=3, alpha=0.5)
    axes[2].plot(x, [s.level_end for s in rows], "o", color="#264653", label="level at the end")
    axes[2].plot(x, [s.level_start for s in rows], "_", color="#264653", markersize=12, label="level at the start")
    axes[2].set_ylabel("level")
    top = max([levels or 0] + [s.level_end for s in rows] + [s.level_start for s in rows])
    axes[2].set_yticks(range(1, top + 1))
    axes[2].set_ylim(0.5, top + 0.5)
    axes[2].legend(fontsize=8, frameon=False, loc="upper left")
    axes[2].set_xlabel("session")
    axes[2].set_xticks(x)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{progress.name}: training progress")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
