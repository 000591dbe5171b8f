"""The ``--labeler`` options every labelling command shares (label, score, eval, agree)."""

from __future__ import annotations

import argparse

from mrgfast.labelers import LABELER_NAMES, Labeler, resolve_labeler


def add_labeler_options(p, *, many: bool = False, default: str = "rust") -> None:
    """``--labeler`` (one name, or with ``many`` a comma list / repeated flag) and CheXbert's files."""
    names = "|".join(LABELER_NAMES)
    if many:
        p.add_argument(
            "--labeler",
            action="append",
            default=None,
            metavar=names,
            help=f"labeler(s) for CE and MCCS; a comma list or repeated prints them side by side, the first is "
            f"the primary (default {default})",
        )
    else:
        p.add_argument("--labeler", default=default, choices=LABELER_NAMES, help=f"labeler (default {default})")
    p.add_argument(
        "--chexbert-checkpoint",
        metavar="P",
        default=None,
        help="CheXbert weights (chexbert.pth), for --labeler chexbert",
    )
    p.add_argument(
        "--bert-path",
        metavar="D",
        default=None,
        help="local bert-base-uncased folder (config.json, vocab.txt), for --labeler chexbert",
    )
    p.add_argument("--chexbert-device", default=None, help="CheXbert device (default: cuda when available)")
    p.add_argument(
        "--chexbert-dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="CheXbert precision"
    )
    p.add_argument("--chexbert-batch-size", type=int, default=64, help="reports per CheXbert forward (default 64)")


def labeler_names(args, default: str = "rust") -> list[str]:
    raw = args.labeler if isinstance(args.labeler, list) else [args.labeler or default]
    names: list[str] = []
    for item in raw or [default]:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            if name not in LABELER_NAMES:
                raise argparse.ArgumentTypeError(
                    f"--labeler: unknown labeler {name!r}; known: {', '.join(LABELER_NAMES)}"
                )
            if name not in names:
                names.append(name)
    return names or [default]


def labelers_from_args(args, default: str = "rust") -> list[Labeler]:
    """The labelers the flags name, loaded (CheXbert: its files checked, the model built once).

    Raises ValueError / FileNotFoundError with a message naming the flag or the missing file.
    """
    out = []
    for name in labeler_names(args, default):
        if name == "chexbert":
            out.append(
                resolve_labeler(
                    "chexbert",
                    checkpoint=args.chexbert_checkpoint,
                    bert_path=args.bert_path,
                    device=args.chexbert_device,
                    dtype=args.chexbert_dtype,
                    batch_size=args.chexbert_batch_size,
                )
            )
        else:
            out.append(resolve_labeler(name))
    return out
