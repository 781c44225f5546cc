"""Rig timing: pad → MIDI out latency, scheduled-note and dispense timing error, CPU use.

    python bench/rig.py [--quick]

Targets (issue 3): pad → sound p99 < 2 ms; scheduled-note and dispense error p99 < 1 ms; idle CPU < 5 % of a core.
The MIDI output here records the time of each call into it (the hand-off to rtmidi); a real port adds
rtmidi's own send, measured in the last table through a JACK port when jackd is installed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from common import machine, pct, table

from bridge.messages import Accomp, AccompNote
from neurojam.config import load_config
from rig.beat import BeatClock
from rig.dispenser import TreatCaps, TreatDispenser
from rig.gpio import SimPinFactory
from rig.midi_io import RecordingOutput
from rig.node import RigNode
from rig.scheduler import AccompScheduler
from rig.timeline import Timeline


def pad_latency(n: int) -> list[float]:
    cfg = load_config(None, ["bridge.events_port=47001", "bridge.commands_port=47002", f"session.dir={tempfile.mkdtemp()}"])
    node = RigNode(cfg, output=RecordingOutput(time.perf_counter), record=False)
    node.timeline.start()
    node.beats.start()
    pin = node.pads[0].pin
    lat = []
    for _ in range(n):
        node.output.log.clear()
        t0 = time.perf_counter()
        pin.drive(False)  # press (active low): what RPi.GPIO's edge callback does
        lat.append(node.output.log[0][0] - t0)
        time.sleep(0.04)  # let the debounce window pass
        pin.drive(True)
        time.sleep(0.04)
    node.close()
    return lat


def scheduled_error(n: int, rate: float) -> list[float]:
    tl = Timeline().start()
    beats = BeatClock(tl, 120)
    beats.start()
    out = RecordingOutput(time.monotonic)
    sched = AccompScheduler(tl, beats, out, max_voices=128)
    due_of = {}
    start = time.monotonic() + 0.2
    rng = random.Random(0)
    for i in range(n):
        due = start + i / rate + rng.uniform(0, 0.002)
        note = 20 + i % 100
        due_of[(note, round(due, 6))] = due
        sched.schedule(Accomp(notes=[AccompNote(note=note, due_time=due, duration=0.05, channel=i % 16)]))
        time.sleep(max(0.0, start + (i - 20) / rate - time.monotonic()))  # send ~100 ms ahead, like the brain
    time.sleep(n / rate * 0.0 + 0.5)
    ons = [(t, m.note) for t, m in out.log if m.type == "note_on"]
    tl.stop()
    dues = sorted(due_of.values())
    return [t - d for (t, _), d in zip(sorted(ons), dues)]


def dispense_error(seconds: float) -> list[float]:
    tl = Timeline().start()
    beats = BeatClock(tl, 240)
    beats.start()
    pin = SimPinFactory(time.monotonic).output_pin(27)
    d = TreatDispenser(pin, tl, beats, TreatCaps(min_interval_s=1, max_per_minute=30, max_per_session=500),
                       downbeat_only=False, pulse_s=0.05)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        d.request(source="manual")
        time.sleep(0.05)
    tl.stop()
    return [abs(beats.offset_from_nearest(t)) for t in pin.pulses()]


def rig_cpu(seconds: float, load: bool) -> tuple[float, float]:
    """Percent of one core used by a `neurojam rig` process, and the messages/s it handled."""
    tmp = tempfile.mkdtemp()
    args = [sys.executable, "-m", "neurojam.cli", "rig", "--session", f"{tmp}/s", "--seconds", str(seconds + 3),
            "--set", "bridge.events_port=47011", "--set", "bridge.commands_port=47012"]
    if load:  # 300 BPM, four presses a beat: ~20 presses/s -> pad down/up + note on/off ≈ 80 bridge messages/s
        args += ["--set", "rig.tempo_bpm=300", "--set", "rig.sim_pet.enabled=true",
                 "--set", "rig.sim_pet.presses_per_beat=4", "--set", "rig.training.enabled=false"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.5)

    def cpu() -> float:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu(), time.monotonic()
    proc.wait()
    from recording.log import read_session

    log = read_session(f"{tmp}/s")
    rate = len(log.records) / (log.records[-1].time - log.records[0].time) if len(log.records) > 1 else 0.0
    shutil.rmtree(tmp, ignore_errors=True)
    return 100 * (c1 - c0) / (t1 - t0), rate


def jack_send_cost(n: int) -> list[float] | None:
    if not shutil.which("jackd"):
        return None
    import mido

    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    jack = subprocess.Popen(["jackd", "--no-realtime", "-n", "bench", "-d", "dummy"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["JACK_DEFAULT_SERVER"] = "bench"
    time.sleep(1)
    try:
        port = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output("bench", virtual=True)
        cost = []
        for i in range(n):
            msg = mido.Message("note_on", note=60, velocity=90)
            t = time.perf_counter()
            port.send(msg)
            cost.append(time.perf_counter() - t)
        port.close()
        return cost
    finally:
        jack.terminate()
        jack.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    q = ap.parse_args().quick
    print(f"machine: {machine()}")
    ms = lambda xs: [pct(xs, 0.5) * 1e3, pct(xs, 0.99) * 1e3, max(xs) * 1e3]  # noqa: E731
    pad = pad_latency(200 if q else 1000)
    sched = scheduled_error(500 if q else 2000, 200)
    disp = dispense_error(10 if q else 30)
    table("rig timing (ms)", ["figure", "n", "p50", "p99", "max"], [
        ["pad press → MIDI out call", len(pad), *ms(pad)],
        ["scheduled note − due time", len(sched), *ms(sched)],
        ["treat pulse − beat time", len(disp), *ms(disp)],
    ])
    cost = jack_send_cost(2000)
    if cost:
        table("rtmidi send through a JACK port (ms)", ["n", "p50", "p99", "max"], [[len(cost), *ms(cost)]])
    idle, idle_rate = rig_cpu(10 if q else 20, load=False)
    busy, busy_rate = rig_cpu(10 if q else 20, load=True)
    table("rig process CPU (% of one core)", ["state", "bridge messages/s", "CPU %"],
          [["idle (beat + heartbeats)", idle_rate, idle], ["sim pet pressing ~20 times/s", busy_rate, busy]])


if __name__ == "__main__":
    main()
