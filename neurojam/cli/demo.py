"""``neurojam demo``: the whole lab on one laptop in about 30 seconds.

Two processes on loopback ZeroMQ, exactly as deployed: ``neurojam rig``
(simulated pet on the pads, a bundled public-domain fiddle tune as the human
part through the rig's MIDI path, a simulated treat dispenser) and
``neurojam brain`` (the embedded model, CPU or GPU). A live view tails the
rig's session log. At the end: the session, a .mid, a .wav (FluidSynth) and
the neuron report, with their paths. If the brain dies, the rig plays on and
the demo says so; nothing recorded is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from core.errors import ConfigError
from neurojam.config import load_config, profile_dirs
from neurojam.cli.args import positive_seconds
from neurojam.runtime import Running
from neurojam.processes import NodeDidNotStart, free_port_pair, port_args, start_stage, stop_process, wait_brain

MELODY = Path("melodies") / "soldiers-joy.mid"


def melody_path() -> Path:
    """The demo's human part, from the first configs folder that has it."""
    for d in profile_dirs():
        if (d / MELODY).exists():
            return d / MELODY
    raise ConfigError(f"the demo melody configs/{MELODY} was not found: run from the checkout or set "
                      f"NEUROJAM_CONFIG_DIR to the configs folder.")


class LiveView:
    """What the room sees: beat, last notes per source, top neurons, treats, latency."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.beat = None
        self.notes = {s: deque(maxlen=8) for s in ("pet", "human", "brain")}
        self.totals = {s: 0 for s in ("pet", "human", "brain")}
        self.neurons = None
        self.treats = {"dispensed": 0, "refused": 0}
        self.last_refusal = ""
        self.trials: deque = deque(maxlen=20)
        self.sent_at: dict[int, float] = {}
        self.latency_ms: deque[float] = deque(maxlen=200)
        self.brain_seen = False
        self.started = time.monotonic()

    def feed(self, records) -> None:
        from brain.encoder import note_word as note_label
        from bridge.messages import Accomp, Beat, Neurons, Note, TrainingTrial, TreatResult

        for direction, t, m in records:
            if isinstance(m, Beat):
                self.beat = m
            elif isinstance(m, Note) and m.on:
                source = m.source if m.source in self.notes else "brain"
                self.notes[source].append(note_label(m.note))
                self.totals[source] += 1
                if direction == "out" and m.source != "brain":
                    self.sent_at[m.seq] = m.t
            elif isinstance(m, Neurons):
                self.neurons = m
                self.brain_seen = True
            elif isinstance(m, Accomp) and m.event_seq in self.sent_at:
                self.latency_ms.append((t - self.sent_at.pop(m.event_seq)) * 1000)
            elif isinstance(m, TrainingTrial):
                self.trials.append(m)
            elif isinstance(m, TreatResult):
                self.treats[m.outcome] += 1
                if m.outcome == "refused":
                    self.last_refusal = m.detail

    def render(self):
        from rich.panel import Panel
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        elapsed = time.monotonic() - self.started
        if self.beat:
            dots = " ".join("●" if i == self.beat.beat else "○" for i in range(self.beat.beats_per_bar))
            t.add_row("beat", f"{dots}   bar {self.beat.bar + 1}   {self.beat.tempo_bpm:.0f} BPM")
        for source, colour in (("pet", "yellow"), ("human", "cyan"), ("brain", "magenta")):
            t.add_row(source, f"[{colour}]{' '.join(self.notes[source]) or '–'}[/{colour}]")
        units = self.neurons.units if self.neurons else "neurons"
        if self.neurons and self.neurons.hits:
            from rich.markup import escape

            lines = [f"[bold]{h.layer}.{h.index}[/bold] {h.normalized:4.2f} {escape(h.label)}"
                     for h in self.neurons.hits[:4]]
            t.add_row(units, "\n".join(lines))
        else:
            t.add_row(units, "waiting for the brain…" if not self.brain_seen else "–")
        treat = f"{self.treats['dispensed']} dispensed, {self.treats['refused']} refused"
        if self.last_refusal:
            treat += f" (last: {self.last_refusal})"
        t.add_row("treats", treat)
        if self.trials:
            from recording.jam import trial_strip

            last = self.trials[-1]
            t.add_row("training", f"{last.pet}: level {last.level_after} ({last.level_name})   "
                                  f"{trial_strip(list(self.trials))}")
        if self.latency_ms:
            lat = sorted(self.latency_ms)
            t.add_row("latency", f"event → accompaniment p50 {lat[len(lat) // 2]:.1f} ms, "
                                 f"step {self.neurons.step_ms if self.neurons else 0:.1f} ms")
        return Panel(t, title=f"neurojam demo  {elapsed:4.0f} / {self.seconds:.0f} s", border_style="green")

    def line(self) -> str:
        beat = f"bar {self.beat.bar + 1}" if self.beat else "starting"
        top = self.neurons.hits[0] if self.neurons and self.neurons.hits else None
        unit = "feature" if self.neurons and self.neurons.units == "features" else "neuron"
        neuron = f"top {unit} {top.layer}.{top.index} ({top.label})" if top else f"no {unit}s yet"
        n = self.totals
        return (f"demo: {beat}; notes so far: pet {n['pet']}, human {n['human']}, brain {n['brain']}; {neuron}; "
                f"treats {self.treats['dispensed']}")


def open_stage(port: int, stage_port: int, args: list[str], log_path: Path, console, open_page: bool = True):
    """``--stage``: the web view beside the nodes, watching the same brain; its URL printed (and opened)."""
    import webbrowser

    try:
        proc, url = start_stage(port, stage_port, *args, log=log_path)
    except NodeDidNotStart:
        console.print(f"[yellow]the stage did not start (see {log_path})[/yellow]")
        return None, ""
    console.print(f"[bold]stage[/bold]: {url}")
    if open_page:
        webbrowser.open(url)
    return proc, url


def run_demo(seconds: float = 30.0, out: str | Path | None = None, model: str | None = None, seed: int = 1,
             view: bool = True, extra: list[str] | None = None, rigs: int = 1, stage: bool = False,
             profile: str = "lab") -> int:
    from rich.console import Console
    from rich.live import Live

    from recording.log import BRAIN_SESSION, LOG_NAME, LogTail

    console = Console()
    out_dir = Path(out) if out else Path("demo-out") / time.strftime("%Y%m%dT%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    session = out_dir / "session"
    port = free_port_pair()
    config = load_config(profile, [f"bridge.events_port={port}", f"bridge.commands_port={port + 1}",
                                 *(extra or [])])  # a mistake in the user's --set is told here, before anything starts
    common = port_args(port)
    user = [x for item in extra or [] for x in ("--set", item)]  # last, so that the user's values win
    py = [sys.executable, "-m", "neurojam.cli"]
    brain_cmd = py + ["brain", "--config", profile, *common, "--session", str(out_dir / BRAIN_SESSION)]
    if model:
        brain_cmd += ["--model", model]
    brain_cmd += user
    rig_cmd = py + ["rig", "--config", profile, *common, "--session", str(session), "--seconds", str(seconds),
                    "--human", str(melody_path()), "--set", f"rig.sim_pet.seed={seed}", "--set", "rig.sim_pet.enabled=true",
                    "--set", "rig.training.pet=demo-dog", "--set", "rig.tempo_bpm=112", *user]
    logs = {name: open(out_dir / f"{name}.log", "w") for name in ("brain", "rig")}
    _say_if_silent(config, console)
    console.print(f"[bold]neurojam demo[/bold]: {seconds:.0f} s jam; rig and brain as two processes on "
                  f"tcp://127.0.0.1:{port}/{port + 1}; output in {out_dir}/")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a terminated demo stops its nodes too, like Ctrl-C
    brain = subprocess.Popen(brain_cmd, stdout=logs["brain"], stderr=subprocess.STDOUT)
    stage_proc, stage_url = None, ""
    try:
        if stage:
            stage_proc, stage_url = open_stage(config.bridge.events_port, config.stage.port, user,
                                               out_dir / "stage.log", console)
        with console.status("loading the model…"):
            wait_brain(brain, config.bridge.events_port, commands_port=config.bridge.commands_port,
                       log=out_dir / "brain.log")
    except NodeDidNotStart as exc:
        for proc in (brain, stage_proc):
            if proc is not None:
                stop_process(proc)
        raise SystemExit(f"neurojam: {exc}") from None
    except BaseException:
        for proc in (brain, stage_proc):
            if proc is not None:
                stop_process(proc)
        raise
    rig = subprocess.Popen(rig_cmd, stdout=logs["rig"], stderr=subprocess.STDOUT)
    others = []  # more rigs on the same brain (--rigs N): rig-2, rig-3, ..., each its own pet and session
    for k in range(2, rigs + 1):
        cmd = [x if x != str(session) else str(out_dir / f"session-{k}") for x in rig_cmd]
        cmd += ["--set", f"rig.node_id=rig-{k}", "--set", f"rig.sim_pet.seed={seed + k}",
                "--set", f"rig.training.pet=demo-dog-{k}"]
        logs[f"rig-{k}"] = open(out_dir / f"rig-{k}.log", "w")
        others.append(subprocess.Popen(cmd, stdout=logs[f"rig-{k}"], stderr=subprocess.STDOUT))
    (out_dir / "pids.json").write_text(json.dumps({"brain": brain.pid, "rig": rig.pid,
                                                   "rigs": [p.pid for p in others]}))
    here = Running(pid=os.getpid(), kind="demo", events_port=config.bridge.events_port,
                   commands_port=config.bridge.commands_port, session=str(session.resolve()),
                   out_dir=str(out_dir.resolve()), stage_url=stage_url)
    here.write()  # `neurojam steer`, `stage`, `sessions` and `report` find this demo without flags
    live_view = LiveView(seconds)
    tail = LogTail(session / LOG_NAME)
    brain_died_at = None
    interactive = view and console.is_terminal
    last_line = 0.0
    try:
        with Live(live_view.render(), console=console, refresh_per_second=8, transient=False) if interactive \
                else _Null() as live:
            while rig.poll() is None:
                time.sleep(0.1)
                live_view.feed(tail.read())
                if brain_died_at is None and brain.poll() is not None:
                    brain_died_at = time.monotonic() - live_view.started
                    console.print(f"[red]the brain stopped (exit {brain.returncode}) after {brain_died_at:.1f} s; "
                                  f"the rig plays on and keeps recording[/red]")
                if interactive:
                    live.update(live_view.render())
                elif time.monotonic() - last_line > 5:
                    last_line = time.monotonic()
                    print(live_view.line(), flush=True)
    except KeyboardInterrupt:
        for r in (rig, *others):
            r.send_signal(signal.SIGINT)
        rig.wait(timeout=15)
    finally:
        for other in others:
            try:
                other.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_process(other)
        stop_process(brain)
        if stage_proc is not None:
            stop_process(stage_proc)
        here.remove()
        for f in logs.values():
            f.close()
    live_view.feed(tail.read())
    code = _finish(console, out_dir, session, rig.returncode, brain_died_at)
    for k in range(2, rigs + 1):
        _extra_jam(console, out_dir, k)
    return code


def _say_if_silent(config, console) -> None:
    """Without a MIDI system the rig plays to nobody: say so here, not only in rig.log, with the backend that works."""
    from core.errors import DeviceError
    from rig.midi_io import list_ports

    if config.rig.midi.output is not None or config.rig.midi.backend == "sim":
        return
    try:
        list_ports(config.rig.midi.backend)
    except DeviceError as exc:
        console.print(f"[yellow]not heard live: {exc} The jam is still recorded, exported as MIDI and rendered to "
                      f"WAV.[/yellow]")


def _extra_jam(console, out_dir: Path, k: int) -> None:
    """The jam of rig k (--rigs N): its own session and MIDI file."""
    from core.errors import NeurojamError
    from recording import open_session
    from recording.export import write_midi

    try:
        jam = open_session(out_dir / f"session-{k}").jam
    except NeurojamError as exc:
        console.print(f"[yellow]rig-{k}: no jam ({exc})[/yellow]")
        return
    midi = write_midi(jam, out_dir / f"jam-{k}.mid")
    counts = jam.count_by_source()
    console.print(f"  rig-{k}    {out_dir / f'session-{k}'}: {counts.get('pet', 0)} pet, {counts.get('human', 0)} "
                  f"human, {counts.get('brain', 0)} brain notes → {midi}")


def _stop_on_sigterm(*_) -> None:
    raise KeyboardInterrupt


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _finish(console, out_dir: Path, session: Path, rig_code: int | None, brain_died_at: float | None) -> int:
    from core.errors import NeurojamError
    from recording import open_session
    from recording.export import write_midi
    from recording.fluidsynth import render_wav

    with console.status("writing the MIDI file …") as status:
        jam = open_session(session).jam
        counts = jam.count_by_source()
        midi = write_midi(jam, out_dir / "jam.mid")
        paths = {"session": session, "midi": midi}
        status.update("rendering the audio with FluidSynth …")
        try:
            paths["wav"] = render_wav(midi, out_dir / "jam.wav")
        except NeurojamError as exc:
            console.print(f"[yellow]no audio: {exc}[/yellow]")
        status.update("building the report: the model reads the jam again, then the plots …")
        try:
            from brain.science.report import build_report

            paths["report"] = build_report(session, out_dir / "report.html", progress=False)
        except ModuleNotFoundError:
            pass
        except NeurojamError as exc:
            console.print(f"[yellow]no report: {exc}[/yellow]")
    dispensed = [t for t in jam.treats if t.action == "dispensed"]
    summary = {"pad_presses": len(jam.pad_presses), "pet_notes": counts.get("pet", 0),
               "human_notes": counts.get("human", 0),
               "brain_notes": counts.get("brain", 0), "treats_dispensed": len(dispensed),
               "treats_refused": sum(t.action == "refused" for t in jam.treats),
               "brain_died_at_s": brain_died_at, "rig_exit": rig_code,
               "paths": {k: str(v) for k, v in paths.items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(f"\n[bold]jam over[/bold]: {summary['pad_presses']} pad presses ({summary['pet_notes']} pet notes: a "
                  f"chord pad sounds three), {summary['human_notes']} human notes, "
                  f"{summary['brain_notes']} brain notes, {summary['treats_dispensed']} treats on the beat "
                  f"({summary['treats_refused']} refused by the safety caps)")
    for name, path in paths.items():  # never broken across lines: a path is copied and pasted whole
        console.print(f"  {name:8s} {path}", soft_wrap=True, highlight=False)
    if brain_died_at is not None:
        console.print(f"[yellow]the brain stopped after {brain_died_at:.1f} s; everything the rig played was kept[/yellow]")
    return 0 if rig_code == 0 else 1


def cmd_demo(args: argparse.Namespace) -> int:
    extra = ([f"brain.units={args.units}"] if args.units else []) + list(args.overrides)
    return run_demo(args.seconds, args.out, args.model, args.seed, view=not args.no_view, extra=extra,
                    rigs=args.rigs, stage=args.stage, profile=args.config)


def register(sub, add) -> None:
    p = add("demo", cmd_demo, "a jam on this laptop: simulated pet + a folk tune + the model, as two processes")
    p.add_argument("--seconds", type=positive_seconds, default=30.0, help="how long the jam lasts (default 30)")
    p.add_argument("--out", metavar="DIR", help="where to write the session, .mid, .wav and report (default demo-out/<time>)")
    p.add_argument("--model", default=None, help="model name (default: the embedded notes-default)")
    p.add_argument("--units", choices=("neurons", "features"), default=None,
                   help="what the band plays: the model's neurons (default) or its sparse dictionary's features, each "
                        "labelled by what it reads and what it makes the model expect")
    p.add_argument("--seed", type=int, default=1, help="the simulated pet's seed")
    p.add_argument("--no-view", action="store_true", help="no live terminal view (a status line every 5 s instead)")
    p.add_argument("--rigs", type=int, default=1, choices=range(1, 9), metavar="N",
                   help="simulated rigs on the one brain (1-8): each its own pet, context and jam")
    p.add_argument("--stage", action="store_true", help="also serve the live web page (neurojam stage) and open it")
    p.add_argument("--config", "-c", default="lab", metavar="FILE", help="profile YAML both nodes use (default lab: "
                   "simulated pads, both nodes on this laptop)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key in both nodes, e.g. --set rig.tempo_bpm=100 (repeatable)")
