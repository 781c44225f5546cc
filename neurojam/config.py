"""Typed configuration for all three parts, loaded from layered YAML.

Layers, later wins: ``configs/default.yaml`` → a profile (``configs/lab.yaml``,
``pi.yaml``, ``gpu.yaml`` or any file) → ``--set key.path=value`` overrides.
Every mistake becomes one :class:`ConfigError` paragraph naming the file, the
key path, what was wrong and what is allowed, with a "did you mean" for
misspelt keys. The types below are the reference (``neurojam config schema``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from neurojam.errors import ConfigError, did_you_mean

def _config_dir() -> Path:
    """NEUROJAM_CONFIG_DIR, else the checkout's configs/ (editable installs), else ./configs (Docker, systemd)."""
    import os

    candidates = [os.environ.get("NEUROJAM_CONFIG_DIR"), Path(__file__).resolve().parent.parent / "configs",
                  Path.cwd() / "configs"]
    for c in candidates:
        if c and (Path(c) / "default.yaml").exists():
            return Path(c)
    raise ConfigError("configs/default.yaml not found: run neurojam from its checkout, or set NEUROJAM_CONFIG_DIR "
                      "to the folder that holds default.yaml.")


CONFIG_DIR = _config_dir()
DEFAULT_FILE = CONFIG_DIR / "default.yaml"

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Midi7 = Annotated[int, msgspec.Meta(ge=0, le=127)]
Channel = Annotated[int, msgspec.Meta(ge=0, le=15)]
BcmPin = Annotated[int, msgspec.Meta(ge=0, le=27)]
Tempo = Annotated[float, msgspec.Meta(ge=20, le=300)]
PosFloat = Annotated[float, msgspec.Meta(ge=0)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class BridgeConfig(Section):
    host: str = "127.0.0.1"
    """Where the rig finds the brain."""
    bind_host: str = "127.0.0.1"
    """Address the brain listens on (0.0.0.0 for a two-machine setup)."""
    events_port: Port = 5555
    commands_port: Port = 5556
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.5
    liveness_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    hwm: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000


class PadSound(Section):
    notes: Annotated[list[Midi7], msgspec.Meta(min_length=1, max_length=8)] = msgspec.field(default_factory=lambda: [60])
    """A note, or a chord."""
    channel: Channel = 9
    velocity: Midi7 = 100
    duration: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.25
    file: str | None = None
    """Play this wav/ogg/mp3 instead of MIDI notes (needs the 'audio' extra)."""


class PadConfig(Section):
    pin: BcmPin
    name: str = ""
    pull: Literal["up", "down", "off"] = "up"
    active: Literal["low", "high"] = "low"
    """Foil pads wired to ground with the pull-up read 'low' when pressed."""
    debounce_ms: Annotated[float, msgspec.Meta(ge=0, le=500)] = 30
    sound: PadSound = msgspec.field(default_factory=PadSound)


class GpioConfig(Section):
    backend: Literal["sim", "rpi"] = "sim"


class MidiConfig(Section):
    backend: str = "mido.backends.rtmidi"
    """mido backend; 'mido.backends.rtmidi/UNIX_JACK' for JACK."""
    input: str | None = None
    """Keyboard port: exact name or a unique substring; null = none."""
    output: str | None = None
    """Synth port: exact name or substring; null = open a virtual port."""
    virtual_output: str = "neurojam"
    echo_human: bool = False
    """Also play the keyboard's notes on the output (when the keyboard has no sound)."""
    clock: Literal["internal", "external"] = "internal"


class MetronomeConfig(Section):
    enabled: bool = False
    channel: Channel = 9
    note: Midi7 = 76
    accent_note: Midi7 = 77
    velocity: Midi7 = 60


class SchedulerConfig(Section):
    late: Literal["drop", "play"] = "drop"
    late_tolerance_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 5
    max_voices: Annotated[int, msgspec.Meta(ge=1, le=128)] = 16


class DispenserConfig(Section):
    enabled: bool = True
    pin: BcmPin = 27
    pulse_ms: Annotated[float, msgspec.Meta(ge=5, le=2000)] = 150
    active_high: bool = True
    dispense_on: Literal["next_beat", "next_downbeat"] = "next_downbeat"
    min_interval_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 8
    """Safety cap: never two treats closer than this."""
    max_per_minute: Annotated[int, msgspec.Meta(ge=0, le=30)] = 4
    max_per_session: Annotated[int, msgspec.Meta(ge=0, le=500)] = 25


class LocalRewardConfig(Section):
    enabled: bool = True
    tolerance_ms: Annotated[float, msgspec.Meta(ge=1, le=500)] = 120
    """A pet press this close to a beat earns a treat on the next downbeat."""


class SimPetConfig(Section):
    enabled: bool = False
    presses_per_beat: Annotated[float, msgspec.Meta(ge=0, le=4)] = 0.5
    on_beat_probability: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.6
    seed: int = 1


class SimHumanConfig(Section):
    midi_file: str | None = None
    loop: bool = True


class RigConfig(Section):
    node_id: str = "rig"
    tempo_bpm: Tempo = 112
    beats_per_bar: Annotated[int, msgspec.Meta(ge=1, le=16)] = 4
    gpio: GpioConfig = msgspec.field(default_factory=GpioConfig)
    pads: list[PadConfig] = []
    midi: MidiConfig = msgspec.field(default_factory=MidiConfig)
    metronome: MetronomeConfig = msgspec.field(default_factory=MetronomeConfig)
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)
    dispenser: DispenserConfig = msgspec.field(default_factory=DispenserConfig)
    reward: LocalRewardConfig = msgspec.field(default_factory=LocalRewardConfig)
    sim_pet: SimPetConfig = msgspec.field(default_factory=SimPetConfig)
    sim_human: SimHumanConfig = msgspec.field(default_factory=SimHumanConfig)


class SonifyConfig(Section):
    key: Literal["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"] = "C"
    scale: Literal["major", "minor", "dorian", "pentatonic", "blues", "chromatic"] = "pentatonic"
    follow_key: bool = True
    """Shift the key to the human's recent notes."""
    subdivision: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2
    """Quantize accompaniment to 1/N of a beat."""
    max_voices: Annotated[int, msgspec.Meta(ge=1, le=16)] = 3
    velocity_min: Midi7 = 45
    velocity_max: Midi7 = 105
    note_beats: Annotated[float, msgspec.Meta(gt=0, le=8)] = 0.5
    layer_channels: list[Channel] = msgspec.field(default_factory=lambda: [1, 2, 3, 4])
    layer_octaves: list[Annotated[int, msgspec.Meta(ge=1, le=8)]] = msgspec.field(default_factory=lambda: [3, 4, 5, 5])
    min_normalized: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.25
    prediction_voice: bool = False
    prediction_channel: Channel = 5


class BrainRewardConfig(Section):
    enabled: bool = True
    neurons: list[str] = []
    """'L.N' ids; a pet press making one exceed ``threshold`` asks for a treat."""
    threshold: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.8
    phrase_rule: bool = True
    """Ask for a treat when the pet plays on the beat within the human's phrase."""
    phrase_window_s: Annotated[float, msgspec.Meta(gt=0, le=30)] = 4.0


class SteerConfig(Section):
    layer: Annotated[int, msgspec.Meta(ge=0)]
    neuron: Annotated[int, msgspec.Meta(ge=0)]
    factor: Annotated[float, msgspec.Meta(ge=-10, le=10)] = 0.0


class BrainConfig(Section):
    node_id: str = "brain"
    model: str = "notes-default"
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    layers: list[Annotated[int, msgspec.Meta(ge=0)]] | Literal["all"] = "all"
    top_k: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    context_tokens: Annotated[int, msgspec.Meta(ge=8, le=8192)] = 128
    kv_cache: bool = True
    """Run only new tokens against cached keys/values (embedded models); else recompute the window."""
    sonify: SonifyConfig = msgspec.field(default_factory=SonifyConfig)
    reward: BrainRewardConfig = msgspec.field(default_factory=BrainRewardConfig)
    steering: list[SteerConfig] = []
    stats_dir: str = "~/.cache/neurojam/stats"


class SessionConfig(Section):
    dir: str = "sessions"
    record: bool = True
    buffer: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000
    flush_ms: Annotated[float, msgspec.Meta(ge=1, le=1000)] = 50


class Config(Section):
    bridge: BridgeConfig = msgspec.field(default_factory=BridgeConfig)
    rig: RigConfig = msgspec.field(default_factory=RigConfig)
    brain: BrainConfig = msgspec.field(default_factory=BrainConfig)
    session: SessionConfig = msgspec.field(default_factory=SessionConfig)


# -- loading -----------------------------------------------------------------

def load_config(profile: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Merge default.yaml, an optional profile file and ``key.path=value`` overrides."""
    merged = _read_yaml(DEFAULT_FILE)
    config = _convert(merged, str(DEFAULT_FILE))
    layers: list[tuple[str, dict]] = []
    if profile:
        path = resolve_profile(profile)
        layers.append((str(path), _read_yaml(path)))
    for item in overrides or []:
        key, value = _parse_override(item)
        layers.append((f"--set {item}", _nest(key, value)))
    for name, layer in layers:  # validate after each layer, so errors blame the right one
        _check_keys(layer, Config, name, "")
        merged = _deep_merge(merged, layer)
        config = _convert(merged, name)
    return config


def resolve_profile(profile: str | Path) -> Path:
    path = Path(profile)
    if not path.exists() and not path.suffix:
        candidate = CONFIG_DIR / f"{profile}.yaml"
        if candidate.exists():
            return candidate
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(
            f"{profile}: config file not found. Give a path to a YAML file or a profile name "
            f"from {CONFIG_DIR} ({', '.join(known)}).{did_you_mean(path.stem, known)}"
        )
    return path


def to_dict(config: Config) -> dict:
    return msgspec.to_builtins(config)


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with sections {_fields(Config)}, got {type(data).__name__}.")
    return data


def _fields(struct: type) -> list[str]:
    return [f.name for f in msgspec.structs.fields(struct)]


def _section_type(struct: type, key: str) -> type | None:
    """The Struct type of field ``key`` (or of its list items), if it is one."""
    import typing

    hints = typing.get_type_hints(struct, include_extras=True)
    hint = hints.get(key)
    for _ in range(4):
        if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
            return hint
        args = typing.get_args(hint)
        if not args:
            return None
        hint = next((a for a in args if a is not type(None)), None)
    return None


def _check_keys(data: Any, struct: type, file: str, path: str) -> None:
    """Unknown keys, with a suggestion, before msgspec's type checking."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            _check_keys(item, struct, file, f"{path}[{i}]")
        return
    if not isinstance(data, dict):
        return
    names = _fields(struct)
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(
                f"{file}: unknown key '{where}'.{did_you_mean(str(key), names)} "
                f"Allowed keys{' in ' + path if path else ''}: {', '.join(names)}."
            )
        sub = _section_type(struct, key)
        if sub is not None:
            _check_keys(value, sub, file, where)


_MSGSPEC_PATH = re.compile(r" - at `\$\.?(.*)`$")


def _convert(data: dict, file: str) -> Config:
    _check_keys(data, Config, file, "")
    try:
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _MSGSPEC_PATH.search(text)
        path = match.group(1) if match else "?"
        problem = _MSGSPEC_PATH.sub("", text)
        got = _lookup(data, path)
        got_text = f" (got {got!r})" if got is not _MISSING else ""
        raise ConfigError(
            f"{file}: '{path}' is wrong: {_plain(problem)}{got_text}. "
            f"Fix the value in the file or override it with --set {path.split('[')[0]}=VALUE."
        ) from exc


def _plain(problem: str) -> str:
    """msgspec's 'Expected `int` <= 127' → 'expected int <= 127'."""
    text = problem.replace("`", "")
    return text[0].lower() + text[1:] if text else text


_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+", path):
        try:
            data = data[int(part)] if isinstance(data, list) else data[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return _MISSING
    return data


def _deep_merge(base: dict, layer: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, for example --set rig.tempo_bpm=100.")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _nest(key: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out
