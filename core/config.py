"""Typed configuration machinery: layered YAML → a msgspec Struct, with mistakes told plainly.

Each node owns its section (``rig/config.py``, ``brain/config.py``,
``bridge/config.py``, ``recording/config.py``); the Struct defaults are the only
copy of each default and range. The ``neurojam`` command composes the
sections into one root and calls :func:`load_layers`. Every mistake becomes
one :class:`ConfigError` paragraph naming the file, the key path, what was
wrong and what is allowed, with a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from core.errors import ConfigError, did_you_mean
from core.units import PATTERN_WORDS

T = TypeVar("T", bound=msgspec.Struct)


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A config section: unknown keys are errors, every field has a type and a range."""


def load_layers(root: type[T], layers: list[tuple[str, dict]]) -> T:
    """The root's defaults, then each (name, mapping) layer; validated after each, so errors blame the right one."""
    merged: dict = {}
    config = root()
    for name, layer in layers:
        check_keys(layer, root, name, "")
        merged = _deep_merge(merged, layer)
        config = convert(merged, root, name)
    return config


def recorded(data: dict, root: type[T]) -> T:
    """A section as a session recorded it: keys this version no longer knows are dropped and a value it no longer
    accepts falls back to the default, so an older session still reads."""
    def known(data: Any, struct: type) -> Any:
        if isinstance(data, list):
            return [known(item, struct) for item in data]
        if not isinstance(data, dict):
            return data
        hints = typing.get_type_hints(struct, include_extras=True)
        return {k: (known(v, sub) if (sub := struct_of(hints[k])) is not None else v)
                for k, v in data.items() if k in hints}

    pruned = known(data if isinstance(data, dict) else {}, root)
    try:
        return msgspec.convert(pruned, root, strict=False)
    except msgspec.ValidationError:
        return root()


def read_yaml(path: Path, root: type | None = None) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8): a config is a YAML text file "
                          f"like configs/lab.yaml.") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        sections = f" with sections {fields(root)}" if root else ""
        raise ConfigError(f"{path}: the top level must be a mapping{sections}, got {type(data).__name__}.")
    return data


def override_layer(item: str) -> tuple[str, dict]:
    """``--set key.path=value`` → a layer (the value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, for example --set rig.tempo_bpm=100.")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    if any(p.isdigit() for p in parts):
        at = ".".join(parts[:next(i for i, p in enumerate(parts) if p.isdigit())])
        raise ConfigError(f"--set {item!r}: '{at}' is a list, and --set sets whole values: give the whole list "
                          f"(e.g. --set '{at}=[...]' in YAML flow style, `neurojam config show` prints the current "
                          f"one), or change that item in a --config YAML file.")
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return f"--set {item}", out


def to_dict(config: msgspec.Struct) -> dict:
    return msgspec.to_builtins(config)


def dump_yaml(config: msgspec.Struct) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def fields(struct: type) -> list[str]:
    return [f.name for f in msgspec.structs.fields(struct)]


def struct_of(hint: Any) -> type | None:
    """The Struct type a field holds (directly, optionally or as list items), if any."""
    for _ in range(4):
        if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
            return hint
        args = typing.get_args(hint)
        if not args:
            return None
        hint = next((a for a in args if a is not type(None)), None)
    return None


def check_keys(data: Any, struct: type, file: str, path: str) -> None:
    """Unknown keys, with a suggestion, before msgspec's type checking."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            check_keys(item, struct, file, f"{path}[{i}]")
        return
    if not isinstance(data, dict):
        return
    names = fields(struct)
    hints = typing.get_type_hints(struct, include_extras=True)
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(
                f"{file}: unknown key '{where}'.{did_you_mean(str(key), names)} "
                f"Allowed keys{' in ' + path if path else ''}: {', '.join(names)}."
            )
        sub = struct_of(hints.get(key))
        if sub is not None:
            check_keys(value, sub, file, where)


_MSGSPEC_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = object()


def convert(data: dict, root: type[T], file: str) -> T:
    check_keys(data, root, file, "")
    try:
        return msgspec.convert(data, root, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _MSGSPEC_PATH.search(text)
        path = match.group(1) if match else "?"
        problem = _MSGSPEC_PATH.sub("", text).replace("`", "")
        problem = problem[:1].lower() + problem[1:]  # msgspec's 'Expected `int` <= 127' → 'expected int <= 127'
        for pattern, words in PATTERN_WORDS.items():
            for shown in (pattern, pattern.replace("\\", "\\\\")):
                problem = problem.replace(f"str matching regex '{shown}'", words)
        got = _lookup(data, path)
        got_text = f" (got {got!r})" if got is not _MISSING else ""
        raise ConfigError(
            f"{file}: '{path}' is wrong: {problem}{got_text}. "
            f"Fix the value in the file or override it with --set {path.split('[')[0]}=VALUE."
        ) from exc


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
