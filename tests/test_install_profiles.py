"""Every command, in each install a user has: the Pi's and the brain image's.

A Pi installs ``neurojam[rig,audio]`` (deploy/rig.Dockerfile) and the brain image ``neurojam[brain,stage]``
(deploy/brain.Dockerfile); the rest of the suite runs with everything installed. Here each command runs with a real
example in an interpreter that hides every package its install would not have (tests/profile_site, inherited by the
processes a command starts): it works, or it says in one line which extra to install. Never a traceback.

The extras are read from the Dockerfiles and pyproject.toml, and what they bring from the installed packages'
own requirements, so a new import that an install lacks fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from neurojam.extras import EXTRA_OF_MODULE
from neurojam.processes import free_port_pair
from tests.conftest import ROOT, steer_a_running_brain_and_watch_its_stage

PROJECT_PACKAGES = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"pip", "setuptools", "_distutils_hack",
                                                                          "pkg_resources"}
ALWAYS_THERE = {"neurojam", "pip", "setuptools", "wheel"}
"""Distributions any virtual environment with neurojam has."""
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def image_extras(image: str) -> list[str]:
    """The extras a deploy image installs, from its Dockerfile's `pip install ".[a,b]"`."""
    text = (ROOT / "deploy" / f"{image}.Dockerfile").read_text()
    return re.search(r'pip install [^\n]*"\.\[([\w,]+)\]"', text).group(1).split(",")


def installed_with(extras: list[str]) -> set[str]:
    """Canonical names of every distribution `pip install '.[extras]'` brings, followed through requirements."""
    todo = [Requirement(r) for r in PYPROJECT["dependencies"]]
    wanted = list(extras)
    while wanted:
        for r in PYPROJECT["optional-dependencies"][wanted.pop()]:
            req = Requirement(r)
            if canonicalize_name(req.name) == "neurojam":
                wanted += list(req.extras)
            elif req.marker is None or req.marker.evaluate():
                todo.append(req)
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:  # RPi.GPIO off a Pi, a platform's optional wheel
            continue
        seen.add(name)
        for r in dist.requires or []:
            sub = Requirement(r)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return seen


def profile_env(extras: list[str]) -> dict[str, str]:
    allowed = installed_with(extras) | ALWAYS_THERE
    hidden_modules = {m for m, dists in metadata.packages_distributions().items()
                      if "/" not in m and m not in PROJECT_PACKAGES
                      and not any(canonicalize_name(d) in allowed for d in dists)}
    hidden_dists = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()} - allowed
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'profile_site'}{os.pathsep}{ROOT}",
            "NEUROJAM_TEST_BLOCKED": ",".join(sorted(hidden_modules)),
            "NEUROJAM_TEST_BLOCKED_DISTS": ",".join(sorted(hidden_dists))}


def run_in(env: dict, cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurojam.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def each_in(env: dict, cwd: Path, calls: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda c: run_in(env, cwd, *c), calls))


def works(r: subprocess.CompletedProcess, call) -> None:
    if call[0] == "doctor":  # it exits 1 when a check fails, and this container has no MIDI system or brain
        assert r.returncode in (0, 1) and "neurojam doctor" in r.stdout and "Traceback" not in r.stderr, r.stderr
        return
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"{call}: rc {r.returncode}\n{r.stdout[-800:]}\n{r.stderr[-2500:]}"


def asks_for(extra: str, r: subprocess.CompletedProcess, call) -> None:
    said = [line for line in r.stderr.splitlines() if f"pip install 'neurojam[{extra}]'" in line]
    assert r.returncode != 0 and said and "Traceback" not in r.stderr, f"{call}: rc {r.returncode}\n{r.stderr[-2500:]}"


def test_the_table_of_extras_matches_pyproject():
    """Every package an extra brings is named with that extra, so a missing one gets the right `pip install`."""
    by_dist = {}
    for module, dists in metadata.packages_distributions().items():
        for d in dists:
            by_dist.setdefault(canonicalize_name(d), set()).add(module)
    wrong = []
    for extra in ("rig", "sync", "audio", "brain", "stage"):
        for r in PYPROJECT["optional-dependencies"][extra]:
            req = Requirement(r)
            modules = by_dist.get(canonicalize_name(req.name), {req.name.split(".")[0]})
            named = {EXTRA_OF_MODULE[m] for m in modules if m in EXTRA_OF_MODULE}
            if named != {extra}:  # the package's own modules (torch's functorch too) say no other extra
                wrong.append(f"{req.name} ({', '.join(sorted(modules))}) → {sorted(named)}, not {extra}")
    assert wrong == []


def test_a_hidden_package_is_not_there_and_the_rest_is(tmp_path):
    env = profile_env(image_extras("rig"))
    code = ("import importlib.util, importlib.metadata as m, zmq, mido, rtmidi; "
            "print(importlib.util.find_spec('torch'), [d for d in ('torch', 'numpy') if any("
            "x.metadata['Name'] == d for x in m.distributions())]); import numpy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.stdout.strip() == "None []" and "No module named 'numpy'" in r.stderr, r.stdout + r.stderr
    full = subprocess.run([sys.executable, "-c", "import numpy"], capture_output=True, cwd=tmp_path, timeout=60)
    assert full.returncode == 0


def test_the_pi_install_runs_the_rigs_commands_and_names_the_extra_for_the_rest(tmp_path):
    env = profile_env(image_extras("rig"))
    assert "torch" in env["NEUROJAM_TEST_BLOCKED"].split(",") and "rtmidi" not in env["NEUROJAM_TEST_BLOCKED"]
    session = tmp_path / "sessions" / "jam"
    first = ("rig", "--seconds", "4", "--session", str(session), "--human", str(ROOT / "configs/melodies/soldiers-joy.mid"),
             "--set", "rig.sim_pet.enabled=true", "--set", "rig.training.pet=rex")
    works(run_in(env, tmp_path, *first), first)
    (tmp_path / "mine.yaml").write_text("rig:\n  tempo_bpm: 96\n")
    ok = [("export", str(session), "--midi", str(tmp_path / "jam.mid")),
          ("sessions", str(tmp_path / "sessions")),
          ("bridge", "stats", str(session)),
          ("pet", "rex", "--dir", str(tmp_path / "sessions")),
          ("keys", "init", "--node", "rig", "--dir", str(tmp_path / "keys")),
          ("config", "show"), ("config", "check", str(tmp_path / "mine.yaml")), ("config", "schema"),
          ("doctor", "--node", "both"),
          ("osc", "monitor", "--seconds", "1", "--port", str(free_port_pair())),
          ("bridge", "selftest", "--count", "500", "--port", str(free_port_pair()))]
    needs = [(("demo", "--seconds", "5", "--no-view", "--out", str(tmp_path / "demo")), "brain"),
             (("brain", "--seconds", "2"), "brain"),
             (("replay", str(session)), "brain"),
             (("score", str(session)), "brain"),
             (("report", str(session)), "brain"),
             (("neuron", "ablate", "1.3", str(session)), "brain"),
             (("model", "info"), "brain"),
             (("stage", "--seconds", "1"), "stage"),
             (("study", str(tmp_path / "mine.yaml")), "study")]
    results = each_in(env, tmp_path, ok + [c for c, _ in needs])
    for call, r in zip(ok, results):
        works(r, call)
    for (call, extra), r in zip(needs, results[len(ok):]):
        asks_for(extra, r, call)
    assert (tmp_path / "jam.mid").stat().st_size > 100


def test_the_brain_image_runs_the_brains_commands_on_a_model_folder_of_its_own(tmp_path):
    """The brain image's commands, on a user's model folder (stats computed first, as the README says)."""
    env = profile_env(image_extras("brain"))
    assert "rtmidi" in env["NEUROJAM_TEST_BLOCKED"].split(",") and "torch" not in env["NEUROJAM_TEST_BLOCKED"]
    mine = tmp_path / "my-model"
    mine.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(ROOT / "brain" / "models" / "notes-default" / name, mine)
    works(run_in(env, tmp_path, "model", "stats", "--model", str(mine), "--limit", "60", "--tokens", "30000"),
          "model stats")
    assert (mine / "neuron_quantiles.safetensors").exists()
    demo = ("demo", "--seconds", "8", "--no-view", "--model", str(mine), "--out", str(tmp_path / "demo"))
    works(run_in(env, tmp_path, *demo, timeout=300), demo)
    session = str(tmp_path / "demo" / "session")
    texts = tmp_path / "texts.txt"
    texts.write_text("C4 D4 E4 F4 | G4 A4 B4 C5 |\nE4 E4 F4 G4 | G4 F4 E4 D4 |\n")
    ok = [("replay", session, "--model", str(mine)),
          ("score", session),
          ("report", session, "--out", str(tmp_path / "report.html")),
          ("neuron", "ablate", "1.3", session, "--model", str(mine), "--json"),
          ("neuron", "attribute", session, "--event", "5", "--model", str(mine), "--json"),
          ("neuron", "test", "0.1", "--match", str(texts), "--nomatch", str(texts), "--model", str(mine)),
          ("model", "info", "--model", str(mine), "--short"),
          ("export", session, "--midi", str(tmp_path / "jam.mid")),
          ("doctor", "--node", "brain"),
          ("rig", "--seconds", "2", "--session", str(tmp_path / "rig-session"))]  # no MIDI here: it says so and plays on
    results = each_in(env, tmp_path, ok + [("study", str(texts))])
    for call, r in zip(ok, results):
        works(r, call)
    asks_for("study", results[-1], "study")

    assert "1.3" in steer_a_running_brain_and_watch_its_stage(str(mine), env, tmp_path)
