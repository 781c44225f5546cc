"""The stage's config section: where its web page is served and who may open it."""

from __future__ import annotations

from typing import Annotated

import msgspec

from core.config import Section
from core.units import Port


class StageConfig(Section):
    host: str = "127.0.0.1"
    """Address the page is served on. Any other than loopback (0.0.0.0 for a tablet on the LAN) needs the token."""
    port: Port = 8770
    token: str = ""
    """Required in the page's URL and by every control on a non-loopback address; empty: a fresh one per run,
    printed once in the URL."""
    node_id: str = ""
    """The stage's name on the wire; empty: 'stage-' and this process's id, so several stages can watch one brain."""
    history_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    """How much of the jam a page that opens late is sent."""
