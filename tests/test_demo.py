"""The README's first command, short: two real processes, a session, a .mid, a .wav, a report."""

import json
import os
import signal
import subprocess
import sys
import time
import wave

import numpy as np

from bridge.messages import Neurons, TreatResult
from recording import open_session
from recording.jam import jam_from_log
from recording.log import read_session
from tests.conftest import ROOT, run_cli


def demo(out, seconds):
    """A demo whose pet starts at level 1: its progress goes under ``out``, not the checkout's sessions/pets/, which
    every demo run from the checkout levels up (a developer's demos made a later test's pet level 3)."""
    return subprocess.Popen([sys.executable, "-m", "neurojam.cli", "demo", "--seconds", str(seconds), "--out", str(out),
                             "--no-view", "--set", f"session.dir={out}/home"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_short_demo_leaves_a_full_jam(tmp_path):
    proc = demo(tmp_path, 8)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pet_notes"] > 0 and summary["human_notes"] > 0 and summary["brain_notes"] > 0, summary
    assert summary["treats_dispensed"] >= 1
    log = read_session(tmp_path / "session")
    jam = jam_from_log(log)
    for r in log.records:  # every dispensed treat was pulsed on a beat
        m = r.msg
        if isinstance(m, TreatResult) and m.outcome == "dispensed":
            assert abs(m.t - jam.time_of_beat(m.beat_index)) < 0.01
    assert (tmp_path / "jam.mid").stat().st_size > 100
    with wave.open(str(tmp_path / "jam.wav")) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(float)
    assert np.sqrt(np.mean(data ** 2)) > 100  # not silent
    assert (tmp_path / "report.html").exists()
    for name in ("session", "jam.mid", "jam.wav", "report.html"):
        assert name in out


def test_killing_the_brain_does_not_stop_the_rig(tmp_path):
    proc = demo(tmp_path, 10)
    deadline = time.monotonic() + 120
    while not (tmp_path / "pids.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = json.loads((tmp_path / "pids.json").read_text())
    time.sleep(4)
    os.kill(pids["brain"], signal.SIGKILL)
    killed = time.monotonic()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "the brain stopped" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["brain_died_at_s"] is not None and summary["rig_exit"] == 0
    jam = jam_from_log(read_session(tmp_path / "session"))
    last_beat = jam.beats[-1].time
    assert last_beat - jam.beats[0].time > 8  # the rig kept its beat to the end
    assert (tmp_path / "jam.mid").exists()
    assert any(n.start > killed for n in jam.notes if n.source in ("pet", "human"))  # still playing, still recorded


def test_demo_with_two_rigs_on_one_brain(tmp_path):
    r = run_cli("demo", "--seconds", "6", "--rigs", "2", "--no-view", "--out", str(tmp_path), timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    for session, node in ((tmp_path / "session", "rig"), (tmp_path / "session-2", "rig-2")):
        s = open_session(session)
        assert sum(n.source == "brain" for n in s.jam.notes) > 5, session
        answers = [r.msg for r in s.log.records if isinstance(r.msg, Neurons)]
        assert answers and {m.event_node for m in answers} == {node}  # each rig hears only its own answers
    assert (tmp_path / "jam-2.mid").stat().st_size > 100


def test_a_terminated_demo_stops_its_nodes_and_keeps_the_jam(tmp_path):
    """SIGTERM (a service manager, a script's terminate()) is Ctrl-C: no brain or rig is left running."""
    proc = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "demo", "--seconds", "60", "--rigs", "2",
                             "--out", str(tmp_path), "--no-view"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "pids.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = json.loads((tmp_path / "pids.json").read_text())
    time.sleep(4)
    proc.terminate()
    out, _ = proc.communicate(timeout=120)
    for pid in (pids["brain"], pids["rig"], *pids["rigs"]):
        try:
            os.kill(pid, 0)
            alive = not open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        except (ProcessLookupError, FileNotFoundError):
            alive = False
        assert not alive, f"process {pid} outlived the demo:\n{out}"
    assert json.loads((tmp_path / "summary.json").read_text())["human_notes"] > 0


def test_sessions_steer_stage_and_report_find_a_running_demo_with_no_flags(tmp_path):
    """The README's `neurojam steer 1.42 0` during a demo, with nothing but the command: the demo's ports and
    session come from its runtime file."""
    from neurojam.processes import free_port
    from neurojam.runtime import running

    proc = demo(tmp_path, 40)
    try:
        deadline = time.monotonic() + 120
        while running() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        here = running()
        assert here is not None and here.session == str((tmp_path / "session").resolve())
        steer = run_cli("steer", "1.42", "0")
        assert steer.returncode == 0 and "applied" in steer.stdout, steer.stdout + steer.stderr
        listed = run_cli("sessions", "--json", cwd=tmp_path)
        stage = run_cli("stage", "--port", str(free_port()), "--seconds", "4")
        assert "connected to the brain" in stage.stdout, stage.stdout + stage.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert running() is None  # the file goes with the demo
    assert listed.returncode == 0, listed.stderr
    assert str(tmp_path / "session") in [r["session"] for r in json.loads(listed.stdout)]


def test_a_replay_is_as_long_as_the_jam_it_replays(tmp_path):
    """A replay's pings are stamped hours after the jam; its length must still be the jam's (±1 beat)."""
    r = run_cli("demo", "--seconds", "6", "--no-view", "--out", str(tmp_path / "d"), timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    source = open_session(tmp_path / "d" / "session").jam
    time.sleep(3)  # the replay happens later than the jam: its own clock has moved on
    r = run_cli("replay", str(tmp_path / "d" / "session"), "--fast", "--out", str(tmp_path / "r"), timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    replayed = open_session(tmp_path / "r").jam
    period = 60 / source.beats[0].tempo_bpm
    assert abs(replayed.duration - source.duration) <= period, (replayed.duration, source.duration)


def test_two_demos_writing_their_running_file_at_once_both_succeed(tmp_path):
    """Two demos started together each wrote running.json through one shared temporary name, and one crashed
    (FileNotFoundError: the other had moved it). Each writer now has its own."""
    import subprocess
    import sys

    code = ("import os, sys\nfrom neurojam.runtime import Running\n"
            "for i in range(300):\n    Running(pid=os.getpid(), kind='demo', events_port=i, commands_port=i + 1).write()\n")
    env = {**__import__("os").environ, "NEUROJAM_RUNTIME_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert (tmp_path / "running.json").exists() and not list(tmp_path.glob("*.tmp"))
