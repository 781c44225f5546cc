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
