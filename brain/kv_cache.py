"""Incremental forward with a key/value cache for the TL-native models (which have none of their own).

Live, each event adds one or two words; recomputing the whole window for them
repeats work. :class:`KVCachedForward` runs only the new tokens, attending to
the cached keys and values of the earlier ones. It reads the weights from the
bridge's state dict (so it computes exactly the TL-native architecture:
learned positions, LayerNorm, GELU/ReLU MLP, standard attention scale) and
exposes the same activation as ``blocks.{L}.mlp.hook_post`` — observed and
steered here, since these tokens never pass through the bridge's hook points.
The test suite checks it against a full recompute through the bridge.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def supports_kv_cache(model) -> bool:
    """TL-native, learned positions, LayerNorm, plain MLP: the architecture this file implements."""
    cfg = model.bridge.cfg
    return (model.kind == "embedded" and (cfg.act_fn or "gelu") in ACTIVATIONS
            and (getattr(cfg, "positional_embedding_type", "standard") or "standard") == "standard"
            and (cfg.normalization_type or "").upper() == "LN" and not getattr(cfg, "gated_mlp", False)
            and not getattr(cfg, "attn_only", False) and (getattr(cfg, "n_key_value_heads", None) in (None, cfg.n_heads)))


class KVCachedForward:
    def __init__(self, model) -> None:
        cfg = model.bridge.cfg
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.eps, self.n_ctx = cfg.eps, cfg.n_ctx
        self.act = ACTIVATIONS[cfg.act_fn or "gelu"]
        self.w = {k: v.detach() for k, v in model.bridge.state_dict().items()}
        self.reset()

    def reset(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}  # block run (step of the layer plan) -> [heads, T, d_head]
        self.values: dict[int, torch.Tensor] = {}
        self.length = 0

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def forward(self, tokens: list[int], steering=None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run the new tokens; returns logits [T, vocab] and hook_post per layer [T, d_mlp]."""
        return forward_batch([self], [tokens], [steering])[0]


@torch.inference_mode()
def forward_batch(caches: list[KVCachedForward], tokens: list[list[int]],
                  steerings: list | None = None) -> list[tuple[torch.Tensor, dict[int, torch.Tensor]]]:
    """One forward pass for several contexts (one per rig), each with its own cache and steering.

    Row i's new tokens sit at positions ``L_i .. L_i+T_i-1`` (``L_i`` its cache length); rows are padded to
    the longest ``T``. Keys are laid out by absolute position, so the plain causal rule "key j is seen by
    query t iff j <= L_i + t" also hides the padding (it only ever lies after a row's last real token).
    Returns per row logits [T_i, vocab] and hook_post per layer [T_i, d_mlp]; each cache grows by T_i.

    The rows share one layer plan (``steering.corruption``, :mod:`brain.corruption`): blocks run in its order
    (a skipped layer's neurons read 0, a repeated layer's the last run), its ablated outputs replaced."""
    first = caches[0]
    w, H, dh = first.w, first.n_heads, first.d_head
    B, T = len(caches), max(len(t) for t in tokens)
    steerings = steerings or [None] * B
    starts = [c.length for c in caches]
    for c, t, s in zip(caches, tokens, starts):
        if not t:
            raise ValueError("every row needs at least one new token")
        if s + len(t) > c.n_ctx:
            raise ValueError(f"context full: {s} + {len(t)} > n_ctx {c.n_ctx}; reset and re-read the window")
    device = w["embed.weight"].device
    ids = torch.tensor([t + [0] * (T - len(t)) for t in tokens], device=device)  # (B, T)
    start = torch.tensor(starts, device=device)[:, None]
    pos = (start + torch.arange(T, device=device)).clamp(max=first.n_ctx - 1)  # pads: any valid row of pos_embed
    x = w["embed.weight"][ids] + w["pos_embed.weight"][pos]  # (B, T, d_model)
    S = max(starts) + T
    mask = torch.arange(S, device=device)[None, None, :] > pos[:, :, None]  # (B, T, S): True = hidden
    posts: dict[int, torch.Tensor] = {}
    plan = getattr(steerings[0], "corruption", None)
    order = plan.order if plan is not None else range(first.n_layers)
    for run, layer in enumerate(order):
        p = f"blocks.{layer}"
        h = first._ln(x, f"{p}.ln1")
        q, k, v = (first._linear(h, f"{p}.attn.{n}").view(B, T, H, dh).transpose(1, 2) for n in "qkv")  # (B,H,T,dh)
        if B == 1 and starts[0] + T == S:  # one row: no layout needed
            keys = k if run not in first.keys else torch.cat([first.keys[run][None], k], dim=2)
            values = v if run not in first.values else torch.cat([first.values[run][None], v], dim=2)
        else:
            keys = k.new_zeros(B, H, S, dh)
            values = v.new_zeros(B, H, S, dh)
            for i, (c, s) in enumerate(zip(caches, starts)):
                if s:
                    keys[i, :, :s], values[i, :, :s] = c.keys[run], c.values[run]
                keys[i, :, s:s + T], values[i, :, s:s + T] = k[i], v[i]
        for i, (c, s, t) in enumerate(zip(caches, starts, tokens)):
            c.keys[run], c.values[run] = keys[i, :, :s + len(t)], values[i, :, :s + len(t)]
        scores = q @ keys.transpose(-2, -1) / math.sqrt(dh)  # (B, H, T, S)
        pattern = scores.masked_fill(mask[:, None], float("-inf")).softmax(-1)
        attn = (pattern @ values).transpose(1, 2).reshape(B, T, H * dh)
        x = x + _block_output(first._linear(attn, f"{p}.attn.o"), plan, layer, "attn", steerings[0])
        post = first.act(first._linear(first._ln(x, f"{p}.ln2"), f"{p}.mlp.in"))  # blocks.{L}.mlp.hook_post
        for i, steering in enumerate(steerings):
            steered = steering.apply(layer, post[i]) if steering else None
            if steered is not None:
                post[i] = steered
        posts[layer] = post
        x = x + _block_output(first._linear(post, f"{p}.mlp.out"), plan, layer, "mlp", steerings[0])
    for layer in range(first.n_layers):  # skipped: its neurons never fired
        if layer not in posts:
            posts[layer] = x.new_zeros(B, T, first.w[f"blocks.{layer}.mlp.in.weight"].shape[0])
    logits = first._linear(first._ln(x, "ln_final"), "unembed")
    out = []
    for i, (c, t) in enumerate(zip(caches, tokens)):
        c.length += len(t)
        out.append((logits[i, :len(t)], {layer: post[i, :len(t)] for layer, post in posts.items()}))
    return out


def _block_output(out: torch.Tensor, plan, layer: int, part: str, steering) -> torch.Tensor:
    """A block's attention or MLP output, or what the layer plan puts in its place."""
    mode = plan.ablation(layer, part) if plan is not None else None
    if mode is None:
        return out
    if mode == "zero":
        return torch.zeros_like(out)
    return steering.layer_means[(layer, part)].to(out.dtype).expand_as(out)
