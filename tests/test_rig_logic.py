"""Rig logic in logical time (ManualClock + Timeline.advance_to): exact, no sleeping."""

import sys

import pytest

from bridge.messages import Accomp, AccompNote
from rig.beat import BeatClock, MidiClockFollower
from rig.dispenser import TreatCaps, TreatDispenser
from rig.gpio import RPiPinFactory, SimPinFactory
from rig.midi_io import RecordingOutput
from rig.pads import Debouncer, Pad
from rig.scheduler import AccompScheduler
from rig.timeline import ManualClock, Timeline
from tests import fake_rpi_gpio


@pytest.fixture
def world():
    clock = ManualClock(100.0)
    tl = Timeline(clock)
    beats = BeatClock(tl, tempo_bpm=120, beats_per_bar=4)
    return clock, tl, beats


def notes_on(out):
    return [(t, m.note) for t, m in out.log if m.type == "note_on"]


def test_debouncer_bouncing_edges_make_one_press():
    d = Debouncer(0.03)
    edges = [(True, 0.000), (False, 0.001), (True, 0.002), (False, 0.004), (True, 0.006)]
    changes = [d.feed(level, t) for level, t in edges]
    assert [c for c in changes if c is not None] == [True]
    assert d.feed(False, 0.2) is False  # the real release later counts


def test_pad_short_press_inside_window_still_releases(world):
    clock, tl, _ = world
    f = SimPinFactory(clock)
    pad = Pad(0, f.input_pin(17, "up"), debounce_ms=30, timeline=tl)
    events = []
    pad.when_pressed = lambda p, t: events.append(("down", t))
    pad.when_released = lambda p, t: events.append(("up", t))
    pin = f.inputs[17]
    pin.drive(False, 100.0)          # press (active low)
    pin.drive(True, 100.002)         # bounce
    pin.drive(False, 100.004)
    pin.drive(True, 100.010)         # released inside the 30 ms window
    tl.advance_to(100.1)
    assert [e[0] for e in events] == ["down", "up"]
    assert pad.presses == 1 and not pad.is_pressed


def test_rpi_backend_against_stand_in_module(monkeypatch):
    fake_rpi_gpio.reset()
    monkeypatch.setitem(sys.modules, "RPi", type(sys)("RPi"))
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake_rpi_gpio)
    sys.modules["RPi"].GPIO = fake_rpi_gpio
    factory = RPiPinFactory()  # imports RPi.GPIO like on a Pi
    pin = factory.input_pin(17, "up")
    out = factory.output_pin(27, initial=False)
    pad = Pad(0, pin, debounce_ms=0)
    presses = []
    pad.when_pressed = lambda p, t: presses.append(t)
    fake_rpi_gpio.drive(17, fake_rpi_gpio.LOW)   # foil closes: pulled-up pin reads low
    fake_rpi_gpio.drive(17, fake_rpi_gpio.HIGH)
    out.write(True)
    out.write(False)
    factory.close()
    calls = fake_rpi_gpio.calls
    assert ("setmode", fake_rpi_gpio.BCM) in calls
    assert ("setup", 17, fake_rpi_gpio.IN, fake_rpi_gpio.PUD_UP, None) in calls
    assert ("add_event_detect", 17, fake_rpi_gpio.BOTH, None) in calls
    assert ("setup", 27, fake_rpi_gpio.OUT, fake_rpi_gpio.PUD_OFF, fake_rpi_gpio.LOW) in calls
    assert [c for c in calls if c[0] == "output"] == [("output", 27, 1), ("output", 27, 0)]
    assert calls[-1] == ("cleanup", [17, 27])
    assert len(presses) == 1


def test_rpi_backend_off_a_pi_says_use_sim(monkeypatch):
    monkeypatch.setitem(sys.modules, "RPi", None)
    from core.errors import DeviceError
    with pytest.raises(DeviceError, match="RPi.GPIO is not available here; use gpio.backend: sim"):
        RPiPinFactory()


def test_beat_clock_no_drift_and_positions(world):
    clock, tl, beats = world
    seen = []
    beats.listeners.append(lambda i, bar, b, tempo, t: seen.append((i, bar, b, t)))
    beats.start(100.0)
    assert beats.next_beat(100.6) == 2 and beats.next_beat(100.6, downbeat=True) == 4
    assert beats.offset_from_nearest(101.04) == pytest.approx(0.04)
    tl.advance_to(100.0 + 1000 * 0.5)
    assert len(seen) == 1001
    assert seen[-1] == (1000, 250, 0, pytest.approx(600.0, abs=1e-9))
    assert beats.next_beat(100.6) == 1001  # never a beat that has already passed


def test_tempo_change_reanchors(world):
    clock, tl, beats = world
    times = []
    beats.listeners.append(lambda i, bar, b, tempo, t: times.append(t))
    beats.start(100.0)
    tl.advance_to(101.0)          # beats 0,1,2 at 100, 100.5, 101
    beats.set_tempo(60)
    tl.advance_to(104.0)
    assert times == pytest.approx([100.0, 100.5, 101.0, 102.0, 103.0, 104.0])


def test_external_midi_clock_drives_beats():
    clock = ManualClock(0.0)
    tl = Timeline(clock)
    beats = BeatClock(tl, external=True)
    seen = []
    beats.listeners.append(lambda i, bar, b, tempo, t: seen.append((i, round(tempo, 3))))
    follower = MidiClockFollower(beats)
    follower.handle("start", 0.0)
    tick = 0.5 / 24  # 120 BPM
    for n in range(1, 24 * 4 + 1):
        follower.handle("clock", n * tick)
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[-1][1] == pytest.approx(120.0)


def make_scheduler(world, **kw):
    clock, tl, beats = world
    out = RecordingOutput(clock)
    beats.start(100.0)
    return out, AccompScheduler(tl, beats, out, **kw)


def test_accomp_plays_at_due_beat_and_note_off_follows(world):
    clock, tl, beats = world
    out, sched = make_scheduler(world)
    sched.schedule(Accomp(notes=[AccompNote(note=64, due_beat=2.5, duration=0.25, channel=1)]), now=100.1)
    tl.advance_to(103.0)
    assert [(round(t, 6), m.type, m.note) for t, m in out.log] == [(101.25, "note_on", 64), (101.5, "note_off", 64)]


def test_late_note_dropped_and_counted(world):
    clock, tl, beats = world
    out, sched = make_scheduler(world)
    tl.advance_to(102.0)
    sched.schedule(Accomp(notes=[AccompNote(note=60, due_time=101.0), AccompNote(note=62, due_time=102.5)]))
    tl.advance_to(104.0)
    assert [m.note for _, m in out.log if m.type == "note_on"] == [62]
    assert sched.counts["late_dropped"] == 1


def test_late_note_play_now_policy(world):
    clock, tl, beats = world
    out, sched = make_scheduler(world, late="play")
    tl.advance_to(102.0)
    sched.schedule(Accomp(notes=[AccompNote(note=60, due_time=101.0)]))
    tl.advance_to(103.0)
    assert notes_on(out) == [(102.0, 60)] and sched.counts["late_played"] == 1


def test_polyphony_cap(world):
    clock, tl, beats = world
    out, sched = make_scheduler(world, max_voices=2)
    sched.schedule(Accomp(notes=[AccompNote(note=60 + i, due_time=101.0, duration=1.0) for i in range(5)]))
    tl.advance_to(101.5)
    assert len(notes_on(out)) == 2 and sched.counts["voice_cap"] == 3


def test_stop_mid_note_leaves_nothing_stuck(world):
    clock, tl, beats = world
    out, sched = make_scheduler(world)
    sched.schedule(Accomp(notes=[AccompNote(note=60, due_time=101.0, duration=4.0),
                                 AccompNote(note=67, due_time=110.0)]))
    tl.advance_to(102.0)
    assert out.sounding == {(1, 60)}
    sched.all_notes_off()
    tl.advance_to(120.0)
    assert out.sounding == set()
    assert 67 not in [m.note for _, m in out.log if m.type == "note_on"]  # the pending one was cancelled


def make_dispenser(world, caps=TreatCaps(min_interval_s=8, max_per_minute=3, max_per_session=5), downbeat=True):
    clock, tl, beats = world
    f = SimPinFactory(clock)
    pin = f.output_pin(27)
    results = []
    d = TreatDispenser(pin, tl, beats, caps, pulse_s=0.15, downbeat_only=downbeat,
                       on_result=results.append)
    beats.start(100.0)
    return pin, d, results


def test_treat_caps_hold_under_a_flood(world):
    clock, tl, beats = world
    caps = TreatCaps(min_interval_s=8, max_per_minute=3, max_per_session=5)
    pin, d, results = make_dispenser(world, caps)
    # 1,000 requests spread over 10 minutes (one every 0.6 s), from every source.
    for i in range(1000):
        t = 100.0 + i * 0.6
        tl.advance_to(t)
        d.request(source=("brain", "rig", "manual")[i % 3], request_id=i, now=t)
    tl.advance_to(800.0)
    pulses = pin.pulses()
    assert 0 < len(pulses) <= caps.max_per_session
    assert all(b - a >= caps.min_interval_s - 1e-9 for a, b in zip(pulses, pulses[1:]))
    assert all(sum(1 for q in pulses if 0 <= p - q < 60) <= caps.max_per_minute for p in pulses)
    assert sum(1 for r in results if r.outcome == "dispensed") == len(pulses)
    assert sum(1 for r in results if r.outcome == "refused") == 1000 - len(pulses)
    assert any(r.refusal == "max_per_session" for r in results)
    assert sum(d.refusals.values()) == 1000 - len(pulses)  # counted by reason code, every one
    assert set(d.refusals) <= {"max_per_session", "min_interval", "max_per_minute", "pending"}
    assert pin.level is False


def test_treats_only_on_downbeats(world):
    clock, tl, beats = world
    pin, d, results = make_dispenser(world, TreatCaps(min_interval_s=1, max_per_minute=30, max_per_session=100))
    for t in (100.3, 103.1, 105.77, 110.2):
        tl.advance_to(t)
        d.request(now=t)
    tl.advance_to(120)
    pulses = pin.pulses()
    assert len(pulses) == 4
    for p in pulses:
        b = beats.beat_at(p)
        assert b == pytest.approx(round(b)) and round(b) % 4 == 0
    # each pulse lasts pulse_s
    highs = [t for t, lvl in pin.history if lvl]
    lows = [t for t, lvl in pin.history[1:] if not lvl]
    assert [round(lo - hi, 6) for hi, lo in zip(highs, lows)] == [0.15] * 4


def test_a_result_handler_that_asks_for_a_treat_does_not_deadlock(world):
    """on_result runs with no lock held: a handler may request again (it used to deadlock on the lock)."""
    import threading

    clock, tl, beats = world
    pin, d, results = make_dispenser(world, TreatCaps(min_interval_s=1, max_per_minute=30, max_per_session=3))
    asked = []

    def ask_again(result):
        results.append(result)
        if len(asked) < 5:
            asked.append(d.request(source="rig", now=clock()))

    d.on_result = ask_again
    done = threading.Event()

    def run():
        d.request(now=100.1)
        tl.advance_to(200.0)
        done.set()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert done.wait(5), "the dispenser deadlocked when its result handler asked for another treat"
    assert len(pin.pulses()) == 3 and results[-1].refusal in ("max_per_session", "pending")


def test_a_long_jam_holds_only_live_handles(world):
    """10 minutes of accompaniment at 8 notes a beat, with a brain dropout each minute: nothing piles up."""
    clock, tl, beats = world
    out = RecordingOutput(clock)
    sched = AccompScheduler(tl, beats, out, max_voices=64)
    beats.start(100.0)
    for beat in range(1200):  # 10 minutes at 120 BPM
        tl.advance_to(100.0 + beat * 0.5)
        sched.schedule(Accomp(notes=[AccompNote(note=48 + k, due_beat=beat + 1 + k / 8, duration=0.1)
                                     for k in range(8)]))
        if beat % 120 == 119:
            sched.all_notes_off()
    tl.advance_to(100.0 + 1200 * 0.5 + 5)
    assert out.sounding == set()
    assert len(sched._pending) == 0 and len(sched._voices) == 0
    assert len(tl._cancelled) == 0
    assert tl.pending == 1  # only the beat clock's next tick
    assert sched.counts["played"] > 8000


def test_a_late_tie_starts_no_note(world):
    """A tie extends a sounding note; one arriving after its note ended starts nothing (it used to start a note cut
    off 0.1 ms later)."""
    clock, tl, beats = world
    out, sched = make_scheduler(world)
    sched.schedule(Accomp(notes=[AccompNote(note=64, due_time=101.0, duration=0.5)]))
    sched.schedule(Accomp(notes=[AccompNote(note=64, due_time=101.25, duration=0.5, tie=True)]))  # still sounding
    sched.schedule(Accomp(notes=[AccompNote(note=67, due_time=102.0, duration=0.5, tie=True)]))  # never struck
    tl.advance_to(104.0)
    assert [(round(t, 6), m.type, m.note) for t, m in out.log] == [(101.0, "note_on", 64), (101.75, "note_off", 64)]
    assert sched.counts["tied"] == 1 and sched.counts["tie_after_end"] == 1


def test_the_arranger_moves_a_note_off_a_rub_with_the_human_and_drops_one_it_cannot_place(world):
    """Issue 39: a human note sounding a semitone away makes the rig avoid the clash (the brain chose its note before
    the human played). Without the arranger the rub sounds: the check can fail."""
    from rig.arranger import Arranger

    clock, tl, beats = world
    out, plain = make_scheduler(world)
    arranger = Arranger()
    out2 = RecordingOutput(clock)
    sched = AccompScheduler(tl, beats, out2, arranger=arranger)
    arranger.heard(65, True)  # the human holds F4
    for s in (plain, sched):
        s.schedule(Accomp(notes=[AccompNote(note=64, due_time=101.0, duration=0.5, channel=1)]), now=100.5)
    tl.advance_to(101.2)
    assert notes_on(out) == [(101.0, 64)]  # as asked: E against F
    # onto the human's pitch class, an octave below the human's F (a unison is one voice to the ear)
    assert notes_on(out2) == [(101.0, 53)] and arranger.counts["clash_moved"] == 1
    assert arranger.counts["register_moved"] == 1
    arranger.heard(66, True)  # F and F# held: E can move nowhere clear
    sched.schedule(Accomp(notes=[AccompNote(note=64, due_time=102.0, duration=0.5, channel=2)]), now=101.5)
    tl.advance_to(102.2)
    assert notes_on(out2) == [(101.0, 53)] and arranger.counts["clash_dropped"] == 1
    arranger.heard(62, True, channel=9)  # a drum pad has no pitch to rub
    assert 62 not in arranger.sounding()


def test_the_arranger_keeps_a_brain_note_out_of_the_humans_register_by_an_octave(world):
    """Issue 39: a brain note the same as the human's sounding note, or a step from it, is one voice to the ear: it
    sounds an octave away (below when at or under the human's note, above when over it; the other way when that
    crowds another note), its pitch class kept. Three semitones away it stays; without the arranger it crowds."""
    from rig.arranger import Arranger

    clock, tl, beats = world
    arranger = Arranger()
    out = RecordingOutput(clock)
    sched = AccompScheduler(tl, beats, out, arranger=arranger)
    arranger.heard(67, True)  # the human holds G4
    for i, asked in enumerate((67, 69, 65, 64, 70)):
        sched.schedule(Accomp(notes=[AccompNote(note=asked, due_time=101.0 + i, duration=0.5, channel=1)]), now=100.5)
    tl.advance_to(105.5)
    arranger.heard(55, True)  # and now G3 too: F4 a step under G4 moves up, not down onto F3, a step from G3
    sched.schedule(Accomp(notes=[AccompNote(note=65, due_time=106.0, duration=0.5, channel=1)]), now=100.5)
    tl.advance_to(106.2)
    assert [n for _, n in notes_on(out)] == [55, 81, 53, 64, 70, 77]
    assert arranger.counts["register_moved"] == 4 and not arranger.counts["clash_moved"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_replay_is_arranged_exactly_as_the_rig_plays_it(seed):
    """The score hears a replay (no rig) through recording.arrangement.arrange; the live rig plays through its
    scheduler and arranger. Random brain notes against a random human part: the same notes, moved, dropped and cut
    alike. Without the arranger the two would differ (the check can fail)."""
    import random

    from recording.arrangement import arrange
    from recording.jam import PlayedNote
    from rig.arranger import Arranger

    rng = random.Random(seed)
    clock = ManualClock(100.0)
    tl = Timeline(clock)
    beats = BeatClock(tl, tempo_bpm=120, beats_per_bar=4)
    out = RecordingOutput(clock)
    arranger = Arranger()
    sched = AccompScheduler(tl, beats, out, arranger=arranger)
    human, asked = [], []
    t = 101.0
    for _ in range(40):
        start, length, pitch = t + rng.choice((0.07, 0.13, 0.19)), rng.choice((0.1, 0.3, 0.6)), rng.randint(60, 72)
        human.append(PlayedNote("human", start, start + length, pitch, 90, 0))
        tl.at(start, lambda p=pitch: (arranger.heard(p, True), sched.give_way(p)))
        tl.at(start + length, lambda p=pitch: arranger.heard(p, False))
        t += 0.25
    t = 101.0
    for _ in range(40):
        channel, pitch, length = rng.choice((1, 2)), rng.randint(60, 72), rng.choice((0.2, 0.45))
        if rng.random() < 0.8:
            sched.schedule(Accomp(notes=[AccompNote(note=pitch, due_time=t, duration=length, channel=channel)]),
                           now=t - 0.05)
            asked.append(PlayedNote("brain", t, t + length, pitch, 64, channel))
        t += 0.25
        tl.advance_to(t - 0.06)
    tl.advance_to(t + 2.0)
    starts: dict = {}
    live = []
    for when, m in out.log:
        if m.type == "note_on":
            starts[(m.channel, m.note)] = when
        elif m.type == "note_off" and (m.channel, m.note) in starts:
            live.append((round(starts.pop((m.channel, m.note)), 4), round(when, 4), m.channel, m.note))
    replayed, counts = arrange(asked, human)
    assert sorted(live) == sorted((round(n.start, 4), round(n.end, 4), n.channel, n.note) for n in replayed)
    assert counts["clash_moved"] == arranger.counts["clash_moved"] and \
        counts["clash_dropped"] == arranger.counts["clash_dropped"]
    assert counts["clash_moved"] + counts["clash_dropped"] + counts["clash_cut"] > 0
    assert sorted(live) != sorted((round(n.start, 4), round(n.end, 4), n.channel, n.note) for n in asked)


def test_a_human_note_that_rubs_ends_the_brains_sounding_note_but_never_into_a_click(world):
    from rig.arranger import MIN_NOTE_S, Arranger

    clock, tl, beats = world
    out = RecordingOutput(clock)
    sched = AccompScheduler(tl, beats, out, arranger=Arranger())
    sched.schedule(Accomp(notes=[AccompNote(note=64, due_time=101.0, duration=1.0, channel=1),
                                 AccompNote(note=67, due_time=101.0, duration=1.0, channel=2)]), now=100.5)
    tl.advance_to(101.3)
    sched.give_way(65)  # the human strikes F while E and G sound: E ends now, G rings on
    offs = [(round(t, 3), m.note) for t, m in out.log if m.type == "note_off"]
    assert offs == [(101.3, 64)] and sched.counts["clash_cut"] == 1
    sched.schedule(Accomp(notes=[AccompNote(note=71, due_time=102.5, duration=1.0, channel=1)]), now=101.4)
    tl.advance_to(102.51)
    sched.give_way(72)  # 10 ms after B was struck: it still lasts MIN_NOTE_S, not 10 ms
    tl.advance_to(103.0)
    off = next(t for t, m in out.log if m.type == "note_off" and m.note == 71)
    assert off == pytest.approx(102.5 + MIN_NOTE_S)
