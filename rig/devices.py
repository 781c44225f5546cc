"""Everything the rig touches, built from config in one place: pins, pads, sounds, dispenser, scheduler.

The node only routes between these; tests build them with a sim pin factory
and a recording output and drive them in logical time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from core.errors import DeviceError
from rig import gpio
from rig.beat import BeatClock, MidiClockFollower
from rig.config import RigConfig
from rig.dispenser import OnBeatRewardRule, TreatCaps, TreatDispenser
from rig.midi_io import NoteOutput, NullOutput, open_output
from rig.pads import Pad
from rig.scheduler import AccompScheduler
from rig.sim import SimulatedPet
from rig.timeline import Timeline

log = logging.getLogger("neurojam.rig")


@dataclass
class RigDevices:
    timeline: Timeline
    beats: BeatClock
    factory: gpio.PinFactory
    output: NoteOutput
    pads: list[Pad]
    samples: object | None
    """A :class:`rig.audio.SamplePlayer` when pads play the owner's sound files."""
    dispenser: TreatDispenser
    reward_rule: OnBeatRewardRule | None
    scheduler: AccompScheduler
    clock_follower: MidiClockFollower | None
    pet: SimulatedPet | None

    def close(self) -> None:
        """All notes off, dispenser pin inactive, pins released. Safe twice."""
        self.scheduler.all_notes_off()
        self.timeline.stop()
        self.dispenser.close()
        self.output.all_notes_off()
        if self.samples is not None:
            self.samples.close()
        for pad in self.pads:
            pad.close()
        self.output.close()
        self.factory.close()


def build_devices(rc: RigConfig, *, output: NoteOutput | None = None, pin_factory: gpio.PinFactory | None = None,
                  clock: Callable[[], float] = time.monotonic) -> RigDevices:
    timeline = Timeline(clock)
    beats = BeatClock(timeline, rc.tempo_bpm, rc.beats_per_bar, external=rc.midi.clock == "external")
    factory = pin_factory or gpio.pin_factory(rc.gpio.backend, clock)
    pads = [Pad(i, factory.input_pin(pc.pin, pc.pull), active_low=pc.active == "low", debounce_ms=pc.debounce_ms,
                timeline=timeline, name=pc.name) for i, pc in enumerate(rc.pads)]
    files = {i: pc.sound.file for i, pc in enumerate(rc.pads) if pc.sound.file}
    samples = None
    if files:
        from rig.audio import SamplePlayer
        samples = SamplePlayer(files)
    dc = rc.dispenser
    dispenser = TreatDispenser(
        factory.output_pin(dc.pin, initial=not dc.active_high), timeline, beats, TreatCaps.from_config(dc),
        pulse_s=dc.pulse_ms / 1000, downbeat_only=dc.dispense_on == "next_downbeat", active_high=dc.active_high,
        enabled=dc.enabled)
    reward_rule = OnBeatRewardRule(dispenser, beats, rc.reward.tolerance_ms / 1000) if rc.reward.enabled else None
    sc = rc.scheduler
    output = output if output is not None else _open_output(rc)
    scheduler = AccompScheduler(timeline, beats, output, late=sc.late, late_tolerance_s=sc.late_tolerance_ms / 1000,
                                max_voices=sc.max_voices)
    pet = None
    if rc.sim_pet.enabled:
        pins = [p.pin for p in pads if isinstance(p.pin, gpio.SimInputPin)]
        pet = SimulatedPet(pins, timeline, beats, presses_per_beat=rc.sim_pet.presses_per_beat,
                           on_beat_probability=rc.sim_pet.on_beat_probability, seed=rc.sim_pet.seed)
    return RigDevices(timeline=timeline, beats=beats, factory=factory, output=output, pads=pads, samples=samples,
                      dispenser=dispenser, reward_rule=reward_rule, scheduler=scheduler,
                      clock_follower=MidiClockFollower(beats) if beats.external else None, pet=pet)


def _open_output(rc: RigConfig) -> NoteOutput:
    m = rc.midi
    try:
        return open_output(m.output, m.backend, m.virtual_output)
    except DeviceError as exc:
        if m.output is not None:
            raise
        log.warning("no MIDI output (%s); pads and accompaniment are recorded but not heard", exc)
        return NullOutput()
