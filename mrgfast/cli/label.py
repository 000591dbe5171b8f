"""``mrgfast label IN [-o OUT]``: CheXpert labels for a file of reports, streamed."""

from __future__ import annotations

import argparse
import csv
import json
import sys

HELP = "label reports with the 14 CheXpert observations (CSV / JSONL / text in; CheXpert CSV or JSONL out)"

DESCRIPTION = """\
Label every report of IN with the 14 CheXpert observations (1 positive, 0 negative, -1 uncertain,
blank when not mentioned) and write a CheXpert-style CSV (a `Reports` column and the 14
observation columns, blanks empty) or JSONL (one object per report: `line`, `id` when the input
has one, `report`, then the observations with null for blank).

IN is a CSV file with a named text column, a JSONL file with a named field, or a text file with
one report per line ('-' reads stdin). The file is streamed in chunks, so it may be larger than
memory. A bad row (invalid JSON or UTF-8, missing field, wrong field count, empty line) stops the
run with FILE:LINE and the reason, leaving no output (OUT is written under a temporary name and
moved into place only when complete; stdout output is held back until the whole input has been
read); --skip-bad reports each bad row and goes on. An existing OUT is replaced; OUT may not be IN.
"""


def add_parser(sub) -> None:
    from mrgfast.cli._io import add_input_options

    p = sub.add_parser(
        "label", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "input",
        metavar="IN",
        nargs="?",
        default=None,
        help="reports to label: .csv, .jsonl (or .ndjson/.json), else one per line",
    )
    p.add_argument(
        "--explain",
        metavar="TEXT",
        default=None,
        help="instead of labelling a file, print for TEXT per observation the mention, the trigger and the "
        "rule (rules.txt line) that decided each code",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        default=None,
        help="output file (.jsonl/.ndjson: JSONL, else CSV); default: CSV on stdout",
    )
    p.add_argument(
        "--output-format",
        choices=("csv", "jsonl"),
        default=None,
        help="output format (default: from OUT's extension, CSV for stdout)",
    )
    add_input_options(p)
    p.add_argument(
        "--details",
        action="store_true",
        help="also write each finding's side and degree (rule labeler): CSV columns '<observation> side' and "
        "'<observation> degree' (empty when not stated), JSONL a 'details' object",
    )
    p.add_argument(
        "--extract-report",
        action="store_true",
        help="label only the <report>...</report> block of each text (model completions); "
        "the Reports column keeps the text as given",
    )
    p.add_argument("--skip-bad", action="store_true", help="report bad rows on stderr and go on instead of stopping")
    p.add_argument("--threads", type=int, default=None, help="labelling threads (default: every core)")
    from mrgfast.cli.labeler_options import add_labeler_options

    add_labeler_options(p)
    p.add_argument("--chunk-size", type=int, default=8192, help="reports labelled per batch (default 8192)")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show the progress bar (default: only on a terminal)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")
    p.set_defaults(func=run)


def _output_format(args) -> str:
    if args.output_format:
        return args.output_format
    if args.output and args.output.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "csv"


def _code(code: int, blank: int) -> str:
    return "" if code == blank else f"{float(code):.1f}"


def run(args) -> int:
    import mrgfast
    from mrgfast.cli._io import BadRow, InputError, atomic_writer, read_rows
    from mrgfast.cli.labeler_options import labelers_from_args
    from mrgfast.reward.format import extract_report

    if args.explain is not None:
        from mrgfast.labelers.explain import explain, format_explanation

        print(format_explanation(explain(args.explain)))
        return 0
    if args.input is None:
        print("mrgfast label: give IN (a file of reports) or --explain TEXT", file=sys.stderr)
        return 2
    try:
        (labeler,) = labelers_from_args(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"mrgfast label: {e}", file=sys.stderr)
        return 2
    if args.chunk_size < 1:
        print("mrgfast label: --chunk-size must be >= 1", file=sys.stderr)
        return 2
    from mrgfast.contracts import check_threads

    try:
        check_threads(args.threads, "--threads")
    except ValueError as e:
        print(f"mrgfast label: {e}", file=sys.stderr)
        return 2
    if args.input == "-" and args.format is None:
        args.format = "txt"
    out_fmt = _output_format(args)
    observations = list(mrgfast.OBSERVATIONS)
    blank = mrgfast.BLANK
    if args.details and labeler.name != "rust":
        print(f"mrgfast label: --details needs the rule labeler (--labeler rust), not {labeler.name}", file=sys.stderr)
        return 2
    from mrgfast.contracts import DEGREE_NAMES, SIDE_NAMES

    detail_obs = [o for o in observations if o != "No Finding"]

    try:
        stream = read_rows(
            args.input,
            fmt=args.format,
            text_field=args.field,
            id_field=args.id_field,
            progress=args.progress,
            desc="labelling",
        )
        writer_file = atomic_writer(args.output, newline="" if out_fmt == "csv" else None, inputs=(args.input,))
    except InputError as e:
        print(f"mrgfast label: {e}", file=sys.stderr)
        return 1

    out = writer_file.f
    csv_out = csv.writer(out, lineterminator="\n") if out_fmt == "csv" else None
    if csv_out is not None:
        extra = [f"{o} {k}" for o in detail_obs for k in ("side", "degree")] if args.details else []
        csv_out.writerow(["Reports", *observations, *extra])

    n_rows = 0
    bad: list[BadRow] = []
    chunk = []

    def flush() -> None:
        nonlocal n_rows
        if not chunk:
            return
        texts = [r.text for r in chunk]
        if args.extract_report:
            texts = [extract_report(t) for t in texts]
        if args.details:
            det = mrgfast.label(texts, threads=args.threads, details=True)
            labels = det.codes
            records = mrgfast.engine.to_records(det.codes, details=det)
        else:
            labels = mrgfast.label(texts, threads=args.threads, labeler=labeler)
        if csv_out is not None:
            rows = []
            for i, (r, row) in enumerate(zip(chunk, labels.tolist())):
                cells = [r.text, *(_code(c, blank) for c in row)]
                if args.details:
                    sides, degrees = det.sides[i].tolist(), det.degrees[i].tolist()
                    for o in detail_obs:
                        j = observations.index(o)
                        cells += [
                            SIDE_NAMES[sides[j]] if sides[j] else "",
                            DEGREE_NAMES[degrees[j]] if degrees[j] else "",
                        ]
                rows.append(cells)
            csv_out.writerows(rows)
        else:
            lines = []
            for i, (r, row) in enumerate(zip(chunk, labels.tolist())):
                obj = {"line": r.line}
                if r.id is not None:
                    obj["id"] = r.id
                obj["report"] = r.text
                obj.update({o: (None if c == blank else float(c)) for o, c in zip(observations, row)})
                if args.details:
                    obj["details"] = records[i]["details"]
                lines.append(json.dumps(obj, ensure_ascii=False))
            if lines:
                out.write("\n".join(lines) + "\n")
        n_rows += len(chunk)
        chunk.clear()

    try:
        for item in stream:
            if isinstance(item, BadRow):
                if not args.skip_bad:
                    writer_file.abort()
                    print(f"mrgfast label: {item}", file=sys.stderr)
                    print(
                        f"mrgfast label: no output written ({n_rows + len(chunk)} good rows read before it; "
                        "use --skip-bad to label the good rows)",
                        file=sys.stderr,
                    )
                    return 1
                print(f"mrgfast label: skipped {item}", file=sys.stderr)
                bad.append(item)
                continue
            chunk.append(item)
            if len(chunk) >= args.chunk_size:
                flush()
        flush()
    except InputError as e:
        writer_file.abort()
        print(f"mrgfast label: {e}", file=sys.stderr)
        return 1
    except BaseException:
        writer_file.abort()
        raise
    writer_file.commit()

    where = args.output or "stdout"
    summary = f"mrgfast label: labelled {n_rows} reports from {args.input} -> {where} ({out_fmt})"
    if bad:
        lines = ", ".join(str(b.line) for b in bad[:20]) + (", ..." if len(bad) > 20 else "")
        summary += f"; skipped {len(bad)} bad rows (lines {lines})"
    if n_rows == 0:
        summary += "; the input holds no reports"
    print(summary, file=sys.stderr)
    return 0
