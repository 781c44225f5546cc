"""A study of many synthesized sessions × two models: serial against local Ray, a two-node cluster, a killed worker.

    python bench/study.py [--sessions 100] [--second-model DIR] [--skip-cluster]

Sessions are synthesized from the default model's *test* tunes (never trained on) with the sim pet on the pads, ~30 s
each at 112 BPM. The study: replay + score, and per-session neuron statistics, for each model, plus the cross-model
match over all sessions. Rows it prints:

1. the same study serially in one process (`--serial`) and on local Ray with one worker per core: wall time, ratio;
2. a two-node local cluster (`ray start --head` + `ray start --address` on this machine): the same tables
   (every row but its timestamp);
3. a worker process killed mid-study: the study still completes (Ray retries its task);
4. Ctrl-C (SIGINT) half-way, then the same command again: how many tasks the second run computed;
5. the cross-model match figure: share of the first model's neurons with a best match r ≥ 0.9 in the second.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, table

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def synthesize(root: Path, n: int) -> Path:
    from brain import corpus
    from brain.encoder import word_note
    from brain.models import MODELS_DIR
    from recording.synthetic import write_melody_session

    tunes = [t for t in corpus.load(MODELS_DIR / "notes-default" / "corpus.jsonl.gz") if t["split"] == "test"]
    made = 0
    for i, t in enumerate(tunes):
        notes = [x for x in (word_note(w) for w in t["text"].split()) if x is not None][:112]
        if len(notes) < 64:
            continue
        write_melody_session(root / "sessions" / f"s{made:03d}", [(k * 0.5, 0.5, x) for k, x in enumerate(notes)],
                             pet_every_beats=3, seed=i)
        made += 1
        if made == n:
            break
    return root / "sessions"


def study(spec: Path, out: Path, *extra: str, env: dict | None = None, timeout: float = 3600) -> tuple[float, str]:
    start = time.monotonic()
    r = subprocess.run([PY, "-m", "neurojam.cli", "study", str(spec), "--out", str(out), *extra], capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)
    if r.returncode not in (0, 1):
        print(r.stdout[-2000:], r.stderr[-4000:])
        raise SystemExit(f"study failed ({r.returncode})")
    return time.monotonic() - start, r.stdout


def same(a: Path, b: Path) -> bool:
    from brain.science.study import comparable, read_results

    x, y = comparable(read_results(a)), comparable(read_results(b))
    return len(x) == len(y) and bool((x.round(9) == y.round(9)).all().all())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--second-model", default=None, help="a model folder (default: the shipped model's random twin)")
    ap.add_argument("--skip-cluster", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    root = Path(tempfile.mkdtemp(prefix="neurojam-study-"))
    sessions = synthesize(root, args.sessions)
    second = args.second_model or str(random_twin(root / "twin"))
    spec = root / "study.yaml"
    spec.write_text(f"sessions: ['{sessions}/*']\nmodels: [notes-default, {second}]\n"
                    f"measures: [score, neuron_stats, match]\n")
    rows = []
    t_serial, _ = study(spec, root / "serial", "--serial")
    t_ray, _ = study(spec, root / "ray")
    rows.append(["serial, one process", f"{t_serial:.0f} s", "1.00×", ""])
    rows.append(["local Ray, a worker per core", f"{t_ray:.0f} s", f"{t_serial / t_ray:.2f}×",
                 "identical tables" if same(root / "serial", root / "ray") else "TABLES DIFFER"])
    if not args.skip_cluster:
        rows.append(cluster_row(spec, root, t_serial))
    rows.append(kill_worker_row(spec, root))
    rows.append(interrupt_row(spec, root))
    table(f"a study of {args.sessions} sessions × 2 models (replay + score, neuron statistics, cross-model match)",
          ["run", "wall", "speed-up", "result"], rows)
    from brain.science.study import read_results

    match = read_results(root / "ray", "match")
    print(f"cross-model match: {(match.value >= 0.9).mean():.1%} of notes-default's {len(match)} neurons have a best "
          f"match r ≥ 0.9 in {Path(second).name} (median best r {match.value.median():.2f}) over {args.sessions} "
          f"sessions")


def random_twin(directory: Path) -> Path:
    """The shipped model's shape with its weights permuted (a control: it should match almost nothing)."""
    import shutil

    from safetensors.torch import save_file

    from brain.models import MODELS_DIR, load_model
    from brain.science.controls import random_weights

    shutil.copytree(MODELS_DIR / "notes-default", directory, ignore=shutil.ignore_patterns("neuron_*", "*.png"))
    twin = random_weights(load_model("notes-default", "cpu"), seed=1)
    save_file({k: v.contiguous() for k, v in twin.bridge.state_dict().items()}, str(directory / "model.safetensors"))
    return directory


def cluster_row(spec: Path, root: Path, t_serial: float) -> list[str]:
    ray_bin = str(Path(PY).parent / "ray")
    env = {**os.environ, "RAY_ADDRESS": ""}
    subprocess.run([ray_bin, "start", "--head", "--num-cpus", "1", "--port", "6391", "--include-dashboard", "false"],
                   capture_output=True, env=env, check=True)
    try:
        subprocess.run([ray_bin, "start", "--address", "127.0.0.1:6391", "--num-cpus", "1"], capture_output=True,
                       env=env, check=True)
        t, _ = study(spec, root / "cluster", "--address", "127.0.0.1:6391")
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env)
    return ["two-node local cluster (head + worker, 1 CPU each)", f"{t:.0f} s", f"{t_serial / t:.2f}×",
            "identical tables" if same(root / "serial", root / "cluster") else "TABLES DIFFER"]


def kill_worker_row(spec: Path, root: Path) -> list[str]:
    """Start the study, kill one Ray worker process while tasks run, let it finish."""
    out = root / "killed"
    proc = subprocess.Popen([PY, "-m", "neurojam.cli", "study", str(spec), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(2)
        done = len(list(out.glob("measure=*/*.parquet")))
        if done >= 10:
            ps = subprocess.run(["pgrep", "-f", "ray::run_task"], capture_output=True, text=True).stdout.split()
            if ps:
                killed = int(ps[0])
                os.kill(killed, signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=3600)
    completed = proc.returncode == 0
    identical = same(root / "ray", out)
    line = next((x for x in stdout.splitlines() if x.startswith("study:")), stdout[-200:])
    return ["local Ray, one worker killed mid-study", "", "",
            f"{'completed' if completed else 'DID NOT COMPLETE'} ({line.removeprefix('study: ').split(' in ')[0]}), "
            f"{'identical tables' if identical else 'TABLES DIFFER'} (killed pid {killed})"]


def interrupt_row(spec: Path, root: Path) -> list[str]:
    out = root / "interrupted"
    proc = subprocess.Popen([PY, "-m", "neurojam.cli", "study", str(spec), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(list(out.glob("measure=*/*.parquet"))) < 40 and proc.poll() is None:
        time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    before = len(list(out.glob("measure=*/*.parquet")))
    _, stdout = study(spec, out)
    line = next((x for x in stdout.splitlines() if x.startswith("study:")), stdout[-200:])
    return ["Ctrl-C after ≥ 40 tasks, then the same command", "", "",
            f"{before} kept; the rerun: {line.removeprefix('study: ')}"]


if __name__ == "__main__":
    main()
