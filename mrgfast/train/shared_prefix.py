"""Rows of a GRPO micro-batch that share a prompt, run as one sequence per group: ``[prompt, c_1, ..., c_G]``.

Why: TRL repeats every prompt G times, and the policy pass and the no-grad reference / old-policy passes compute
each row's prompt again: the chat template, the image tokens of every view and the instruction, often longer than
the completion. Here the prompt of a group is computed once and its G completions attend to it.

Which rows: those whose prompt is equal - the valid prompt token ids, the per-token type ids over them, and the
images (grids equal, pixel rows ``torch.equal``) - whatever their order in the batch (TRL shuffles the micro-batches
of a generation batch; nothing here relies on its order). A group cut by a micro-batch boundary is a smaller group;
a row whose prompt no other row has is a group of one (its own prompt + completion, as in the padded batch).

The layout: per group one sequence, the prompt's valid tokens then each completion's valid tokens (the completion
mask must be a prefix: 1 up to EOS, 0 after, which is how TRL builds it); sequences are laid one per row, or packed
several per row by :func:`mrgfast.train.packing.plan` when ``pack_sequences`` is on, the rest of a row padding (a
sequence of its own, attended by nobody else). The attention mask - each completion attends causally to the prompt
and to itself, never to another completion or another sequence - is built by transformers' own mask interface
(``masking_utils.ALL_MASK_ATTENTION_FUNCTIONS``, what ``create_causal_mask`` calls for the model's attention) from
the causal function and'ed with the layout's: a boolean ``[K, 1, L, L]`` mask for SDPA, the additive one for eager
attention, a ``BlockMask`` for flex attention. The model receives it as its ``attention_mask``; a 4-D mask is what
``create_causal_mask`` returns unchanged (nothing of transformers is patched). flash-attention's varlen kernels take sequences, not masks, and a shared prefix is not one: there, and
for sliding-window or linear-attention layers (whose window counts slots, not positions), the caller keeps
``pack_sequences`` / the padded batch, and says so in the log.

Positions: each completion continues from the prompt's end, as in its padded row. For Qwen2.5-VL (3-D M-RoPE) the
positions come from the model's own ``get_rope_index`` run on one row per group - the member with the longest
completion - over prompt + completion: the prompt's positions, and the text positions that continue after it (the
same for every completion of the group, since completion tokens are text). Other models get 1-D positions from 0.
Images are then encoded once per group instead of once per row.

Exactness: every completion token attends to the same keys, with the same positions, as in its padded row, so its
hidden state is the padded row's up to the order of floating-point sums; the gradient reaching the shared prompt's
states is the sum of what the G padded rows' prompts receive, which is the padded path's gradient.
:func:`mrgfast.train.packing.gather` reads the states back at the padded positions (the prompt's positions of every
member read the same shared slots).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrgfast.train import packing

# attention implementations that take a custom 4-D mask (a BlockMask for flex), passed on by create_causal_mask
MASK_ATTENTION = ("sdpa", "eager", "flex_attention")
# model inputs this layout rewrites or passes on; any other (videos, image sizes, a cache, embeddings) -> not shared
_REWRITTEN = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", *packing.PER_TOKEN_KEYS)
_PASSED = ("use_cache", "output_hidden_states", "return_dict")


@dataclass
class Shared:
    """Model inputs with the groups' prompts shared, and where each padded position went."""

    kwargs: dict  # input_ids [K, L], attention_mask (4-D), position_ids, the groups' images, per-token fields
    index: torch.Tensor  # [B, T] flat index into K*L of each padded position, -1 for padding
    rows: int  # K
    length: int  # L
    sequences: int  # shared sequences (groups; a group longer than MAX_DENSE_ROW is split)
    tokens: int  # real tokens in the layout


def why_not(model) -> str | None:
    """Why ``model``'s attention cannot take the shared layout's mask (None when it can)."""
    impl = packing.attention_implementation(model)
    if impl not in MASK_ATTENTION:
        return f"{impl} attention runs sequences, not masks (a shared prefix is not one varlen sequence per completion)"
    cfg = packing._config(model)
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layers of type {sorted(kinds - {'full_attention'})} (their window counts slots, not positions)"
    return None


def _image_token_ids(model) -> tuple[int | None, int | None]:
    top = model.config
    image = getattr(top, "image_token_id", None)
    if image is None:
        image = getattr(top, "image_token_index", None)
    return image, getattr(top, "video_token_id", None)


def _row_images(model, ids: torch.Tensor, kwargs: dict) -> list[list[int]] | None:
    """The images of each row, in the order the model places them (row-major over the image tokens), or None when
    the tokens and the grids do not add up."""
    b = ids.size(0)
    pixels, grid = kwargs.get("pixel_values"), kwargs.get("image_grid_thw")
    if pixels is None and grid is None:
        return [[] for _ in range(b)]
    if pixels is None or grid is None or pixels.dim() != 2 or grid.dim() != 2:
        return None
    image_token, _ = _image_token_ids(model)
    vision = getattr(model.config, "vision_config", None)
    merge = int(getattr(vision, "spatial_merge_size", 0) or 0)
    if image_token is None or merge <= 0:
        return None
    patches = grid.prod(-1)
    if int(patches.sum()) != pixels.size(0):
        return None
    tokens = (patches // merge**2).tolist()
    per_row = (ids == image_token).sum(1).tolist()
    out, j = [], 0
    for want in per_row:
        mine, got = [], 0
        while got < want and j < len(tokens):
            mine.append(j)
            got += tokens[j]
            j += 1
        if got != want:
            return None
        out.append(mine)
    return out if j == len(tokens) else None


def _groups(ids, valid, prompt_width, kwargs, row_images, pixel_starts) -> list[list[int]]:
    """Rows with equal prompts (valid prompt ids, per-token fields over them, images), in batch order."""
    p = prompt_width
    host_ids, host_valid = ids[:, :p].cpu(), valid[:, :p].cpu()
    fields = [kwargs[k][:, :p].cpu() for k in packing.PER_TOKEN_KEYS if kwargs.get(k) is not None]
    grid = kwargs.get("image_grid_thw")
    grids = grid.tolist() if grid is not None else []
    pixels = kwargs.get("pixel_values")
    buckets: dict[tuple, list[list[int]]] = {}
    order: list[list[int]] = []
    for i in range(ids.size(0)):
        v = host_valid[i]
        key = (
            tuple(host_ids[i][v].tolist()),
            *(tuple(f[i][v].tolist()) for f in fields),
            tuple(tuple(grids[j]) for j in row_images[i]),
        )
        for group in buckets.setdefault(key, []):
            lead = group[0]
            if all(
                torch.equal(
                    pixels[pixel_starts[a] : pixel_starts[a + 1]],
                    pixels[pixel_starts[c] : pixel_starts[c + 1]],
                )
                for a, c in zip(row_images[lead], row_images[i])
            ):
                group.append(i)
                break
        else:
            group = [i]
            buckets[key].append(group)
            order.append(group)
    return order


def _cost(costs, rows: int, length: int) -> float:
    lin, att = costs
    return rows * (length * lin + length * length * att)


def share(model, kwargs: dict, prompt_width: int, *, pack: bool = False) -> Shared | None:
    """``kwargs`` of a padded forward over ``[prompt | completion]`` rows (``prompt_width`` prompt columns) with the
    rows of equal prompts shared, or None: no two rows share a prompt, the layout does not cost less than the padded
    batch (or the packed one, with ``pack``), or it does not apply (see the module docstring)."""
    ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
    if ids is None or mask is None or mask.dim() != 2 or ids.shape != mask.shape:
        return None
    if any(kwargs.get(k) is not None for k in kwargs if k not in _REWRITTEN + _PASSED) or kwargs.get("use_cache"):
        return None
    b, t = ids.shape
    p = int(prompt_width)
    if b < 2 or not 0 < p < t or why_not(model) is not None:
        return None
    valid = mask.bool()
    completion = valid[:, p:]
    if not valid[:, p - 1].all() or (completion[:, 1:] & ~completion[:, :-1]).any():
        return None  # the prompt does not end at its last column, or a completion has holes
    image_token, video_token = _image_token_ids(model)
    for tok in (image_token, video_token):
        if tok is not None and (ids[:, p:] == tok).any():
            return None  # media tokens inside a completion: not the layout this models
    for key in packing.PER_TOKEN_KEYS:
        v = kwargs.get(key)
        if v is not None and (v.shape != ids.shape or v[:, p:].any()):
            return None
    row_images = _row_images(model, ids, kwargs)
    if row_images is None:
        return None
    grid = kwargs.get("image_grid_thw")
    pixel_starts = [0]
    if grid is not None:
        for n in grid.prod(-1).tolist():
            pixel_starts.append(pixel_starts[-1] + n)
    groups = _groups(ids, valid, p, kwargs, row_images, pixel_starts)
    if len(groups) == b:
        return None  # no prompt shared in this micro-batch
    prompt_len = valid[:, :p].sum(1).tolist()
    comp_len = completion.sum(1).tolist()
    # sequences: each group, cut into consecutive parts where it would pass the dense-row cap
    cap = max(packing.MAX_DENSE_ROW, t)
    seqs: list[list[int]] = []
    for group in groups:
        part, size = [], prompt_len[group[0]]
        for r in group:
            if part and size + comp_len[r] > cap:
                seqs.append(part)
                part, size = [], prompt_len[group[0]]
            part.append(r)
            size += comp_len[r]
        seqs.append(part)
    lengths = [prompt_len[s[0]] + sum(comp_len[r] for r in s) for s in seqs]
    costs = packing._layer_costs(model)
    bins = packing.plan(lengths, max(lengths), varlen=False, costs=costs) if pack else None
    bins = bins or [[s] for s in range(len(seqs))]
    rows, length = len(bins), max(sum(lengths[s] for s in bn) for bn in bins)
    alternative = _cost(costs, b, t)
    if pack:
        packed_bins = packing.plan([x + y for x, y in zip(prompt_len, comp_len)], t, varlen=False, costs=costs)
        if packed_bins is not None:
            packed_len = max(sum(prompt_len[i] + comp_len[i] for i in bn) for bn in packed_bins)
            alternative = min(alternative, _cost(costs, len(packed_bins), packed_len))
    if _cost(costs, rows, length) > alternative * (1 - packing.MIN_SAVING):
        return None
    return _layout(model, kwargs, p, seqs, bins, rows, length, valid, prompt_len, comp_len, row_images, pixel_starts)


def _layout(model, kwargs, p, seqs, bins, rows, length, valid, prompt_len, comp_len, row_images, pixel_starts):
    ids = kwargs["input_ids"]
    b, t = ids.shape
    device = ids.device
    leaders = [max(s, key=lambda r: comp_len[r]) for s in seqs]  # its positions cover every member's completion
    rope = _leader_positions(model, kwargs, leaders, row_images)
    size = rows * length
    src = torch.full((size,), -1, dtype=torch.long, device=device)  # flat source position in [B, T]
    seq_id = torch.zeros(size, dtype=torch.long, device=device)
    seg = torch.zeros(size, dtype=torch.long, device=device)  # 0: prompt (and padding), j: the j-th completion
    text_pos = torch.zeros(size, dtype=torch.long, device=device)
    rope_pos = torch.zeros(3, size, dtype=torch.long, device=device) if rope is not None else None
    index = torch.full((b, t), -1, dtype=torch.long, device=device)
    prompt_cols = [valid[r, :p].nonzero().squeeze(1) for r in range(b)]
    image_order: list[int] = []
    next_id = 1
    for k, bn in enumerate(bins):
        off = k * length
        for s in bn:
            lead, members = leaders[s], seqs[s]
            n_p = prompt_len[lead]
            dst = torch.arange(off, off + n_p, device=device)
            src[dst] = lead * t + prompt_cols[lead]
            seq_id[dst] = next_id
            text_pos[dst] = torch.arange(n_p, device=device)
            if rope_pos is not None:
                rope_pos[:, dst] = rope[:, s, prompt_cols[lead]]
            image_order.extend(row_images[lead])
            at = off + n_p
            for j, r in enumerate(members, start=1):
                index[r, prompt_cols[r]] = dst
                n = comp_len[r]
                cdst = torch.arange(at, at + n, device=device)
                cols = torch.arange(p, p + n, device=device)
                src[cdst] = r * t + cols
                index[r, cols] = cdst
                seq_id[cdst] = next_id
                seg[cdst] = j
                text_pos[cdst] = torch.arange(n_p, n_p + n, device=device)
                if rope_pos is not None:
                    rope_pos[:, cdst] = rope[:, s, cols]
                at += n
            off = at
            next_id += 1
        tail = torch.arange(off, (k + 1) * length, device=device)
        if tail.numel():  # unused slots: a sequence of their own, attended by nobody else
            seq_id[tail] = next_id
            text_pos[tail] = torch.arange(tail.numel(), device=device)
            next_id += 1
    real = src >= 0
    out = {k: v for k, v in kwargs.items() if k in _PASSED}
    out["use_cache"] = False
    flat_ids = torch.full((size,), packing._filler_token(model), dtype=ids.dtype, device=device)
    flat_ids[real] = ids.reshape(-1)[src[real]]
    out["input_ids"] = flat_ids.view(rows, length)
    for key in packing.PER_TOKEN_KEYS:
        v = kwargs.get(key)
        if v is not None:
            flat = v.new_zeros(size)
            flat[real] = v.reshape(-1)[src[real]]
            out[key] = flat.view(rows, length)
    if kwargs.get("pixel_values") is not None:
        pixels = kwargs["pixel_values"]
        out["pixel_values"] = torch.cat([pixels[pixel_starts[j] : pixel_starts[j + 1]] for j in image_order])
        out["image_grid_thw"] = kwargs["image_grid_thw"][torch.tensor(image_order, dtype=torch.long)]
    if rope_pos is not None:
        rope_pos[:, ~real] = text_pos[~real]
        out["position_ids"] = rope_pos.view(3, rows, length)
    elif packing._rope_index_fn(model) is not None:  # an M-RoPE model without images: text positions on all 3
        out["position_ids"] = text_pos.view(1, rows, length).expand(3, -1, -1)
    else:
        out["position_ids"] = text_pos.view(rows, length)
    out["attention_mask"] = _mask(model, seq_id.view(rows, length), seg.view(rows, length))
    return Shared(out, index, rows, length, len(seqs), int(real.sum()))


def _leader_positions(model, kwargs, leaders, row_images) -> torch.Tensor | None:
    """``[3, S, T]`` M-RoPE positions of the leaders' padded rows, as the model's forward computes them (None for
    a model or a batch without them)."""
    if kwargs.get("image_grid_thw") is None:
        return None
    sub = {k: kwargs[k][leaders] for k in packing.PER_TOKEN_KEYS if kwargs.get(k) is not None}
    sub["image_grid_thw"] = kwargs["image_grid_thw"][
        torch.tensor([j for r in leaders for j in row_images[r]], dtype=torch.long)
    ]
    return packing.rope_positions(model, kwargs["input_ids"][leaders], kwargs["attention_mask"][leaders], sub)


def _mask(model, seq_id: torch.Tensor, seg: torch.Tensor):
    """The 4-D mask (or BlockMask) of the layout from transformers' mask interface for the model's attention (what
    ``create_causal_mask`` calls): causal, within one sequence, and to the prompt or the query's own completion only.
    The function is index-based, so it is evaluated by broadcasting (``use_vmap=False``: boolean ``[K, 1, L, L]``
    temporaries, where ``create_causal_mask``'s vmap path for custom functions would hold int64 ones)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, and_masks, causal_mask_function

    def same_sequence_prompt_or_own(batch_idx, head_idx, q_idx, kv_idx):
        kv_seg = seg[batch_idx, kv_idx]
        same = seq_id[batch_idx, q_idx] == seq_id[batch_idx, kv_idx]
        return same & ((kv_seg == 0) | (kv_seg == seg[batch_idx, q_idx]))

    rows, length = seq_id.shape
    cfg = packing._config(model)
    return ALL_MASK_ATTENTION_FUNCTIONS[cfg._attn_implementation](
        batch_size=rows,
        q_length=length,
        kv_length=length,
        mask_function=and_masks(causal_mask_function, same_sequence_prompt_or_own),
        attention_mask=None,
        allow_is_causal_skip=False,
        dtype=model.get_input_embeddings().weight.dtype,  # eager's additive mask: the hidden states' dtype
        config=cfg,
        use_vmap=False,
        device=seq_id.device,
    )
