"""The rig's config section: pads, MIDI, beat, metronome, scheduler, treat dispenser and its caps, sims.

The Struct defaults here are the only copy of each default and range
(``configs/default.yaml`` is generated from them; a test keeps it equal).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.config import Section
from core.units import BcmPin, Bpm, Channel, Midi7


class PadSound(Section):
    notes: Annotated[list[Midi7], msgspec.Meta(min_length=1, max_length=8)] = msgspec.field(default_factory=lambda: [60])
    """A note, or a chord."""
    channel: Channel = 9
    velocity: Midi7 = 100
    duration: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.25
    file: str | None = None
    """Play this wav/ogg/mp3 instead of MIDI notes (needs the 'audio' extra)."""


class PadConfig(Section):
    pin: BcmPin
    name: str = ""
    pull: Literal["up", "down", "off"] = "up"
    active: Literal["low", "high"] = "low"
    """Foil pads wired to ground with the pull-up read 'low' when pressed."""
    debounce_ms: Annotated[float, msgspec.Meta(ge=0, le=500)] = 30
    sound: PadSound = msgspec.field(default_factory=PadSound)


def _default_pads() -> list[PadConfig]:
    """BCM pins; foil to the pin, the other foil to ground, pull-up on."""
    return [
        PadConfig(pin=17, name="kick", sound=PadSound(notes=[36], channel=9, velocity=110)),
        PadConfig(pin=22, name="snare", sound=PadSound(notes=[38], channel=9, velocity=100)),
        PadConfig(pin=23, name="bell", sound=PadSound(notes=[72], channel=0, velocity=90)),
        PadConfig(pin=24, name="low", sound=PadSound(notes=[60, 64, 67], channel=0, velocity=90)),
    ]


class GpioConfig(Section):
    backend: Literal["sim", "rpi"] = "sim"


class MidiConfig(Section):
    backend: str = "mido.backends.rtmidi"
    """mido backend; 'mido.backends.rtmidi/UNIX_JACK' for JACK."""
    input: str | None = None
    """Keyboard port: exact name or a unique substring; null = none."""
    output: str | None = None
    """Synth port: exact name or substring; null = open a virtual port."""
    virtual_output: str = "neurojam"
    echo_human: bool = False
    """Also play the keyboard's notes on the output (when the keyboard has no sound)."""
    clock: Literal["internal", "external"] = "internal"


class MetronomeConfig(Section):
    enabled: bool = False
    channel: Channel = 9
    note: Midi7 = 76
    accent_note: Midi7 = 77
    velocity: Midi7 = 60


class SchedulerConfig(Section):
    late: Literal["drop", "play"] = "drop"
    late_tolerance_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 5
    max_voices: Annotated[int, msgspec.Meta(ge=1, le=128)] = 16


class DispenserConfig(Section):
    enabled: bool = True
    pin: BcmPin = 27
    pulse_ms: Annotated[float, msgspec.Meta(ge=5, le=2000)] = 150
    active_high: bool = True
    dispense_on: Literal["next_beat", "next_downbeat"] = "next_downbeat"
    min_interval_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 8
    """Safety cap: never two treats closer than this."""
    max_per_minute: Annotated[int, msgspec.Meta(ge=0, le=30)] = 4
    max_per_session: Annotated[int, msgspec.Meta(ge=0, le=500)] = 25


class LocalRewardConfig(Section):
    enabled: bool = True
    tolerance_ms: Annotated[float, msgspec.Meta(ge=1, le=500)] = 120
    """A pet press this close to a beat earns a treat on the next downbeat."""


class SimPetConfig(Section):
    enabled: bool = False
    presses_per_beat: Annotated[float, msgspec.Meta(ge=0, le=4)] = 0.5
    on_beat_probability: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6
    seed: int = 1


class SimHumanConfig(Section):
    midi_file: str | None = None
    loop: bool = True


class RigConfig(Section):
    node_id: str = "rig"
    tempo_bpm: Bpm = 112
    beats_per_bar: Annotated[int, msgspec.Meta(ge=1, le=16)] = 4
    gpio: GpioConfig = msgspec.field(default_factory=GpioConfig)
    pads: list[PadConfig] = msgspec.field(default_factory=_default_pads)
    midi: MidiConfig = msgspec.field(default_factory=MidiConfig)
    metronome: MetronomeConfig = msgspec.field(default_factory=MetronomeConfig)
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)
    dispenser: DispenserConfig = msgspec.field(default_factory=DispenserConfig)
    reward: LocalRewardConfig = msgspec.field(default_factory=LocalRewardConfig)
    sim_pet: SimPetConfig = msgspec.field(default_factory=SimPetConfig)
    sim_human: SimHumanConfig = msgspec.field(default_factory=SimHumanConfig)
