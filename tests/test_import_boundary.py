"""The layout's rules, checked on the real import graph.

- The Pi installs only neurojam[rig]: rig/, bridge/, recording/ and core/ never pull in torch.
- The graph reads top-down: CLI (neurojam/) → nodes (rig/, brain/) → sessions (recording/) → wire (bridge/)
  → config/errors (core/). Nothing below imports what sits above it.
- ``import rig.node`` works from any working directory.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

HEAVY = ("torch", "transformers", "transformer_lens")
PI_PACKAGES = ("core", "bridge", "recording", "rig")
NO_TORCH = (*PI_PACKAGES, "stage")
"""The stage runs on any laptop beside the brain: it too never loads torch."""
LAYERS = {"core": 0, "bridge": 1, "recording": 2, "rig": 3, "brain": 3, "stage": 3, "neurojam": 4}
"""Each package may import its own layer's siblings only where allowed below, and anything beneath it."""
SIBLINGS_ALLOWED: set[tuple[str, str]] = set()
"""(importer, imported) pairs on one layer that may import each other: none (rig, brain and stage talk over the
wire)."""


def _modules(package: str) -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for p in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Top-level package names this file imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("module", [m for pkg in NO_TORCH for m in _modules(pkg)])
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


def layering_violations(root: Path = ROOT) -> list[str]:
    bad = []
    for package, layer in LAYERS.items():
        for path in (root / package).rglob("*.py"):
            for imported in _imports(path) & LAYERS.keys():
                if imported == package:
                    continue
                if LAYERS[imported] > layer or (LAYERS[imported] == layer and
                                                (package, imported) not in SIBLINGS_ALLOWED):
                    bad.append(f"{path.relative_to(root)} imports {imported}")
    return bad


def test_the_import_graph_reads_top_down():
    assert layering_violations() == []


def test_the_layering_check_can_fail(tmp_path):
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir()
    (tmp_path / "rig" / "bad.py").write_text("def f():\n    from neurojam.cli import main\n")
    (tmp_path / "bridge" / "bad.py").write_text("import recording.log\n")
    assert sorted(layering_violations(tmp_path)) == ["bridge/bad.py imports recording", "rig/bad.py imports neurojam"]


def test_rig_node_imports_from_any_directory(tmp_path):
    code = "import rig.node, rig.devices; print('ok')"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


EXPERIMENTS = ("brain/science/patching.py", "brain/corruption.py", "brain/science/corruption_effects.py", "brain/science/results.py")
"""Science on recorded sessions: it must run without the live node (no sockets, no stage feed)."""


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_experiments_do_not_import_the_live_node(path):
    tree = ast.parse((ROOT / path).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not modules & {"brain.live.node", "brain.live.stage_feed", "brain.live.replay", "bridge.link"}, path
