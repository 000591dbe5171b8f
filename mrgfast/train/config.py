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

from mrgfast.contracts import DEFAULT_MARGIN, DEFAULT_UNCERTAIN, check_mccs_params

STAGES = ("sft", "grpo")


class ConfigError(ValueError):
    pass


@dataclass
class MrgConfig:
    # ---- run
    preset: str | None = field(
        default=None, metadata={"help": "Preset name (tiny, mrg-r1-iu-xray, mrg-r1-mimic-cxr) or YAML path."}
    )
    output_dir: str = field(
        default="runs/mrgfast", metadata={"help": "Run folder; stages write <output_dir>/<stage>/."}
    )
    stages: list[str] = field(default_factory=lambda: ["sft", "grpo"], metadata={"help": "Stages to run, in order."})
    seed: int = field(default=42, metadata={"help": "Seed of data order, init, sampling (copied into each stage)."})
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
    image_check: str = field(default="open", metadata={"help": "open (parse headers) | exists | none."})
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
    reward_threads: int | None = field(default=None, metadata={"help": "Labeler threads (None: all cores)."})
    use_fused_loss: bool = field(
        default=True,
        metadata={
            "help": "GRPO loss through mrgfast.kernels.grpo_loss, reference/old log-probs through "
            "mrgfast.kernels.token_logps (each falls back to TRL's when unavailable or unsupported)."
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
    synth_train: int = 600
    synth_val: int = 50
    synth_test: int = 150
    synth_image_size: int = 112
    synth_views: int = 2
    tiny_if_missing: bool = field(
        default=False, metadata={"help": "Build the tiny model at model_name_or_path if absent."}
    )
    tiny_hidden_size: int = 128
    tiny_layers: int = 2


MRG_FIELDS = {f.name: f for f in dataclasses.fields(MrgConfig)}
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
    return data


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
    for s in mrg.stages:
        if s not in STAGES:
            raise ConfigError(f"stages: unknown stage {s!r} (stages: {', '.join(STAGES)})")
    if mrg.dataset_kind not in ("iu_xray", "mimic_cxr", "synthetic"):
        raise ConfigError(f"dataset_kind must be iu_xray, mimic_cxr or synthetic, got {mrg.dataset_kind!r}")
    if mrg.attn_implementation not in ("auto", "flash_attention_2", "sdpa", "eager"):
        raise ConfigError(
            f"attn_implementation must be auto, flash_attention_2, sdpa or eager, got {mrg.attn_implementation!r}"
        )
    if mrg.mccs_weight < 0 or mrg.format_weight < 0 or mrg.mccs_weight + mrg.format_weight == 0:
        raise ConfigError("reward weights must be non-negative and not both zero")
    try:
        check_mccs_params(mrg.mccs_margin, mrg.mccs_uncertain)
    except ValueError as e:
        raise ConfigError(f"mccs_margin/mccs_uncertain: {e}") from None

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
    return RunConfig(mrg=mrg, sft=built["sft"], grpo=built["grpo"], raw=merged)


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
        f"reward: {m.mccs_weight}*MCCS(margin={m.mccs_margin}, uncertain={m.mccs_uncertain}) + "
        f"{m.format_weight}*format; fused loss: {m.use_fused_loss}",
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
