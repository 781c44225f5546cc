"""Which ``pip install 'neurojam[EXTRA]'`` brings which importable package.

A Pi installs ``neurojam[rig]`` and the brain image ``neurojam[brain,stage]``; a command that reaches for a package
its machine does not have should say which extra to install, in one line, not end in a traceback. The table is
checked against pyproject.toml by tests/test_install_profiles.py.
"""

from __future__ import annotations

EXTRA_OF_MODULE: dict[str, str] = {
    "rtmidi": "rig",
    "RPi": "rig",
    "link": "sync",
    "pygame": "audio",
    "torch": "brain",
    "transformer_lens": "brain",
    "transformers": "brain",
    "safetensors": "brain",
    "tokenizers": "brain",
    "numpy": "brain",
    "scipy": "brain",
    "matplotlib": "brain",
    "tqdm": "brain",
    "jinja2": "brain",
    "pyarrow": "brain",
    "music21": "brain",
    "ray": "study",
    "pandas": "study",
    "duckdb": "study",
    "aiohttp": "stage",
    "sparsify": "train",
}
"""Top-level module → the extra that installs it (transformers comes with transformer-lens)."""


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """The one line to print for a package an extra would have installed; None for anything else (a bug)."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (f"this needs {module}, which this install does not have: pip install 'neurojam[{extra}]' "
            f"(the Pi's install is neurojam[rig]; the brain's neurojam[brain,stage])")
