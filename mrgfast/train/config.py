"""Configuration of ``mrgfast train``: YAML + flags, TRL/HF conventions.

A configuration has three parts:

* mrgfast's own fields (:class:`MrgConfig`: model, dataset, LoRA, reward, stages, evaluation, …),
  at the top level of the YAML and settable as ``--field value`` (``--model-path`` and
  ``--model_name_or_path`` are the same flag, as in TRL);
* ``sft:`` — any field of TRL's ``SFTConfig`` (settable as ``--sft.field value``);
* ``grpo:`` — any field of TRL's ``GRPOConfig`` (settable as ``--grpo.field value``).

A bare ``--field value`` that is not an mrgfast field goes to every stage config that has it
(``--learning_rate`` sets both stages, ``--num_generations`` only GRPO). Values are converted to the
field's declared type and both stage configs are built (validated) by TRL itself. Precedence:
preset < ``--config`` YAML < flags.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mrgfast.contracts import (
    DEFAULT_MARGIN,
    DEFAULT_SIDE_WEIGHT,
    DEFAULT_UNCERTAIN,
    check_mccs_params,
    check_side_weight,
)

STAGES = ("sft", "grpo")


class ConfigError(ValueError):
    pass


@dataclass
class MrgConfig:
    """mrgfast's own settings of a training run (the part of the configuration that is not TRL's).

    Each field is a top-level YAML key and a ``--field value`` flag; its ``help`` metadata is what
    ``mrgfast train --list-fields`` prints. Groups: the run (folder, stages, seed), the model and
    its loading, LoRA, the dataset and its image checks, the GRPO reward, the held-out evaluation
    after each stage, logging, and the self-built assets of the tiny preset. Every value is checked
    by :func:`validate_config` before any stage starts (``--dry-run`` runs the same checks).
    """

    # ---- run
    preset: str | None = field(
        default=None, metadata={"help": "Preset name (tiny, mrg-r1-iu-xray, mrg-r1-mimic-cxr) or YAML path."}
    )
    output_dir: str = field(
        default="runs/mrgfast", metadata={"help": "Run folder; stages write <output_dir>/<stage>/."}
    )
    stages: list[str] = field(default_factory=lambda: ["sft", "grpo"], metadata={"help": "Stages to run, in order."})
    seed: int = field(default=42, metadata={"help": "Seed of data order, init, sampling (copied into each stage)."})
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch's intra-op threads for the run (None: OMP_NUM_THREADS when set, else every core). "
            "Results are identical on one machine with the same threads; other counts round differently."
        },
    )
    # ---- model
    model_name_or_path: str | None = field(default=None, metadata={"help": "Local model folder (no downloads)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model folder's own code to run."})
    attn_implementation: str = field(default="auto", metadata={"help": "auto | flash_attention_2 | sdpa | eager."})
    dtype: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU) | bfloat16 | float16 | float32."}
    )
    min_pixels: int | None = field(
        default=None, metadata={"help": "Processor min pixels per image (None: processor's)."}
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "Processor max pixels per image (None: processor's)."}
    )
    # ---- LoRA (per stage on/off)
    sft_use_lora: bool = field(default=True, metadata={"help": "Train LoRA adapters in SFT (else full fine-tuning)."})
    grpo_use_lora: bool = field(default=True, metadata={"help": "Train LoRA adapters in GRPO (else full fine-tuning)."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Module names to adapt (the language model's linear layers by default)."},
    )
    lora_vision: bool = field(default=False, metadata={"help": "Also adapt the vision tower's matching layers."})
    # ---- data
    dataset_kind: str = field(default="iu_xray", metadata={"help": "iu_xray | mimic_cxr | synthetic."})
    annotation: str | None = field(default=None, metadata={"help": "R2Gen annotation.json."})
    image_root: str | None = field(default=None, metadata={"help": "Image root (default: <annotation dir>/images)."})
    max_images: int | None = field(default=None, metadata={"help": "Views per study (default: IU 2, MIMIC 1)."})
    skip_missing_images: bool = field(
        default=False,
        metadata={
            "help": "Drop studies with missing/unreadable images (ids written to <output_dir>/skipped_ids.txt) instead of failing."
        },
    )
    image_check: str = field(
        default="decode",
        metadata={
            "help": "decode (decode every image fully once, at load) | open (parse headers only) | exists | none."
        },
    )
    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: str = field(default="test", metadata={"help": "Held-out split evaluated after each stage."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training studies."})
    instruction: str | None = field(
        default=None, metadata={"help": "Prompt instruction (default: the MRG-R1 style one)."}
    )
    # ---- reward
    mccs_weight: float = field(default=0.75, metadata={"help": "Weight of the MCCS reward (paper: 0.75)."})
    format_weight: float = field(default=0.25, metadata={"help": "Weight of the format reward (paper: 0.25)."})
    mccs_margin: float = field(default=DEFAULT_MARGIN, metadata={"help": "MCCS margin m, in [0, 1)."})
    mccs_uncertain: float = field(
        default=DEFAULT_UNCERTAIN, metadata={"help": "Signed value of an uncertain finding, in [-1, 1]."}
    )
    mccs_sides: bool = field(
        default=False,
        metadata={
            "help": "MCCS+ in place of the paper's MCCS: the side-aware MCCS (a finding on the wrong side scores "
            "lower; equal to MCCS when no report states a side). Off: paper-exact."
        },
    )
    mccs_side_weight: float = field(
        default=DEFAULT_SIDE_WEIGHT,
        metadata={"help": "MCCS+ side weight beta, in (0, 1): the share of a sided finding's weight put on its side."},
    )
    reward_threads: int | None = field(default=None, metadata={"help": "Labeler threads (None: all cores)."})
    # ---- speed levers (SPEED_LEVERS below; each is exact or within a stated tolerance of the plain path, and
    # "off" turns it off: a false boolean, or the string "off")
    use_fused_loss: bool = field(
        default=True,
        metadata={
            "help": "GRPO loss through mrgfast.kernels.grpo_loss, reference/old log-probs through "
            "mrgfast.kernels.token_logps (each falls back to TRL's when unavailable or unsupported)."
        },
    )
    vision_cache: bool = field(
        default=True,
        metadata={
            "help": "Encode each distinct image once per generation batch, without gradients, and reuse its "
            "embeddings in generation, the old/reference log-prob passes and the policy pass (exact; the plain "
            "path, with a log line, when the vision tower trains, is sharded or has dropout)."
        },
    )
    vision_packed_attention: bool = field(
        default=True,
        metadata={
            "help": "Run the vision tower's windowed attention as one packed call per layer (flash-attn, else "
            "torch's varlen attention on CUDA, else SDPA over equal-length windows at once) instead of one SDPA "
            "call per window; through transformers' AttentionInterface, the language model's attention unchanged."
        },
    )
    merge_lora_for_generation: bool = field(
        default=True,
        metadata={
            "help": "Merge the LoRA adapter into the base weights while TRL generates (PEFT merge_adapter), "
            "restoring the exact base weights after; skipped with a log line for sharded (ZeRO-3/FSDP), "
            "quantized or trainable base weights and under grpo.use_vllm (vLLM merges itself)."
        },
    )
    compile_generation: str = field(
        default="auto",
        metadata={
            "help": "auto | on | off: decode with a static KV cache and a torch.compile'd step (CUDA graphs on a "
            "GPU); auto = on with CUDA, off on the CPU (where compiling costs more than it saves). Not used "
            "with grpo.use_vllm."
        },
    )
    pack_sequences: bool = field(
        default=True,
        metadata={
            "help": "Padding-free policy and log-prob passes of the fused loss (use_fused_loss): prompt+completion "
            "rows packed without padding, Qwen2.5-VL's 3-D positions kept (flash-attn: one varlen sequence; SDPA: "
            "rows packed only where that costs less than the padded batch)."
        },
    )
    share_prompt_prefix: bool = field(
        default=True,
        metadata={
            "help": "In the fused loss's policy pass and no-grad log-prob passes (use_fused_loss), run the rows "
            "that share a prompt (equal prompt tokens and images, checked) as one sequence [prompt, completion_1, "
            "..., completion_G]: the prompt and its images computed once, each completion attending to the prompt "
            "and to itself through a 4-D attention mask (SDPA / eager / flex attention; flash-attention keeps "
            "pack_sequences / the padded batch, with a log line). Exact."
        },
    )
    auto_micro_batch: bool = field(
        default=True,
        metadata={
            "help": "On a GPU, raise grpo.per_device_train_batch_size from free device memory, folding "
            "gradient-accumulation steps into it (same completions per optimizer step, same loss for "
            "grpo/dr_grpo/dapo); on the CPU the configured value is kept."
        },
    )
    # ---- evaluation
    evaluate: bool = field(default=True, metadata={"help": "Evaluate CE-F1 / MCCS on eval_split after each stage."})
    eval_samples: int | None = field(default=None, metadata={"help": "First N studies of eval_split (None: all)."})
    eval_batch_size: int = field(default=32, metadata={"help": "Generation batch size of the evaluation."})
    eval_max_new_tokens: int = field(default=128, metadata={"help": "Max new tokens in evaluation (greedy)."})
    # ---- logging / checkpoints
    tensorboard: bool = field(default=False, metadata={"help": "Also log to TensorBoard (<output_dir>/<stage>/runs)."})
    plot: bool = field(default=True, metadata={"help": "Save <output_dir>/grpo_curves.png."})
    # ---- self-built assets (tiny preset)
    synth_if_missing: bool = field(
        default=False, metadata={"help": "Generate the synthetic dataset at 'annotation' if absent."}
    )
    synth_train: int = field(default=600, metadata={"help": "Synthetic dataset: training studies."})
    synth_val: int = field(default=50, metadata={"help": "Synthetic dataset: validation studies."})
    synth_test: int = field(default=150, metadata={"help": "Synthetic dataset: test studies."})
    synth_image_size: int = field(default=112, metadata={"help": "Synthetic images' side in pixels."})
    synth_views: int = field(default=2, metadata={"help": "Synthetic views per study."})
    tiny_if_missing: bool = field(
        default=False, metadata={"help": "Build the tiny model at model_name_or_path if absent."}
    )
    tiny_hidden_size: int = field(default=128, metadata={"help": "Tiny model: hidden size."})
    tiny_layers: int = field(default=2, metadata={"help": "Tiny model: decoder layers."})


MRG_FIELDS = {f.name: f for f in dataclasses.fields(MrgConfig)}
# The speed levers of `mrgfast train`: MrgConfig fields, each on by default where it is exact (or within its stated
# tolerance), and each turned off by the value "off" (a false boolean, or compile_generation's "off"). The benches
# read this tuple: `bench/bench_trainer.py` and `bench/gpu_trainer.py` run every lever off in turn; a new lever
# joins the ablation by adding its field name here.
SPEED_LEVERS = (
    "use_fused_loss",
    "vision_cache",
    "vision_packed_attention",
    "merge_lora_for_generation",
    "compile_generation",
    "pack_sequences",
    "share_prompt_prefix",
    "auto_micro_batch",
)
LEVER_OFF = "off"  # the value that turns any lever off (bool fields read it as False)


def lever_is_on(value: object) -> bool:
    """A lever's setting is on unless it is False or "off" (compile_generation's "auto" counts as on: it decides
    per device)."""
    return value is not False and value != LEVER_OFF


ALIASES = {"model_path": "model_name_or_path", "model": "model_name_or_path", "dataset": "dataset_kind"}


def _stage_classes():
    from trl import GRPOConfig, SFTConfig

    return {"sft": SFTConfig, "grpo": GRPOConfig}


def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _type_hints(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return {f.name: f.type for f in dataclasses.fields(cls)}


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/flag value to a dataclass field type (flags arrive as strings)."""
    base = _strip_optional(tp)
    if value is None:
        return None
    if isinstance(value, str):
        low = value.strip().lower()
        # "none" stays a string where the field takes strings (e.g. report_to="none")
        takes_str = base is str or str in typing.get_args(base)
        if low in ("none", "null") and not takes_str:
            return None
        if base is bool:
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected a boolean, got {value!r}")
        if base is int:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if base is float:
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        origin = typing.get_origin(base)
        if base is list or origin is list:
            if value.strip().startswith("["):
                return yaml.safe_load(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        if base is dict or origin is dict:
            return yaml.safe_load(value)
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def preset_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    res = resources.files("mrgfast.presets") / f"{name}.yaml"
    if not res.is_file():
        avail = sorted(x.name[:-5] for x in resources.files("mrgfast.presets").iterdir() if x.name.endswith(".yaml"))
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(avail)}")
    return Path(str(res))


def _load_yaml(path: str | os.PathLike) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    _check_sections(data, str(path))
    return data


def _check_sections(data: dict, source: str) -> None:
    """The stage sections (``sft:``, ``grpo:``) must be mappings of field: value."""
    for key in STAGES:
        if key in data and data[key] is not None and not isinstance(data[key], dict):
            raise ConfigError(
                f"{source}: section {key!r} must be a mapping of {key.upper()}Config fields "
                f"(YAML `{key}: {{learning_rate: 1.0e-5}}`, flag --{key}.learning_rate 1e-5), "
                f"got {type(data[key]).__name__} {data[key]!r}"
            )


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        if k in STAGES and isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = v
    return out


def parse_overrides(argv: list[str]) -> dict:
    """``--a.b value`` / ``--a=value`` / ``--flag`` (bool true) into a nested dict of raw strings."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r} (fields are set as --field value)")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        if "." in key:
            stage, name = key.split(".", 1)
            if stage not in STAGES:
                raise ConfigError(f"--{key}: unknown section {stage!r} (sections: {', '.join(STAGES)})")
            out.setdefault(stage, {})[name.replace("-", "_")] = value
        else:
            out[key.replace("-", "_")] = value
    return out


@dataclass
class RunConfig:
    mrg: MrgConfig
    sft: Any  # trl.SFTConfig
    grpo: Any  # trl.GRPOConfig
    raw: dict  # the merged dict (written to <output_dir>/config.yaml)


def build_config(preset: str | None = None, config_file: str | None = None, overrides: dict | None = None) -> RunConfig:
    merged: dict = {}
    if preset:
        merged = _merge(merged, _load_yaml(preset_path(preset)))
    if config_file:
        data = _load_yaml(config_file)
        if data.get("preset") and not preset:
            merged = _merge(_load_yaml(preset_path(data["preset"])), merged)
        merged = _merge(merged, data)
    if overrides:
        _check_sections(overrides, "flags")
        merged = _merge(merged, overrides)
    if preset:
        merged["preset"] = preset

    classes = _stage_classes()
    stage_fields = {s: {f.name for f in dataclasses.fields(c)} for s, c in classes.items()}
    mrg_kw: dict[str, Any] = {}
    stage_kw: dict[str, dict] = {s: dict(merged.get(s) or {}) for s in STAGES}
    for key, value in merged.items():
        if key in STAGES:
            continue
        name = ALIASES.get(key, key)
        if name in MRG_FIELDS:
            mrg_kw[name] = value
            continue
        targets = [s for s in STAGES if name in stage_fields[s]]
        if not targets:
            raise ConfigError(
                f"unknown setting {key!r}: not an mrgfast field nor a field of SFTConfig/GRPOConfig "
                "(run `mrgfast train --help`)"
            )
        for s in targets:
            stage_kw[s].setdefault(name, value)  # a stage's own section wins over a shared value
        if overrides and key in overrides:  # a shared flag beats the YAML stage sections
            for s in targets:
                stage_kw[s][name] = value
    hints = _type_hints(MrgConfig)
    mrg = MrgConfig(**{k: coerce(v, hints[k], f"setting {k!r}") for k, v in mrg_kw.items()})
    validate_mrg(mrg)

    built = {}
    for s, cls in classes.items():
        kw = stage_kw[s]
        unknown = sorted(set(kw) - stage_fields[s])
        if unknown:
            raise ConfigError(f"{s}: unknown {cls.__name__} field(s): {', '.join(unknown)}")
        h = _type_hints(cls)
        kw = {k: coerce(v, h.get(k, Any), f"{s}.{k}") for k, v in kw.items()}
        kw.setdefault("seed", mrg.seed)
        kw["output_dir"] = str(Path(mrg.output_dir) / s)
        if "bf16" not in kw and "fp16" not in kw:
            kw["bf16"] = _cuda_bf16()
        if "ddp_backend" not in kw and (backend := default_ddp_backend()):
            kw["ddp_backend"] = backend
        report_to = ["tensorboard"] if mrg.tensorboard else []
        kw.setdefault("report_to", report_to)
        if s == "grpo":
            kw["reward_weights"] = [mrg.mccs_weight, mrg.format_weight]
        try:
            built[s] = cls(**kw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{s}: invalid {cls.__name__}: {e}") from e
    cfg = RunConfig(mrg=mrg, sft=built["sft"], grpo=built["grpo"], raw=merged)
    validate_config(cfg)
    return cfg


# ------------------------------------------------------------------------------------------ validation
CHOICES = {
    "dataset_kind": ("iu_xray", "mimic_cxr", "synthetic"),
    "attn_implementation": ("auto", "flash_attention_2", "sdpa", "eager"),
    "dtype": ("auto", "bfloat16", "float16", "float32"),
    "image_check": ("decode", "open", "exists", "none"),
    "compile_generation": ("auto", "on", "off"),
}
POSITIVE_INTS = (
    "lora_r",
    "eval_batch_size",
    "eval_max_new_tokens",
    "synth_train",
    "synth_val",
    "synth_test",
    "synth_image_size",
    "synth_views",
    "tiny_hidden_size",
    "tiny_layers",
)
POSITIVE_INTS_OR_NONE = ("max_images", "max_train_samples", "eval_samples", "min_pixels", "max_pixels")


def _type_ok(value: Any, tp: Any) -> bool:
    base = _strip_optional(tp)
    if value is None:
        return base is not tp or tp is Any  # Optional fields take None
    origin = typing.get_origin(base)
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(base) or (Any,)
        return isinstance(value, list) and all(item is Any or isinstance(v, item) for v in value)
    return True


def validate_mrg(m: MrgConfig) -> None:
    """Every mrgfast field checked: type, range, choice. Raises ConfigError naming the field."""
    import math

    from mrgfast.contracts import check_threads

    hints = _type_hints(MrgConfig)
    for f in dataclasses.fields(MrgConfig):
        value = getattr(m, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(f"{f.name}: expected {_type_name(hints[f.name])}, got {type(value).__name__} {value!r}")
    for name, choices in CHOICES.items():
        if getattr(m, name) not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(m, name)!r}")
    if not m.stages:
        raise ConfigError("stages: empty; run at least one of sft, grpo")
    for s in m.stages:
        if s not in STAGES:
            raise ConfigError(f"stages: unknown stage {s!r} (stages: {', '.join(STAGES)})")
    if len(set(m.stages)) != len(m.stages):
        raise ConfigError(f"stages: {m.stages} names a stage twice")
    if list(m.stages) != [s for s in STAGES if s in m.stages]:
        raise ConfigError(f"stages: {m.stages} out of order (sft comes before grpo)")
    if not 0 <= m.seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {m.seed}")
    for name in POSITIVE_INTS:
        if getattr(m, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(m, name)}")
    for name in POSITIVE_INTS_OR_NONE:
        v = getattr(m, name)
        if v is not None and v < 1:
            raise ConfigError(f"{name} must be at least 1 (or null for the default), got {v}")
    if m.min_pixels is not None and m.max_pixels is not None and m.min_pixels > m.max_pixels:
        raise ConfigError(f"min_pixels ({m.min_pixels}) is larger than max_pixels ({m.max_pixels})")
    if not (math.isfinite(m.lora_alpha) and m.lora_alpha > 0):
        raise ConfigError(f"lora_alpha must be positive, got {m.lora_alpha}")
    if not (math.isfinite(m.lora_dropout) and 0 <= m.lora_dropout < 1):
        raise ConfigError(f"lora_dropout must be in [0, 1), got {m.lora_dropout}")
    if not m.lora_target_modules:
        raise ConfigError("lora_target_modules: empty; name at least one module (e.g. q_proj,v_proj)")
    for name in ("mccs_weight", "format_weight"):
        v = getattr(m, name)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
    if m.mccs_weight + m.format_weight == 0:
        raise ConfigError("mccs_weight and format_weight are both 0: the GRPO reward would be constant")
    try:
        check_mccs_params(m.mccs_margin, m.mccs_uncertain)
    except ValueError as e:
        raise ConfigError(f"mccs_margin/mccs_uncertain: {e}") from None
    try:
        check_side_weight(m.mccs_side_weight)
    except ValueError as e:
        raise ConfigError(f"mccs_side_weight: {e}") from None
    for name in ("threads", "reward_threads"):
        try:
            check_threads(getattr(m, name), name)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
    if m.evaluate and m.eval_split == m.train_split:
        raise ConfigError(f"eval_split and train_split are both {m.train_split!r}: held-out numbers need another split")


def validate_config(cfg: RunConfig) -> None:
    """All checks of a run configuration, in one place; ``--dry-run`` and the real run both call it
    before any stage starts, so nothing that would fail at GRPO start gets past an SFT stage."""
    validate_mrg(cfg.mrg)
    m = cfg.mrg
    if "grpo" in m.stages:
        g = cfg.grpo
        weights = list(getattr(g, "reward_weights", None) or [])
        if len(weights) != 2 or not all(isinstance(w, (int, float)) and w == w for w in weights):
            raise ConfigError(f"grpo.reward_weights must be [mccs_weight, format_weight], got {weights}")
        if getattr(g, "num_generations", 2) is not None and g.num_generations < 2:
            raise ConfigError(
                f"grpo.num_generations must be at least 2 (GRPO compares a group), got {g.num_generations}"
            )
        check_vllm(g)
    for s in m.stages:
        c = getattr(cfg, s)
        if c.save_strategy != "no" and getattr(c, "save_only_model", False):
            raise ConfigError(
                f"{s}.save_only_model is true: its checkpoints lack optimizer/scheduler/RNG state, so --resume "
                "would diverge from an uninterrupted run; set it false"
            )


VLLM_MODES = ("colocate", "server")


def check_vllm(g) -> None:
    """TRL's vLLM generation (``grpo.use_vllm``), the production generation path on GPUs, checked before any
    stage: vllm importable, a known mode, and a colocated engine that leaves the trainer some memory."""
    if not getattr(g, "use_vllm", False):
        return
    import importlib.util

    mode = getattr(g, "vllm_mode", "colocate")
    if mode not in VLLM_MODES:
        raise ConfigError(f"grpo.vllm_mode must be one of {', '.join(VLLM_MODES)}, got {mode!r}")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "grpo.use_vllm is true but vllm is not installed in this environment (pip install vllm, on a CUDA "
            "machine); without it set grpo.use_vllm false: generation then runs through transformers with "
            "merge_lora_for_generation and compile_generation"
        )
    if mode == "colocate":
        util = getattr(g, "vllm_gpu_memory_utilization", 0.3)
        if not (isinstance(util, (int, float)) and 0 < util < 1):
            raise ConfigError(
                f"grpo.vllm_gpu_memory_utilization must be in (0, 1) with vllm_mode colocate (vLLM shares the "
                f"training GPU), got {util!r}"
            )


def _type_name(tp: Any) -> str:
    base = _strip_optional(tp)
    name = getattr(base, "__name__", None) if typing.get_origin(base) is None else str(base).replace("typing.", "")
    name = name or str(base)
    return f"{name} or null" if base is not tp else name


def list_fields() -> str:
    """Every mrgfast field with its type, default and help (``mrgfast train --list-fields``)."""
    hints = _type_hints(MrgConfig)
    lines = []
    for f in dataclasses.fields(MrgConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  --{f.name:<22} {_type_name(hints[f.name]):<14} default {default!r}")
        lines.append(f"      {f.metadata.get('help', '')}")
    aliases = ", ".join(f"--{a} = --{b}" for a, b in ALIASES.items())
    return (
        "mrgfast fields (YAML top-level keys, or --field value):\n" + "\n".join(lines) + f"\naliases: {aliases}\n"
        "plus every TRL SFTConfig field as --sft.FIELD and GRPOConfig field as --grpo.FIELD (YAML sections sft:, grpo:)"
    )


def default_ddp_backend() -> str | None:
    """``"gloo"`` for DeepSpeed on a machine without CUDA, else ``None`` (the trainer's choice).

    Without a backend accelerate starts DeepSpeed's process group but counts one process
    (``num_processes`` 1 on every rank), and DeepSpeed's batch check then fails
    (``train_batch_size ... 2 != 2 * 1 * 2``).
    """
    from mrgfast.train.distributed import configured_distributed_type

    if configured_distributed_type() != "DEEPSPEED":
        return None
    try:
        import torch

        return None if torch.cuda.is_available() else "gloo"
    except Exception:
        return None


def _cuda_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:
        return False


def describe(cfg: RunConfig) -> str:
    """A readable summary (for --dry-run and the log)."""
    m = cfg.mrg
    lines = [
        f"preset: {m.preset}",
        f"output_dir: {m.output_dir}",
        f"stages: {', '.join(m.stages)}",
        f"model: {m.model_name_or_path} (attn={m.attn_implementation}, dtype={m.dtype}, "
        f"trust_remote_code={m.trust_remote_code})",
        f"data: {m.dataset_kind} annotation={m.annotation} image_root={m.image_root or '<annotation dir>/images'} "
        f"train={m.train_split} eval={m.eval_split}",
        f"LoRA: r={m.lora_r} alpha={m.lora_alpha} dropout={m.lora_dropout} targets={m.lora_target_modules} "
        f"vision={m.lora_vision} (sft={'lora' if m.sft_use_lora else 'full'}, grpo={'lora' if m.grpo_use_lora else 'full'})",
        f"reward: {m.mccs_weight}*{'MCCS+' if m.mccs_sides else 'MCCS'}(margin={m.mccs_margin}, "
        f"uncertain={m.mccs_uncertain}{f', side_weight={m.mccs_side_weight}' if m.mccs_sides else ''}) + "
        f"{m.format_weight}*format",
        "speed levers: " + ", ".join(f"{name}={getattr(m, name)}" for name in SPEED_LEVERS),
    ]
    keys = [
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "lr_scheduler_type",
        "warmup_steps",
        "bf16",
        "gradient_checkpointing",
        "save_steps",
        "logging_steps",
    ]
    for s in ("sft", "grpo"):
        if s not in m.stages:
            continue
        c = getattr(cfg, s)
        extra = (
            ["max_length"]
            if s == "sft"
            else [
                "num_generations",
                "max_completion_length",
                "temperature",
                "beta",
                "loss_type",
                "epsilon",
                "reward_weights",
                "scale_rewards",
            ]
        )
        lines.append(f"{s}: " + ", ".join(f"{k}={getattr(c, k, None)}" for k in keys + extra))
    return "\n".join(lines)
