"""Which files each Docker image holds, derived from the code: ``python deploy/images.py`` rewrites the COPY lines
of ``deploy/*.Dockerfile`` between their markers, and ``tests/test_deploy.py`` checks they are current and that
each image's entry point imports from exactly its files.

The rig image (the Pi: no torch) gets the Pi's packages whole, and from the others every module its entry points
import at load time, followed through the project's own imports (the composed config's brain and stage sections;
code imported inside a function, such as the brain commands' model code, is not needed on a Pi); the brain image
gets every package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "bridge", "recording", "rig", "brain", "stage", "neurojam")
PI_PACKAGES = ("core", "bridge", "recording", "rig", "neurojam")
"""What the Pi runs, whole (``tests/test_import_boundary.py`` keeps torch out of them)."""
IMAGES = {
    "rig": {"entry": ["neurojam.cli", "neurojam.cli.__main__", "rig.node"], "all_of": PI_PACKAGES},
    "brain": {"entry": ["neurojam.cli", "neurojam.cli.__main__", "brain.live.node", "stage.server"],
              "all_of": PACKAGES},
}
BEGIN, END = "# -- files (deploy/images.py writes these lines) --", "# -- end of files --"


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _load_time_imports(path: Path) -> set[str]:
    """Project modules imported when ``path`` loads: module level and class bodies, not functions or
    ``if TYPE_CHECKING`` blocks."""
    out: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
            for field in ("body", "orelse", "handlers", "finalbody"):
                if isinstance(getattr(node, field, None), list) and not isinstance(node, ast.ClassDef | ast.If):
                    visit(getattr(node, field))
            if isinstance(node, (ast.ClassDef, ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)

    visit(ast.parse(path.read_text()).body)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def files_of(image: str) -> list[str]:
    """The image's files, relative to the repository: whole packages, or single modules and their packages."""
    spec = IMAGES[image]
    files: set[Path] = set()
    for pkg in spec["all_of"]:
        files |= {p for p in (ROOT / pkg).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    todo = list(spec["entry"])
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name)
        if path is None:
            continue
        files.add(path)
        parts = name.split(".")
        for i in range(1, len(parts)):  # each enclosing package's __init__
            todo.append(".".join(parts[:i]))
        todo.extend(_load_time_imports(path))
    files |= {p for p in (ROOT / "configs").rglob("*") if p.is_file()}
    return sorted(str(p.relative_to(ROOT)) for p in files)


def copy_lines(image: str) -> list[str]:
    """COPY lines: a whole top-level folder when every file of it is in, else each file."""
    files = files_of(image)
    out = []
    for top in dict.fromkeys(f.split("/")[0] for f in files):
        mine = [f for f in files if f.split("/")[0] == top]
        everything = [str(p.relative_to(ROOT)) for p in (ROOT / top).rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts]
        if sorted(everything) == mine:
            out.append(f"COPY {top} {top}")
        else:
            out += [f"COPY {f} {f}" for f in mine]
    return out


def dockerfile(image: str) -> Path:
    return ROOT / "deploy" / f"{image}.Dockerfile"


def rendered(image: str) -> str:
    text = dockerfile(image).read_text()
    head, rest = text.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + "\n" + "\n".join(copy_lines(image)) + "\n" + END + tail


if __name__ == "__main__":
    for name in IMAGES:
        dockerfile(name).write_text(rendered(name))
        print(f"{dockerfile(name).relative_to(ROOT)}: {len(files_of(name))} files", file=sys.stderr)
