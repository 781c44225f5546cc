"""The pet's side: marker latency, a 30-minute training with the learning sim pet, caps under random configs.

    python bench/pet.py [--quick] [--png docs/pet-progress.png]

Targets (issue 16): marker press → MIDI out p99 < 2 ms (like a pad); over a simulated 30-minute training, treat
requests refused by the caps < 10 % and the sim pet reaches level 3; no treat ever past a cap over 100 simulated
sessions with random configs and timings. The training runs through the real RigNode (sim pins, pads,
debouncing, curriculum, dispenser) in logical time (ManualClock), so 30 minutes take seconds.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from common import machine, pct, table

from neurojam.config import load_config
from rig.gpio import SimPinFactory
from rig.midi_io import RecordingOutput
from rig.node import RigNode
from rig.timeline import ManualClock

PORTS = ["bridge.events_port=47031", "bridge.commands_port=47032"]


def marker_latency(n: int) -> list[float]:
    """Real time: a press at a one-level curriculum where every press earns → the marker's note-on call. The dispenser's history is
    cleared between presses so that the caps (1 treat per 8 s) do not hold the marker back: this measures the path."""
    tmp = tempfile.mkdtemp()
    cfg = load_config(None, PORTS + [f"session.dir={tmp}", "rig.training.levels=[{name: touch, criterion: any_press}]"])
    node = RigNode(cfg, output=RecordingOutput(time.perf_counter), record=False)
    node.timeline.start()
    node.beats.start()
    time.sleep(0.05)
    pin, marker = node.pads[0].pin, cfg.rig.training.marker
    lat = []
    for _ in range(n):
        node.dispenser.close()
        node.dispenser.dispensed.clear()
        node.dispenser.total = 0
        node.output.log.clear()
        t0 = time.perf_counter()
        pin.drive(False)  # press (active low), as RPi.GPIO's edge callback would
        ons = [t for t, m in node.output.log if m.type == "note_on" and m.note == marker.note]
        if ons:
            lat.append(ons[0] - t0)
        time.sleep(0.04)
        pin.drive(True)
        time.sleep(0.04)
    node.close()
    return lat


def training(minutes_per_session: float, sessions: int, root: Path, seed: int = 1, sets: list[str] | None = None):
    """Several sessions of the learning sim pet through the rig, in logical time; progress saved between them."""
    rows = []
    for s in range(sessions):
        clock = ManualClock(0.0)
        cfg = load_config(None, PORTS + [f"session.dir={root}", "rig.training.pet=bench", "rig.sim_pet.enabled=true",
                                         f"rig.sim_pet.seed={seed + s}", "rig.sim_pet.on_beat_probability=0.3",
                                         *(sets or [])])
        node = RigNode(cfg, output=RecordingOutput(clock), clock=clock, pin_factory=SimPinFactory(clock), record=False)
        node.started_at, node.started_utc = 0.0, f"2026-11-{s + 1:02d}T10:00:00+00:00"
        if s and node.devices.pet:  # what the pet learnt last time, remembered (less what it forgot overnight)
            node.devices.pet.on_beat = rows[-1]["pet_on_beat_end"] * 0.8 + 0.3 * 0.2
        node.beats.start(1.0)
        node.timeline.advance_to(minutes_per_session * 60)
        c = node.devices.curriculum
        rows.append({"session": s + 1, "level_start": node.level_start, "max_level": max(t.level for t in c.trials),
                     "level_end": c.level, "trials": len(c.trials), "earned": sum(t.earned for t in c.trials),
                     "dispensed": node.counts["treats_dispensed"], "refused": node.counts["treats_refused"],
                     "held_back": sum(c.held_back.values()), "pet_on_beat_end": node.devices.pet.on_beat})
        node.close()
    return rows


def random_sessions(n: int, rng: random.Random) -> tuple[int, int, int]:
    """(sessions, treats, cap violations) over n random configs: caps, tempo, pet rate, levels, minutes."""
    treats = violations = 0
    for i in range(n):
        root = tempfile.mkdtemp()
        clock = ManualClock(0.0)
        caps = {"min_interval_s": rng.uniform(1, 30), "max_per_minute": rng.randint(0, 10),
                "max_per_session": rng.randint(0, 40)}
        sets = [f"session.dir={root}", "rig.sim_pet.enabled=true", f"rig.sim_pet.seed={i}",
                f"rig.tempo_bpm={rng.uniform(40, 240):.1f}", f"rig.sim_pet.presses_per_beat={rng.uniform(0.1, 4):.2f}",
                f"rig.sim_pet.on_beat_probability={rng.random():.2f}",
                f"rig.dispenser.dispense_on={rng.choice(['next_beat', 'next_downbeat'])}",
                f"rig.training.successes_to_level_up={rng.randint(1, 20)}",
                *(f"rig.dispenser.{k}={v}" for k, v in caps.items())]
        cfg = load_config(None, PORTS + sets)
        node = RigNode(cfg, output=RecordingOutput(clock), clock=clock, pin_factory=SimPinFactory(clock), record=False)
        node.beats.start(1.0)
        for _ in range(rng.randint(0, 30)):  # manual and brain-style requests at random times, on top of training
            node.timeline.at(rng.uniform(0, 600), node.dispenser.request, rng.choice(["manual", "brain"]))
        node.timeline.advance_to(rng.uniform(60, 900))
        pulses = node.devices.factory.outputs[cfg.rig.dispenser.pin].pulses()
        node.close()
        treats += len(pulses)
        violations += len(pulses) > caps["max_per_session"]
        violations += sum(1 for a, b in zip(pulses, pulses[1:]) if b - a < caps["min_interval_s"] - 1e-9)
        violations += sum(1 for p in pulses if sum(1 for q in pulses if 0 <= p - q < 60) > caps["max_per_minute"])
    return n, treats, violations




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--png", help="also draw the simulated pet's progress across sessions here")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    lat = [x * 1000 for x in marker_latency(100 if args.quick else 500)]
    table("marker: press → MIDI out call (ms)", ["presses", "p50", "p99", "max"],
          [[len(lat), pct(lat, 0.5), pct(lat, 0.99), max(lat)]])

    root = Path(tempfile.mkdtemp())
    rows = training(5.0, 6, root)  # 30 minutes as six 5-minute sessions, progress carried between them
    table("learning sim pet: 30 minutes as 6 sessions of 5 (caps 8 s / 4 per minute / 25 per session)",
          ["session", "level", "trials", "earned", "treats", "refused", "held back", "pet p(on beat)"],
          [[r["session"], f"{r['level_start']}→{r['level_end']} (max {r['max_level']})", r["trials"], r["earned"],
            r["dispensed"], r["refused"], r["held_back"], f"{r['pet_on_beat_end']:.2f}"] for r in rows])
    asked = sum(r["dispensed"] + r["refused"] for r in rows)
    refused = sum(r["refused"] for r in rows)
    print(f"treat requests refused by the caps: {refused} of {asked} ({refused / max(1, asked):.1%}); "
          f"highest level reached: {max(r['max_level'] for r in rows)}")
    if args.png:
        from rig.progress import draw_progress
        from rig.progress import PetProgress

        draw_progress(PetProgress.load(root, "bench"), Path(args.png))
        print(f"progress plot: {args.png}")

    n, treats, violations = random_sessions(20 if args.quick else 100, random.Random(7))
    table("caps under random configs (random caps, tempo, pet, levels, extra manual/brain requests)",
          ["sessions", "treats dispensed", "cap violations"], [[n, treats, violations]])


if __name__ == "__main__":
    main()
