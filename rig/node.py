"""The rig node: pads, keyboard, beat, accompaniment and treats, with or without a brain.

Everything the pet and the human play sounds at once from here; the brain
only adds to it. Threads: GPIO callbacks, MIDI inputs' reader threads and the timeline thread make
sounds and send events (``Link.send`` is thread-safe); the main loop receives
the brain's commands, keeps heartbeats and writes stats once a second.
"""

from __future__ import annotations

import datetime
import gc
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import mido

from bridge.config import BridgeConfig, OscConfig
from bridge.link import Link
from bridge.osc import OscOut
from bridge.messages import Accomp, Beat, Hello, Neurons, Note, Pad, Tempo, TrainingTrial, TreatRequest, TreatResult
from bridge.security import security_for
from core.config import to_dict
from recording.config import SessionConfig
from recording.export import load_midi
from recording.log import SessionRecorder, new_session_dir
from rig import gpio
from rig.arranger import DRUM_CHANNEL
from rig.config import RigConfig
from rig.curriculum import Trial
from rig.devices import MARKER_SAMPLE, build_devices
from core.errors import DeviceError
from rig.midi_io import NoteOutput, open_input, open_virtual_input
from rig.pads import Pad as PadDevice
from rig.progress import PetProgress, SessionSummary
from rig.sim import SimulatedHuman
from rig.timeline import RealtimeThreads

log = logging.getLogger("neurojam.rig")
SOFTWARE = "neurojam-rig/0.1"
GIL_SWITCH_S = 0.0005
"""How long another thread may hold the GIL before the timeline thread gets it (``sys.setswitchinterval``)."""


def _percentile(values, q: float) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else None


class RigSettings(Protocol):
    """What the rig node reads: its own section, the wire's and the recorder's (``neurojam.config.Config`` is one)."""

    rig: RigConfig
    bridge: BridgeConfig
    session: SessionConfig
    osc: OscConfig


class RigNode:
    """Routes between the devices (:func:`rig.devices.build_devices`), the wire and the recording."""

    def __init__(self, config: RigSettings, *, output: NoteOutput | None = None,
                 pin_factory: gpio.PinFactory | None = None, clock: Callable[[], float] = time.monotonic,
                 session_dir: str | Path | None = None, record: bool | None = None, meta: dict | None = None) -> None:
        self.config = config
        rc = config.rig
        self.clock = clock
        self.stop_event = threading.Event()
        self.progress = PetProgress.load(config.session.dir, rc.training.pet) if rc.training.enabled else None
        self.devices = build_devices(rc, output=output, pin_factory=pin_factory, clock=clock,
                                     level=self.progress.level if self.progress else 1)
        d = self.devices
        self.timeline, self.beats, self.output, self.pads = d.timeline, d.beats, d.output, d.pads
        self.dispenser, self.scheduler = d.dispenser, d.scheduler
        self._realtime = RealtimeThreads(max(1, rc.scheduler.realtime_priority // 4)
                                         if rc.scheduler.realtime_priority else 0)
        """While it plays, the rig's other threads run real-time too, under the timeline (a priority inversion on
        the interpreter lock otherwise held a clock tick up to 20 ms on a loaded machine)."""

        record = config.session.record if record is None else record
        self.recorder: SessionRecorder | None = None
        if record:
            path = Path(session_dir) if session_dir else new_session_dir(config.session.dir)
            self.recorder = SessionRecorder(path, {"node": "rig", "config": to_dict(config), **(meta or {})},
                                            buffer=config.session.buffer, flush_ms=config.session.flush_ms,
                                            min_free_mb=config.session.min_free_mb, max_mb=config.session.max_mb)
        b = config.bridge
        self.link = Link("rig", rc.node_id, host=b.host, events_port=b.events_port, commands_port=b.commands_port,
                         heartbeat_s=b.heartbeat_s, liveness_s=b.liveness_s, hwm=b.hwm, tap=self.recorder, clock=clock,
                         security=security_for(b, rc.node_id, server=False))

        for pad in self.pads:
            pad.when_pressed = self._pad_pressed
            pad.when_released = self._pad_released
        self.dispenser.on_result = self._treat_result
        if d.curriculum is not None:
            d.curriculum.recent.extend(self.progress.recent)
            d.curriculum.on_earned = self._earned
            d.curriculum.on_trial = self._trial
        self.level_start = d.curriculum.level if d.curriculum else None
        self.scheduler.on_note = self._brain_note_played
        self.beats.listeners.append(self._on_beat)
        self.keyboard = open_input(rc.midi.input, rc.midi.backend, self._keyboard_msg) if rc.midi.input else None
        self.daw_input = None
        if rc.midi.virtual_input and output is None:  # a DAW or another app plays into the rig as the human
            try:
                self.daw_input = open_virtual_input(rc.midi.virtual_input, rc.midi.backend, self._keyboard_msg)
            except DeviceError as exc:
                log.warning("no virtual MIDI input (%s)", exc)
        osc = getattr(config, "osc", None)
        self.osc = OscOut(osc.targets, osc.prefix) if osc is not None else OscOut([])
        self.human: SimulatedHuman | None = None
        self.brain_alive = False
        self.last_neurons: Neurons | None = None
        self.started_at: float | None = None
        self.started_utc = ""
        self._progress_dirty = False
        self.counts = {"pad_presses": 0, "human_notes": 0, "beats": 0, "treats_dispensed": 0, "treats_refused": 0}
        self._closed = False

    def play_midi_file(self, path: str | Path, loop: bool = True) -> SimulatedHuman:
        self.human = SimulatedHuman(load_midi(path), self.timeline, self._keyboard_msg_at, loop=loop)
        return self.human

    # -- the pet's pads ----------------------------------------------------------
    def _pad_pressed(self, pad: PadDevice, t: float) -> None:
        sound = self.config.rig.pads[pad.index].sound
        samples = self.devices.samples
        out = self.devices.output_for("pet")
        if not (samples and samples.play(pad.index)):
            for note in sound.notes:  # sound first: nothing waits for the network
                out.note_on(sound.channel, note, sound.velocity)
            self.timeline.at(t + sound.duration, self._pad_sound_off, sound.channel, tuple(sound.notes))
        self._others_play(sound.notes, True, sound.channel)
        self.counts["pad_presses"] += 1
        self.link.send(Pad(pad=pad.index, down=True))
        for note in sound.notes:
            self.link.send(Note(source="pet", note=note, velocity=sound.velocity, on=True, channel=sound.channel))
        self.osc.pad(pad.index)
        for note in sound.notes:
            self.osc.note("pet", note, sound.velocity, sound.channel)
        if self.devices.curriculum:
            self.devices.curriculum.press(pad.index, t)

    # -- training: the marker, trials, levels -------------------------------------------
    def _earned(self, trial: Trial) -> None:
        """The click, at the press that earned it; the treat follows on the beat."""
        m = self.config.rig.training.marker
        samples = self.devices.samples
        if m.enabled and not (samples and samples.play(MARKER_SAMPLE)):
            self.devices.output_for("marker").note_on(m.channel, m.note, m.velocity)
            self.timeline.at(trial.time + m.duration_ms / 1000, self._marker_off)
        if m.enabled:
            self.link.send(Note(source="marker", note=m.note, velocity=m.velocity, on=True, channel=m.channel))
            self.osc.note("marker", m.note, m.velocity, m.channel)
        if self.devices.pet is not None:
            self.devices.pet.rewarded()

    def _marker_off(self) -> None:
        m = self.config.rig.training.marker
        self.devices.output_for("marker").note_off(m.channel, m.note)
        self.link.send(Note(source="marker", note=m.note, velocity=0, on=False, channel=m.channel))

    def _trial(self, trial: Trial, level_after: int) -> None:
        tc = self.config.rig.training
        self.link.send(TrainingTrial(level=trial.level, level_after=level_after, pet=tc.pet,
                                     level_name=tc.levels[level_after - 1].name, pad=trial.pad, success=trial.success,
                                     earned=trial.earned, offset_ms=trial.offset_ms))
        if level_after != trial.level:
            log.info("%s moves to level %d (%s)", tc.pet, level_after, tc.levels[level_after - 1].name)
            self._progress_dirty = True  # saved by the main loop: no file write on the press's thread

    def _save_progress(self, summary: SessionSummary | None = None) -> None:
        curriculum = self.devices.curriculum
        self.progress.level, self.progress.recent = curriculum.level, list(curriculum.recent)
        if summary is not None:
            self.progress.sessions.append(summary)
        try:
            self.progress.save()
        except OSError as exc:
            log.warning("could not save %s's progress to %s: %s", self.progress.name, self.progress.path, exc)

    def _others_play(self, notes, on: bool, channel: int) -> None:
        """The human's or the pet's notes starting or ending, for the arranger: brain notes that would rub with a
        new one end now (:mod:`rig.arranger`)."""
        arranger = self.scheduler.arranger
        if arranger is None:
            return
        for note in notes:
            arranger.heard(note, on, channel)
            if on and channel != DRUM_CHANNEL:
                self.scheduler.give_way(note)

    def _pad_sound_off(self, channel: int, notes: tuple[int, ...]) -> None:
        self._others_play(notes, False, channel)
        for note in notes:
            self.devices.output_for("pet").note_off(channel, note)
            self.link.send(Note(source="pet", note=note, velocity=0, on=False, channel=channel))

    def _pad_released(self, pad: PadDevice, t: float) -> None:
        self.link.send(Pad(pad=pad.index, down=False))

    # -- the human's keyboard ------------------------------------------------------
    def _keyboard_msg(self, msg: mido.Message) -> None:
        """From a MIDI input's reader thread (rig.midi_io.MidiInput): its ``time`` is when it arrived, by the MIDI
        system's stamps, which the clock follower wants rather than when the 1 ms poll saw it."""
        arrived = msg.time if self.clock is time.monotonic and msg.time else self.clock()
        self._keyboard_msg_at(msg, arrived)

    def _keyboard_msg_at(self, msg: mido.Message, t: float) -> None:
        if msg.type in ("note_on", "note_off"):
            on = msg.type == "note_on" and msg.velocity > 0
            if on:
                self.counts["human_notes"] += 1
            if self.config.rig.midi.echo_human or self.human is not None:  # a simulated human has no sound of its own
                self.devices.output_for("human").send(msg)
            self._others_play((msg.note,), on, msg.channel)
            self.link.send(Note(source="human", note=msg.note, velocity=msg.velocity if on else 0, on=on,
                                channel=msg.channel))
            self.osc.note("human", msg.note, msg.velocity if on else 0, msg.channel)
            if on and self.devices.curriculum:
                self.devices.curriculum.human_note(t)
        elif self.devices.clock_follower and msg.type in ("clock", "start", "stop", "continue"):
            self.devices.clock_follower.handle(msg.type, t)

    def _brain_note_played(self, on: bool, channel: int, note: int, velocity: int) -> None:
        """Record what the rig really played for the brain (late notes dropped, caps applied)."""
        self.link.send(Note(source="brain", note=note, velocity=velocity, on=on, channel=channel))
        self.osc.note("brain", note, velocity if on else 0, channel)

    # -- beat, metronome, treats -----------------------------------------------------
    def _on_beat(self, index: int, bar: int, beat: int, tempo: float, t: float) -> None:
        self.counts["beats"] += 1
        self.link.send(Beat(index=index, bar=bar, beat=beat, beats_per_bar=self.beats.beats_per_bar,
                            tempo_bpm=tempo, time=t))
        self.osc.beat(index, bar, beat, tempo)
        m = self.config.rig.metronome
        if m.enabled:
            note = m.accent_note if beat == 0 else m.note
            out = self.devices.output_for("metronome")
            out.note_on(m.channel, note, m.velocity)
            self.timeline.at(t + 0.05, out.note_off, m.channel, note)

    def _treat_result(self, result: TreatResult) -> None:
        self.counts["treats_dispensed" if result.outcome == "dispensed" else "treats_refused"] += 1
        if result.outcome == "refused":
            log.info("treat refused (%s, from %s)", result.detail, result.source)
        self.link.send(result)
        self.osc.treat(result.outcome, result.source, result.refusal or "")

    # -- commands from the brain -----------------------------------------------------
    def handle(self, msg) -> None:
        if isinstance(msg, Accomp):
            self.scheduler.schedule(msg)
        elif isinstance(msg, TreatRequest):  # from the wire: never the rig's own rule
            if self.devices.curriculum is not None and msg.source == "brain":  # training: a criterion a level may use
                self.devices.curriculum.brain_request(self.clock())
            else:
                self.dispenser.request(source=msg.source if msg.source != "rig" else "brain", request_id=msg.request_id)
        elif isinstance(msg, Neurons):
            self.last_neurons = msg
        elif isinstance(msg, Tempo):  # the stage's tempo control, passed on by the brain
            if self.devices.beats.external:
                log.info("tempo %.0f BPM ignored: the beat follows the external MIDI clock", msg.bpm)
            elif self.devices.link_sync is not None:  # into the Link session: every peer follows, the rig too
                self.timeline.at(self.clock(), self.devices.link_sync.set_tempo, msg.bpm)
            else:
                self.timeline.at(self.clock(), self.devices.beats.set_tempo, msg.bpm)
        elif isinstance(msg, Hello):
            log.info("brain %s says hello", msg.node)

    def _check_brain(self) -> None:
        alive = self.link.peer_alive()
        if self.brain_alive and not alive:
            log.warning("brain went quiet: silencing its notes; pads keep playing")
            self.scheduler.all_notes_off()
        elif alive and not self.brain_alive:
            log.info("brain connected")
        self.brain_alive = alive

    def _session_summary(self) -> SessionSummary:
        minutes = max(1e-9, (self.clock() - self.started_at) / 60) if self.started_at is not None else 0.0
        return SessionSummary.of(self.devices.curriculum.trials, minutes=minutes, treats=self.counts["treats_dispensed"],
                                 refused=self.counts["treats_refused"], level_start=self.level_start,
                                 level_end=self.devices.curriculum.level, started_utc=self.started_utc,
                                 session=_session_name(self.recorder.path) if self.recorder else "")

    def stats(self) -> dict:
        late = [abs(x) for x in list(self.timeline.lateness)]
        return {
            "node": "rig",
            "time": self.clock(),
            "bridge": self.link.stats_dict(),
            "counts": dict(self.counts),
            "scheduler": dict(self.scheduler.counts) | (dict(self.scheduler.arranger.counts)
                                                         if self.scheduler.arranger is not None else {}),
            "treat_refusals": dict(self.dispenser.refusals),
            "training": None if not self.devices.curriculum else {
                "level": self.devices.curriculum.level, "trials": len(self.devices.curriculum.trials),
                "held_back": dict(self.devices.curriculum.held_back)},
            "timeline_late_us_p50": None if not late else round(_percentile(late, 0.5) * 1e6, 1),
            "timeline_late_us_p99": None if not late else round(_percentile(late, 0.99) * 1e6, 1),
            "recorder": None if not self.recorder else {"recorded": self.recorder.recorded,
                                                        "dropped": self.recorder.dropped},
            "sync": {"source": self.config.rig.sync.source,
                     "link_peers": self.devices.link_sync.peers if self.devices.link_sync else None,
                     "clock_ticks_out": self.devices.clock_out.ticks if self.devices.clock_out else None,
                     "clock_ticks_late": self.devices.clock_out.late_ticks if self.devices.clock_out else None,
                     "osc_sent": self.osc.sent, "osc_errors": self.osc.errors},
        }

    # -- run -------------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = self.clock()
        self.started_utc = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        # the timeline thread wakes on time but must then win the GIL from whatever Python the rig's loop is
        # running: Python's default 5 ms switch interval is a 5 ms late note or clock tick; 0.5 ms bounds that wait
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        # a full garbage collection holds the GIL while it scans every object the rig built (~33k: 5-9 ms on a
        # busy 2-core machine, a clock tick a third of a tick late); what exists now lives as long as the session,
        # so it is frozen out of every later collection (close() thaws it)
        gc.collect()
        gc.freeze()
        self._realtime.raise_all()  # before the timeline starts: its thread inherits, then raises itself above
        self.timeline.start()
        self.link.hello(session=str(self.recorder.path) if self.recorder else "", software=SOFTWARE)
        t0 = self.clock() + 0.3
        if self.devices.link_sync is not None:
            self.devices.link_sync.start(t0)
        elif not self.beats.external:
            self.beats.start(t0)
        if self.human:
            self.human.start(t0)

    def step(self, timeout_ms: float = 20) -> None:
        for msg in self.link.receive(timeout_ms=timeout_ms):
            self.handle(msg)
        if self.link.refused and not self.stop_event.is_set():  # a rig with our name is already playing
            self.stop_event.set()
        self.link.tick()
        self._check_brain()

    def run(self, seconds: float | None = None, on_second: Callable[["RigNode"], None] | None = None) -> None:
        self.start()
        end = None if seconds is None else self.clock() + seconds
        next_stats = self.clock() + 1.0
        while not self.stop_event.is_set() and (end is None or self.clock() < end):
            self.step()
            if self.clock() >= next_stats:
                next_stats += 1.0
                if self.recorder:
                    self.recorder.write_stats(self.stats())
                if self._progress_dirty:
                    self._progress_dirty = False
                    self._save_progress()
                if on_second:
                    on_second(self)

    def close(self) -> None:
        """The session's end comes first: the dispenser's pin low, the inputs quiet, the timeline stopped, the
        brain's sounding notes ended (no note left stuck in the recording or the synth), then the stats, the pet's progress and the recording written and closed, and only then what can block on a MIDI or
        network system (ports, Link, OSC, sockets), so a port that misbehaves can never cost a session its end.
        Safe twice."""
        if self._closed:
            return
        self._closed = True
        self.dispenser.close()  # a treat pending or pulsing is cancelled before anything else
        gc.unfreeze()
        inputs = [port for port in (self.keyboard, self.daw_input) if port is not None]
        for port in inputs:
            port.stop()  # our reader threads: nothing more comes in
        self.timeline.stop()  # nothing more is scheduled or sent
        self.scheduler.all_notes_off()  # the brain's notes still sounding end here, and the session says so
        stats = self.stats()
        if self.devices.curriculum is not None:
            self._save_progress(self._session_summary())
        if self.recorder:
            self.recorder.write_stats(stats)
            self.recorder.close(counts=stats["counts"])
        for port in inputs:
            port.close()
        self.devices.close()
        self.osc.close()
        self.link.close()
        self._realtime.restore()


def run_rig(config: RigSettings, seconds: float | None = None, session_dir: str | None = None,
            human: str | None = None, keyboard_pads: bool = False) -> int:
    node = RigNode(config, session_dir=session_dir)
    human_file = human or config.rig.sim_human.midi_file
    if human_file:
        node.play_midi_file(human_file, loop=config.rig.sim_human.loop)
    keys = None
    if keyboard_pads:
        from rig.keys import KeyboardPads
        keys = KeyboardPads(node.pads, node.timeline, request_treat=lambda: node.dispenser.request(source="manual"),
                            stop=node.stop_event.set)
    previous = {sig: signal.signal(sig, lambda *_: node.stop_event.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    where = node.recorder.path if node.recorder else "(not recording)"
    print(f"rig: {len(node.pads)} pads, {config.rig.tempo_bpm:g} BPM, GPIO {node.devices.factory.name}, "
          f"session {where}; Ctrl-C to stop", flush=True)
    try:
        node.run(seconds)
    finally:
        if keys:
            keys.close()
        node.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if node.link.refused:
        print(f"rig: the brain refused this rig: {node.link.refused}", file=sys.stderr, flush=True)
        return 2
    c = node.counts
    print(f"rig: stopped. {c['pad_presses']} pad presses, {c['human_notes']} human notes, "
          f"{c['treats_dispensed']} treats ({c['treats_refused']} refused), {c['beats']} beats. Session: {where}",
          flush=True)
    return 0


def _session_name(path) -> str:
    """A session's name in the pet's table: a demo's are all called session*, so their run folder names them."""
    return f"{path.parent.name}/{path.name}" if path.name.startswith("session") else path.name
