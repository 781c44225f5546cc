"""The brain's config section: model, neurons read, sonification, treat requests, steering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from core.config import Section, recorded
from core.units import KEY_TONICS, Channel, Midi7, SteerFactor

if TYPE_CHECKING:
    from recording.log import SessionMeta

KeyName = Literal[KEY_TONICS]  # type: ignore[valid-type]  (one list of key names)


class SonifyConfig(Section):
    """How neurons become the band (``brain/live/sonify.py`` explains the design)."""

    follow_key: bool = True
    """Track the key from the human's notes (else play in ``key`` / ``mode``)."""
    key: KeyName = "C"
    mode: Literal["major", "minor"] = "major"
    gate: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.9
    """A neuron sounds only at or above this share of its calibration quantile: a quiet model is a quiet band."""
    full_at: Annotated[float, msgspec.Meta(gt=0, le=20)] = 1.4
    """Normalized activation that plays at ``velocity_max`` (velocity rises linearly from the gate)."""
    listen_beats: Annotated[float, msgspec.Meta(gt=0, le=16)] = 1.0
    """Silent when neither human nor pet played within this many beats."""
    subdivision: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2
    """Quantize accompaniment to 1/N of a beat."""
    on_beat: Literal["chord", "key"] = "chord"
    """What a neuron may play on the beat: a tone of the human's chord, or any note of the key."""
    off_beat: Literal["chord", "key"] = "key"
    """What a neuron may play off the beat (``key``: passing tones where the model pushes them)."""
    choose_among: Literal["likely", "frame"] = "frame"
    """``likely``: among the model's most likely next notes that the frame allows (the frame if none is); ``frame``:
    among all the notes the frame allows. Either way the neuron takes the one it pushes most."""
    max_voices: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    """Neuron notes started per slot, the most active first: one at a time, so each neuron is heard as itself
    (the prediction voice is apart)."""
    busy_voices: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2
    """Density follows the human: while the band has struck fewer than ``density_low`` × the human's notes over
    the last 8 beats, up to this many units above their gate sound on a slot (a busy human, a busier band; never
    a unit under its gate). ``max_voices`` otherwise."""
    density_low: Annotated[float, msgspec.Meta(ge=0, le=4)] = 0.6
    """The band's notes ÷ the human's, over the last 8 beats, under which ``busy_voices`` and ``busy_gate`` apply."""
    busy_gate: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.75
    """While the band lags the human (``density_low``), a unit sounds from this share of its calibration quantile
    (``gate`` otherwise): in a key the model reads less surely its units fire lower, and a busy human would get a
    sparse band. Set it to ``gate`` to keep one gate."""
    velocity_min: Midi7 = 45
    velocity_max: Midi7 = 105
    note_beats: Annotated[float, msgspec.Meta(gt=0, le=8)] = 1.0
    """How long a voice rings after its neuron was last active."""
    voice_hold_beats: Annotated[float, msgspec.Meta(ge=0, le=1024)] = 32.0
    """A voice (channel and pitch) stays the unit's that last played it for this many beats: a unit sounding for the
    first time where another holds the voice moves an octave up or down (the same pitch class) and keeps that place,
    so a listener hears one unit per voice. 0: units share voices freely."""
    layer_channels: list[Channel] = msgspec.field(default_factory=lambda: [1, 2, 3, 4])
    layer_octaves: list[Annotated[int, msgspec.Meta(ge=1, le=8)]] = msgspec.field(default_factory=lambda: [3, 4, 5, 5])
    prediction_voice: bool = True
    """Play the model's predicted next note on the next slot, so the model can lead."""
    prediction_channel: Channel = 5
    prediction_velocity: Midi7 = 50
    """The prediction voice's velocity when the model is sure (probability 1); it falls to 60 % of this at the
    threshold below."""
    prediction_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    """The prediction voice rests rather than play more than this share of the brain's last 64 notes: the model's
    guess of the tune never drowns what its units say (1: no limit)."""
    prediction_confidence: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    """The prediction voice sounds only when the model gives its predicted note at least this probability (over
    the whole vocabulary: a likely bar line or rest keeps it quiet). 0.5: the lowest threshold at which the
    prediction is right 2 times in 3 on the validation tunes (69 %, against 42 % unthresholded; it then sounds on
    42 % of events, and stays silent before 92 % of the bar lines and rests). 0: always."""


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
    units: Literal["neurons", "features"] = "neurons"
    """What the brain reads and plays: the MLP's neurons, or the features of the model's sparse dictionary
    (``brain/units/features.py``: monosemantic directions over the same neurons, each labelled by what it reads
    and what it makes the model expect)."""
    play_rare_features: bool = False
    """With features: let those too rare to label sound too. By default a feature that passed its gate fewer than
    20 times on the labelling tunes (about 40 % of the shipped dictionary's) stays silent: its gate rests on a
    handful of firings, nothing can be said of what it reads, and a listener could never learn its voice."""
    layers: list[Annotated[int, msgspec.Meta(ge=0)]] | Literal["all"] = "all"
    top_k: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    context_tokens: Annotated[int, msgspec.Meta(ge=8, le=8192)] = 128
    cpu_threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    """Torch threads on a CPU. One keeps the live step steady beside the rig on a small machine (round trip p99
    4.8 ms vs 15 ms with two, bench/loop.py); raise it for a big model on a many-core box."""
    kv_cache: bool = True
    """Run only new tokens against cached keys/values (embedded models); else recompute the window."""
    static_step: bool = True
    """With the key/value cache: every rig's step at fixed shapes over static buffers, its answers chosen on the
    device and read back once (``brain/static_step.py``; a CUDA graph per shape on a GPU). Off: the eager step."""
    sonify: SonifyConfig = msgspec.field(default_factory=SonifyConfig)
    reward: BrainRewardConfig = msgspec.field(default_factory=BrainRewardConfig)
    steering: list[SteerConfig] = []
    corrupt: list[str] = []
    """Layer corruption every rig gets, e.g. ['skip=2'] (``brain/corruption.py``: skip, repeat, permute, zero-mlp,
    mean-attn, ...): hear the band without a layer. ``neurojam replay --corrupt`` sets it; "clear" undoes it."""
    stats_dir: str = "~/.cache/neurojam/stats"

    @classmethod
    def of_session(cls, meta: "SessionMeta") -> "BrainConfig":
        """The brain's settings a session was recorded with (``recording.log.SessionMeta``); defaults for what it
        does not say."""
        return recorded(meta.section("brain"), cls)
