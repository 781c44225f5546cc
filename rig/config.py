"""The rig's config section: pads, MIDI, beat, metronome, scheduler, treat dispenser and its caps, sims.

The Struct defaults here are the only copy of each default and range
(``configs/default.yaml`` is generated from them; a test keeps it equal).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.config import Section
from core.units import MAX_LEVELS, BcmPin, Bpm, Channel, Midi7, PadIndex


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
    virtual_input: str | None = "neurojam in"
    """A virtual input port a DAW or another app can play into, as the human; null = none."""
    outputs: dict[Literal["pet", "human", "brain", "marker", "metronome"], str] = {}
    """One output port per source, e.g. {brain: 'Synth 2', pet: 'virtual:neurojam pet'} ('virtual:NAME' opens a
    virtual port); a source not named plays on ``output``."""
    echo_human: bool = False
    """Also play the keyboard's notes on the output (when the keyboard has no sound)."""


class SyncConfig(Section):
    """Where the rig's beat comes from, and the gear that follows it (README: With other gear)."""

    source: Literal["internal", "midi", "link"] = "internal"
    """internal: rig.tempo_bpm; midi: follow a MIDI clock on rig.midi.input (24 ppqn, start/stop); link: join an
    Ableton Link session (tempo and phase both ways; needs neurojam[sync])."""
    link_quantum: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0
    """Link's phase unit in beats (0: the rig's bar, beats_per_bar): downbeats line up with the session's."""
    link_start_stop: bool = True
    """Tell the Link session when the rig starts and stops (peers with start/stop sync follow)."""
    clock_out: str | None = None
    """Be the clock master on this MIDI output: 24 ticks per beat, start/stop/continue, song position pointer.
    'virtual' opens a virtual port named ``clock_out_virtual``; null = off."""
    clock_out_virtual: str = "neurojam clock"


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
    arranger: bool = True
    """Keep the brain's notes clear of semitone rubs with the human's and the pet's sounding notes: a note due on a
    rub moves onto the rubbing note's pitch class (or is dropped); a brain note a new human note rubs against ends
    (``rig/arranger.py``). Off: every note as the brain asked."""
    realtime_priority: Annotated[int, msgspec.Meta(ge=0, le=99)] = 4
    """SCHED_FIFO priority of the rig's timeline thread (beats, notes, clock ticks, treat pulses); while it plays,
    the rig's other threads run real-time at a quarter of it (a thread holding Python's interpreter lock must not
    be pre-empted by another process while the timeline waits for that lock); 0 = the normal scheduler for all.
    Kept under the audio server's: jackd (default ``-P 10``) runs its clients' process threads at 5, and a rig
    thread above them, or beside them at the same priority, can hold a JACK cycle up past its deadline (the server
    then drops that cycle's MIDI: a clock tick lost). With jackd at ``-P P``, anything under P - 5 keeps clear.
    Needs CAP_SYS_NICE (root) or an RLIMIT_RTPRIO this high (the systemd unit's ``LimitRTPRIO``); without it the
    rig says so and runs on."""


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


Criterion = Literal["any_press", "on_beat", "on_beat_pair", "pad_on_downbeat", "copy_rhythm", "brain"]


class LevelConfig(Section):
    name: str
    criterion: Criterion
    """any_press; on_beat (within tolerance); on_beat_pair (this and the last press on consecutive beats);
    pad_on_downbeat (``pad`` on a bar's first beat); copy_rhythm (a half-beat slot where the human played in the
    last bar); brain (the brain's neuron rule asks for it within a beat of the press)."""
    tolerance_ms: Annotated[float, msgspec.Meta(ge=10, le=500)] = 150
    pad: PadIndex = 0
    """The pad ``pad_on_downbeat`` asks for (0 = the first pad)."""


def _default_levels() -> list[LevelConfig]:
    return [
        LevelConfig(name="touch", criterion="any_press"),
        LevelConfig(name="on the beat", criterion="on_beat", tolerance_ms=150),
        LevelConfig(name="two in a row", criterion="on_beat_pair", tolerance_ms=150),
        LevelConfig(name="first pad on the one", criterion="pad_on_downbeat", tolerance_ms=150, pad=0),
        LevelConfig(name="copy the human", criterion="copy_rhythm", tolerance_ms=120),
    ]


class MarkerConfig(Section):
    """The click: a short distinct sound the instant a press earns a treat (the treat follows on the beat)."""

    enabled: bool = True
    note: Midi7 = 96
    channel: Channel = 15
    velocity: Midi7 = 127
    duration_ms: Annotated[float, msgspec.Meta(ge=10, le=1000)] = 60
    file: str | None = None
    """Play this wav/ogg/mp3 as the marker instead (needs the 'audio' extra)."""


class TrainingConfig(Section):
    """Clicker training on the rig: a curriculum of levels, treats only when earned and allowed."""

    enabled: bool = True
    pet: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "pet"
    """The pet's name: its level and progress live in ``<session.dir>/pets/<pet>.json``."""
    levels: Annotated[list[LevelConfig], msgspec.Meta(min_length=1, max_length=MAX_LEVELS)] = msgspec.field(
        default_factory=_default_levels)
    window: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20
    """Trials looked at for a level-up (CleverPet's 20)."""
    successes_to_level_up: Annotated[int, msgspec.Meta(ge=1, le=200)] = 17
    """Successes among the last ``window`` trials that move the pet up (CleverPet's 17)."""
    failures_to_level_down: Annotated[int, msgspec.Meta(ge=1, le=200)] = 8
    """Failures in a row that move the pet down a level."""
    marker: MarkerConfig = msgspec.field(default_factory=MarkerConfig)

    def __post_init__(self) -> None:
        if self.successes_to_level_up > self.window:
            raise ValueError(f"successes_to_level_up ({self.successes_to_level_up}) cannot exceed window "
                             f"({self.window})")


class SimPetConfig(Section):
    enabled: bool = False
    presses_per_beat: Annotated[float, msgspec.Meta(ge=0, le=4)] = 0.5
    on_beat_probability: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6
    """Where the simulated pet starts; with ``learning`` it rises with rewards and falls back without."""
    learning: bool = True
    learn_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.15
    """Each marked press moves the on-beat probability this share of the way to 1."""
    forget_per_beat: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.004
    """Each beat moves it this share of the way back to where it started."""
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
    sync: SyncConfig = msgspec.field(default_factory=SyncConfig)
    metronome: MetronomeConfig = msgspec.field(default_factory=MetronomeConfig)
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)
    dispenser: DispenserConfig = msgspec.field(default_factory=DispenserConfig)
    training: TrainingConfig = msgspec.field(default_factory=TrainingConfig)
    sim_pet: SimPetConfig = msgspec.field(default_factory=SimPetConfig)
    sim_human: SimHumanConfig = msgspec.field(default_factory=SimHumanConfig)

    def __post_init__(self) -> None:
        """One wire per pin: two pads on a pin would press together, and the dispenser on a pad's pin would feed
        the pet whenever it steps there."""
        seen: dict[int, str] = {}
        for i, pad in enumerate(self.pads):
            name = f"pads[{i}] ({pad.name})"
            if pad.pin in seen:
                raise ValueError(f"{name} and {seen[pad.pin]} share BCM pin {pad.pin}: give each pad its own pin")
            seen[pad.pin] = name
        if self.dispenser.pin in seen:
            raise ValueError(f"the dispenser's pin {self.dispenser.pin} is also {seen[self.dispenser.pin]}'s: the "
                             f"dispenser needs a pin of its own")
