"""The Pi installs only neurojam[rig]: rig/ and bridge/ must never pull in torch."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("torch", "transformers", "transformer_lens")


@pytest.mark.parametrize("module", ["bridge", "bridge.messages", "bridge.link", "bridge.session", "bridge.export",
                                    "bridge.jam", "bridge.selftest", "rig", "rig.node", "rig.timeline", "rig.keys", "rig.audio", "rig.gpio", "rig.dispenser", "rig.scheduler",
                                    "rig.beat", "rig.midi_io", "rig.pads", "rig.sim", "neurojam.config",
                                    "neurojam.cli"])
def test_module_imports_no_torch(module):
    code = (f"import importlib, sys; importlib.import_module({module!r}); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"{module} imported {r.stdout.strip()}"


def test_the_check_itself_can_fail():
    code = "import sys, brain.models; print(','.join(m for m in ('torch',) if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.strip() == "torch"


def test_the_whole_command_line_parser_imports_no_torch():
    """`neurojam rig --help` on a Pi builds every subcommand's parser: none may pull in torch."""
    code = ("import sys; from neurojam.cli import build_parser; build_parser(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr
