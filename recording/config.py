"""The sessions' config section: where sessions are written and how the recorder buffers."""

from __future__ import annotations

from typing import Annotated

import msgspec

from core.config import Section


class SessionConfig(Section):
    dir: str = "sessions"
    record: bool = True
    buffer: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000
    flush_ms: Annotated[float, msgspec.Meta(ge=1, le=1000)] = 50
    min_free_mb: Annotated[float, msgspec.Meta(ge=0, le=10_000_000)] = 200
    """Recording stops (with a clear message, kept in the session's meta) before the disk has less free than this."""
    max_mb: Annotated[float, msgspec.Meta(gt=0, le=10_000_000)] = 4096
    """A session's log stops growing at this size (a flood cannot fill the disk through one session)."""
