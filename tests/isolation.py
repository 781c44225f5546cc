"""A suite that cannot hang: tests that open real MIDI ports run each in a child pytest under a hard kill.

Why: a native thread (JACK's, a C library's) that dies holding the interpreter's lock leaves every Python thread
waiting for good, and then neither pytest-timeout's signal nor its thread can act (both need that lock). So:

* every test that uses the ``jack_server`` fixture runs in a child ``pytest`` process of its own, sharing this
  run's JACK server; a crash there fails that test (with the child's output), not the run;
* in every process, a C-level watchdog (``faulthandler.dump_traceback_later``, which needs no interpreter lock)
  prints the stack of every thread and exits once a test overruns pytest-timeout's limit by ``BACKSTOP_S``;
* the parent kills a child that outlives even that, and reports the test as hung with whatever it printed.
"""

from __future__ import annotations

import faulthandler
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _pytest.reports import TestReport

CHILD_ENV = "NEUROJAM_TEST_CHILD"
"""Set in a child: run the test here, do not isolate again."""
JACK_ENV = "NEUROJAM_TEST_JACK"
"""The JACK server a child's ``jack_server`` fixture uses instead of starting one."""
BACKSTOP_S = float(os.environ.get("NEUROJAM_TEST_BACKSTOP_S", "30"))
"""How long past pytest-timeout's limit the C watchdog waits before it prints every stack and exits."""
KILL_S = 60
"""How long past the limit the parent waits before it kills a child."""


def limit_of(item: pytest.Item) -> float:
    """The test's pytest-timeout limit (its marker's, else the ini's), 300 s if none is set."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    value = item.config.getini("timeout")
    return float(value) if value else 300.0


def needs_child(item: pytest.Item) -> bool:
    return "jack_server" in getattr(item, "fixturenames", ()) and not os.environ.get(CHILD_ENV)


_stderr_fd: int | None = None


def keep_stderr() -> None:
    """A copy of the terminal's stderr, taken before pytest captures fd 2 for a test: a test's captured output is
    lost when the watchdog ends the process, and the stacks must not be."""
    global _stderr_fd
    if _stderr_fd is None:
        _stderr_fd = os.dup(sys.__stderr__.fileno())


def arm_backstop(seconds: float) -> None:
    faulthandler.dump_traceback_later(seconds, exit=True, file=_stderr_fd if _stderr_fd is not None else sys.__stderr__)


def disarm_backstop() -> None:
    faulthandler.cancel_dump_traceback_later()


class JackServer:
    """One ``jackd -d dummy`` for a whole test run, started when the first test asks for it."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None

    def start(self) -> str:
        if self.name is not None:
            return self.name
        if os.environ.get(JACK_ENV):
            self.name = os.environ[JACK_ENV]
            return self.name
        if not shutil.which("jackd"):
            pytest.fail("jackd is not installed: run `make test` (it installs jackd2) or apt-get install jackd2")
        name = f"neurojam-test-{os.getpid()}"
        env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
        # jackd writes a line per graph error (tens of kB a minute under load): to a file, never an unread pipe,
        # whose full 64 kB buffer blocks the server and with it every MIDI port of the suite (CI hung so).
        self.log = Path(tempfile.mkdtemp(prefix="neurojam-jack-")) / "jackd.log"
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000",
                                          "-p", "256"], stdout=sink, stderr=subprocess.STDOUT, env=env)
        # ready when a client can connect (a fixed sleep was too short on a loaded machine: the first test's ports
        # then found no server)
        ready = shutil.which("jack_wait") and subprocess.run(
            ["jack_wait", "-s", name, "-w", "-t", "30"], env={**env, "JACK_NO_START_SERVER": "1"}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=40).returncode == 0
        if not ready:
            time.sleep(1.0)
        if self.proc.poll() is not None:
            pytest.fail(f"jackd did not start: {self.log.read_text(errors='replace')[-500:]}")
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        self.name = name
        return name

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


JACK = JackServer()


def _outcome(rc: int, output: str) -> tuple[str, str]:
    """(pytest outcome, what happened) from a child's exit status and output."""
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output[-2000:]))
    if rc == 0:
        if counts.get("skipped") and not counts.get("passed"):
            return "skipped", "skipped in its child process"
        return "passed", ""
    if rc == 1 and "Timeout (" in output:
        return "failed", "hung: the watchdog printed every thread's stack and ended the child (below)"
    if rc < 0 or rc > 128:
        number = -rc if rc < 0 else rc - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return "failed", f"crashed: the child process died of {name}"
    if rc == 1:
        return "failed", ""
    return "failed", f"the child pytest ended with exit status {rc}"


def run_in_child(item: pytest.Item) -> list[TestReport]:
    """Run one test in a child pytest with this run's JACK server; its reports, as if it ran here."""
    limit = limit_of(item)
    server = JACK.start()
    env = {**os.environ, CHILD_ENV: "1", JACK_ENV: server, "JACK_DEFAULT_SERVER": server,
           "JACK_NO_START_SERVER": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-o", f"timeout={limit}",
           "--rootdir", str(item.config.rootpath), item.nodeid]
    started = time.time()
    try:
        done = subprocess.run(cmd, cwd=item.config.rootpath, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=limit + KILL_S)
        outcome, what = _outcome(done.returncode, done.stdout)
        output = done.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.output or ""
        output = out.decode(errors="replace") if isinstance(out, bytes) else out
        outcome, what = "failed", f"hung: killed after {limit + KILL_S:.0f} s (pytest-timeout and the watchdog did not act)"
    stopped = time.time()
    keywords = {name: 1 for name in item.keywords}
    if outcome == "skipped":
        path, line, _ = item.location
        longrepr = (str(path), (line or 0) + 1, what)
    elif outcome == "failed":
        longrepr = f"{what}\n--- the child process's output ---\n{output[-20000:]}" if what else output[-20000:]
    else:
        longrepr = None

    def report(when: str, outcome_: str, longrepr_=None, duration: float = 0.0) -> TestReport:
        return TestReport(item.nodeid, item.location, keywords, outcome_, longrepr_, when,
                          duration=duration, start=started, stop=stopped)

    return [report("setup", "passed"), report("call", outcome, longrepr, stopped - started),
            report("teardown", "passed")]


# -- the hooks and the fixture (tests/conftest.py imports them) ---------------------------------------------
@pytest.fixture(scope="session")
def jack_server():
    """A real JACK server with the dummy driver, so rtmidi opens real MIDI ports. A test that uses it runs in a
    child process of its own (see above), which shares the run's one server."""
    yield JACK.start()


def pytest_configure(config):
    keep_stderr()  # before pytest captures fd 2 for each test


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Real-MIDI tests run in a child pytest under a hard kill (see above); every test here under a
    C-level watchdog that prints every thread's stack and exits if the test outlives pytest-timeout."""
    limit = limit_of(item)
    if needs_child(item):
        arm_backstop(limit + KILL_S + 60)  # the child is killed first
        try:
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            for report in run_in_child(item):
                item.ihook.pytest_runtest_logreport(report=report)
            item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        finally:
            disarm_backstop()
        return True
    arm_backstop(limit + BACKSTOP_S)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """No pytest-timeout timer here for a test that runs in a child: the child has its own, and a kill behind it."""
    return True if needs_child(item) else None


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item):
    return True if needs_child(item) else None


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid, location):
    disarm_backstop()


def pytest_sessionfinish(session, exitstatus):
    JACK.stop()
