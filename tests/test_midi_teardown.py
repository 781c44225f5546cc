"""Closing MIDI ports never takes the process with it (issue 43): ports opened and closed hundreds of times with
notes flowing both ways, and rigs started and closed while a DAW plays into them, in a child process under a
watchdog. On the code before the fix this crashed (a send racing a close) or hung (a Python callback on JACK's
thread, cancelled as its client closed) in every run."""

import subprocess
import sys

from tests.conftest import ROOT

WATCHDOG_S = 150


def test_ports_and_rigs_open_and_close_hundreds_of_times_while_notes_flow(jack_server):
    try:
        done = subprocess.run([sys.executable, "-m", "tests.midi_teardown_stress", "--ports", "200", "--rigs", "50",
                               "--watchdog", str(WATCHDOG_S)], cwd=ROOT, capture_output=True, text=True,
                              errors="replace", timeout=WATCHDOG_S + 30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"hung past its watchdog: {exc.output}") from None
    said = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                     if not line.startswith(("Jack", "Cannot", "jack")))
    assert done.returncode == 0, f"exit status {done.returncode} (negative: a signal; 1 with 'Timeout': hung)\n{said[-6000:]}"
    assert "clean" in done.stdout
    ports, rigs = (line for line in done.stdout.splitlines() if line.startswith(("ports:", "rigs:")))
    assert int(ports.split()[3]) > 1000, ports  # notes did flow while the ports closed
    assert int(rigs.split()[3]) > 50, rigs  # and into the rigs as they closed
