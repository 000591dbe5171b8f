"""`mrgfast model tiny`: build a small randomly initialised Qwen2.5-VL with an on-the-spot tokenizer."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("model", help="model tools (tiny Qwen2.5-VL)", description="Model tools.")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    t = sub.add_parser(
        "tiny",
        help="build a tiny randomly initialised Qwen2.5-VL + processor (no download)",
        description="Build a small Qwen2_5_VLForConditionalGeneration with random weights and a processor whose "
        "byte-level BPE tokenizer is trained on the spot on synthetic report language.",
    )
    t.add_argument("--out", required=True, help="output folder (a Hugging Face model folder)")
    t.add_argument("--hidden-size", type=int, default=128)
    t.add_argument("--layers", type=int, default=2)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--vision-hidden", type=int, default=64)
    t.add_argument("--vision-depth", type=int, default=2)
    t.add_argument("--vocab-size", type=int, default=800, help="BPE vocabulary size target")
    t.add_argument(
        "--model-vocab-size",
        type=int,
        default=None,
        help="embedding/LM-head rows, padded past the tokenizer (e.g. 151936, Qwen2.5's; default: the tokenizer's size)",
    )
    t.add_argument("--untied-head", action="store_true", help="give the LM head its own weight (default: tied)")
    t.add_argument("--image-size", type=int, default=112, help="the processor resizes images to this side")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_tiny)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _tiny(args) -> int:
    from mrgfast.models.tiny import build_tiny

    try:
        out = build_tiny(
            args.out,
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            num_heads=args.heads,
            vision_hidden=args.vision_hidden,
            vision_depth=args.vision_depth,
            vocab_size=args.vocab_size,
            image_size=args.image_size,
            seed=args.seed,
            model_vocab_size=args.model_vocab_size,
            tie_word_embeddings=not args.untied_head,
        )
    except ValueError as e:
        print(f"mrgfast model tiny: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
