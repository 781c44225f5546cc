"""Which model a name means, and whether its weights are here: answered without torch, transformer_lens or
huggingface_hub (each takes seconds to import), so a wrong or missing model is told at once.

Embedded models live in ``brain/models/``; other names are TransformerLens aliases (read from its alias table as
data) or Hugging Face repo ids, whose weights must already be in the local Hugging Face cache: neurojam never
downloads.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from pathlib import Path

from core.errors import ModelError, did_you_mean

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "notes-default"


def embedded_names() -> list[str]:
    return sorted(p.name for p in MODELS_DIR.glob("*") if (p / "config.json").exists())


def legacy_aliases() -> dict[str, str]:
    """Lower-case alias or official name → official name, as ``transformer_lens.supported_models`` builds it, read
    from its source and alias table as data (importing it loads torch and the whole library)."""
    spec = importlib.util.find_spec("transformer_lens")
    if spec is None or not spec.submodule_search_locations:
        return {}
    package = Path(spec.submodule_search_locations[0])
    try:
        aliases = json.loads((package / "tools" / "model_registry" / "data" / "model_aliases.json").read_text())
        tree = ast.parse((package / "supported_models.py").read_text())
        official = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.AnnAssign | ast.Assign)
                        and "OFFICIAL_MODEL_NAMES" in ast.unparse(node.target if isinstance(node, ast.AnnAssign)
                                                                   else node.targets[0]))
    except (OSError, ValueError, KeyError, StopIteration, SyntaxError):
        return {}
    out: dict[str, str] = {}
    for name in official:
        for alias in aliases["aliases"].get(name, []):
            out[alias.lower()] = name
        out[name.lower()] = name
    return out


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, found as huggingface_hub finds it (its environment variables first)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "huggingface" / "hub"


def is_cached(repo: str) -> bool:
    snapshots = hf_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(p.is_dir() for p in snapshots.iterdir())


def is_transformers_folder(path: Path) -> bool:
    """A Hugging Face transformers model folder (its config names a ``model_type``), not a TL-native one."""
    try:
        return "model_type" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False


def resolve(name: str) -> tuple[str, str | None]:
    """('embedded', None) for a model shipped here or a model directory; ('hub', repo) for one whose weights are
    in the local cache. ModelError (with a suggestion or the download command) otherwise."""
    if name in embedded_names():
        return "embedded", None
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        if is_transformers_folder(path):  # saved by transformers' save_pretrained (or a hub snapshot copied here)
            return "hub", str(path.resolve())
        if (path / "model.safetensors").exists():
            return "embedded", None
    aliases = legacy_aliases()
    repo = aliases.get(name.lower())
    if repo is None and "/" not in name:
        hint = did_you_mean(name, embedded_names() + sorted(aliases))
        raise ModelError(f"unknown model name {name!r}.{hint} Embedded: {', '.join(embedded_names())}; "
                         f"TransformerLens names such as solu-1l, gelu-2l, gpt2, pythia-70m; or a Hugging Face "
                         f"repo id like EleutherAI/pythia-70m.")
    repo = repo or name
    if not is_cached(repo):
        raise ModelError(
            f"the weights of {name!r} ({repo}) are not in the local Hugging Face cache ({hf_cache_dir()}), and "
            f"neurojam never downloads. On a machine with internet run `hf download {repo}`, then copy that cache "
            f"here or set HF_HOME to it.")
    return "hub", repo
