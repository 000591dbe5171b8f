"""Load a vision-language model and its processor from a local folder (never from the network)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("mrgfast.models")


class ModelError(ValueError):
    pass


def offline() -> None:
    """Make every Hugging Face lookup local-only for this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pick_attention(requested: str = "auto") -> str:
    """``flash_attention_2`` when flash-attn is importable on CUDA, else SDPA (``auto``)."""
    import torch

    if requested != "auto":
        if requested == "flash_attention_2" and not (
            torch.cuda.is_available() and importlib.util.find_spec("flash_attn")
        ):
            raise ModelError(
                "attn_implementation=flash_attention_2 needs CUDA and flash-attn "
                "(pip install 'mrgfast[flash]'); use auto or sdpa"
            )
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def pick_dtype(requested: str = "auto"):
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
            "float32": torch.float32,
            "fp32": torch.float32,
        }[requested]
    except KeyError:
        raise ModelError(f"dtype must be auto, bfloat16, float16 or float32, got {requested!r}") from None


def _check_folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ModelError(
            f"model folder not found: {p} (mrgfast loads models from local folders only; "
            "build a tiny one with `mrgfast model tiny --out DIR`)"
        )
    if not (p / "config.json").is_file():
        raise ModelError(f"{p}: no config.json; is this a Hugging Face model folder?")
    return p


def load_processor(
    path: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
):
    offline()
    from transformers import AutoProcessor

    p = _check_folder(path)
    processor = AutoProcessor.from_pretrained(str(p), trust_remote_code=trust_remote_code, local_files_only=True)
    ip = getattr(processor, "image_processor", None)
    if ip is not None:
        for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if value is not None:
                setattr(ip, name, value)
                size = dict(getattr(ip, "size", None) or {})
                if size:
                    size["shortest_edge" if name == "min_pixels" else "longest_edge"] = value
                    ip.size = size
    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"  # generation (GRPO) needs left padding
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return processor


def load_model(
    path: str | os.PathLike, *, attn_implementation: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
):
    """Qwen2.5-VL family through its own class, other image-text-to-text models through the Auto class."""
    offline()
    from transformers import AutoConfig, AutoModelForImageTextToText

    p = _check_folder(path)
    attn = pick_attention(attn_implementation)
    torch_dtype = pick_dtype(dtype)
    config = AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code, local_files_only=True)
    kw = dict(dtype=torch_dtype, attn_implementation=attn, trust_remote_code=trust_remote_code, local_files_only=True)
    if config.model_type in ("qwen2_5_vl", "qwen2_vl", "qwen3_vl"):
        import transformers

        cls = {
            "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
            "qwen2_vl": "Qwen2VLForConditionalGeneration",
            "qwen3_vl": "Qwen3VLForConditionalGeneration",
        }[config.model_type]
        model = getattr(transformers, cls).from_pretrained(str(p), **kw)
    else:
        try:
            model = AutoModelForImageTextToText.from_pretrained(str(p), **kw)
        except ValueError as e:
            raise ModelError(
                f"{p}: model type {config.model_type!r} is not an image-text-to-text model transformers can load ({e})"
            ) from e
    log.info(
        "model %s (%s): attention=%s dtype=%s params=%.1fM",
        p,
        type(model).__name__,
        attn,
        str(torch_dtype).replace("torch.", ""),
        sum(x.numel() for x in model.parameters()) / 1e6,
    )
    return model


def lora_config(r: int, alpha: int, dropout: float, targets: list[str], vision: bool, model=None):
    """A PEFT LoRA config; the vision tower is excluded unless ``vision`` (by a regex on module names)."""
    from peft import LoraConfig

    if not targets:
        raise ModelError("lora_target_modules is empty")
    if targets == ["all-linear"]:
        target = "all-linear"
        exclude = None if vision else r".*(visual|vision_tower|vision_model).*"
    else:
        names = "|".join(targets)
        if vision:
            target = rf".*\.({names})$"
        else:
            target = rf"^(?!.*(visual|vision_tower|vision_model)).*\.({names})$"
        exclude = None
    kw = dict(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, task_type="CAUSAL_LM", bias="none")
    if exclude is not None:
        kw["exclude_modules"] = exclude
    cfg = LoraConfig(**kw)
    if model is not None:  # fail early and clearly when nothing matches
        import re

        pat = re.compile(target) if isinstance(target, str) and target != "all-linear" else None
        if pat is not None and not any(pat.fullmatch(n) for n, _ in model.named_modules()):
            raise ModelError(f"no module of {type(model).__name__} matches lora_target_modules={targets}")
    return cfg


def read_tiny_info(path: str | os.PathLike) -> dict | None:
    f = Path(path) / "TINY.json"
    return json.loads(f.read_text()) if f.is_file() else None
