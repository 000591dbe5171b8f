"""``mrgfast agree REPORTS``: per-observation agreement between two labelers on the same reports."""

from __future__ import annotations

import argparse
import json
import sys

HELP = (
    "agreement between two labelers (rust, chexbert) on the same reports, or of one labeler with reference "
    "labels (--reference-labels): kappa, P/R/F1, disagreements"
)

DESCRIPTION = """\
Label every report of REPORTS with two labelers (--labeler A,B; default rust,chexbert) and print, per
observation, 4-way agreement (positive / negative / uncertain / blank), present/absent agreement
(positive and uncertain = present), Cohen's kappa for both, and how many reports each labeler calls
present; then the macro (mean over observations) and micro (pooled) summaries. The JSON adds the 4 x 4
confusion counts per observation; the PNG draws the measures as a heatmap beside each observation's
confusion matrix.

REPORTS is a CSV (named column), JSONL (named field) or text file (one report per line).

With --reference-labels, REPORTS is a CSV of reference labels (a development set): the report text
(column `text`, or --field), an optional `id` and `scheme` column, and the 14 observation columns
named as in the CheXpert CSVs; other columns are ignored. Schemes: `binary` (0/1; 1 = positive or
uncertain) and `4way` (1, 0, -1, empty = blank); give --scheme when there is no `scheme` column. The
one labeler (--labeler, default rust) is scored against them: per observation precision, recall, F1
and Cohen's kappa on present (1 or -1) vs absent, micro and macro (4way adds agreement and kappa on
the four codes), then the reports where they disagree, each with the rule labeler's --explain trace
of the differing observations (--show N of them on stdout, all in --disagreements JSONL). A bad cell
stops the run naming FILE:LINE and the column.
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
    ref = p.add_argument_group("scoring against reference labels")
    ref.add_argument(
        "--reference-labels",
        action="store_true",
        help="REPORTS is a CSV with reference labels: score one --labeler (default rust) against them",
    )
    ref.add_argument("--scheme", default=None, help="binary | 4way, when REPORTS has no 'scheme' column")
    ref.add_argument(
        "--disagreements",
        default="mrgfast_agree_disagreements.jsonl",
        metavar="PATH",
        help="every disagreeing report with its trace, one JSON object a line (default %(default)s)",
    )
    ref.add_argument("--show", type=int, default=20, metavar="N", help="disagreeing reports printed (default 20)")
    ref.add_argument(
        "--observation",
        action="append",
        default=None,
        metavar="NAME",
        help="only disagreements on this observation (repeatable; the scores still cover all 14)",
    )
    p.set_defaults(func=run, progress=False)


def run(args) -> int:
    if args.reference_labels:
        return run_reference(args)
    if args.scheme is not None or args.observation:
        print("mrgfast agree: --scheme and --observation go with --reference-labels", file=sys.stderr)
        return 2
    import mrgfast
    from mrgfast.atomic import write_json
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
        write_json(args.json, result)
        written.append(args.json)
        if not args.no_plot:
            written.append(plot_agreement(result, args.plot))
    except OSError as e:
        print(f"mrgfast agree: cannot write: {e}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(written)}")
    return 0


def run_reference(args) -> int:
    """``--reference-labels``: one labeler against the labels of REPORTS."""
    import mrgfast
    from mrgfast.atomic import OutputPathError, check_output_path, open_replacing, write_json
    from mrgfast.cli.labeler_options import labeler_names, labelers_from_args
    from mrgfast.contracts import OBSERVATIONS
    from mrgfast.labelers.reference_labels import (
        SCHEMES,
        ReferenceError,
        disagreements,
        format_disagreement,
        format_reference_score,
        normalise_scheme,
        plot_reference_score,
        read_reference_csv,
        score_against_reference,
    )
    from mrgfast.reward.format import extract_report

    prefix = "mrgfast agree: "
    try:
        names = labeler_names(args, default="rust")
    except argparse.ArgumentTypeError as e:
        print(prefix + str(e), file=sys.stderr)
        return 2
    if len(names) != 1:
        print(f"{prefix}--reference-labels scores one labeler; --labeler names {names}", file=sys.stderr)
        return 2
    unknown = [o for o in args.observation or () if o not in OBSERVATIONS]
    if unknown:
        print(f"{prefix}--observation: unknown {unknown}; known: {', '.join(OBSERVATIONS)}", file=sys.stderr)
        return 2
    if args.show < 0:
        print(f"{prefix}--show must be >= 0, got {args.show}", file=sys.stderr)
        return 2
    if args.scheme is not None and normalise_scheme(args.scheme) is None:
        print(f"{prefix}--scheme: unknown {args.scheme!r}; choose one of {', '.join(SCHEMES)}", file=sys.stderr)
        return 2
    if args.format not in (None, "csv"):
        print(f"{prefix}--reference-labels reads a CSV file, not {args.format}", file=sys.stderr)
        return 2
    if args.skip_bad:
        print(
            f"{prefix}--skip-bad does not go with --reference-labels: a bad reference row stops the run",
            file=sys.stderr,
        )
        return 2
    outputs = [args.json, args.disagreements] + ([] if args.no_plot else [args.plot])
    try:
        for out in outputs:
            check_output_path(out, inputs=(args.input,))
    except OutputPathError as e:
        print(prefix + str(e), file=sys.stderr)
        return 2
    args.labeler = names
    try:
        (labeler,) = labelers_from_args(args, default="rust")
    except (ValueError, OSError, ImportError) as e:
        print(prefix + str(e), file=sys.stderr)
        return 2
    try:
        ref = read_reference_csv(
            args.input, text_field=args.field or "text", id_field=args.id_field, scheme=args.scheme
        )
    except ReferenceError as e:
        print(prefix + str(e), file=sys.stderr)
        return 1
    texts = [extract_report(t) for t in ref.texts] if args.extract_report else ref.texts
    predicted = mrgfast.label(texts, threads=args.threads, labeler=labeler)
    result = score_against_reference(predicted, ref, labeler=labeler.name)
    print(format_reference_score(result, title=f"mrgfast agree: {args.input}"))
    items = disagreements(predicted, ref, observations=args.observation)
    traces = labeler.name == "rust"
    if traces:
        from mrgfast.labelers.explain import explain, format_explanation

        for item in items:
            # the trace of the text the labeler saw, limited to the observations in question
            trail = explain(texts[item["index"]])
            item["explain"] = format_explanation(trail, observations=list(item["observations"]))
    scope = f" on {', '.join(args.observation)}" if args.observation else ""
    print(f"\ndisagreements{scope}: {len(items)} of {result['n']} reports")
    for item in items[: args.show]:
        print(format_disagreement(item, item.get("explain")))
    if len(items) > args.show:
        print(f"... {len(items) - args.show} more in {args.disagreements}")
    result["disagreements"] = {"count": len(items), "observations": args.observation, "path": args.disagreements}
    written = []
    try:
        write_json(args.json, result)
        written.append(args.json)
        with open_replacing(args.disagreements) as f:
            for item in items:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        written.append(args.disagreements)
        if not args.no_plot:
            written.append(plot_reference_score(result, args.plot))
    except OSError as e:
        print(f"{prefix}cannot write: {e}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(written)}")
    return 0
