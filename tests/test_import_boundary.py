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
    code = "import sys, brain.stream; print(','.join(m for m in ('torch',) if m in sys.modules))"
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


BRAIN_ROOMS = {"live": {"science", "training"}, "science": {"live"}, "training": {"live"}, "": {"live", "science", "training"}}
"""brain/<room> → the rooms it may not import. The live node never loads training (or the science's evaluation and
plots); the science runs on recorded sessions without the live node; training never touches the live node; the model
layer (brain/*.py) imports none of the three."""
DOORS = {("science", "brain.live.replay")}
"""(room, module) the rule lets through: the science replays a recorded session through the brain core in-process
(the score's controls, studies) by the one replay function, never the node or its sockets."""


def _module_imports(path: Path) -> set[str]:
    """Full dotted names this file imports, at module level, in functions or under TYPE_CHECKING."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def brain_room_violations(root: Path = ROOT) -> list[str]:
    bad = []
    for path in (root / "brain").rglob("*.py"):
        parts = path.relative_to(root / "brain").parts
        room = parts[0] if len(parts) > 1 else ""
        for name in _module_imports(path):
            bits = name.split(".")
            if (room, ".".join(bits[:3])) in DOORS:
                continue
            if bits[0] == "brain" and len(bits) > 1 and bits[1] in BRAIN_ROOMS.get(room, set()):
                bad.append(f"{path.relative_to(root)} imports brain.{bits[1]}")
    return sorted(set(bad))


def test_the_brain_rooms_hold():
    assert brain_room_violations() == []


def test_the_room_check_can_fail(tmp_path):
    for room in ("live", "science", "training"):
        (tmp_path / "brain" / room).mkdir(parents=True)
    (tmp_path / "brain" / "live" / "bad.py").write_text("def f():\n    from brain.training import train\n")
    (tmp_path / "brain" / "science" / "bad.py").write_text("from brain.live.node import BrainNode\n")
    (tmp_path / "brain" / "stream.py").write_text("import brain.science.report\n")
    assert brain_room_violations(tmp_path) == ["brain/live/bad.py imports brain.training",
                                               "brain/science/bad.py imports brain.live",
                                               "brain/stream.py imports brain.science"]


def test_nothing_outside_the_command_line_imports_it():
    """The CLI is the top: libraries, benches and the process helpers never import it (tests of the CLI may)."""
    bad = [f"{p.relative_to(ROOT)}" for p in [*ROOT.glob("*/**/*.py")]
           if p.parts[len(ROOT.parts)] in (*LAYERS, "bench") and "cli" not in p.relative_to(ROOT).parts
           and any(n == "neurojam.cli" or n.startswith("neurojam.cli.") for n in _module_imports(p))]
    assert bad == []


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Cycles among the project's modules, counting every import (a cycle hidden in a function is still one)."""
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for pkg in LAYERS for p in (root / pkg).rglob("*.py")}
    graph = {m: {n for n in _module_imports(p) if n in modules and n != m} for m, p in modules.items()}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles():
    assert import_cycles() == []


def test_the_cycle_check_can_fail(tmp_path):
    (tmp_path / "brain").mkdir()
    (tmp_path / "brain" / "a.py").write_text("from brain.b import x\n")
    (tmp_path / "brain" / "b.py").write_text("def f():\n    import brain.a\n")
    assert import_cycles(tmp_path) == [["brain.a", "brain.b", "brain.a"]]
