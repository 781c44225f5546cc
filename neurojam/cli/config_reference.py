"""The config reference, generated from the config types (docs/config-reference.md)."""

from __future__ import annotations

import typing

import msgspec

from neurojam.config import Config


def _type_text(hint) -> str:
    meta = []
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        for m in extras:
            if isinstance(m, msgspec.Meta):
                for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len>="), ("max_length", "len<=")):
                    v = getattr(m, name, None)
                    if v is not None:
                        meta.append(f"{sym}{v}")
    text = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    if typing.get_origin(hint) is typing.Literal:
        text = " | ".join(repr(a) for a in typing.get_args(hint))
    return text + (f" ({', '.join(meta)})" if meta else "")


def _rows(struct: type, prefix: str, doc_of: dict) -> list[str]:
    rows = []
    hints = typing.get_type_hints(struct, include_extras=True)
    for f in msgspec.structs.fields(struct):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        inner = hint
        if typing.get_origin(inner) is typing.Annotated:
            inner = typing.get_args(inner)[0]
        if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
            rows.extend(_rows(inner, key + ".", doc_of))
            continue
        args = typing.get_args(inner)
        if typing.get_origin(inner) is list and args and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
            rows.append(f"| `{key}` | list of items below | `[]` | |")
            rows.extend(_rows(args[0], key + "[].", doc_of))
            continue
        default = f.default if f.default is not msgspec.NODEFAULT else (f.default_factory() if f.default_factory is not msgspec.NODEFAULT else "required")
        rows.append(f"| `{key}` | {_type_text(hint)} | `{default!r}` | {doc_of.get((struct.__name__, f.name), '')} |")
    return rows


def _docstrings() -> dict:
    """Attribute docstrings (the string right under a field) from each section's source module."""
    import ast
    import inspect

    from brain import config as brain_config
    from bridge import config as bridge_config
    from recording import config as recording_config
    from rig import config as rig_config

    docs = {}
    for mod in (bridge_config, rig_config, brain_config, recording_config):
        docs.update(_module_docstrings(ast.parse(inspect.getsource(mod))))
    return docs


def _module_docstrings(tree) -> dict:
    import ast

    docs = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            for a, b in zip(body, body[1:]):
                if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant):
                    docs[(node.name, a.target.id)] = str(b.value.value).replace("\n", " ")
    return docs


def render() -> str:
    lines = [
        "# Config reference",
        "",
        "Generated from the config sections (`rig/config.py`, `brain/config.py`, `bridge/config.py`, "
        "`recording/config.py`) by `neurojam config schema`. Layers: these defaults (printed in `configs/default.yaml`), "
        "a profile (`--config lab|pi|gpu|FILE`), then `--set key=value`.",
        "",
        "| key | type (range) | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    return "\n".join(lines + _rows(Config, "", _docstrings()))
