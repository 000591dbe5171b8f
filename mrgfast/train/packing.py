"""Padding-free policy passes: the prompt + completion rows of a GRPO micro-batch packed without their padding.

TRL runs the policy (and the reference / old-policy passes) over ``[B, T]`` rows: each prompt left-padded to the
longest prompt, each completion right-padded to the longest completion, so every layer computes the padding too.
Here the valid tokens of the rows are laid end to end in ``K`` packed rows of ``L`` slots (``K·L`` close to the
number of real tokens) and transformers' own packed-sequence support keeps the sequences apart: with
``attention_mask=None`` and position ids that restart at 0 for each sequence, ``masking_utils.create_causal_mask``
builds a per-sequence causal mask for SDPA / eager attention (``find_packed_sequence_indices``), and the
flash-attention path turns the same position ids into ``cu_seqlens`` for its variable-length kernel.

Qwen2.5-VL's positions are 3-D (M-RoPE: temporal, height, width over the image tokens): they are computed per
row by the model's own ``get_rope_index`` on the padded batch, exactly as its forward would, and carried into the
packed layout with the per-sequence text positions in front (the ``[4, K, L]`` form Qwen2.5-VL's text model reads
as "packed": row 0 drives the mask, rows 1-3 the rotary embedding). Images keep their order (rows are packed in
order), so the vision tower and the placement of image features are unchanged.

How rows are packed depends on the attention (:func:`plan`): a variable-length kernel (flash-attention, flex
attention) costs the sum of the sequences' squares, so everything goes into one row. SDPA and eager attention
compute every pair of a packed row (masked), so rows are packed in order into bins of a capacity chosen from a
cost model of one decoder layer - ``slots x 2·P`` for the linear layers (``P`` parameters per layer) plus
``slots² x 4·heads·head_dim x DENSE_ATTENTION_WEIGHT`` for attention - over the candidates ``T, 2T, 4T, ...`` (rows of at most
``MAX_DENSE_ROW`` slots, which bounds the ``[L, L]`` mask); when no candidate costs
under 95 % of the padded batch, the padded batch runs as it is (GRPO completions that all reach
``max_completion_length`` have no padding to remove).

The packed forward gives each real token the hidden state of the padded forward (same positions, same attended
tokens); :func:`gather` reads them back at the padded positions the loss or the log-probs need.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

# per-token fields that are [B, T] like input_ids and are packed with it
PER_TOKEN_KEYS = ("token_type_ids", "mm_token_type_ids")
VARLEN_ATTENTION = ("flash", "flex")  # substrings of attention implementations that run packed rows varlen
MIN_SAVING = 0.05  # pack only when the cost model saves at least this share of the padded batch's
# a masked dense attention (SDPA / eager over a packed row) runs at a fraction of the matmuls' efficiency: its pair
# cost is weighted this many times its FLOPs (CPU, hidden 512: packed rows measured 1.2-1.4x slower than the FLOP
# count predicts, `python bench/bench_levers.py --part policy` with the layout forced)
DENSE_ATTENTION_WEIGHT = 4.0
# longest packed row for dense (SDPA / eager) attention: its [L, L] mask (and score tiles) stay under 256 M entries
MAX_DENSE_ROW = 16384


@dataclass
class Packed:
    """Model inputs in packed form and where each padded position went."""

    kwargs: dict  # input_ids/inputs_embeds [K, L], position_ids, the passed-through fields; no attention_mask
    index: torch.Tensor  # [B, T] flat index into K*L of each padded position, -1 for padding
    rows: int  # K
    length: int  # L
    tokens: int  # real tokens (== (index >= 0).sum())


def _config(model):
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def attention_implementation(model) -> str:
    cfg = _config(model)
    return str(getattr(cfg, "_attn_implementation", None) or getattr(model.config, "_attn_implementation", "eager"))


def _layer_costs(model) -> tuple[float, float]:
    """(per-token, per-token-pair) FLOP weights of one decoder layer: linear layers and dense attention."""
    cfg = _config(model)
    h = int(getattr(cfg, "hidden_size", 1))
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    kv = int(getattr(cfg, "num_key_value_heads", heads) or heads)
    hd = int(getattr(cfg, "head_dim", None) or h // heads)
    inter = int(getattr(cfg, "intermediate_size", 4 * h) or 4 * h)
    params = 2 * h * heads * hd + 2 * h * kv * hd + 3 * h * inter
    return 2.0 * params, 4.0 * heads * hd * DENSE_ATTENTION_WEIGHT


def next_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Rows (indices, in order) into bins of at most ``capacity`` tokens; a row longer than that gets its own."""
    bins: list[list[int]] = []
    fill = capacity + 1
    for i, n in enumerate(lengths):
        if fill + n > capacity:
            bins.append([])
            fill = 0
        bins[-1].append(i)
        fill += n
    return bins


def plan(lengths: list[int], padded_len: int, *, varlen: bool, costs: tuple[float, float]) -> list[list[int]] | None:
    """The bins to pack ``lengths`` into, or None when the padded batch is as cheap (see the module docstring)."""
    total, b = sum(lengths), len(lengths)
    if total == b * padded_len:  # no padding at all
        return None
    if varlen:
        return [list(range(b))]
    lin, att = costs

    def cost(rows: int, length: int) -> float:
        return rows * (length * lin + length * length * att)

    padded = cost(b, padded_len)
    best, best_cost = None, padded * (1 - MIN_SAVING)
    capacity = max(lengths)
    while True:
        bins = next_fit(lengths, capacity)
        length = max(sum(lengths[i] for i in bn) for bn in bins)
        if length > max(MAX_DENSE_ROW, padded_len):
            return best
        c = cost(len(bins), length)
        if c < best_cost:
            best, best_cost = bins, c
        if len(bins) == 1:
            return best
        capacity *= 2


def _rope_index_fn(model):
    """The model's own M-RoPE position function (Qwen2-VL family), or None."""
    for m in (model, getattr(model, "model", None)):
        fn = getattr(m, "get_rope_index", None)
        if callable(fn):
            return fn
    return None


def rope_positions(model, input_ids, attention_mask, kwargs) -> torch.Tensor | None:
    """``[3, B, T]`` M-RoPE positions of the padded rows, as the model's forward computes them, or None for a model
    (or inputs) without them."""
    fn = _rope_index_fn(model)
    if fn is None or input_ids is None:
        return None
    if kwargs.get("image_grid_thw") is None and kwargs.get("video_grid_thw") is None:
        return None  # text only: the positions are 1-D
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    names = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids")
    kw = {k: kwargs[k] for k in names if kwargs.get(k) is not None and (takes_any or k in params)}
    if "mm_token_type_ids" in params and kw.get("mm_token_type_ids") is None:
        return None  # this transformers needs the token types to place images; the forward would not use M-RoPE
    pos, _ = fn(input_ids, attention_mask=attention_mask, **kw)
    return pos


def _filler_token(model) -> int:
    cfg, top = _config(model), model.config
    media = {getattr(top, k, None) for k in ("image_token_id", "video_token_id", "image_token_index")}
    for tok in (getattr(cfg, "pad_token_id", None), getattr(cfg, "eos_token_id", None), 0):
        if isinstance(tok, (list, tuple)):
            tok = tok[0] if tok else None
        if isinstance(tok, int) and tok not in media:
            return tok
    return 0


def pack(model, kwargs: dict) -> Packed | None:
    """``kwargs`` of a padded forward (``input_ids`` or ``inputs_embeds``, ``attention_mask`` [B, T], the vision
    fields, ...) as a packed forward's, or None when packing does not pay or does not apply (no mask, a cache)."""
    mask = kwargs.get("attention_mask")
    ids = kwargs.get("input_ids")
    embeds = kwargs.get("inputs_embeds")
    if mask is None or mask.dim() != 2 or kwargs.get("position_ids") is not None or kwargs.get("cache") is not None:
        return None
    if kwargs.get("past_key_values") is not None:
        return None
    b, t = mask.shape
    valid = mask.bool()
    lengths = valid.sum(1).tolist()
    if min(lengths) == 0:
        return None
    varlen = any(s in attention_implementation(model) for s in VARLEN_ATTENTION)
    bins = plan(lengths, t, varlen=varlen, costs=_layer_costs(model))
    if bins is None:
        return None
    device = mask.device
    rows, length = len(bins), max(sum(lengths[i] for i in bn) for bn in bins)
    # where each row starts in the flat K*L layout
    start = [0] * b
    tails = []  # (flat start, size) of each bin's unused slots
    for k, bn in enumerate(bins):
        off = k * length
        for i in bn:
            start[i] = off
            off += lengths[i]
        tails.append((off, (k + 1) * length - off))
    rank = valid.long().cumsum(1) - 1  # position of each real token within its row (0-based)
    index = torch.where(valid, rank + torch.tensor(start, device=device).unsqueeze(1), torch.full_like(rank, -1))
    flat = index[valid]  # destination slot of every real token, row-major

    text_pos = torch.zeros(rows * length, dtype=torch.long, device=device)
    text_pos[flat] = rank[valid]
    for s, n in tails:  # unused slots: their own short sequence (positions from 0), attended by nobody else
        if n:
            text_pos[s : s + n] = torch.arange(n, device=device)
    out = {
        k: v for k, v in kwargs.items() if k not in ("attention_mask", "input_ids", "inputs_embeds", *PER_TOKEN_KEYS)
    }
    if ids is not None:
        packed_ids = torch.full((rows * length,), _filler_token(model), dtype=ids.dtype, device=device)
        packed_ids[flat] = ids[valid]
        out["input_ids"] = packed_ids.view(rows, length)
    if embeds is not None:
        packed_embeds = embeds.new_zeros(rows * length, embeds.size(-1))
        packed_embeds[flat] = embeds[valid]
        out["inputs_embeds"] = packed_embeds.view(rows, length, -1)
    for key in PER_TOKEN_KEYS:
        v = kwargs.get(key)
        if v is not None and v.shape == mask.shape:
            packed_v = v.new_zeros(rows * length)
            packed_v[flat] = v[valid]
            out[key] = packed_v.view(rows, length)
    rope = rope_positions(model, ids, mask, kwargs)
    text_pos = text_pos.view(rows, length)
    if rope is not None or _rope_index_fn(model) is not None:  # an M-RoPE model reads packing from [4, K, L] only
        rope = rope if rope is not None else rank.clamp(min=0).unsqueeze(0).expand(3, -1, -1)
        packed_rope = text_pos.unsqueeze(0).repeat(3, 1, 1).view(3, -1)
        packed_rope[:, flat] = rope[:, valid].to(packed_rope.dtype)
        out["position_ids"] = torch.cat([text_pos.unsqueeze(0), packed_rope.view(3, rows, length)], 0)
    else:
        out["position_ids"] = text_pos
    out["attention_mask"] = None
    return Packed(kwargs=out, index=index, rows=rows, length=length, tokens=int(sum(lengths)))


def gather(packed_values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``packed_values`` [K, L, ...] read at the padded positions ``index`` [B, T'] (-1: padding, which reads the
    first slot; callers mask those positions)."""
    flat = packed_values.reshape(-1, *packed_values.shape[2:])
    return flat[index.clamp(min=0)]
