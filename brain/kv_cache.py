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
        self.keys: list[torch.Tensor | None] = [None] * self.n_layers  # [heads, T, d_head]
        self.values: list[torch.Tensor | None] = [None] * self.n_layers
        self.length = 0

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.inference_mode()
    def forward(self, tokens: list[int], steering=None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run the new tokens; returns logits [T, vocab] and hook_post per layer [T, d_mlp]."""
        T, start = len(tokens), self.length
        if start + T > self.n_ctx:
            raise ValueError(f"context full: {start} + {T} > n_ctx {self.n_ctx}; reset and re-read the window")
        device = self.w["embed.weight"].device
        ids = torch.tensor(tokens, device=device)
        pos = torch.arange(start, start + T, device=device)
        x = self.w["embed.weight"][ids] + self.w["pos_embed.weight"][pos]  # (T, d_model)
        posts = {}
        for layer in range(self.n_layers):
            p = f"blocks.{layer}"
            h = self._ln(x, f"{p}.ln1")
            q, k, v = (self._linear(h, f"{p}.attn.{n}").view(T, self.n_heads, self.d_head).transpose(0, 1)
                       for n in "qkv")  # (heads, T, d_head)
            if self.keys[layer] is not None:
                k = torch.cat([self.keys[layer], k], dim=1)
                v = torch.cat([self.values[layer], v], dim=1)
            self.keys[layer], self.values[layer] = k, v
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (heads, T, start+T)
            mask = torch.ones(T, start + T, dtype=torch.bool, device=device).triu(start + 1)
            pattern = scores.masked_fill(mask, float("-inf")).softmax(-1)
            attn = (pattern @ v).transpose(0, 1).reshape(T, -1)
            x = x + self._linear(attn, f"{p}.attn.o")
            post = self.act(self._linear(self._ln(x, f"{p}.ln2"), f"{p}.mlp.in"))  # blocks.{L}.mlp.hook_post
            if steering:
                for neuron, factor in steering.for_layer(layer):
                    post[:, neuron] *= factor
            posts[layer] = post
            x = x + self._linear(post, f"{p}.mlp.out")
        logits = self._linear(self._ln(x, "ln_final"), "unembed")
        self.length += T
        return logits, posts
