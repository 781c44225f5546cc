"""Playing with other gear: Ableton Link phase, MIDI clock out jitter, OSC latency.

    python bench/sync.py [--seconds 60] [--with-demo] [--together]

``--with-demo`` runs a ``neurojam demo`` (rig, brain, model: the load of a jam on this machine) for the whole bench;
``--together`` measures Link and the MIDI clock at the same time, in two processes (a 10-minute run takes 10 minutes).
Issue 41's targets, over 10 minutes with a demo running: tick interval error max < 2 ms as sent, < 3 ms captured on the
JACK port, no missing or doubled tick; Link p99 < 2 ms; OSC p99 < 2 ms.

Targets (issue 30): the rig and a second Link peer (another process) agree on beat phase within 2 ms p99 over 60 s,
through a tempo change on either side; MIDI clock out tick jitter p99 < 1 ms at 120 BPM over 60 s, captured on a
JACK dummy port (period 32 frames at 48 kHz, 0.67 ms) with JACK's frame timestamps; OSC event → UDP packet
received p99 < 2 ms, and no effect on the pad → MIDI out p99 (< 2 ms).
"""

from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, pct, table

from bridge.messages import Tempo
from neurojam.config import load_config
from rig.midi_io import RecordingOutput
from rig.node import RigNode

PEER = """
import json, sys, time, link
seconds, change_at, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
peer = link.Link(120.0); peer.enabled = True
samples, start, changed = [], time.monotonic(), False
while time.monotonic() - start < seconds:
    now = time.monotonic()
    state = peer.captureSessionState()
    samples.append((now, state.beatAtTime(peer.clock().micros(), 4), state.tempo()))
    if not changed and now - start > change_at:
        state.setTempo(100.0, peer.clock().micros()); peer.commitSessionState(state); changed = True
    time.sleep(0.001)
json.dump(samples, open(out, "w"))
"""


PORT = 47100 + 2 * (os.getpid() % 400)  # two bench processes side by side (--together) never share a port


def rig_node(*sets: str, output=None) -> RigNode:
    cfg = load_config(None, [f"bridge.events_port={PORT + 1}", f"bridge.commands_port={PORT + 2}",
                             f"session.dir={tempfile.mkdtemp()}", "rig.training.enabled=false",
                             "rig.midi.virtual_input=null", *sets])
    return RigNode(cfg, output=output if output is not None else RecordingOutput(), record=False)


def link_phase(seconds: float) -> list[list]:
    out = Path(tempfile.mkdtemp()) / "peer.json"
    peer = subprocess.Popen([sys.executable, "-c", PEER, str(seconds + 4), str(seconds / 3 + 2), str(out)])
    time.sleep(1.5)
    node = rig_node("rig.sync.source=link")
    beats: list[tuple[int, float]] = []
    node.beats.listeners.append(lambda i, bar, b, tempo, t: beats.append((i, t)))
    start = time.monotonic()
    node.start()
    changed = False
    while time.monotonic() - start < seconds:
        if not changed and time.monotonic() - start > 2 * seconds / 3:
            node.handle(Tempo(bpm=140.0))  # the stage's tempo, on the rig side
            changed = True
        time.sleep(0.05)
    base, peers = node.devices.link_sync.base, node.devices.link_sync.peers
    node.close()
    peer.wait(timeout=30)
    samples = np.array(json.load(open(out)))
    t, beat, tempo = samples[:, 0], samples[:, 1], samples[:, 2]
    errors = []
    for i, bt in beats:
        if t[0] < bt < t[-1]:
            at = np.interp(bt, t, beat)
            bpm = np.interp(bt, t, tempo)
            phase = (at - (base + i) + 2) % 4 - 2  # Link agrees on phase within the bar, not on beat numbers
            errors.append(abs(phase) * 60 / bpm * 1000)
    return [["Ableton Link: |rig beat − peer's beat| at each rig beat", f"{len(errors)} beats, {peers} peer",
             pct(errors, 0.5), pct(errors, 0.99), max(errors)]]


def start_jack(name: str) -> subprocess.Popen | None:
    if not shutil.which("jackd"):
        return None
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    log = open(Path(tempfile.mkdtemp()) / "jackd.log", "w")  # its xruns: periods the server itself ran late
    proc = subprocess.Popen(["jackd", "--realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "32"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log_path = log.name
    os.environ["JACK_DEFAULT_SERVER"], os.environ["JACK_NO_START_SERVER"] = name, "1"
    time.sleep(1.0)
    return proc if proc.poll() is None else None


CAPTURE = """
import json, sys, time, rtmidi
port, seconds = sys.argv[1], float(sys.argv[2])
# no Python callback: rtmidi's JACK thread queues each event with its frame-time delta and never waits for this
# interpreter's lock (a callback did, and a client late in its JACK cycle loses that cycle's events)
capture = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, queue_size_limit=8192)
deadline = time.monotonic() + 10
while not any(port in n for n in capture.get_ports()) and time.monotonic() < deadline:
    time.sleep(0.05)
capture.open_port(next(i for i, n in enumerate(capture.get_ports()) if port in n))
capture.ignore_types(sysex=True, timing=False, active_sense=True)  # rtmidi drops clock by default
stamps, now = [], 0.0
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    event = capture.get_message()
    if event is None:
        time.sleep(0.005)
        continue
    message, delta = event
    now += delta  # JACK frame time, not when Python got it
    if message[0] == 0xF8:
        stamps.append(now)
capture.close_port()
print(json.dumps(stamps), flush=True)
"""


def machine_floor(seconds: float, priority: int) -> subprocess.Popen | None:
    """cyclictest (rt-tests): one C thread at the timeline's priority waking every millisecond for the same
    seconds. No Python, no lock, no MIDI: how late this machine wakes a real-time thread at all, the floor under
    any tick's lateness (a virtual machine's host can hold a vCPU for milliseconds)."""
    if not shutil.which("cyclictest"):
        return None
    return subprocess.Popen(["cyclictest", f"--priority={max(1, priority)}", "--interval=1000", f"--duration={int(seconds)}",
                             "--quiet", "--mlockall", "--histogram=30000"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def floor_row(floor: subprocess.Popen | None, priority: int) -> list:
    what = f"the machine's floor: a C thread at SCHED_FIFO {priority} woken every 1 ms (cyclictest), lateness"
    if floor is None:
        return [what, "not measured: apt-get install rt-tests", "–", "–", "–"]
    out, _ = floor.communicate(timeout=120)
    hist = [tuple(map(int, line.split()[:2])) for line in out.splitlines() if line[:1].isdigit()]
    us = np.repeat([h[0] for h in hist], [h[1] for h in hist]) / 1000
    if not len(us):
        return [what, "no samples", "–", "–", "–"]
    return [what, f"{len(us)} wake-ups, {int((us >= 2).sum())} ≥ 2 ms", pct(us, 0.5), pct(us, 0.99), float(us.max())]


def clock_jitter(seconds: float) -> list[list]:
    jack = start_jack(f"nj-bench-{os.getpid()}")
    if jack is None:
        return [["MIDI clock out", "not measured: jackd would not start", "–", "–", "–"]]
    try:
        port = f"nj-bench-clock-{os.getpid()}"
        node = rig_node("rig.midi.backend=mido.backends.rtmidi/UNIX_JACK", "rig.sync.clock_out=virtual",
                        f"rig.sync.clock_out_virtual={port}", "rig.tempo_bpm=120")
        sends: list[float] = []
        clock_out = node.devices.clock_out
        send = clock_out.send
        clock_out.send = lambda m: (sends.append(time.monotonic()) if m.type == "clock" else None, send(m))
        capture = subprocess.Popen([sys.executable, "-c", CAPTURE, port, str(seconds + 1)], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)  # another process, as a DAW would be
        assert capture.stdout.readline().strip() == "ready"
        priority = node.config.rig.scheduler.realtime_priority
        floor = machine_floor(seconds, priority)
        node.start()
        time.sleep(seconds)
        node.close()
        stamps = json.loads(capture.communicate(timeout=30)[0].strip().splitlines()[-1])
    finally:
        jack.terminate()
        jack.wait(timeout=10)
        late_us = [int(m.group(1)) for m in re.finditer(r"XRun = (\d+) usec", open(jack.log_path).read())]
    rows = []
    step = 0.5 / 24
    for what, times in (("as sent (the rig's timeline)", sends), ("as captured on the JACK port (frame time)", stamps)):
        intervals = np.diff(times)
        jitter = list(np.abs(intervals - step) * 1000)
        missing = int(sum(round(i / step) - 1 for i in intervals if i > 1.5 * step))
        doubled = int(sum(i < 0.5 * step for i in intervals))
        server = f"; jackd ran late {len(late_us)}× (max {max(late_us, default=0) / 1000:.1f} ms)" if times is stamps \
            else ""
        worst = f", worst at {times[int(np.argmax(jitter)) + 1] - times[0]:.0f} s" if len(jitter) else ""
        rows.append([f"MIDI clock out at 120 BPM, |tick interval − 20.83 ms|, {what}",
                     f"{len(times)} ticks, {missing} missing, {doubled} doubled{worst}{server}", pct(jitter, 0.5),
                     pct(jitter, 0.99), max(jitter)])
    return rows + [floor_row(floor, priority)]


def osc_and_pads(n: int) -> list[list]:
    rows = []
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(1.0)
    target = f"osc.targets=['127.0.0.1:{receiver.getsockname()[1]}']"
    for osc in (False, True):
        node = rig_node(*([target] if osc else []), output=RecordingOutput(time.perf_counter))
        node.timeline.start()
        node.beats.start()
        pin = node.pads[0].pin
        midi_lat, osc_lat = [], []
        for _ in range(n):
            node.output.log.clear()
            t0 = time.perf_counter()
            pin.drive(False)
            midi_lat.append((node.output.log[0][0] - t0) * 1000)
            if osc:
                receiver.recv(2048)  # the /pad packet: sent right after the sound
                osc_lat.append((time.perf_counter() - t0) * 1000)
                receiver.recv(2048)  # and the /note
            time.sleep(0.04)
            pin.drive(True)
            time.sleep(0.04)
        node.close()
        rows.append([f"pad press → MIDI out call, OSC {'on' if osc else 'off'}", f"{n} presses", pct(midi_lat, 0.5),
                     pct(midi_lat, 0.99), max(midi_lat)])
        if osc:
            rows.append(["pad press → its OSC packet received (loopback UDP)", f"{n} presses", pct(osc_lat, 0.5),
                         pct(osc_lat, 0.99), max(osc_lat)])
    receiver.close()
    return rows


SECTIONS = {"link": link_phase, "clock": clock_jitter, "osc": None}


def start_demo(seconds: float) -> subprocess.Popen:
    """A jam on this machine for the whole bench: its rig, brain and model are the load the rig plays beside."""
    out = tempfile.mkdtemp(prefix="nj-sync-demo-")
    demo = subprocess.Popen([sys.executable, "-m", "neurojam.cli", "demo", "--seconds", str(int(seconds)), "--no-view",
                             "--out", out], cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(20)  # the model loaded and the jam playing before anything is measured
    if demo.poll() is not None:
        raise SystemExit(f"the demo ended early (exit {demo.returncode}): run `neurojam demo` alone to see why")
    return demo


def side_by_side(seconds: float) -> list[list]:
    """Link and the clock at once, each in its own process (as a Link peer and a DAW would run beside one rig)."""
    runs = [subprocess.Popen([sys.executable, __file__, "--only", name, "--seconds", str(seconds), "--json"],
                             stdout=subprocess.PIPE, text=True) for name in ("link", "clock")]
    rows = []
    for run in runs:
        out, _ = run.communicate(timeout=seconds * 2 + 120)
        rows += json.loads(out.strip().splitlines()[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--presses", type=int, default=300)
    ap.add_argument("--with-demo", action="store_true", help="a neurojam demo runs on this machine all the while")
    ap.add_argument("--together", action="store_true", help="Link and the clock measured at once, in two processes")
    ap.add_argument("--only", choices=sorted(SECTIONS), help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        rows = osc_and_pads(args.presses) if args.only == "osc" else SECTIONS[args.only](args.seconds)
        print(json.dumps(rows) if args.json else rows)
        return
    print(f"machine: {machine()}")
    demo = start_demo(args.seconds * (1 if args.together else 2) + 120) if args.with_demo else None
    try:
        timed = side_by_side(args.seconds) if args.together else link_phase(args.seconds) + clock_jitter(args.seconds)
        rows = timed + osc_and_pads(args.presses)
        load = "a demo running" if demo is not None else "nothing else running"
        table(f"with other gear ({args.seconds:g} s runs, {load}; tempo changed by the peer at 1/3 and by the rig at "
              "2/3)", ["measure", "n", "p50 ms", "p99 ms", "max ms"], rows)
    finally:
        if demo is not None:
            stop_demo(demo)


def stop_demo(demo: subprocess.Popen) -> None:
    """Not its export (a long jam's audio takes minutes to render): its nodes stopped, its process group ended."""
    import signal

    try:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(timeout=10)


if __name__ == "__main__":
    main()
