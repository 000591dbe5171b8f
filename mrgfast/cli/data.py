"""`mrgfast data synth`: write a synthetic chest-film dataset in the R2Gen layout."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("data", help="dataset tools (synthetic chest films)", description="Dataset tools.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    s = sub.add_parser(
        "synth",
        help="write a synthetic chest-film dataset (R2Gen annotation.json + images)",
        description="Draw synthetic chest films whose visible features decide the findings (heart width <-> "
        "cardiomegaly, fluid meniscus <-> effusion, pleural line <-> pneumothorax, tubes <-> support "
        "devices, bright patch <-> consolidation) and write reports from those findings with varied "
        "phrasing, negations and uncertainty, in the R2Gen annotation.json layout.",
    )
    s.add_argument("--out", required=True, help="output folder (annotation.json, images/)")
    s.add_argument("--train", type=int, default=600, help="training studies (default 600)")
    s.add_argument("--val", type=int, default=50, help="validation studies (default 50)")
    s.add_argument("--test", type=int, default=150, help="test studies (default 150)")
    s.add_argument("--image-size", type=int, default=112, help="image side in pixels, >= 56 (default 112)")
    s.add_argument("--views", type=int, default=2, choices=(1, 2), help="1 (frontal) or 2 (frontal + lateral)")
    s.add_argument("--prevalence", type=float, default=0.35, help="probability of each finding (default 0.35)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _synth(args) -> int:
    from mrgfast.data.synth import generate

    try:
        path = generate(
            args.out,
            n_train=args.train,
            n_val=args.val,
            n_test=args.test,
            image_size=args.image_size,
            views=args.views,
            seed=args.seed,
            prevalence=args.prevalence,
        )
    except ValueError as e:
        print(f"mrgfast data synth: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.train}/{args.val}/{args.test} studies, {args.views} view(s) each)")
    return 0
