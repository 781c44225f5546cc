"""Layer corruption: run a model's blocks skipped, repeated or permuted, or with a layer's attention or MLP
output zeroed or mean-ablated.

The first experiment of automated interpretability ("what does the model do without layer 2?") and the
musical one a hackathon wants ("hear the band without layer 2"). A :class:`LayerCorruption` is a plan: the
order in which blocks run (``skip``/``repeat``/``permute`` edit it) and which block outputs are replaced.
It is written as short specs, the same on the command line, in the config and in a session's meta::

    skip=2   repeat=1   permute=3,2,1,0   zero-mlp=2   mean-attn=1

The live brain applies it where it applies steering (``Steering.corruption``), so the stage's "skip layer"
control and ``neurojam replay --corrupt`` take the same path; analysis applies it through
:func:`corrupted_logits`. Order changes need the TL-native forward (``brain/kv_cache.py``, embedded models);
skips and output ablations work on any model through TransformerLens hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import ModelError

PARTS = ("attn", "mlp")
MODES = ("zero", "mean")
SPEC_HELP = ("skip=L, repeat=L, permute=L0,L1,..., zero-mlp=L, zero-attn=L, mean-mlp=L, mean-attn=L "
             "(several apply in turn)")


@dataclass(frozen=True)
class LayerCorruption:
    """Which blocks run, in what order, and which block outputs are replaced (layer, part, mode)."""

    n_layers: int
    order: tuple[int, ...]
    ablations: tuple[tuple[int, str, str], ...] = ()
    specs: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def identity(cls, n_layers: int) -> "LayerCorruption":
        return cls(n_layers, tuple(range(n_layers)))

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...], n_layers: int) -> "LayerCorruption":
        """Specs applied in turn to the identity plan; every mistake is a :class:`ModelError` naming the fix."""
        plan = cls.identity(n_layers)
        for spec in specs:
            plan = plan.then(spec)
        return plan

    def then(self, spec: str) -> "LayerCorruption":
        op, sep, arg = spec.strip().partition("=")
        if not sep:
            raise ModelError(f"corruption {spec!r}: write OP=LAYER, one of {SPEC_HELP}.")
        op = op.strip().lower()
        if op == "permute":
            order = tuple(self._layer(x, spec) for x in arg.split(","))
            if sorted(order) != list(range(self.n_layers)):
                raise ModelError(f"corruption {spec!r}: a permutation lists every layer 0..{self.n_layers - 1} "
                                 f"exactly once.")
            return self._with(order=order, spec=spec)
        layer = self._layer(arg, spec)
        if op == "skip":
            return self._with(order=tuple(i for i in self.order if i != layer), spec=spec)
        if op == "repeat":
            order: list[int] = []
            for i in self.order:
                order += [i, i] if i == layer else [i]
            return self._with(order=tuple(order), spec=spec)
        mode, _, part = op.partition("-")
        if mode in MODES and part in PARTS:
            kept = tuple(a for a in self.ablations if a[:2] != (layer, part))
            return self._with(ablations=kept + ((layer, part, mode),), spec=spec)
        raise ModelError(f"corruption {spec!r}: unknown operation {op!r}; use {SPEC_HELP}.")

    def _layer(self, text: str, spec: str) -> int:
        try:
            layer = int(text)
        except ValueError:
            raise ModelError(f"corruption {spec!r}: {text!r} is not a layer number.") from None
        if not 0 <= layer < self.n_layers:
            raise ModelError(f"corruption {spec!r}: layer {layer} is out of range (valid: 0..{self.n_layers - 1}).")
        return layer

    def _with(self, *, spec: str, order: tuple[int, ...] | None = None,
              ablations: tuple[tuple[int, str, str], ...] | None = None) -> "LayerCorruption":
        return LayerCorruption(self.n_layers, self.order if order is None else order,
                               self.ablations if ablations is None else ablations, self.specs + (spec.strip(),))

    # -- reading the plan ------------------------------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        return self.order == tuple(range(self.n_layers)) and not self.ablations

    @property
    def reorders(self) -> bool:
        """Not expressible as skips: the TL-native forward must run it."""
        kept = [i for i in range(self.n_layers) if i in self.order]
        return list(self.order) != kept

    @property
    def skipped(self) -> list[int]:
        return [i for i in range(self.n_layers) if i not in self.order]

    def ablation(self, layer: int, part: str) -> str | None:
        """'zero', 'mean' or None for this block output."""
        for lay, p, mode in self.ablations:
            if (lay, p) == (layer, part):
                return mode
        return None

    @property
    def needs_means(self) -> bool:
        return any(mode == "mean" for *_, mode in self.ablations)

    def describe(self) -> str:
        return " ".join(self.specs) if self.specs else "none"


def layer_output_means(model, texts: list[str], batch_size: int = 32) -> dict[tuple[int, str], "torch.Tensor"]:
    """Mean of each block's attention and MLP output over the reference texts' tokens (for mean ablation)."""
    import torch

    from brain.activations import pad_rows

    names = {f"blocks.{L}.hook_{p}_out": (L, p) for L in range(model.n_layers) for p in PARTS}
    sums: dict[tuple[int, str], torch.Tensor] = {}
    count = 0
    tok = model.tokenizer
    step = model.n_ctx - 1
    pieces = []
    for text in texts:
        ids, _ = tok.encode(text)
        pieces += [[tok.bos_id, *ids[i:i + step]] for i in range(0, len(ids), step)]
    with torch.inference_mode():
        for i in range(0, len(pieces), batch_size):
            x, mask = pad_rows(pieces[i:i + batch_size], model.device)
            _, cache = model.bridge.run_with_cache(x, names_filter=lambda n: n in names)
            for name, key in names.items():
                s = cache[name][mask].float().sum(0)
                sums[key] = sums[key] + s if key in sums else s
            count += int(mask.sum())
    return {k: (v / max(1, count)) for k, v in sums.items()}


def reference_texts(model, limit: int = 200) -> list[str]:
    """What mean ablation averages over: the model's own validation tunes when it ships a corpus."""
    from brain.models import MODELS_DIR

    path = (model.directory or MODELS_DIR / "notes-default") / "corpus.jsonl.gz"
    if not path.exists() or not model.note_token_ids():
        return []
    from brain import corpus

    return [t["text"] for t in corpus.load(path) if t["split"] == "validation"][:limit]


class CorruptionHooks:
    """The plan as TransformerLens forward hooks, for any model (skips and output ablations; no reordering)."""

    def __init__(self, model, plan: LayerCorruption, means: dict | None = None) -> None:
        if plan.reorders:
            raise ModelError(f"corruption {plan.describe()!r} changes the order of layers: that needs an embedded "
                             f"(TL-native) model; {model.name} takes skip, zero-* and mean-* only.")
        if plan.needs_means and means is None:
            raise ModelError("mean ablation needs the layer means (layer_output_means).")
        self.model, self.plan, self.means = model, plan, means or {}
        self._resid_in: dict[int, object] = {}

    def hooks(self) -> list[tuple[str, object]]:
        out = []
        for layer in self.plan.skipped:
            out.append((f"blocks.{layer}.hook_resid_pre", self._keep_input(layer)))
            out.append((f"blocks.{layer}.hook_resid_post", self._bypass(layer)))
        for layer, part, mode in self.plan.ablations:
            out.append((f"blocks.{layer}.hook_{part}_out", self._replace(layer, part, mode)))
        return out

    def _keep_input(self, layer: int):
        def hook(act, hook=None):
            self._resid_in[layer] = act
        return hook

    def _bypass(self, layer: int):
        def hook(act, hook=None):
            return self._resid_in.pop(layer)
        return hook

    def _replace(self, layer: int, part: str, mode: str):
        def hook(act, hook=None):
            if mode == "zero":
                return act.new_zeros(act.shape)
            return self.means[(layer, part)].to(act.dtype).expand_as(act).clone()
        return hook
