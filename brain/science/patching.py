"""Activation patching: which layer, which position, which neuron carries the difference between two inputs.

Run the *corrupted* input, put back one activation from the *clean* run, and see how much of the clean
answer returns (denoising). The metric is the standard normalized logit difference::

    LD(run)   = logit[clean next note] − logit[corrupt next note]     at the last position
    restored  = (LD(patched) − LD(corrupt)) / (LD(clean) − LD(corrupt))

so 1 = fully restored, 0 = no effect. Sites are TransformerLens hook names: ``blocks.{L}.hook_resid_pre``
(the residual stream into layer L), ``blocks.{L}.hook_attn_out``, ``blocks.{L}.hook_mlp_out`` per layer and
position, and ``blocks.{L}.mlp.hook_post`` per neuron (all of a layer's positions at once). Every patched run
of one site and layer is a row of one batch: a layer × position map is one forward per layer and site, 512
neurons are four.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from brain.models import LoadedModel
from core.errors import ModelError

SITES = {"resid_pre": "blocks.{L}.hook_resid_pre", "attn_out": "blocks.{L}.hook_attn_out",
         "mlp_out": "blocks.{L}.hook_mlp_out"}


@dataclass
class PatchInputs:
    """Two token sequences of one length (BOS first), and the two answers the metric tells apart."""

    clean: list[int]
    corrupt: list[int]
    clean_target: int
    corrupt_target: int


@dataclass
class PatchResult:
    clean_target: str
    corrupt_target: str
    clean_diff: float
    corrupt_diff: float
    tokens: list[str]
    corrupt_tokens: list[str]
    by_position: dict[str, np.ndarray] = field(default_factory=dict)
    """site → [n_layers, T] restoration when that site is patched at that position alone."""
    all_positions: dict[str, np.ndarray] = field(default_factory=dict)
    """site → [n_layers] restoration when the site is patched at every position."""
    neuron_layer: int | None = None
    neurons: list[tuple[int, float, float]] = field(default_factory=list)
    """(neuron, restoration, activation difference clean − corrupt summed over positions), best first."""

    def as_dict(self) -> dict:
        return {"clean_target": self.clean_target, "corrupt_target": self.corrupt_target,
                "clean_logit_diff": self.clean_diff, "corrupt_logit_diff": self.corrupt_diff,
                "tokens": self.tokens, "corrupt_tokens": self.corrupt_tokens,
                "by_position": {s: np.round(m, 5).tolist() for s, m in self.by_position.items()},
                "all_positions": {s: np.round(m, 5).tolist() for s, m in self.all_positions.items()},
                "neuron_layer": self.neuron_layer,
                "neurons": [{"neuron": f"{self.neuron_layer}.{n}", "restored": round(r, 5), "act_diff": round(d, 5)}
                            for n, r, d in self.neurons]}


def aligned(model: LoadedModel, clean_text: str, corrupt_text: str, *, target: str | None = None) -> PatchInputs:
    """Tokenize both texts and keep the last tokens they both have (their ends are where the next note is
    predicted); the targets are each run's most likely next note, or ``target`` against the corrupt run's."""
    tok = model.tokenizer
    a, _ = tok.encode(clean_text)
    b, _ = tok.encode(corrupt_text)
    n = min(len(a), len(b), model.n_ctx - 1)
    if n == 0:
        raise ModelError("activation patching needs text on both sides: the clean or corrupted window is empty.")
    clean, corrupt = [tok.bos_id, *a[len(a) - n:]], [tok.bos_id, *b[len(b) - n:]]
    with torch.inference_mode():
        logits = model.bridge(torch.tensor([clean, corrupt], device=model.device))[:, -1].float().cpu()
    notes = sorted(model.note_token_ids()) or list(range(logits.shape[-1]))
    index = torch.tensor(notes)
    if target:
        from brain.science.experiments import resolve_target

        clean_target = resolve_target(model, target)
    else:
        clean_target = notes[int(logits[0, index].argmax())]
    corrupt_target = notes[int(logits[1, index].argmax())]
    if corrupt_target == clean_target:
        raise ModelError(f"the clean and corrupted inputs both predict {tok.token_str(clean_target)!r} next: the "
                         f"logit difference has nothing to restore. Pick another event, another corruption "
                         f"(e.g. a different --transpose) or a --target the two runs disagree on.")
    return PatchInputs(clean, corrupt, clean_target, corrupt_target)


def _logit_diff(logits: torch.Tensor, inputs: PatchInputs) -> torch.Tensor:
    last = logits[:, -1].float()
    return last[:, inputs.clean_target] - last[:, inputs.corrupt_target]


@torch.inference_mode()
def patch(model: LoadedModel, inputs: PatchInputs, *, sites: tuple[str, ...] = tuple(SITES),
          neuron_layer: int | None = None, neurons: list[int] | None = None, top_k: int | None = None,
          positions: list[int] | None = None, batch: int = 128, progress: bool = False,
          dictionary=None) -> PatchResult:
    """Patch every site × layer × position, and (``neuron_layer``) each of that layer's neurons (``neurons``, or
    the ``top_k`` by clean − corrupt activation difference, or all) at ``positions`` (default: all). With a
    ``dictionary`` (:mod:`brain.units.features`) the units are its features: feature F patched means the corrupted
    activations get ``(a_F(clean) − a_F(corrupt)) · W_dec[F]`` added where they are patched."""
    if len(inputs.clean) != len(inputs.corrupt):
        raise ModelError(f"activation patching needs inputs of one length: {len(inputs.clean)} vs "
                         f"{len(inputs.corrupt)} tokens.")
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise ModelError(f"unknown patching site {unknown[0]!r}: use {', '.join(SITES)}.")
    dev = model.device
    T = len(inputs.clean)
    clean_x = torch.tensor([inputs.clean], device=dev)
    corrupt_x = torch.tensor([inputs.corrupt], device=dev)
    names = {SITES[s].format(L=L) for s in sites for L in range(model.n_layers)}
    if neuron_layer is not None:
        model.check_neuron(neuron_layer)
        names.add(model.hook_name(neuron_layer))
    clean_logits, clean_cache = model.bridge.run_with_cache(clean_x, names_filter=lambda n: n in names)
    corrupt_logits, corrupt_cache = model.bridge.run_with_cache(corrupt_x, names_filter=lambda n: n in names)
    ld_clean = float(_logit_diff(clean_logits, inputs)[0])
    ld_corrupt = float(_logit_diff(corrupt_logits, inputs)[0])
    span = ld_clean - ld_corrupt
    if abs(span) < 1e-6:
        raise ModelError("the clean and corrupted runs give the same logit difference: nothing to restore.")
    tok = model.tokenizer
    result = PatchResult(tok.token_str(inputs.clean_target), tok.token_str(inputs.corrupt_target), ld_clean, ld_corrupt,
                         [tok.token_str(t) for t in inputs.clean], [tok.token_str(t) for t in inputs.corrupt])
    work = [(s, L) for s in sites for L in range(model.n_layers)]
    if progress:
        from tqdm import tqdm

        work = tqdm(work, desc="patching layers", unit="site", leave=False)
    rows = torch.arange(T, device=dev)
    for site, L in work:
        name = SITES[site].format(L=L)
        clean_act = clean_cache[name][0]  # [T, d_model]

        def hook(act, hook=None, clean_act=clean_act):
            act = act.clone()
            act[rows, rows] = clean_act  # row p: position p patched
            act[T] = clean_act  # the last row: every position
            return act

        logits = model.bridge.run_with_hooks(corrupt_x.expand(T + 1, T), fwd_hooks=[(name, hook)])
        restored = ((_logit_diff(logits, inputs) - ld_corrupt) / span).float().cpu().numpy()
        result.by_position.setdefault(site, np.zeros((model.n_layers, T)))[L] = restored[:T]
        result.all_positions.setdefault(site, np.zeros(model.n_layers))[L] = restored[T]
    if neuron_layer is not None:
        result.neuron_layer = neuron_layer
        result.neurons = _patch_neurons(model, inputs, clean_cache, corrupt_cache, corrupt_x, neuron_layer, neurons,
                                        top_k, positions, batch, ld_corrupt, span, progress, dictionary)
    return result


def _patch_neurons(model, inputs, clean_cache, corrupt_cache, corrupt_x, layer, neurons, top_k, positions, batch,
                   ld_corrupt, span, progress, dictionary=None) -> list[tuple[int, float, float]]:
    name = model.hook_name(layer)
    T = corrupt_x.shape[1]
    pos = torch.tensor(positions if positions is not None else list(range(T)), device=corrupt_x.device)
    if ((pos < 0) | (pos >= T)).any():
        raise ModelError(f"patch positions must lie in 0..{T - 1} (the window has {T} tokens, BOS at 0).")
    clean_act, corrupt_act = clean_cache[name][0], corrupt_cache[name][0]  # [T, d_mlp]
    if dictionary is not None:  # the units are the layer's features
        clean_act, corrupt_act = (dictionary[layer].encode(a.float()) for a in (clean_act, corrupt_act))
    width = clean_act.shape[-1]
    diff = (clean_act[pos] - corrupt_act[pos]).sum(0).float().cpu()
    if neurons is None:
        order = diff.abs().argsort(descending=True).tolist()
        neurons = order[:top_k] if top_k else list(range(width))
    for n in neurons:
        if not 0 <= n < width:
            raise ModelError(f"unit {n} is out of range: layer {layer} has {width} (valid: 0..{width - 1}).")
    chunks = range(0, len(neurons), batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"patching layer {layer}'s neurons", unit="batch", leave=False)
    out = []
    for start in chunks:
        group = torch.tensor(neurons[start:start + batch], device=corrupt_x.device)
        B = len(group)
        patch_values = clean_act[pos][:, group].T  # [B, P]
        added = None if dictionary is None else \
            (patch_values - corrupt_act[pos][:, group].T)[..., None] * dictionary[layer].W_dec[group][:, None, :]

        def hook(act, hook=None):
            act = act.clone()
            if added is not None:  # [B, P, d_mlp]: each row's feature moved to its clean value
                act[:, pos] = act[:, pos] + added.to(act.dtype)
                return act
            act[torch.arange(B, device=act.device)[:, None], pos[None, :], group[:, None]] = patch_values
            return act

        logits = model.bridge.run_with_hooks(corrupt_x.expand(B, T), fwd_hooks=[(name, hook)])
        restored = ((_logit_diff(logits, inputs) - ld_corrupt) / span).float().cpu().tolist()
        out += [(int(n), float(r), float(diff[int(n)])) for n, r in zip(group.tolist(), restored)]
    out.sort(key=lambda row: -abs(row[1]))
    return out


def plot(result: PatchResult, path, title: str = "", last: int | None = 48) -> None:
    """Layer × position heatmaps (one per site, the ``last`` positions) and the top neurons' restoration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(result.by_position)
    panels = len(sites) + (1 if result.neurons else 0)
    T = len(result.tokens)
    first = max(0, T - last) if last else 0
    T -= first
    fig, axes = plt.subplots(panels, 1, figsize=(max(8, 0.24 * T + 2), 2.0 * panels + 1.2), squeeze=False)
    labels = [a if a == b else f"{a}/{b}" for a, b in zip(result.tokens[first:], result.corrupt_tokens[first:])]
    for ax, site in zip(axes[:, 0], sites):
        m = result.by_position[site][:, first:]
        im = ax.imshow(m, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_yticks(range(m.shape[0]), [f"L{i}" for i in range(m.shape[0])])
        ax.set_xticks(range(T), labels, rotation=90, fontsize=7)
        ax.set_title(f"{site}: restored when patched at one position" + (f" (last {T} of {T + first})" if first else ""),
                     fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    if result.neurons:
        ax = axes[-1, 0]
        top = result.neurons[:20]
        ax.bar(range(len(top)), [r for _, r, _ in top], color=["#2166ac" if r >= 0 else "#b2182b" for _, r, _ in top])
        ax.set_xticks(range(len(top)), [f"{result.neuron_layer}.{n}" for n, _, _ in top], rotation=60, fontsize=7)
        ax.set_ylabel("restored")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(f"layer {result.neuron_layer}'s neurons patched alone (all positions): top {len(top)}", fontsize=9)
    fig.suptitle(title or f"activation patching: {result.clean_target!r} (clean) vs {result.corrupt_target!r} "
                 f"(corrupt); 1 = fully restored", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
