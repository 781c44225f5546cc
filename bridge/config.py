"""The wire's config section: where the brain listens, where the rig finds it, heartbeats."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.config import Section
from core.units import KeyRole, Port, Z85Key, Z85KeyOrEmpty


class OscConfig(Section):
    """OSC for visuals (TouchDesigner, Max, Resolume, Processing): each event as it happens, to these targets
    (``bridge/osc.py`` and docs/osc.md list the addresses). The rig sends beats, notes, pads and treats; the brain
    sends neurons."""

    targets: list[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\[\]-]+:[0-9]{1,5}$")]] = []
    """host:port pairs, e.g. ['127.0.0.1:9000', 'vj-laptop.local:7000']; empty: OSC off."""
    prefix: Annotated[str, msgspec.Meta(pattern=r"^(/[A-Za-z0-9_-]+)+$")] = "/neurojam"


class BridgeConfig(Section):
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
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
    brain_public_key: Z85KeyOrEmpty = ""
    """The brain's public key (40 characters of Z85), pinned by rigs and tools."""
    allowed_keys: list[Z85Key] = []
    """Public keys of the rigs and tools the brain lets in."""
    identities: dict[Z85Key, KeyRole] = {}
    """What each key may be (brain, with keys): 'rig:NAME' speaks only as rig NAME and sees and steers only it;
    'tool' sees and steers every rig; 'tool:A,B' only A and B. A key not named here owns the ids it claims first
    (``bridge/identity.py``)."""
    max_rigs: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    """Rigs one brain serves at once; more are refused with the reason."""
    max_stages: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    """Stages and tools watching one brain at once."""
    new_ids_per_minute: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 120
    """New node ids the brain accepts per minute: a flood of made-up names is refused, not remembered."""
    idle_rig_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 600.0
    """A rig not heard for this long is forgotten (its context, cache and band), freeing its place."""
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=65_536)] = 65_536
    """Frames larger than this are dropped before anything decodes or records them."""
