"""Report generation for ``mrgfast eval``: Hugging Face ``generate`` (default) or vLLM (``--vllm``).

Both take a batch of :class:`mrgfast.data.r2gen.Study` and return one decoded completion per study.
The prompt is the one the trainer uses: a user turn with one image placeholder per view followed
by the instruction, the chat template's generation prompt after it (as TRL builds it for GRPO and
as :func:`mrgfast.train.evaluate.generate_reports` does).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("mrgfast.eval")


class GenerationError(RuntimeError):
    pass


@dataclass
class GenerationSettings:
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    num_beams: int = 1
    repetition_penalty: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise GenerationError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            raise GenerationError(f"--temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise GenerationError(f"--top-p must lie in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise GenerationError(f"--top-k must be >= 0, got {self.top_k}")
        if self.num_beams < 1:
            raise GenerationError(f"--num-beams must be >= 1, got {self.num_beams}")
        if self.repetition_penalty <= 0:
            raise GenerationError(f"--repetition-penalty must be > 0, got {self.repetition_penalty}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.do_sample:  # greedy / beam search: the sampling knobs do not matter
            for k in ("temperature", "top_p", "top_k", "seed"):
                d.pop(k)
        return d

    def hf_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or None)
        else:  # override sampling defaults a model's generation_config may carry
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw


def _load_images(study) -> list:
    from PIL import Image

    images = []
    for p in study.image_paths:
        try:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        except (FileNotFoundError, OSError) as e:
            raise GenerationError(f"study {study.id}: cannot read image {p} ({e})") from None
    return images


def prompt_text(processor, study, instruction: str) -> str:
    msgs = [
        {
            "role": "user",
            "content": [{"type": "image"} for _ in study.image_paths] + [{"type": "text", "text": instruction}],
        }
    ]
    return processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


def resolve_model(model: str, adapter: str | None) -> tuple[str, str | None]:
    """(base model folder, adapter folder or None). A PEFT adapter folder passed as ``--model``
    (e.g. ``runs/x/grpo/final``) is split into its base model (from ``adapter_config.json``) and itself."""
    mp = Path(model)
    if not mp.is_dir():
        raise GenerationError(f"--model {model}: folder not found (models are loaded from local folders only)")
    if adapter is None and not (mp / "config.json").is_file() and (mp / "adapter_config.json").is_file():
        base = _adapter_base(mp)
        log.info("%s is a LoRA adapter; its base model is %s", mp, base)
        return base, str(mp)
    if adapter is not None:
        ap = Path(adapter)
        if not (ap / "adapter_config.json").is_file():
            raise GenerationError(f"--adapter {adapter}: no adapter_config.json there (expected a PEFT adapter folder)")
    return model, adapter


def _adapter_base(adapter_dir: Path) -> str:
    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenerationError(f"{adapter_dir / 'adapter_config.json'}: unreadable ({e})") from None
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise GenerationError(
            f"{adapter_dir / 'adapter_config.json'}: no base_model_name_or_path; pass the base "
            "model with --model and this folder with --adapter"
        )
    # as written (absolute, or relative to here), or relative to a folder above the adapter: trainers record
    # the path they were given, relative to where they ran (runs/x/sft/final next to runs/x/grpo/final)
    candidates = [Path(base)] + ([] if Path(base).is_absolute() else [d / base for d in adapter_dir.resolve().parents])
    found = next((c for c in candidates if (c / "config.json").is_file()), None)
    if found is None:
        raise GenerationError(
            f"{adapter_dir}: its base model {base!r} is not a local model folder; pass the base "
            "model with --model and this folder with --adapter"
        )
    return str(found)


class HFGenerator:
    """Batched ``model.generate`` on left-padded prompts (LoRA merged into the weights for speed)."""

    name = "transformers"

    def __init__(
        self,
        model_path: str,
        adapter: str | None,
        *,
        attn_implementation: str = "auto",
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
    ):
        import torch

        from mrgfast.models.loading import load_model, load_processor

        self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
        model = load_model(
            model_path, attn_implementation=attn_implementation, dtype=dtype, trust_remote_code=trust_remote_code
        )
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=False).merge_and_unload()
            log.info("adapter %s merged into %s", adapter, model_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.tok = getattr(self.processor, "tokenizer", self.processor)
        self.tok.padding_side = "left"

    def generate(self, studies: Sequence, instruction: str, settings: GenerationSettings, seed: int) -> list[str]:
        return generate_batch(self.model, self.processor, studies, instruction, settings, seed=seed)


def generate_batch(
    model, processor, studies: Sequence, instruction: str, settings: GenerationSettings, *, seed: int = 0
) -> list[str]:
    """One batch of completions from a loaded model (left padding), shared by eval and the trainer."""
    import torch

    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"
    device = next(model.parameters()).device
    texts = [prompt_text(processor, s, instruction) for s in studies]
    images = [im for s in studies for im in _load_images(s)]
    enc = processor(text=texts, images=images, return_tensors="pt", padding=True).to(device)
    if settings.do_sample:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**enc, pad_token_id=tok.pad_token_id, **settings.hf_kwargs())
    return tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def vllm_available() -> str | None:
    """None when vLLM can run here, else why not."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm)"
    try:
        import torch

        if not torch.cuda.is_available():
            return "vLLM needs a CUDA GPU and none is visible"
    except ImportError:
        return "torch is not installed"
    return None


class VLLMGenerator:
    """vLLM offline inference (``vllm.LLM``); a LoRA adapter is served through a ``LoRARequest``."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        adapter: str | None,
        *,
        max_images: int,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        trust_remote_code: bool = False,
        seed: int = 0,
    ):
        why = vllm_available()
        if why:
            raise GenerationError(f"--vllm: {why}")
        from vllm import LLM

        from mrgfast.models.loading import load_processor, offline

        offline()
        self.processor = load_processor(model_path, trust_remote_code=trust_remote_code)
        kw: dict[str, Any] = dict(
            model=model_path,
            tokenizer=model_path,
            trust_remote_code=trust_remote_code,
            limit_mm_per_prompt={"image": max(1, max_images)},
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype if dtype != "auto" else "auto",
        )
        self.lora = None
        if adapter:
            from vllm.lora.request import LoRARequest

            rank = int(json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r", 64))
            kw.update(enable_lora=True, max_lora_rank=max(8, rank), max_loras=1)
            self.lora = LoRARequest("mrgfast-adapter", 1, str(Path(adapter).resolve()))
        self.llm = LLM(**kw)

    def generate(self, studies: Sequence, instruction: str, settings: GenerationSettings, seed: int) -> list[str]:
        from vllm import SamplingParams

        if settings.num_beams > 1:
            raise GenerationError("--vllm does not do beam search here; use --num-beams 1")
        sp = SamplingParams(
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
            top_k=(settings.top_k or -1) if settings.do_sample else -1,
            repetition_penalty=settings.repetition_penalty,
            seed=seed if settings.do_sample else None,
        )
        prompts = [
            {"prompt": prompt_text(self.processor, s, instruction), "multi_modal_data": {"image": _load_images(s)}}
            for s in studies
        ]
        outs = self.llm.generate(prompts, sp, lora_request=self.lora, use_tqdm=False)
        return [o.outputs[0].text for o in outs]
