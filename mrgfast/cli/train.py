"""`mrgfast train`: SFT then GRPO (MRG-R1 recipe) from YAML + flags."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
configuration (precedence: --preset < --config YAML < flags):
  mrgfast fields      --model-path DIR, --annotation FILE, --image-root DIR, --dataset-kind iu_xray|mimic_cxr|synthetic,
                      --lora_r 64, --lora_alpha 128, --lora_dropout 0.05, --lora_target_modules q_proj,v_proj,
                      --mccs_weight 0.75, --format_weight 0.25, --mccs_margin 0.5, --use_fused_loss true,
                      --stages sft,grpo, --output_dir DIR, --seed N, --tensorboard, --skip_missing_images, ...
                      (the full list: `mrgfast train --list-fields`)
  stage fields        every TRL SFTConfig / GRPOConfig field: --sft.FIELD VALUE, --grpo.FIELD VALUE;
                      a bare --FIELD VALUE goes to every stage that has the field
                      (e.g. --grpo.num_generations 8 --learning_rate 1e-5 --save_steps 50)
examples:
  mrgfast train --preset tiny
  mrgfast train --preset mrg-r1-iu-xray --model-path /models/HuatuoGPT-Vision-7B-Qwen2.5VL \\
      --annotation /data/iu_xray/annotation.json --image-root /data/iu_xray/images
  mrgfast train --preset mrg-r1-iu-xray --dry-run
  mrgfast train --config run.yaml --resume            # continue from the latest checkpoint
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a VLM with SFT then GRPO (MCCS + format reward, LoRA)",
        description="Train a vision-language model for radiology report generation with MRG-R1's recipe: "
        "SFT warm start, then GRPO with 0.75*MCCS + 0.25*format on LoRA adapters.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", help="tiny | mrg-r1-iu-xray | mrg-r1-mimic-cxr | a YAML path")
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run in output_dir from its newest complete checkpoint (named in the log; incomplete "
        "or corrupt ones are skipped and named), or from CHECKPOINT (refused when incomplete or not this run's)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the previous run in output_dir (state, checkpoints, logs, eval) and start over; without it "
        "or --resume, a folder holding a run is refused",
    )
    p.add_argument("--dry-run", action="store_true", help="load and validate the configuration, print it, exit")
    p.add_argument(
        "--list-fields",
        action="store_true",
        help="list every mrgfast configuration field with its type, default and meaning, and exit",
    )
    p.set_defaults(func=main)
    _accept_free_form_fields(p)
    return p


def _accept_free_form_fields(p: argparse.ArgumentParser) -> None:
    """Let ``--FIELD VALUE`` / ``--sft.FIELD VALUE`` through: the sub-parser keeps what it does not know
    in ``args._extra`` (validated later against the config dataclasses) instead of failing."""
    orig = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extra = orig(args, namespace)
        ns._extra = list(getattr(ns, "_extra", None) or []) + list(extra)
        return ns, []

    p.parse_known_args = parse_known_args


def main(args) -> int:
    from mrgfast.train.config import ConfigError, build_config, describe, parse_overrides

    if args.list_fields:
        from mrgfast.train.config import list_fields

        print(list_fields())
        return 0
    extra = getattr(args, "_extra", None) or []
    try:
        overrides = parse_overrides(extra)
        cfg = build_config(args.preset, args.config, overrides)
    except ConfigError as e:
        print(f"mrgfast train: configuration error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe(cfg))
        print("configuration OK (dry run: nothing loaded)")
        return 0
    from mrgfast.data.r2gen import DataError
    from mrgfast.models.loading import ModelError
    from mrgfast.train.run import RunError, run
    from mrgfast.train.trainers import NonFiniteLossError

    try:
        return run(cfg, resume=args.resume, overwrite=args.overwrite)
    except (DataError, ModelError, RunError) as e:
        print(f"mrgfast train: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"mrgfast train: stopped: {e}", file=sys.stderr)
        return 3
