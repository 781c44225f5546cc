"""One root for the mistakes a user can fix; the CLI prints them and exits 2."""

from __future__ import annotations

import difflib
from typing import Iterable


class NeurojamError(Exception):
    """A user-facing error: its message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(NeurojamError, ValueError):
    pass


class ModelError(NeurojamError, ValueError):
    pass


class SessionError(NeurojamError, ValueError):
    pass


class DeviceError(NeurojamError, RuntimeError):
    """Hardware or a system tool is missing (GPIO, MIDI port, FluidSynth)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' or '' — for messages about misspelt names."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[w] for w in difflib.get_close_matches(word.lower(), lowered, n=1, cutoff=0.6)]
    if not close:  # prefix/substring: 'tempo' -> 'tempo_bpm'
        close = [c for c in choices if c.startswith(word) or word.startswith(c)][:1]
    return f" Did you mean {close[0]!r}?" if close else ""
