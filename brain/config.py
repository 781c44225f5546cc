"""The brain's config section: model, neurons read, sonification, treat requests, steering."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.config import Section
from core.units import Channel, Midi7, SteerFactor

KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KeyName = Literal[KEYS]  # type: ignore[valid-type]  (one list of key names)


class SonifyConfig(Section):
    key: KeyName = "C"
    scale: Literal["major", "minor", "dorian", "pentatonic", "blues", "chromatic"] = "pentatonic"
    follow_key: bool = True
    """Shift the key to the human's recent notes."""
    subdivision: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2
    """Quantize accompaniment to 1/N of a beat."""
    max_voices: Annotated[int, msgspec.Meta(ge=1, le=16)] = 3
    velocity_min: Midi7 = 45
    velocity_max: Midi7 = 105
    note_beats: Annotated[float, msgspec.Meta(gt=0, le=8)] = 0.5
    layer_channels: list[Channel] = msgspec.field(default_factory=lambda: [1, 2, 3, 4])
    layer_octaves: list[Annotated[int, msgspec.Meta(ge=1, le=8)]] = msgspec.field(default_factory=lambda: [3, 4, 5, 5])
    min_normalized: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.25
    prediction_voice: bool = False
    prediction_channel: Channel = 5


class BrainRewardConfig(Section):
    enabled: bool = True
    neurons: list[str] = []
    """'L.N' ids; a pet press making one exceed ``threshold`` asks for a treat."""
    threshold: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.8
    phrase_rule: bool = True
    """Ask for a treat when the pet plays on the beat within the human's phrase."""
    phrase_window_s: Annotated[float, msgspec.Meta(gt=0, le=30)] = 4.0


class SteerConfig(Section):
    layer: Annotated[int, msgspec.Meta(ge=0)]
    neuron: Annotated[int, msgspec.Meta(ge=0)]
    factor: SteerFactor = 0.0


class BrainConfig(Section):
    node_id: str = "brain"
    model: str = "notes-default"
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    layers: list[Annotated[int, msgspec.Meta(ge=0)]] | Literal["all"] = "all"
    top_k: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    context_tokens: Annotated[int, msgspec.Meta(ge=8, le=8192)] = 128
    kv_cache: bool = True
    """Run only new tokens against cached keys/values (embedded models); else recompute the window."""
    sonify: SonifyConfig = msgspec.field(default_factory=SonifyConfig)
    reward: BrainRewardConfig = msgspec.field(default_factory=BrainRewardConfig)
    steering: list[SteerConfig] = []
    stats_dir: str = "~/.cache/neurojam/stats"
