"""Each image encoded once per generation batch: a cache around the frozen vision tower's output.

Why: GRPO repeats every prompt G times, and TRL encodes the images of every completion again in every pass —
generation's prefill, the old-policy and reference log-probs, and the policy pass, micro-batch by micro-batch: a
step of P prompts × G completions × V views runs the tower on 3-4 × P·G·V images for P·V distinct ones. With PEFT
and gradient checkpointing TRL also calls ``enable_input_require_grads``, whose hook on the tower's patch embedding
pulls the whole frozen tower into the policy pass's autograd graph (recomputed and back-propagated for a gradient
no parameter takes). With LoRA on the language model the tower is frozen, so its output for an image is a constant
of the step.

How: inside :meth:`VisionCache.active` the tower's own ``forward`` is swapped for the time of the block (as
:mod:`mrgfast.train.generation_head` does for the LM head; the model and its inputs are untouched). A call splits
``pixel_values`` into images by ``grid_thw`` (``t·h·w`` patch rows each), finds each image by content — an integer
fingerprint of sampled bits of its rows, every hit confirmed with ``torch.equal`` — runs the real ``forward`` without
gradients once on the images not seen yet, and returns the per-image outputs concatenated in the caller's order:
``pooler_output`` (the merged embeddings the language model takes) and ``last_hidden_state``. The key also holds
the grid, the dtype, the device and the autocast state, so an entry is exactly what that call would have computed
on its own (up to the batch composition of the matrix products). The trainer empties the cache at each generation
batch (:meth:`VisionCache.clear`).

It stands aside (the plain path, with a log line) when the tower trains (a parameter requires grad: ``lora_vision``,
full fine-tuning), when its parameters are sharded (ZeRO-3, FSDP: the gathers are collectives every rank must
join), when it has dropout, and for a tower whose output it does not know how to split per image; a single call
that asks for the tower's attentions, a tuple, or passes precomputed tensors goes to the real ``forward``. A call
that asks for hidden states (transformers hands the text model's ``output_hidden_states`` on to the tower, and the
fused policy pass asks for them) is answered without the tower's per-block states (``hidden_states`` None): nothing
in a GRPO step reads them.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger("mrgfast.train")

# the vision towers whose forward is (pixel rows, grid_thw) -> pooler_output (merged) + last_hidden_state (patches)
TOWER_ATTRIBUTES = ("visual",)
_MODULUS = 2_147_483_647  # 2**31 - 1: keeps every partial sum of the fingerprint inside int64
SAMPLED_WORDS = 64  # 16-bit words of each patch row the fingerprint reads (torch.equal confirms every hit)


def vision_tower(model):
    """The Qwen2-VL-style vision tower inside ``model`` (DDP / PEFT wrappers included), or None."""
    from mrgfast.train.fused_logps import base_model

    base = base_model(model)
    for owner in (getattr(base, "model", None), base):
        for name in TOWER_ATTRIBUTES:
            tower = getattr(owner, name, None) if owner is not None else None
            if isinstance(tower, torch.nn.Module) and hasattr(tower, "spatial_merge_size"):
                return tower
    return None


def why_not(tower) -> str | None:
    """Why the cache cannot serve ``tower`` (None when it can)."""
    from mrgfast.train.fused_logps import _sharded

    if tower is None:
        return "the model has no Qwen2-VL-style vision tower"
    params = list(tower.parameters())
    training = [p for p in params if p.requires_grad]
    if training:
        return f"the vision tower trains ({sum(p.numel() for p in training):,} parameters require grad)"
    if any(_sharded(p) for p in params):
        return "the vision tower's parameters are sharded (ZeRO-3 / FSDP)"
    dropout = [m for m in tower.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
    if dropout or float(getattr(getattr(tower, "config", None), "attention_dropout", 0.0) or 0.0) > 0:
        return "the vision tower has dropout"
    return None


@dataclass
class _Entry:
    pixels: torch.Tensor  # the image's patch rows, kept to confirm a fingerprint hit exactly
    outputs: dict  # field -> this image's rows


class VisionCache:
    """Per-generation-batch cache of one vision tower's per-image outputs (see the module doc)."""

    def __init__(self):
        self._entries: dict[tuple, _Entry] = {}
        self._weights: dict[tuple, torch.Tensor] = {}
        self.refused: str | None = None  # why the cache stood aside for the whole run (logged once)
        self.images_encoded = 0  # images the tower actually ran on
        self.images_served = 0  # images a call asked for
        self._announced = False

    def clear(self) -> None:
        self._entries.clear()

    # ------------------------------------------------------------------------------------------ activation
    @contextlib.contextmanager
    def active(self, model):
        """Inside the block, the vision tower of ``model`` answers from the cache (when it may)."""
        tower = vision_tower(model)
        if self.refused is None:
            reason = why_not(tower)
            if reason is not None:
                self.refused = reason
                log.info("vision cache: off, %s: images are encoded in every pass (plain path)", reason)
        if self.refused is not None or "forward" in vars(tower):  # off, or already swapped (re-entrant use)
            yield None
            return
        if not self._announced:
            self._announced = True
            log.info(
                "vision cache: on, each distinct image is encoded once per generation batch (%s)", type(tower).__name__
            )
        original = tower.forward

        def forward(hidden_states, grid_thw=None, **kwargs):
            return self._forward(tower, original, hidden_states, grid_thw, kwargs)

        tower.forward = forward
        try:
            yield tower
        finally:
            del tower.forward  # the class's forward again

    # ------------------------------------------------------------------------------------------ lookup
    def _forward(self, tower, original, pixels, grid_thw, kwargs):
        # transformers hands the text model's output_hidden_states on to the tower (the fused policy pass asks
        # for them); nobody in a GRPO step reads the tower's per-block states, so the cache answers without them
        extra = set(kwargs) - {"return_dict", "output_hidden_states", "output_attentions"}
        if (
            grid_thw is None
            or kwargs.get("output_attentions")
            or kwargs.get("return_dict") is False
            or extra
            or pixels.dim() != 2
            or grid_thw.size(0) == 0
        ):
            return original(pixels, grid_thw=grid_thw, **kwargs)
        rows = (grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2]).tolist()
        if sum(rows) != pixels.size(0):
            return original(pixels, grid_thw=grid_thw, **kwargs)
        merge = int(tower.spatial_merge_size) ** 2
        context = _context(pixels, tower)
        grids = [tuple(g) for g in grid_thw.tolist()]
        prints = self._fingerprints(pixels, rows)
        starts = [0]
        for n in rows:
            starts.append(starts[-1] + n)
        keys, missing = [], {}  # missing: key -> the first image of this call that needs encoding
        for i, (grid, fp) in enumerate(zip(grids, prints)):
            key = (grid, *context, *fp)
            piece = pixels[starts[i] : starts[i + 1]]
            while True:
                entry = self._entries.get(key)
                if entry is not None:
                    seen = entry.pixels
                elif key in missing:
                    j = missing[key]
                    seen = pixels[starts[j] : starts[j + 1]]
                else:
                    missing[key] = i
                    break
                if torch.equal(seen, piece):
                    break
                key = (*key, "collision")  # another image with the same fingerprint: the next slot
            keys.append(key)
        if missing:
            order = list(missing.values())
            sub_pixels = torch.cat([pixels[starts[i] : starts[i + 1]] for i in order])
            sub_grid = grid_thw[order]
            with torch.no_grad():
                out = original(sub_pixels, grid_thw=sub_grid, return_dict=True)
            fields = _split(out, [rows[i] for i in order], merge)
            if fields is None:
                self.refused = f"{type(tower).__name__}'s output has fields it cannot split per image"
                log.info("vision cache: off, %s: images are encoded in every pass (plain path)", self.refused)
                return original(pixels, grid_thw=grid_thw, **kwargs)
            for j, (key, i) in enumerate(missing.items()):
                piece = pixels[starts[i] : starts[i + 1]].detach().clone()
                self._entries[key] = _Entry(piece, {name: parts[j] for name, parts in fields.items()})
            self.images_encoded += len(order)
        self.images_served += len(keys)
        return _assemble(self._entries, keys)

    def _fingerprints(self, pixels: torch.Tensor, rows: list[int]) -> list[tuple[int, ...]]:
        """Per image, two integers over :data:`SAMPLED_WORDS` fixed 16-bit words of each of its patch rows, in row
        order (exact integer arithmetic: the same bits give the same numbers whatever the batch around them). Two
        images that agree on the sampled words get the same fingerprint; ``torch.equal`` on the whole image then
        tells them apart, so the cache stays exact and the fingerprint stays cheap."""
        data = pixels.detach()
        if data.element_size() % 2:
            data = data.to(torch.float16 if data.element_size() == 1 else torch.float32)
        words = data.contiguous().view(torch.int16).reshape(data.size(0), -1)  # 16-bit words of each row
        width = words.size(1)
        key = (width, str(words.device))
        if key not in self._weights:
            g = torch.Generator().manual_seed(0x5EED)
            cols = torch.randperm(width, generator=g)[: min(width, SAMPLED_WORDS)].sort().values
            weights = torch.randint(1, 4096, (2, cols.numel()), generator=g, dtype=torch.int64)
            self._weights[key] = (cols.to(words.device), weights.to(words.device))
        cols, col_w = self._weights[key]
        sampled = words.index_select(1, cols).to(torch.int64) + 32768  # [rows, sampled words] in [0, 65536)
        local = torch.cat([torch.arange(n, device=words.device, dtype=torch.int64) for n in rows])
        image = torch.repeat_interleave(
            torch.arange(len(rows), device=words.device), torch.tensor(rows, device=words.device)
        )
        out = torch.zeros(2, len(rows), dtype=torch.int64, device=words.device)
        for h in range(2):
            per_row = (sampled * col_w[h]).sum(dim=1) % _MODULUS  # < 2**16 * 2**12 * 64: no overflow
            row_w = (local * (2654435761 if h else 40503) + 12345 + h) % 1048573 + 1
            out[h].index_add_(0, image, (per_row * row_w) % _MODULUS)
        return [tuple(x) for x in out.T.tolist()]


def _context(pixels, tower) -> tuple:
    device = pixels.device.type
    amp = torch.is_autocast_enabled(device) if device in ("cpu", "cuda") else False
    amp_dtype = str(torch.get_autocast_dtype(device)) if amp else None
    dtype = next(tower.parameters()).dtype
    return (str(pixels.dtype), str(dtype), str(pixels.device), amp, amp_dtype)


def _split(out, rows: list[int], merge: int) -> dict | None:
    """The output's tensor fields cut per image (patch rows or merged rows), or None for a layout it does not know."""
    fields = {}
    n_patch, n_merged = sum(rows), sum(r // merge for r in rows)
    for name, value in out.items():
        if value is None:
            continue
        if not torch.is_tensor(value):
            return None
        if value.size(0) == n_patch:
            fields[name] = list(torch.split(value.detach(), rows))
        elif value.size(0) == n_merged and all(r % merge == 0 for r in rows):
            fields[name] = list(torch.split(value.detach(), [r // merge for r in rows]))
        else:
            return None
    return fields if "pooler_output" in fields else None


def _assemble(entries, keys):
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    first = entries[keys[0]].outputs
    cat = {name: torch.cat([entries[k].outputs[name] for k in keys]) for name in first}
    return BaseModelOutputWithPooling(**cat)
