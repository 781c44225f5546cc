"""Everything the rig touches, built from config in one place: pins, pads, sounds, dispenser, scheduler.

The node only routes between these; tests build them with a sim pin factory
and a recording output and drive them in logical time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from core.errors import DeviceError
from rig import gpio
from rig.beat import BeatClock, MidiClockFollower, MidiClockOut
from rig.config import RigConfig
from rig.curriculum import Curriculum
from rig.dispenser import TreatCaps, TreatDispenser
from rig.midi_io import NoteOutput, NullOutput, open_output
from rig.pads import Pad
from rig.arranger import Arranger
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
    curriculum: Curriculum | None
    """The training curriculum (None when ``rig.training.enabled`` is off)."""
    scheduler: AccompScheduler
    clock_follower: MidiClockFollower | None
    pet: SimulatedPet | None
    outputs: dict = field(default_factory=dict)
    """Per-source outputs (``rig.midi.outputs``); a source not here plays on ``output``."""
    clock_out: MidiClockOut | None = None
    clock_port: object | None = None
    """The mido port the clock goes out on."""
    link_sync: object | None = None
    """A :class:`rig.link_sync.LinkSync` when ``rig.sync.source`` is link."""

    def output_for(self, source: str) -> NoteOutput:
        return self.outputs.get(source, self.output)

    def close(self) -> None:
        """All notes off, dispenser pin inactive, pins released, clock stopped, Link left. Safe twice."""
        self.scheduler.all_notes_off()
        if self.link_sync is not None:
            self.link_sync.stop()
        if self.clock_out is not None:
            self.clock_out.stop()
        self.timeline.stop()
        self.dispenser.close()
        if self.samples is not None:
            self.samples.close()
        for pad in self.pads:
            pad.close()
        for out in {id(o): o for o in [self.output, *self.outputs.values()]}.values():
            out.all_notes_off()
            out.close()
        if self.clock_port is not None:
            self.clock_port.close()
        self.factory.close()


MARKER_SAMPLE = -1
"""The sample player's key for the marker's sound file (pads use their index)."""


def build_devices(rc: RigConfig, *, output: NoteOutput | None = None, pin_factory: gpio.PinFactory | None = None,
                  clock: Callable[[], float] = time.monotonic, level: int = 1) -> RigDevices:
    """Every device from config; ``level`` is where the pet's curriculum starts (its saved progress)."""
    timeline = Timeline(clock, realtime_priority=rc.scheduler.realtime_priority)
    beats = BeatClock(timeline, rc.tempo_bpm, rc.beats_per_bar, external=rc.sync.source == "midi")
    factory = pin_factory or gpio.pin_factory(rc.gpio.backend, clock)
    pads = [Pad(i, factory.input_pin(pc.pin, pc.pull), active_low=pc.active == "low", debounce_ms=pc.debounce_ms,
                timeline=timeline, name=pc.name) for i, pc in enumerate(rc.pads)]
    files = {i: pc.sound.file for i, pc in enumerate(rc.pads) if pc.sound.file}
    if rc.training.enabled and rc.training.marker.file:
        files[MARKER_SAMPLE] = rc.training.marker.file
    samples = None
    if files:
        from rig.audio import SamplePlayer
        samples = SamplePlayer(files)
    dc = rc.dispenser
    dispenser = TreatDispenser(
        factory.output_pin(dc.pin, initial=not dc.active_high), timeline, beats, TreatCaps.from_config(dc),
        pulse_s=dc.pulse_ms / 1000, downbeat_only=dc.dispense_on == "next_downbeat", active_high=dc.active_high,
        enabled=dc.enabled)
    curriculum = Curriculum(rc.training, beats, timeline, dispenser, level=level) if rc.training.enabled else None
    sc = rc.scheduler
    given = output
    output = output if output is not None else _open_output(rc)
    outputs = {} if given is not None else {source: _open_named(rc, name) for source, name in rc.midi.outputs.items()}
    scheduler = AccompScheduler(timeline, beats, outputs.get("brain", output), late=sc.late, late_tolerance_s=sc.late_tolerance_ms / 1000,
                                max_voices=sc.max_voices, arranger=Arranger() if sc.arranger else None)
    pet = None
    if rc.sim_pet.enabled:
        pins = [p.pin for p in pads if isinstance(p.pin, gpio.SimInputPin)]
        sp = rc.sim_pet
        pet = SimulatedPet(pins, timeline, beats, presses_per_beat=sp.presses_per_beat,
                           on_beat_probability=sp.on_beat_probability, seed=sp.seed,
                           learn_rate=sp.learn_rate if sp.learning else 0.0,
                           forget_per_beat=sp.forget_per_beat if sp.learning else 0.0)
    clock_port = clock_out = None
    if rc.sync.clock_out:
        clock_port = _open_named(rc, f"virtual:{rc.sync.clock_out_virtual}" if rc.sync.clock_out == "virtual"
                                 else rc.sync.clock_out).port  # the raw port: a clock port gets no note-offs
        clock_out = MidiClockOut(beats, clock_port.send)
        beats.listeners.append(clock_out.on_beat)
    link_sync = None
    if rc.sync.source == "link":
        from rig.link_sync import LinkSync

        link_sync = LinkSync(beats, timeline, quantum=rc.sync.link_quantum, start_stop=rc.sync.link_start_stop)
    return RigDevices(timeline=timeline, beats=beats, factory=factory, output=output, pads=pads, samples=samples,
                      dispenser=dispenser, curriculum=curriculum, scheduler=scheduler,
                      clock_follower=MidiClockFollower(beats) if beats.external else None, pet=pet, outputs=outputs,
                      clock_out=clock_out, clock_port=clock_port, link_sync=link_sync)


def _open_named(rc: RigConfig, name: str) -> NoteOutput:
    """An output port by name, or ``virtual:NAME`` for a virtual one (a named port that is missing is an error)."""
    if name.startswith("virtual:"):
        return open_output(None, rc.midi.backend, name.removeprefix("virtual:"))
    return open_output(name, rc.midi.backend)


def _open_output(rc: RigConfig) -> NoteOutput:
    m = rc.midi
    try:
        return open_output(m.output, m.backend, m.virtual_output)
    except DeviceError as exc:
        if m.output is not None:
            raise
        log.warning("no MIDI output (%s); pads and accompaniment are recorded but not heard", exc)
        return NullOutput()
