"""The pet's training in logical time: criteria, the marker, levels, treats only when earned, saved progress."""

import json

import pytest

from rig.beat import BeatClock
from rig.config import LevelConfig, TrainingConfig
from rig.curriculum import Curriculum
from rig.dispenser import TreatCaps, TreatDispenser
from rig.gpio import SimPinFactory
from rig.progress import PetProgress
from rig.timeline import ManualClock, Timeline

BEAT = 0.5  # 120 BPM, beats from t = 100


class World:
    def __init__(self, levels=None, caps=TreatCaps(min_interval_s=1, max_per_minute=30, max_per_session=500),
                 level=1, **training):
        self.clock = ManualClock(100.0)
        self.tl = Timeline(self.clock)
        self.beats = BeatClock(self.tl, tempo_bpm=120, beats_per_bar=4)
        self.pin = SimPinFactory(self.clock).output_pin(27)
        self.results = []
        self.dispenser = TreatDispenser(self.pin, self.tl, self.beats, caps, downbeat_only=False,
                                        on_result=self.results.append)
        config = TrainingConfig(levels=levels or TrainingConfig().levels, **training)
        self.marks = []
        self.judged = []
        self.c = Curriculum(config, self.beats, self.tl, self.dispenser, level=level,
                            on_earned=lambda trial: self.marks.append((self.clock(), trial.time)),
                            on_trial=lambda trial, after: self.judged.append((trial, after)))
        self.beats.start(100.0)

    def press(self, beat: float, pad: int = 0):
        t = 100.0 + beat * BEAT
        self.tl.advance_to(t)
        return self.c.press(pad, t)


def test_on_beat_press_is_marked_at_once_and_treated_on_the_next_beat():
    w = World(level=2)
    off = w.press(1.5)            # half a beat off: a failure, no marker
    on = w.press(3.06)            # 30 ms late: within 150 ms
    w.tl.advance_to(110)
    assert (off.success, off.earned, on.success, on.earned) == (False, False, True, True)
    assert w.marks == [(on.time, on.time)]  # the marker fires at the earning press, and only for it
    pulses = w.pin.pulses()
    assert len(pulses) == 1 and pulses[0] == pytest.approx(100.0 + 4 * BEAT)  # the next beat after the press
    assert [r.outcome for r in w.results] == ["dispensed"]


def test_level_up_at_exactly_17_of_20():
    w = World(level=2)
    beat = 1
    for _ in range(3):  # three misses first
        w.press(beat + 0.5)
        beat += 1
    for k in range(16):  # 16 hits: 16 of the last 19
        w.press(beat)
        beat += 1
    assert w.c.level == 2
    w.press(beat)  # the 17th hit of the last 20 trials
    assert w.c.level == 3 and w.judged[-1][1] == 3 and w.judged[-2][1] == 2


def test_not_17_of_20_is_no_level_up():
    w = World(level=2)
    for i in range(200):  # 4 hits in 5: 16 of every 20, forever
        w.press(i + 1 + (0.5 if i % 5 == 4 else 0))
    assert w.c.level == 2


def test_level_down_after_the_failure_streak():
    w = World(level=3, failures_to_level_down=8)
    for i in range(7):
        w.press(i + 1.5)
    assert w.c.level == 3
    w.press(8.5)
    assert w.c.level == 2 and w.c.failure_streak == 0


def test_treats_asked_only_when_the_caps_allow():
    """Every press earns at level 1, but the caps allow one treat per 8 s: the rest are held back, not refused."""
    w = World(caps=TreatCaps(min_interval_s=8, max_per_minute=4, max_per_session=5), successes_to_level_up=200,
              window=200)
    for i in range(400):
        w.press(i + 0.01)
    w.tl.advance_to(400)
    assert len(w.pin.pulses()) == 5  # the session cap, and never past it
    assert all(b - a >= 8 - 1e-9 for a, b in zip(w.pin.pulses(), w.pin.pulses()[1:]))
    assert [r.outcome for r in w.results] == ["dispensed"] * 5  # zero refusals
    assert len(w.marks) == 5 and sum(w.c.held_back.values()) == 395
    assert set(w.c.held_back) <= {"min_interval", "max_per_minute", "max_per_session", "pending"}


def test_pair_pad_and_copy_criteria():
    pair = World(levels=[LevelConfig(name="pair", criterion="on_beat_pair")], successes_to_level_up=20)
    assert [pair.press(b).success for b in (1, 2, 4, 5, 6)] == [False, True, False, True, True]
    pad = World(levels=[LevelConfig(name="pad", criterion="pad_on_downbeat", pad=2)], successes_to_level_up=20)
    assert [pad.press(b, p).success for b, p in ((4, 2), (5, 2), (8, 1), (12.02, 2))] == [True, False, False, True]
    copy = World(levels=[LevelConfig(name="copy", criterion="copy_rhythm", tolerance_ms=100)], successes_to_level_up=20)
    for beat in (0, 1.5, 3):  # the human's rhythm in bar 0
        copy.tl.advance_to(100 + beat * BEAT)
        copy.c.human_note(100 + beat * BEAT)
    assert [copy.press(b).success for b in (4.02, 5.5, 6, 7)] == [True, True, False, True]


def test_the_brain_criterion_waits_a_beat_for_the_brain():
    w = World(levels=[LevelConfig(name="neuron", criterion="brain")], successes_to_level_up=20)
    w.press(1)
    assert w.c.brain_request(w.clock() + 0.1) is True and w.judged[-1][0].success
    w.press(3)
    w.tl.advance_to(100 + 4.1 * BEAT)  # a beat passes with no request: a failure
    assert w.judged[-1][0].success is False and len(w.judged) == 2
    assert w.c.brain_request(w.clock()) is False  # no press waiting: nothing to reward


def test_progress_survives_and_a_corrupt_file_starts_fresh(tmp_path):
    p = PetProgress.load(tmp_path, "rex")
    assert p.level == 1 and p.problem == ""
    p.level, p.recent = 3, [True, False]
    p.save()
    again = PetProgress.load(tmp_path, "rex")
    assert (again.level, again.recent) == (3, [True, False])
    (tmp_path / "pets" / "rex.json").write_text('{"format": "neurojam-pet/1", "level": ')
    broken = PetProgress.load(tmp_path, "rex")
    assert broken.level == 1 and "could not be read" in broken.problem and "starts again" in broken.problem
    kept = list((tmp_path / "pets").glob("rex.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_text().startswith('{"format"')  # the owner's file is kept, not deleted
    json.loads(json.dumps(broken.level))


def test_a_bad_window_is_a_config_error():
    from core.errors import ConfigError
    from neurojam.config import load_config

    with pytest.raises(ConfigError, match="successes_to_level_up"):
        load_config(None, ["rig.training.window=10"])


def make_rig(tmp_path, ports, *sets, clock=None):
    from neurojam.config import load_config
    from rig.midi_io import RecordingOutput
    from rig.node import RigNode

    cfg = load_config(None, [f"bridge.events_port={ports}", f"bridge.commands_port={ports + 1}",
                             f"session.dir={tmp_path}", "rig.training.pet=rex", *sets])
    return RigNode(cfg, output=RecordingOutput(clock), clock=clock, pin_factory=SimPinFactory(clock))


def test_a_learning_sim_pet_levels_up_and_the_next_session_starts_there(tmp_path, ports):
    """End to end in logical time: sim pet → pads → curriculum → marker and treats → saved level → next session."""
    from recording import open_session

    clock = ManualClock(0.0)
    rig = make_rig(tmp_path, ports, "rig.sim_pet.enabled=true", "rig.sim_pet.on_beat_probability=0.3",
                   "rig.sim_pet.presses_per_beat=1", clock=clock)
    rig.started_at, rig.started_utc = 0.0, "2026-11-23T00:00:00+00:00"
    rig.beats.start(1.0)
    rig.timeline.advance_to(600.0)  # ten minutes
    curriculum, pet = rig.devices.curriculum, rig.devices.pet
    assert max(t.level for t in curriculum.trials) >= 3, [t.level for t in curriculum.trials[::50]]
    assert pet.on_beat > 0.3 and pet.rewards == sum(t.earned for t in curriculum.trials)
    markers = [(t, m) for t, m in rig.output.log if m.type == "note_on" and m.channel == 15 and m.note == 96]
    assert [t for t, _ in markers] == [t.time for t in curriculum.trials if t.earned]  # at each earning press
    assert rig.dispenser.refusals.total() <= 0.1 * rig.counts["treats_dispensed"]
    level = curriculum.level
    session = rig.recorder.path
    rig.close()
    saved = json.loads((tmp_path / "pets" / "rex.json").read_text())
    assert saved["level"] == level and saved["sessions"][0]["level_end"] == level
    assert saved["sessions"][0]["presses"] == len(curriculum.trials)
    jam = open_session(session).jam
    assert len(jam.trials) == len(curriculum.trials) and jam.trials[-1].level_after == level
    assert sum(n.source == "marker" for n in jam.notes) == len(markers)

    again = make_rig(tmp_path, ports, clock=ManualClock(0.0))
    assert again.devices.curriculum.level == level
    again.close()


def test_a_corrupt_progress_file_never_stops_the_rig(tmp_path, ports, caplog):
    (tmp_path / "pets").mkdir()
    (tmp_path / "pets" / "rex.json").write_bytes(b"\x00\xffnot json")
    with caplog.at_level("WARNING"):
        rig = make_rig(tmp_path, ports, clock=ManualClock(0.0))
    assert rig.devices.curriculum.level == 1 and "could not be read" in caplog.text
    session = rig.recorder.path
    rig.close()
    assert (session / "events.njlog").exists() and (session / "meta.json").exists()  # the session is kept
    assert json.loads((tmp_path / "pets" / "rex.json").read_text())["level"] == 1  # a fresh, readable file
    assert list((tmp_path / "pets").glob("rex.json.unreadable-*"))


def test_pet_command_with_no_one_and_many_sessions(tmp_path, ports):
    from rig.progress import SessionSummary
    from tests.conftest import run_cli

    missing = run_cli("pet", "rex", "--dir", str(tmp_path))
    assert missing.returncode == 2 and "no progress for 'rex'" in missing.stderr and "Traceback" not in missing.stderr

    fresh = PetProgress.load(tmp_path, "rex")
    fresh.save()  # a pet whose file exists but has no session yet
    none = run_cli("pet", "rex", "--dir", str(tmp_path))
    assert none.returncode == 0 and "no sessions recorded yet" in none.stdout

    rig = make_rig(tmp_path, ports, "rig.sim_pet.enabled=true", clock=ManualClock(0.0))
    rig.started_at, rig.started_utc = 0.0, "2026-11-23T10:00:00+00:00"
    rig.beats.start(1.0)
    rig.timeline.advance_to(120.0)
    rig.close()
    one = run_cli("pet", "rex", "--dir", str(tmp_path), "--json")
    rows = json.loads(one.stdout)["sessions"]
    assert one.returncode == 0 and len(rows) == 1 and rows[0]["presses"] > 50 and rows[0]["minutes"] > 1.9

    progress = PetProgress.load(tmp_path, "rex")
    for day in range(6):
        progress.sessions.append(SessionSummary(
            session=f"day{day}", started_utc=f"2026-11-{24 + day}T10:00:00+00:00", minutes=5.0, level_start=1 + day // 2,
            level_end=1 + (day + 1) // 2, presses=80 + day, on_beat=0.3 + 0.1 * day, mean_abs_offset_ms=150 - 15 * day,
            presses_per_minute=16.0, treats=10, refused=0))
    progress.save()
    png = tmp_path / "rex.png"
    many = run_cli("pet", "rex", "--dir", str(tmp_path), "--png", str(png))
    assert many.returncode == 0, many.stderr
    assert "day5" in many.stdout and "80%" in many.stdout and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
