"""Generation without per-token overhead: LoRA merged while TRL generates, and a compiled static-cache decode.

Two levers of ``mrgfast train`` (``MrgConfig.merge_lora_for_generation``, ``MrgConfig.compile_generation``), both
used by :class:`mrgfast.train.trainers.MrgGRPOTrainer` around TRL's ``transformers`` generation path (with
``use_vllm`` TRL's vLLM engine generates and merges the adapter itself; neither lever applies).

**LoRA merged while generating** (:class:`LoraMergeForGeneration`). Every decoding step runs every adapted layer
once per new token; unmerged, each LoRA layer adds four to five small kernels (dropout, ``A``, ``B``, scale, add) to
the base matmul, which on a GPU is launch overhead and on the CPU a few per cent of the step. PEFT's own
``merge_adapter()`` folds ``W + s·BA`` into the base weights for the time of generation and ``unmerge_adapter()``
takes it out after. Unmerging subtracts the rounded delta from the rounded sum, which does not give ``W`` back
bit for bit: in bf16 the error compounds over steps (a measured 0.67 × the mean weight after 1,000 cycles,
huggingface/trl#6688). The frozen base weights are therefore copied once (to pinned host memory when they live on
a GPU, so device memory does not grow) and copied back after each unmerge: the reference model and the next
policy pass see exactly the weights they had. Merging is in place, so parameter addresses never change (a CUDA
graph captured on them stays valid). The LoRA parameters and the optimizer are only read.

Skipped, with one log line, where it cannot be exact or cheap: no PEFT LoRA model; base weights that train
(full fine-tuning, ``modules_to_save`` on an adapted layer); sharded weights (DeepSpeed ZeRO-3, FSDP ``DTensor``
or flat parameters: merging would need the whole layer gathered, TRL's vLLM sync does that); LoRA variants
(DoRA and others unmerge out of place); quantized base layers. With ``lora_dropout > 0`` TRL's unmerged
generation applies dropout to the adapter branch (the model is in training mode while it generates); the merged
weights sample the dropout-free policy, as TRL's vLLM path (which also receives merged weights) does.

**Compiled static-cache decode** (:func:`configure_compiled_decode`). transformers compiles the decoding step's
forward when the cache is static and the generation config allows it (``cache_implementation="static"``,
``compile_config``; ``mode="reduce-overhead"`` records CUDA graphs on a GPU, one replay per token instead of
hundreds of launches). TRL builds its ``GenerationConfig`` with ``disable_compile=True``, and ``generation_kwargs``
cannot undo that (the keyword is passed twice), so the trainer edits its own ``self.generation_config`` after
TRL's ``__init__`` - the documented attribute every ``generate`` call of the trainer receives. ``auto`` turns it on
with CUDA only (and not under ZeRO-3 / FSDP, which gather the weights around each generation). On the CPU it
does not pay: ``python bench/bench_levers.py --part generate`` (2026-12-04, 6 layers, hidden 512, 16 sequences x
48 tokens, 1 thread, load average 1.8-2.1) measured the merged eager decode at 0.87x the CPU time of TRL's
unmerged one and the merged compiled decode at 0.89x, after a first call that compiled for 6-43 s (three runs);
the compilation is paid again whenever the static cache grows to a longer prompt. A failed
compilation (a dynamo or inductor error) falls back to eager decoding with a warning instead of ending the run.
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger("mrgfast.train")

COMPILE_MODES = ("auto", "on", "off")


# ------------------------------------------------------------------------------------------ LoRA merge
def _peft_model(model):
    """The PEFT model inside DDP-style ``.module`` wrappers, or None."""
    m = model
    while hasattr(m, "module") and isinstance(m.module, torch.nn.Module):
        m = m.module
    return m if hasattr(m, "merge_adapter") and hasattr(m, "unmerge_adapter") else None


def _sharded(t) -> bool:
    from mrgfast.train.distributed import is_zero3_partitioned

    if t is None:
        return False
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without DTensor
        DTensor = ()
    return (
        is_zero3_partitioned(t)
        or isinstance(t, DTensor)
        or getattr(t, "_is_flat_param", False)  # FSDP1's FlatParameter
        or type(t).__name__ == "FlatParameter"
        or t.numel() == 0
    )


def lora_layers(model) -> list:
    """The PEFT LoRA layers of ``model`` that hold an active adapter."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - PEFT is a dependency of the train extra
        return []
    out = []
    for m in model.modules():
        if isinstance(m, LoraLayer) and any(a in m.lora_A for a in m.active_adapters):
            out.append(m)
    return out


def merge_blocker(model) -> str | None:
    """Why the adapter of ``model`` cannot be merged exactly for generation, or None when it can."""
    peft = _peft_model(model)
    if peft is None:
        return "not a PEFT model"
    layers = lora_layers(peft)
    if not layers:
        return "no active LoRA layer"
    for layer in layers:
        base = layer.get_base_layer()
        weight = getattr(base, "weight", None)
        if weight is None or not torch.is_floating_point(weight) or type(base) not in (torch.nn.Linear,):
            return f"{type(base).__name__} base layer (quantized or not a plain Linear)"
        adapters = [layer.lora_A[a].weight for a in layer.active_adapters if a in layer.lora_A]
        if any(_sharded(p) for p in (weight, getattr(base, "bias", None), *adapters)):
            return "sharded weights (DeepSpeed ZeRO-3 / FSDP); TRL's vLLM path gathers them to merge"
        if any(p.requires_grad for p in base.parameters()):
            return "the base weights train (full fine-tuning or modules_to_save)"
        if getattr(layer, "lora_variant", None) and any(a in layer.lora_variant for a in layer.active_adapters):
            return "a LoRA variant (DoRA, ...) that unmerges out of place"
        if layer.merged:
            return "the adapter is already merged"
    return None


class LoraMergeForGeneration:
    """Merges a PEFT model's LoRA adapter for the time of a ``with merged(model):`` block, restoring the exact base
    weights after (see the module docstring). One instance per trainer: it keeps the base-weight snapshot."""

    def __init__(self):
        self._snapshot: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (param, copy, data_ptr at copy)
        self._told: set[str] = set()

    def _tell(self, why: str) -> None:
        if why not in self._told:
            self._told.add(why)
            log.info("LoRA not merged for generation: %s", why)

    def _base_params(self, peft) -> list[torch.Tensor]:
        params, seen = [], set()
        for layer in lora_layers(peft):
            base = layer.get_base_layer()
            for p in (base.weight, getattr(base, "bias", None)):
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def _take_snapshot(self, params: list[torch.Tensor]) -> None:
        snap = []
        for p in params:
            if p.device.type == "cuda":  # pinned host memory: device memory does not grow
                copy = torch.empty(p.shape, dtype=p.dtype, device="cpu", pin_memory=True)
                copy.copy_(p.detach(), non_blocking=False)
            else:
                copy = p.detach().clone()
            snap.append((p, copy, p.data_ptr()))
        self._snapshot = snap
        nbytes = sum(c.numel() * c.element_size() for _, c, _ in snap)
        log.info(
            "LoRA merged while generating: base weights of %d adapted layers copied once (%.1f MiB, %s) to restore "
            "them exactly after each unmerge",
            len(snap),
            nbytes / 2**20,
            "pinned host memory" if snap and snap[0][0].device.type == "cuda" else "host memory",
        )

    def _snapshot_valid(self, params: list[torch.Tensor]) -> bool:
        return len(params) == len(self._snapshot) and all(
            p is q and p.data_ptr() == ptr and p.shape == c.shape and p.dtype == c.dtype
            for p, (q, c, ptr) in zip(params, self._snapshot)
        )

    @contextlib.contextmanager
    def merged(self, model):
        """Inside the block ``model``'s LoRA adapter is merged into its base weights (or, when that cannot be
        exact, nothing changes and the reason is logged once)."""
        why = merge_blocker(model)
        if why is not None:
            self._tell(why)
            yield False
            return
        peft = _peft_model(model)
        params = self._base_params(peft)
        if not self._snapshot_valid(params):  # first use, or the weights were moved / replaced
            self._take_snapshot(params)
        try:
            with torch.no_grad():
                peft.merge_adapter()
        except Exception as e:  # PEFT refuses this model (e.g. _check_merge_allowed): generate unmerged
            self._restore(peft)
            self._tell(f"PEFT refused to merge ({type(e).__name__}: {e})")
            yield False
            return
        try:
            yield True
        finally:
            self._restore(peft)

    def _restore(self, peft) -> None:
        with torch.no_grad():
            if any(layer.merged for layer in lora_layers(peft)):
                peft.unmerge_adapter()  # PEFT's bookkeeping (merged_adapters) back to unmerged
            for p, copy, _ in self._snapshot:
                p.data.copy_(copy, non_blocking=True)  # the exact bits, in place (addresses unchanged)


# ------------------------------------------------------------------------------------------ compiled decode
def compiled_decode_wanted(mode: str, device: torch.device | str, *, sharded: bool = False) -> bool:
    """Whether ``compile_generation=mode`` turns the compiled static-cache decode on for ``device``; ``auto`` leaves
    it off on the CPU and when a sharding engine (ZeRO-3, FSDP) gathers the weights around each generation."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_generation must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "auto":
        return torch.device(device).type == "cuda" and not sharded
    return mode == "on"


def configure_compiled_decode(generation_config, *, device, user_cache_implementation=None) -> str | None:
    """Turn TRL's ``GenerationConfig`` into one that decodes with a static cache and a compiled step; returns why
    not (and leaves it unchanged) when a user-chosen cache implementation other than ``static`` is set."""
    from transformers import CompileConfig

    if user_cache_implementation not in (None, "static"):
        return f"grpo.cache_implementation={user_cache_implementation!r} was chosen (a compiled decode needs 'static')"
    generation_config.cache_implementation = "static"
    generation_config.disable_compile = False
    # fullgraph off: flash-attention and the LoRA layers may break the graph; "reduce-overhead" = CUDA graphs
    compile_config = CompileConfig(
        fullgraph=False, mode="reduce-overhead" if torch.device(device).type == "cuda" else "default"
    )
    if torch.device(device).type != "cuda":
        compile_config._compile_all_devices = True  # transformers compiles on CUDA-like devices only otherwise
    generation_config.compile_config = compile_config
    return None


def eager_decode(generation_config) -> None:
    """Back to TRL's eager decoding (dynamic cache, no compilation)."""
    generation_config.disable_compile = True
    generation_config.compile_config = None
    generation_config.cache_implementation = None


def is_compile_error(e: BaseException) -> bool:
    """A failure of torch.compile (dynamo, inductor, a backend), not of the model or the data."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # pragma: no cover
        return False
    try:
        from torch._inductor.exc import InductorError
    except ImportError:  # pragma: no cover - older torch
        InductorError = ()
    return isinstance(e, (TorchDynamoException, InductorError))
