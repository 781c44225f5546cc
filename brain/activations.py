"""Batched capture of MLP neuron activations (``blocks.{L}.mlp.hook_post``) over many texts.

Texts are tokenized, cut into ``n_ctx`` chunks, sorted by length and run in
padded batches (right padding: a causal model's real positions never see
it). The result keeps, for every real token, its text index, its character
span and its activations for each requested layer.

On a GPU the batch's real tokens are picked on the device and copied to the
host once per layer per batch, into pinned memory without waiting; the host
waits once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Capture:
    layers: list[int]
    acts: dict[int, torch.Tensor]  # layer -> [n_tokens, d_mlp] float32 on CPU
    token_ids: torch.Tensor  # [n_tokens]
    text_index: torch.Tensor  # [n_tokens]
    offsets: torch.Tensor  # [n_tokens, 2] char span in its text
    position: torch.Tensor  # [n_tokens] position within its chunk

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.numel())


def pad_rows(rows: list[list[int]], device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows right-padded into one batch [B, T], and the mask of real tokens (a causal model's real positions
    never see the padding)."""
    width = max(len(r) for r in rows)
    x = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        x[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = True
    return x.to(device), mask.to(device)


def token_chunks(model, texts: list[str]) -> list[tuple[int, list[int], list[tuple[int, int]]]]:
    """(text index, ids, character offsets) of each ``n_ctx`` chunk of the texts, room left for a BOS token (which
    the caller puts in front: ``model.tokenizer.bos_id``)."""
    tok = model.tokenizer
    pieces = []
    step = model.n_ctx - (1 if tok.bos_id is not None else 0)
    for ti, text in enumerate(texts):
        ids, offs = tok.encode(text)
        for i in range(0, len(ids), step):
            pieces.append((ti, ids[i:i + step], offs[i:i + step]))
    return pieces


@torch.inference_mode()
def capture_activations(model, texts: list[str], layers: list[int] | None = None, batch_size: int | None = None,
                        progress: bool = False, dtype: torch.dtype = torch.float32) -> Capture:
    """``batch_size``: chunks per forward pass (default 32 on a CPU, 256 on a GPU, which a small batch leaves idle)."""
    layers = list(range(model.n_layers)) if layers is None else layers
    for layer in layers:
        model.check_neuron(layer)
    tok = model.tokenizer
    pieces = token_chunks(model, texts)
    pieces.sort(key=lambda p: len(p[1]))
    names = {model.hook_name(layer) for layer in layers}
    acts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    tids, tidx, toffs, tpos = [], [], [], []
    pinned = str(model.device).startswith("cuda")
    batch_size = batch_size or (256 if pinned else 32)
    batches = range(0, len(pieces), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="capturing activations", unit="batch")
    prefix = [tok.bos_id] if tok.bos_id is not None else []
    for start in batches:
        group = pieces[start:start + batch_size]
        width = len(prefix) + max(len(p[1]) for p in group)
        x = torch.zeros(len(group), width, dtype=torch.long)
        real = []  # flat indices of the real tokens, row by row
        for j, (_, ids, _) in enumerate(group):
            x[j, :len(prefix) + len(ids)] = torch.tensor(prefix + ids)
            real.append(torch.arange(j * width + len(prefix), j * width + len(prefix) + len(ids)))
        real_idx = torch.cat(real).to(model.device, non_blocking=True)
        _, cache = model.bridge.run_with_cache(x.to(model.device, non_blocking=True), names_filter=lambda n: n in names)
        for layer in layers:
            act = cache[model.hook_name(layer)]
            picked = act.reshape(-1, act.shape[-1])[real_idx].to(dtype)
            if pinned:  # one copy per layer per batch
                picked = torch.empty(picked.shape, dtype=dtype, pin_memory=True).copy_(picked, non_blocking=True)
            acts[layer].append(picked)
        for ti, ids, offs in group:
            tids.append(torch.tensor(ids))
            tidx.append(torch.full((len(ids),), ti))
            toffs.append(torch.tensor(offs, dtype=torch.long).reshape(-1, 2))
            tpos.append(torch.arange(len(ids)))
    if pinned:
        torch.cuda.synchronize(model.device)  # the copies above did not wait
    return Capture(layers=layers, acts={layer: torch.cat(v) for layer, v in acts.items()},
                   token_ids=torch.cat(tids), text_index=torch.cat(tidx), offsets=torch.cat(toffs),
                   position=torch.cat(tpos))
