"""The wire's config section: where the brain listens, where the rig finds it, heartbeats."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.config import Section
from core.units import Port


class BridgeConfig(Section):
    host: str = "127.0.0.1"
    """Where the rig finds the brain."""
    bind_host: str = "127.0.0.1"
    """Address the brain listens on (0.0.0.0 for a two-machine setup)."""
    events_port: Port = 5555
    commands_port: Port = 5556
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.5
    liveness_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    hwm: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    curve: bool | Literal["auto"] = "auto"
    """CurveZMQ: on (true), off (false), or 'auto': on whenever the brain listens on (or the rig dials) a non-loopback
    address."""
    keys_dir: str = "~/.config/neurojam/keys"
    """Where this node's keypair lives (``neurojam keys init`` writes NODE.key and NODE.key_secret)."""
    brain_public_key: str = ""
    """The brain's public key (40 characters of Z85), pinned by rigs and tools."""
    allowed_keys: list[str] = []
    """Public keys of the rigs and tools the brain lets in."""
