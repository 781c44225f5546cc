"""Range-checked types shared by the config sections and the wire: each range is written here once."""

from __future__ import annotations

from typing import Annotated, NamedTuple

import msgspec

Midi7 = Annotated[int, msgspec.Meta(ge=0, le=127)]
Channel = Annotated[int, msgspec.Meta(ge=0, le=15)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
BcmPin = Annotated[int, msgspec.Meta(ge=0, le=27)]

MIN_BPM, MAX_BPM = 20.0, 300.0
"""Tempo bounds, also for code that clamps (an external MIDI clock)."""
Bpm = Annotated[float, msgspec.Meta(ge=MIN_BPM, le=MAX_BPM)]
MAX_PADS, MAX_LEVELS = 64, 20
PadIndex = Annotated[int, msgspec.Meta(ge=0, le=MAX_PADS - 1)]
Level = Annotated[int, msgspec.Meta(ge=1, le=MAX_LEVELS)]
"""A training level, counted from 1."""
SteerFactor = Annotated[float, msgspec.Meta(ge=-10, le=10)]
"""How much a neuron is multiplied by when steered (0 silences it, 2 doubles it)."""

Z85_KEY = r"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$"
Z85Key = Annotated[str, msgspec.Meta(pattern=Z85_KEY)]
"""A CurveZMQ public key as ``neurojam keys init`` prints it: 40 characters of Z85."""
Z85_KEY_OR_EMPTY = Z85_KEY.replace("^[", "^(|[").replace("{40}$", "{40})$")
Z85KeyOrEmpty = Annotated[str, msgspec.Meta(pattern=Z85_KEY_OR_EMPTY)]
KEY_ROLE = r"^(rig:[A-Za-z0-9_.-]+|tool|tool:[A-Za-z0-9_.,-]+)$"
KeyRole = Annotated[str, msgspec.Meta(pattern=KEY_ROLE)]
PATTERN_WORDS = {Z85_KEY: "a CurveZMQ public key: the 40 characters `neurojam keys init` prints",
                 Z85_KEY_OR_EMPTY: "a CurveZMQ public key (the 40 characters `neurojam keys init` prints) or ''",
                 KEY_ROLE: "rig:NAME, tool, or tool:RIG1,RIG2"}
"""What each pattern above means, for configuration errors (a regex is no help to an owner)."""

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""The one table of pitch names. Notes are spelled with sharps (the brain's note words are, so the model's
vocabulary fixes it); keys by :func:`key_tonic_name`."""


def key_tonic_name(pitch_class: int) -> str:
    """A key's tonic as musicians name it: the sharp spelling, except D#, G# and A# read as Eb, Ab and Bb."""
    name = PITCH_CLASSES[pitch_class % 12]
    return f"{PITCH_CLASSES[(pitch_class + 1) % 12]}b" if name in ("D#", "G#", "A#") else name


KEY_TONICS = tuple(key_tonic_name(pc) for pc in range(12))
"""C, C#, D, Eb, ... B: the key names a config accepts and every key is printed with."""

PERCUSSION_CHANNEL = 9
"""General MIDI drums (channel 10, counted from 0): pitches there are instruments, not notes."""


def note_name(note: int) -> str:
    """MIDI number → scientific pitch name; 60 → 'C4' (also the brain's note words)."""
    if not 0 <= note <= 127:
        raise ValueError(f"MIDI note must be in range 0..127, got {note}")
    return f"{PITCH_CLASSES[note % 12]}{note // 12 - 1}"


class NeuronId(NamedTuple):
    """An MLP neuron, written ``L.N`` (layer, index) everywhere a person reads or types one; parsed only here."""

    layer: int
    neuron: int

    @classmethod
    def parse(cls, text: object) -> "NeuronId":
        """'1.42' → NeuronId(1, 42); ValueError saying how to write one for anything else (ranges are the model's
        to check)."""
        layer_s, dot, neuron_s = str(text).strip().partition(".")
        if not (dot and layer_s.isdigit() and neuron_s.isdigit()):
            raise ValueError(f"{text!r} is not a neuron id: write LAYER.NEURON, e.g. 1.42.")
        return cls(int(layer_s), int(neuron_s))

    def __str__(self) -> str:
        return f"{self.layer}.{self.neuron}"
