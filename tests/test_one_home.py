"""Ideas every node shares are written once: a second copy is how two nodes come to disagree. Each check reads the
source and names where a second copy appeared; each can fail (the planted copies below)."""

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("core", "bridge", "recording", "rig", "brain", "stage", "neurojam")
PITCH = re.compile(r"^[A-G][#b]?$")


def sources(root: Path = ROOT) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}


def pitch_tables(files: dict[str, str]) -> list[str]:
    """Literal tuples or lists of seven or more pitch names."""
    out = []
    for path, text in files.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 7 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) and PITCH.match(e.value)
                    for e in node.elts):
                out.append(path)
    return out


def on_beat_tolerances(files: dict[str, str]) -> list[str]:
    """Names for an on-beat tolerance (constants, parameters, config fields)."""
    pattern = re.compile(r"\b(ON_BEAT\w*|on_beat_tol\w*|\w*BEAT_TOLERANCE\w*)\s*[:=]")
    return [path for path, text in files.items() if pattern.search(text)]


def neuron_id_parsers(files: dict[str, str]) -> list[str]:
    pattern = re.compile(r"map\(int, [^)]*split\(\"\.\"\)|int\(\w+\) for \w+ in [^)]*split\(\"\.\"\)")
    return [path for path, text in files.items() if pattern.search(text)]


def due_time_maths(files: dict[str, str]) -> list[str]:
    """Modules that turn a note's due beat into a time themselves."""
    return [path for path, text in files.items() if re.search(r"time_of_beat\([^)]*due_beat", text)]


def literal_copies(files: dict[str, str], literal: str) -> list[str]:
    return [path for path, text in files.items() if literal in text]


def test_one_table_of_pitch_names():
    assert pitch_tables(sources()) == ["core/units.py"]


def test_one_on_beat_tolerance():
    assert on_beat_tolerances(sources()) == ["bridge/grid.py"]


def test_neuron_ids_are_parsed_in_one_place():
    assert neuron_id_parsers(sources()) == []


def test_one_due_time():
    assert due_time_maths(sources()) == ["bridge/grid.py"]


def test_the_brain_session_folder_is_named_once_and_its_settings_read_typed():
    files = sources()
    assert literal_copies(files, '"brain-session"') == ["recording/log.py"]
    assert literal_copies(files, '"sonify"') == []  # BrainConfig.of_session(meta).sonify, not meta["config"][...]


@pytest.mark.parametrize("check, planted", [
    (pitch_tables, 'FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb")\n'),
    (on_beat_tolerances, "ON_BEAT_TOLERANCE_BEATS = 0.2\n"),
    (neuron_id_parsers, 'layer, n = map(int, nid.split("."))\n'),
    (due_time_maths, "due = grid.time_of_beat(n.due_beat)\n"),
])
def test_each_check_can_fail(check, planted):
    assert check({"rig/copy.py": planted}) == ["rig/copy.py"]
