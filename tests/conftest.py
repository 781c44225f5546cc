"""Shared fixtures: free ports, the CLI as a subprocess, a JACK server for real MIDI ports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """A real JACK server with the dummy driver, so rtmidi opens real MIDI ports."""
    if not shutil.which("jackd"):
        pytest.fail("jackd is not installed: run `make test` (it installs jackd2) or apt-get install jackd2")
    name = f"neurojam-test-{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    # jackd writes a line per graph error (tens of kB a minute under load): to a file, never an unread pipe,
    # whose full 64 kB buffer blocks the server and with it every MIDI port of the suite (CI hung so).
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    time.sleep(1.0)
    if proc.poll() is not None:
        pytest.fail(f"jackd did not start: {log.read_text(errors='replace')[-500:]}")
    yield name
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
