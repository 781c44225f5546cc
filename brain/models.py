"""Load a model by name through transformer_lens 4.x's TransformerBridge.

Three kinds of name:

- embedded (``notes-default``): a directory under ``brain/models/`` with a
  TL-native config, safetensors weights and a word-level tokenizer; booted
  with ``TransformerBridge.boot_native``; no network.
- TransformerLens legacy names and aliases (``solu-1l``, ``gelu-2l``):
  ``boot_tl_legacy``, weights from the local Hugging Face cache.
- Hugging Face names (``gpt2``, ``EleutherAI/pythia-70m``):
  ``boot_transformers``, weights from the local Hugging Face cache.

Every mistake is a :class:`ModelError` with the fix: unknown names get "did
you mean", missing weights get the download command and the cache path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brain.model_names import DEFAULT_MODEL, MODELS_DIR, embedded_names, hf_cache_dir, resolve
from core.errors import ModelError
from core.units import NeuronId

if TYPE_CHECKING:
    import torch

class TextTokenizer:
    """Text → token ids with character offsets, whatever the tokenizer library."""

    def __init__(self, backend: Any, bos_id: int | None) -> None:
        self.backend = backend
        self.bos_id = bos_id
        self._fast = hasattr(backend, "encode") and not hasattr(backend, "convert_ids_to_tokens")

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if self._fast:  # tokenizers.Tokenizer
            enc = self.backend.encode(text, add_special_tokens=False)
            return list(enc.ids), [tuple(o) for o in enc.offsets]
        enc = self.backend(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def token_str(self, token_id: int) -> str:
        if self._fast:
            return self.backend.id_to_token(token_id) or f"<{token_id}>"
        return self.backend.convert_ids_to_tokens(int(token_id))

    def vocab(self) -> dict[str, int]:
        return self.backend.get_vocab()


@dataclass
class LoadedModel:
    name: str
    kind: str  # embedded | tl_legacy | huggingface
    bridge: Any  # TransformerBridge
    tokenizer: TextTokenizer
    n_layers: int
    d_mlp: int
    n_ctx: int
    device: str
    directory: Path | None = None
    card: dict = field(default_factory=dict)
    neuron_site: str = "post"
    """``post`` or ``mid`` (SoLU models only): :data:`NEURON_SITES`."""
    _pieces: int | None = field(default=None, repr=False)
    _note_ids: dict[int, int] | None = field(default=None, repr=False)

    @property
    def pieces_per_word(self) -> int:
        """The most tokens a word of the piano's range, a bar line or a rest takes after a space: 1 for the shipped
        word-level tokenizer, 3 for a byte-level BPE that splits ``C#5`` into ``ĠC``, ``#``, ``5``. (A rarer word
        that takes more, ``C#-1``, makes the window drop its oldest tokens rather than shrink for all.)"""
        if self._pieces is None:
            from brain.encoder import BAR, REST, note_word

            words = [BAR, REST, *(note_word(n) for n in range(21, 109))]
            self._pieces = max(len(word_pieces(self.tokenizer, w)) for w in words)
        return max(1, self._pieces)

    def window_words(self, context_tokens: int) -> int:
        """How many words the rolling window holds so its tokens fit ``context_tokens`` (BOS aside): every rule of
        the window (when to cut, what a cut keeps) counts words, so a tokenizer that splits note words gets a
        window of fewer words rather than words that fall off its front unread (which played silence)."""
        words = min(context_tokens, self.n_ctx) // self.pieces_per_word
        return words if self.pieces_per_word == 1 else max(words, 4)

    def hook_name(self, layer: int) -> str:
        """Where a neuron is read: ``hook_post``, or for a SoLU model read at ``mid`` the SoLU's output before the
        MLP's LayerNorm (``ln.hook_in``; TransformerLens 3 called it ``hook_mid``). See :data:`NEURON_SITES`."""
        if self.neuron_site == "mid":
            return f"blocks.{layer}.mlp.ln.hook_in"
        return f"blocks.{layer}.mlp.hook_post"

    def check_neuron(self, layer: int, neuron: int | None = None) -> None:
        """A clear error for an index that does not exist in this model."""
        if not 0 <= layer < self.n_layers:
            raise ModelError(f"layer {layer} is out of range for {self.name}: it has {self.n_layers} layers "
                             f"(valid: 0..{self.n_layers - 1}).")
        if neuron is not None and not 0 <= neuron < self.d_mlp:
            raise ModelError(f"neuron {neuron} is out of range for {self.name}: layer {layer} has {self.d_mlp} "
                             f"MLP neurons (valid: 0..{self.d_mlp - 1}).")

    def parse_neuron(self, text: str) -> tuple[int, int]:
        """'L.N' → (layer, neuron), checked."""
        try:
            layer, neuron = NeuronId.parse(text)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        self.check_neuron(layer, neuron)
        return layer, neuron

    def note_token_ids(self) -> dict[int, int]:
        """token id → MIDI note: what a logit of the model means as a note (the prediction voice, a unit's logit
        effect, note accuracy). Cached.

        A token that is a whole note word is that note. A tokenizer that splits note words (byte-level BPE:
        ``C#5`` → ``ĠC``, ``#``, ``5``) has a logit only for a word's first piece, which names the pitch letter
        and not the octave or the sharp: that piece stands for the note nearest middle C among the words it
        starts, a natural (``ĠC`` → C4, ``ĠA`` → A3). One forward pass says no more without scoring every continuation.
        """
        if self._note_ids is None:
            self._note_ids = note_tokens(self.tokenizer)
        return self._note_ids


def word_pieces(tokenizer: TextTokenizer, word: str) -> list[int]:
    """The tokens of a word written as the encoder writes it (after a space); a space that is a token of its own
    belongs to the word before and is left out."""
    ids, offsets = tokenizer.encode(" " + word)
    return [i for i, (a, b) in zip(ids, offsets) if b > a and (a, b) != (0, 1)] or ids


def first_piece(tokenizer: TextTokenizer, word: str) -> int | None:
    """The token a word starts with (the one whose logit stands for the word: :meth:`LoadedModel.note_token_ids`)."""
    pieces = word_pieces(tokenizer, word)
    return pieces[0] if pieces else None


def note_tokens(tokenizer: TextTokenizer) -> dict[int, int]:
    """See :meth:`LoadedModel.note_token_ids`."""
    from brain.encoder import note_word, word_note

    out: dict[int, int] = {}
    for tok, idx in tokenizer.vocab().items():
        word = tok.lstrip("Ġ▁")
        note = word_note(word)
        if note is not None and word == tok.strip().lstrip("Ġ▁") and note_word(note) == word:
            out[idx] = note
    whole = set(out.values())
    starts: dict[int, list[int]] = {}
    for note in range(128):
        if note in whole:
            continue
        piece = first_piece(tokenizer, note_word(note))
        if piece is not None:
            starts.setdefault(piece, []).append(note)
    for idx, notes in starts.items():
        if idx not in out:
            out[idx] = min(notes, key=lambda n: ("#" in note_word(n), abs(n - 60), n))  # the letter: a natural
    return out


NEURON_SITES = ("post", "mid")
"""Where a SoLU (``solu_ln``) model's neurons are read, set by ``neuron_site`` in its config.json (default ``mid``).
``mid``, the SoLU's own output x·softmax(x), is each neuron's value alone; the LayerNorm after it divides every
neuron at a position by the spread of all of them and adds a learned bias, so at ``post`` a neuron's value also
moves with every other neuron's. Labels, quantiles and steering are about one neuron: ``mid`` is the one that
means that. (Its direct logit effect is still read through ``W_out``, i.e. as if the LayerNorm's scale were 1.)
Other activations have one site, ``hook_post``."""


def neuron_site_of(cfg: dict) -> str:
    site = cfg.get("neuron_site") or ("mid" if cfg.get("act_fn") == "solu_ln" else "post")
    if site not in NEURON_SITES or (site == "mid" and cfg.get("act_fn") != "solu_ln"):
        raise ModelError(f"neuron_site {site!r} in the model's config.json: use post, or mid for a solu_ln model.")
    return site


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no CUDA GPU here. Use --set brain.device=cpu "
                         f"(or auto).")
    return device


def load_model(name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "float32") -> LoadedModel:
    kind, repo = resolve(name)  # a wrong name or missing weights are told before torch loads
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads this once
    import torch
    import transformer_lens.model_bridge.sources.native  # noqa: F401  (attaches boot_native)

    dev = resolve_device(device)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    if kind == "embedded":
        return load_embedded(MODELS_DIR / name if name in embedded_names() else Path(name), dev, torch_dtype)
    return _load_from_hub(name, repo, dev, torch_dtype)


def load_embedded(directory: Path, device: str, dtype: "torch.dtype") -> LoadedModel:
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformer_lens.model_bridge import TransformerBridge

    cfg = json.loads((directory / "config.json").read_text())
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    bridge = TransformerBridge.boot_native(cfg, device=device, dtype=dtype, model_name=directory.name)
    weights = directory / "model.safetensors"
    if weights.exists():
        state = load_file(str(weights), device=device)
        bridge.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    bridge.eval()
    card = json.loads((directory / "card.json").read_text()) if (directory / "card.json").exists() else {}
    return LoadedModel(name=directory.name, kind="embedded", bridge=bridge,
                       tokenizer=TextTokenizer(tok, tok.token_to_id("<bos>")), n_layers=cfg["n_layers"],
                       d_mlp=cfg["d_mlp"], n_ctx=cfg["n_ctx"], device=device, directory=directory, card=card,
                       neuron_site=neuron_site_of(cfg))


def _load_from_hub(name: str, repo: str, device: str, dtype: "torch.dtype") -> LoadedModel:
    import transformer_lens.model_bridge.sources.tl_legacy  # noqa: F401
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge

    legacy = repo.startswith(("NeelNanda/", "ArthurConmy/", "Baidicoot/"))
    try:
        if legacy:
            bridge = TransformerBridge.boot_tl_legacy(repo, device=device, dtype=dtype)
        else:
            bridge = TransformerBridge.boot_transformers(repo, device=device, dtype=dtype)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if any(s in text for s in ("offline", "Offline", "LocalEntryNotFound", "not found in the cache",
                                   "couldn't connect", "Cannot find", "does not appear to have", "OSError")):
            raise ModelError(
                f"the weights of {name!r} ({repo}) are not in the local Hugging Face cache ({hf_cache_dir()}), "
                f"and neurojam does not download during a jam. On a machine with internet run "
                f"`hf download {repo}`, then copy that cache here or set HF_HOME to it.") from exc
        raise ModelError(f"could not load {name!r} ({repo}): {text[:300]}") from exc
    bridge.eval()
    cfg = bridge.cfg
    backend = getattr(bridge, "tokenizer", None)
    if backend is None:
        raise ModelError(f"{name!r} has no tokenizer; neurojam needs one to turn notes into tokens.")
    return LoadedModel(name=name, kind="tl_legacy" if legacy else "huggingface", bridge=bridge,
                       tokenizer=TextTokenizer(backend, getattr(backend, "bos_token_id", None)),
                       n_layers=cfg.n_layers, d_mlp=cfg.d_mlp, n_ctx=cfg.n_ctx, device=device)


def build_tiny(tokenizer_vocab: list[str] | None = None, *, n_layers: int = 2, d_model: int = 32, d_mlp: int = 64,
               n_ctx: int = 128, seed: int = 0, act_fn: str = "gelu", device: str = "cpu",
               tokenizer: Any = None) -> LoadedModel:
    """A tiny random TL-native model over a word-level tokenizer from ``tokenizer_vocab``
    or over any ``tokenizers.Tokenizer`` (it must know ``<bos>``); for tests and benchmarks."""
    import transformer_lens.model_bridge.sources.native  # noqa: F401
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformer_lens.model_bridge import TransformerBridge

    tok = tokenizer
    if tok is None:
        tok = Tokenizer(WordLevel({w: i for i, w in enumerate(tokenizer_vocab)}, unk_token="<unk>"))
        tok.pre_tokenizer = WhitespaceSplit()
    cfg = native_config(tok.get_vocab_size(), n_layers=n_layers, d_model=d_model, d_mlp=d_mlp, n_ctx=n_ctx,
                        seed=seed, act_fn=act_fn)
    bridge = TransformerBridge.boot_native(cfg, device=device, model_name="tiny")
    bridge.eval()
    return LoadedModel(name="tiny", kind="embedded", bridge=bridge, tokenizer=TextTokenizer(tok, tok.token_to_id("<bos>")),
                       n_layers=n_layers, d_mlp=d_mlp, n_ctx=n_ctx, device=device, neuron_site=neuron_site_of(cfg))


def native_config(d_vocab: int, *, n_layers: int, d_model: int, d_mlp: int, n_ctx: int, seed: int = 0,
                  act_fn: str = "gelu", n_heads: int | None = None) -> dict:
    n_heads = n_heads or max(1, d_model // 32)
    return dict(n_layers=n_layers, d_model=d_model, d_head=d_model // n_heads, n_heads=n_heads, d_mlp=d_mlp,
                n_ctx=n_ctx, d_vocab=d_vocab, act_fn=act_fn, normalization_type="LN",
                positional_embedding_type="standard", seed=seed)
