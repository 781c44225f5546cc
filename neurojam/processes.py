"""Starting and stopping the nodes as processes: what the demo, the lab, the tests and the benches share.

A brain is ready when it answers a ping over the wire (:func:`bridge.link.brain_ready`), a stage when its page
answers over HTTP; nothing here reads what a node prints to decide that.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from bridge.link import brain_ready
from bridge.security import Security

NEUROJAM = [sys.executable, "-m", "neurojam.cli"]


class NodeDidNotStart(RuntimeError):
    """A node exited or stayed silent while it was awaited; the message holds the end of its log."""


def free_port_pair() -> int:
    """A free loopback port whose next port is free too (a brain binds both)."""
    return _free_ports(2)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()


def _free_ports(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports, below the kernel's ephemeral range: a port the kernel
    hands out itself (bind to 0) can be taken by any outgoing connection before the node binds it, which made
    a brain fail to start now and then ("Address already in use") while other nodes were connecting."""
    low = min(_ephemeral_low(), 65000)
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(max(1024, low - 12000), low - n)
        if any(p in _handed_out for p in range(port, port + n)):
            continue
        try:
            for p in range(port, port + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        _handed_out.update(range(port, port + n))
        return port
    raise RuntimeError("no free TCP ports on loopback")


def port_args(port: int) -> list[str]:
    return ["--set", f"bridge.events_port={port}", "--set", f"bridge.commands_port={port + 1}"]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Ctrl-C a node (it cleans up: notes off, pin low, session closed), kill it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def _tail(log: Path | None, proc: subprocess.Popen) -> str:
    if log is not None and log.exists():
        return log.read_text()[-2000:]
    if proc.stdout is not None and proc.poll() is not None:
        return proc.stdout.read()[-2000:]
    return ""


def wait_brain(proc: subprocess.Popen, port: int, *, timeout_s: float = 120.0, log: Path | None = None,
               host: str = "127.0.0.1", security: Security | None = None, commands_port: int | None = None) -> None:
    """Until the brain on ``port`` (commands on ``port + 1`` unless told) answers a ping; NodeDidNotStart (with its
    log's end) if it dies or never does. ``security``: a CURVE client's, when the brain wants keys."""
    if not brain_ready(host, port, commands_port or port + 1, timeout_s, security=security,
                       stop=lambda: proc.poll() is not None):
        raise NodeDidNotStart(f"the brain did not start (exit {proc.poll()}):\n{_tail(log, proc)}")


def start_brain(port: int, *args: str, log: Path | None = None, timeout_s: float = 120.0, wait: bool = True,
                cwd: Path | None = None, security: Security | None = None) -> subprocess.Popen:
    """``neurojam brain`` on loopback ``port``/``port + 1`` with ``args``; its output to ``log`` (else a pipe)."""
    out: IO | int = open(log, "w") if log is not None else subprocess.PIPE
    proc = subprocess.Popen([*NEUROJAM, "brain", *port_args(port), *args], stdout=out, stderr=subprocess.STDOUT,
                            text=True, cwd=cwd)
    if wait:
        try:
            wait_brain(proc, port, timeout_s=timeout_s, log=log, security=security)
        except BaseException:
            stop_process(proc)
            raise
    return proc


def wait_http(url: str, proc: subprocess.Popen, *, timeout_s: float = 30.0, log: Path | None = None) -> None:
    """Until ``url`` answers (any HTTP status: the server is up); NodeDidNotStart if the process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise NodeDidNotStart(f"{url} did not answer (exit {proc.poll()}):\n{_tail(log, proc)}")


def start_stage(port: int, stage_port: int, *args: str, log: Path, timeout_s: float = 30.0) -> tuple[subprocess.Popen, str]:
    """``neurojam stage`` on ``stage_port`` watching the brain on ``port``; (process, the URL it printed) once
    its page answers (the URL carries the token a LAN stage wants)."""
    proc = subprocess.Popen([*NEUROJAM, "stage", "--port", str(stage_port), *port_args(port), *args],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{stage_port}/", proc, timeout_s=timeout_s, log=log)
    except BaseException:
        stop_process(proc)
        raise
    printed = [w for w in log.read_text().split() if w.startswith("http")]
    return proc, printed[0] if printed else f"http://127.0.0.1:{stage_port}/"


def free_port() -> int:
    """A free loopback port (see :func:`_free_ports`)."""
    return _free_ports(1)
