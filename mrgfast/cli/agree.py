"""``mrgfast agree REPORTS``: per-observation agreement between two labelers on the same reports."""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "agreement between two labelers (rust, chexbert) on the same reports: kappa, confusion, heatmap"

DESCRIPTION = """\
Label every report of REPORTS with two labelers (--labeler A,B; default rust,chexbert) and print, per
observation, 4-way agreement (positive / negative / uncertain / blank), present/absent agreement
(positive and uncertain = present), Cohen's kappa for both, and how many reports each labeler calls
present; then the macro (mean over observations) and micro (pooled) summaries. The JSON adds the 4 x 4
confusion counts per observation; the PNG draws the measures as a heatmap beside each observation's
confusion matrix.

REPORTS is a CSV (named column), JSONL (named field) or text file (one report per line).
"""


def add_parser(sub) -> None:
    from mrgfast.cli._io import add_input_options
    from mrgfast.cli.labeler_options import add_labeler_options

    p = sub.add_parser(
        "agree", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", metavar="REPORTS", help="reports: .csv, .jsonl, else one per line")
    add_input_options(p)
    add_labeler_options(p, many=True, default="rust,chexbert")
    p.add_argument("--extract-report", action="store_true", help="label only the <report> block of each text")
    p.add_argument("--json", default="mrgfast_agree.json", metavar="PATH", help="default mrgfast_agree.json")
    p.add_argument("--plot", default="mrgfast_agree.png", metavar="PATH", help="default mrgfast_agree.png")
    p.add_argument("--no-plot", action="store_true", help="skip the heatmap")
    p.add_argument("--skip-bad", action="store_true", help="report bad rows on stderr and go on instead of stopping")
    p.add_argument("--threads", type=int, default=None, help="Rust labelling threads (default: every core)")
    p.set_defaults(func=run, progress=False)


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def run(args) -> int:
    import mrgfast
    from mrgfast.cli._io import BadRowError, InputError, collect, read_rows
    from mrgfast.cli.labeler_options import labeler_names, labelers_from_args
    from mrgfast.labelers.agreement import agreement, format_agreement, plot_agreement
    from mrgfast.reward.format import extract_report

    try:
        names = labeler_names(args, default="rust,chexbert")
    except argparse.ArgumentTypeError as e:
        print(f"mrgfast agree: {e}", file=sys.stderr)
        return 2
    if len(names) != 2:
        print(f"mrgfast agree: --labeler must name two labelers (A,B), got {names}", file=sys.stderr)
        return 2
    args.labeler = names
    try:
        labelers = labelers_from_args(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"mrgfast agree: {e}", file=sys.stderr)
        return 2
    try:
        stream = read_rows(args.input, fmt=args.format, text_field=args.field, id_field=args.id_field, progress=False)
        rows, bad = collect(stream, skip_bad=args.skip_bad, prefix="mrgfast agree: ")
    except (InputError, BadRowError) as e:
        print(f"mrgfast agree: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"mrgfast agree: {args.input} holds no reports", file=sys.stderr)
        return 1
    texts = [r.text for r in rows]
    if args.extract_report:
        texts = [extract_report(t) for t in texts]
    a, b = (mrgfast.label(texts, threads=args.threads, labeler=lab) for lab in labelers)
    result = agreement(a, b, names=(labelers[0].name, labelers[1].name))
    result["input"] = {"path": args.input, "reports": len(rows), "skipped_rows": len(bad)}
    print(format_agreement(result, title=f"mrgfast agree: {args.input}"))
    written = []
    try:
        _write_json(args.json, result)
        written.append(args.json)
        if not args.no_plot:
            written.append(plot_agreement(result, args.plot))
    except OSError as e:
        print(f"mrgfast agree: cannot write: {e}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(written)}")
    return 0
