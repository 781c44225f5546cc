"""Shared fixtures: free ports, the CLI as a subprocess, a JACK server for real MIDI ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurojam.processes import free_port_pair  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = json.loads((ROOT / "brain" / "models" / "notes-default" / "config.json").read_text())
"""The shipped model's shape, read from its files, so range checks follow the weights."""
LAYERS_VALID = f"valid: 0..{DEFAULT_MODEL['n_layers'] - 1}"
NEURONS_VALID = f"valid: 0..{DEFAULT_MODEL['d_mlp'] - 1}"


@pytest.fixture(autouse=True, scope="session")
def _own_runtime_dir(tmp_path_factory):
    """A running demo's file (neurojam/runtime.py) goes to a folder of this test run, never the user's."""
    os.environ["NEUROJAM_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))


@pytest.fixture
def ports() -> int:
    return free_port_pair()


def run_cli(*args: str, timeout: float = 120, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "neurojam.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def run_cli_each(calls: list[tuple[str, ...]], timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Independent CLI runs side by side (each mostly waits on its own imports), results in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run_cli(*args, timeout=timeout), calls))


def steer_a_running_brain_and_watch_its_stage(model: str, env: dict, cwd: Path) -> str:
    """`neurojam brain --model M`, then `neurojam stage` and `neurojam steer` against it, as a user runs them in
    three terminals. Returns steer's answer; fails on a traceback in any of them."""
    import time
    import urllib.request

    port, web = free_port_pair(), free_port_pair()
    bridge = ["--set", f"bridge.events_port={port}", "--set", f"bridge.commands_port={port + 1}"]
    start = [sys.executable, "-m", "neurojam.cli"]
    brain = subprocess.Popen([*start, "brain", "--model", model, "--seconds", "90", *bridge], env=env, cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stage = subprocess.Popen([*start, "stage", "--port", str(web), "--seconds", "90", *bridge], env=env, cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # the brain answers once its model is loaded
            steer = subprocess.run([*start, "steer", "1.3", "0", "--timeout", "3", *bridge], capture_output=True,
                                   text=True, env=env, cwd=cwd, timeout=60)
            if steer.returncode == 0 or time.monotonic() > deadline or brain.poll() is not None:
                break
        assert steer.returncode == 0 and "Traceback" not in steer.stderr, steer.stdout + steer.stderr
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=2) as page:
                    assert "neurojam" in page.read().decode().lower()
                    break
            except OSError:
                assert time.monotonic() < deadline and stage.poll() is None, stage.communicate()[1][-2000:]
                time.sleep(0.3)
    finally:
        for p in (brain, stage):
            p.terminate()
        for p in (brain, stage):
            _, err = p.communicate(timeout=30)
            assert "Traceback" not in err, err[-2500:]
    return steer.stdout


# A real JACK server for real MIDI ports, and the hooks that run each test using it in a child process under a
# hard kill, with a C-level watchdog on every test (tests/isolation.py says why).
from tests.isolation import (jack_server, pytest_configure, pytest_runtest_logfinish,  # noqa: E402,F401
                             pytest_runtest_protocol, pytest_sessionfinish, pytest_timeout_cancel_timer,
                             pytest_timeout_set_timer)
