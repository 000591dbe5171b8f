"""``mrgfast score --pred P --ref R``: MCCS and clinical-efficacy metrics of generated reports."""

from __future__ import annotations

import argparse
import sys
import time

from mrgfast.contracts import check_mccs_params, check_side_weight

HELP = "score generated reports against references: MCCS and the CE table (JSON + F1 bar chart)"

DESCRIPTION = """\
Pair the generated reports of --pred with the references of --ref, label both sides once, and
print the MCCS mean/median and the clinical-efficacy table: precision, recall and F1 per
observation, micro and macro over the 14 observations and over the 5-observation competition
subset (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion). Beside them (rule
labeler): MCCS+ and side-aware CE, where a finding positive in both reports counts only when both
state the same side or either states none. The full result goes to
a JSON file (with per-pair MCCS), the per-observation F1 to a PNG bar chart. Both are written under
a temporary name and moved into place when complete, replacing an existing file; neither may be an
input.

Pairing: by id when both files have ids (an `id` column/field, or --pred-id-field/--ref-id-field);
ids present on one side only are listed and left out; when neither file has ids, by order (the
counts must then match). Files are CSV (named column), JSONL (named field) or text (one report per
line). Generated texts are scored on their <report> block when they have one (--no-extract to
score them whole). A bad row stops the run with FILE:LINE and the reason; --skip-bad reports it
and goes on.
"""


def add_parser(sub) -> None:
    import mrgfast
    from mrgfast.cli._io import PRED_FIELD_CANDIDATES, REF_FIELD_CANDIDATES, add_input_options

    p = sub.add_parser(
        "score", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pred", required=True, metavar="P", help="generated reports (.csv / .jsonl / text)")
    p.add_argument("--ref", required=True, metavar="R", help="reference reports (.csv / .jsonl / text)")
    add_input_options(p, prefix="pred-", help_name="--pred file", candidates=PRED_FIELD_CANDIDATES)
    add_input_options(p, prefix="ref-", help_name="--ref file", candidates=REF_FIELD_CANDIDATES)
    p.add_argument(
        "--json",
        default="mrgfast_score.json",
        metavar="PATH",
        help="where to write the full result (default: mrgfast_score.json)",
    )
    p.add_argument(
        "--plot",
        default="mrgfast_score_f1.png",
        metavar="PATH",
        help="where to write the per-observation F1 bar chart (default: mrgfast_score_f1.png)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the bar chart")
    p.add_argument(
        "--margin",
        type=float,
        default=mrgfast.DEFAULT_MARGIN,
        help=f"MCCS margin m in [0, 1) (default {mrgfast.DEFAULT_MARGIN})",
    )
    p.add_argument(
        "--uncertain",
        type=float,
        default=mrgfast.DEFAULT_UNCERTAIN,
        help=f"MCCS value of an uncertain finding, in [-1, 1] (default {mrgfast.DEFAULT_UNCERTAIN})",
    )
    p.add_argument(
        "--side-weight",
        type=float,
        default=mrgfast.DEFAULT_SIDE_WEIGHT,
        help=f"MCCS+ side weight, in (0, 1) (default {mrgfast.DEFAULT_SIDE_WEIGHT}); MCCS+ and side-aware CE are "
        "reported beside MCCS and CE when the rule labeler labels",
    )
    p.add_argument(
        "--uncertain-positive",
        action="store_true",
        help="CE binarisation: count uncertain (-1) as positive (default: only 1 is positive)",
    )
    p.add_argument("--no-extract", action="store_true", help="score generated texts whole, not their <report> block")
    p.add_argument("--skip-bad", action="store_true", help="report bad rows on stderr and go on instead of stopping")
    p.add_argument("--threads", type=int, default=None, help="labelling threads (default: every core)")
    from mrgfast.cli.labeler_options import add_labeler_options

    add_labeler_options(p, many=True)
    p.add_argument(
        "--show-unpaired",
        type=int,
        default=20,
        metavar="N",
        help="list at most N unpaired ids per side on the terminal (all go to the JSON; default 20)",
    )
    progress = p.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show progress bars (default: only on a terminal)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")
    p.set_defaults(func=run)


class PairingError(Exception):
    pass


def pair_rows(pred_rows, ref_rows, pred_has_ids: bool, ref_has_ids: bool, pred_path: str, ref_path: str):
    """(pairs [(id, pred_text, ref_text)], pred_only ids, ref_only ids, mode)."""
    if pred_has_ids != ref_has_ids:
        with_ids, without = (pred_path, ref_path) if pred_has_ids else (ref_path, pred_path)
        raise PairingError(
            f"{with_ids} has ids but {without} has none; give both files ids (to pair by id) "
            "or neither (to pair by order)"
        )
    if not pred_has_ids:
        if len(pred_rows) != len(ref_rows):
            raise PairingError(
                f"{pred_path} has {len(pred_rows)} reports but {ref_path} has {len(ref_rows)}; "
                "without ids the files are paired by order, so the counts must match"
            )
        pairs = [(str(i + 1), p.text, r.text) for i, (p, r) in enumerate(zip(pred_rows, ref_rows))]
        return pairs, [], [], "order"
    refs: dict[str, object] = {}
    for r in ref_rows:
        if r.id in refs:
            raise PairingError(f"{ref_path}:{r.line}: duplicate id {r.id!r} (first on line {refs[r.id].line})")
        refs[r.id] = r
    seen: dict[str, object] = {}
    pairs = []
    pred_only: list[str] = []
    for p in pred_rows:
        if p.id in seen:
            raise PairingError(f"{pred_path}:{p.line}: duplicate id {p.id!r} (first on line {seen[p.id].line})")
        seen[p.id] = p
        r = refs.get(p.id)
        if r is None:
            pred_only.append(p.id)
        else:
            pairs.append((p.id, p.text, r.text))
    ref_only = [rid for rid in refs if rid not in seen]
    return pairs, pred_only, ref_only, "id"


def _listing(ids: list[str], limit: int) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def run(args) -> int:
    from mrgfast.atomic import check_output_path, write_json
    from mrgfast.cli._io import (
        PRED_FIELD_CANDIDATES,
        REF_FIELD_CANDIDATES,
        BadRowError,
        InputError,
        collect,
        read_rows,
    )
    from mrgfast.cli.labeler_options import labelers_from_args
    from mrgfast.contracts import check_threads
    from mrgfast.scoring import format_table, score_pairs

    t0 = time.perf_counter()
    try:
        check_threads(args.threads, "--threads")
        check_output_path(args.json, inputs=(args.pred, args.ref), what="--json")
        if not args.no_plot:
            check_output_path(args.plot, inputs=(args.pred, args.ref, args.json), what="--plot")
    except (ValueError, TypeError) as e:
        print(f"mrgfast score: {e}", file=sys.stderr)
        return 2
    try:
        labelers = labelers_from_args(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"mrgfast score: {e}", file=sys.stderr)
        return 2
    try:
        check_mccs_params(args.margin, args.uncertain)
    except ValueError as e:
        print(f"mrgfast score: --margin/--uncertain: {e}", file=sys.stderr)
        return 2
    try:
        check_side_weight(args.side_weight)
    except ValueError as e:
        print(f"mrgfast score: --side-weight: {e}", file=sys.stderr)
        return 2
    try:
        pred_stream = read_rows(
            args.pred,
            fmt=args.pred_format,
            text_field=args.pred_field,
            id_field=args.pred_id_field,
            progress=args.progress,
            desc="reading --pred",
            candidates=PRED_FIELD_CANDIDATES,
        )
        ref_stream = read_rows(
            args.ref,
            fmt=args.ref_format,
            text_field=args.ref_field,
            id_field=args.ref_id_field,
            progress=args.progress,
            desc="reading --ref",
            candidates=REF_FIELD_CANDIDATES,
        )
        pred_rows, pred_bad = collect(pred_stream, skip_bad=args.skip_bad, prefix="mrgfast score: ")
        ref_rows, ref_bad = collect(ref_stream, skip_bad=args.skip_bad, prefix="mrgfast score: ")
    except (InputError, BadRowError) as e:
        print(f"mrgfast score: {e}", file=sys.stderr)
        if isinstance(e, BadRowError):
            print("mrgfast score: nothing scored (use --skip-bad to score the good rows)", file=sys.stderr)
        return 1
    for path, rows in ((args.pred, pred_rows), (args.ref, ref_rows)):
        if not rows:
            print(f"mrgfast score: {path} holds no reports", file=sys.stderr)
            return 1
    try:
        pairs, pred_only, ref_only, mode = pair_rows(
            pred_rows, ref_rows, pred_stream.has_ids, ref_stream.has_ids, args.pred, args.ref
        )
    except PairingError as e:
        print(f"mrgfast score: {e}", file=sys.stderr)
        return 1
    if not pairs:
        print(f"mrgfast score: no id is present in both {args.pred} and {args.ref}; nothing to score", file=sys.stderr)
        return 1
    t_read = time.perf_counter() - t0

    ids = [p[0] for p in pairs]
    result = score_pairs(
        [p[1] for p in pairs],
        [p[2] for p in pairs],
        ids=ids,
        margin=args.margin,
        uncertain=args.uncertain,
        uncertain_positive=args.uncertain_positive,
        threads=args.threads,
        extract=not args.no_extract,
        labelers=labelers,
        side_weight=args.side_weight,
    )
    t_score = time.perf_counter() - t0 - t_read
    result["inputs"] = {
        "pred": {
            "path": args.pred,
            "format": pred_stream.format,
            "field": pred_stream.text_field,
            "id_field": pred_stream.id_field if pred_stream.has_ids else None,
            "reports": len(pred_rows),
        },
        "ref": {
            "path": args.ref,
            "format": ref_stream.format,
            "field": ref_stream.text_field,
            "id_field": ref_stream.id_field if ref_stream.has_ids else None,
            "reports": len(ref_rows),
        },
        "paired_by": mode,
    }
    result["unpaired"] = {"pred_only": pred_only, "ref_only": ref_only}
    result["skipped_rows"] = [{"path": b.path, "line": b.line, "reason": b.message} for b in pred_bad + ref_bad]

    print(format_table(result, title=f"mrgfast score: {args.pred} vs {args.ref} (paired by {mode})"))
    if pred_only:
        print(f"ids only in --pred ({len(pred_only)}, not scored): {_listing(pred_only, args.show_unpaired)}")
    if ref_only:
        print(f"ids only in --ref ({len(ref_only)}, not scored): {_listing(ref_only, args.show_unpaired)}")
    if pred_bad or ref_bad:
        print(f"skipped bad rows: {len(pred_bad)} in --pred, {len(ref_bad)} in --ref (listed in the JSON)")

    written = []
    if not args.no_plot:
        from mrgfast.scoring import plot_f1

        try:
            written.append(plot_f1(result, args.plot))
        except ImportError:
            print(
                "mrgfast score: matplotlib is not installed, so no bar chart was drawn "
                "(pip install matplotlib, or pass --no-plot)",
                file=sys.stderr,
            )
        except OSError as e:
            print(f"mrgfast score: cannot write {args.plot}: {e}", file=sys.stderr)
            return 1
    result["timing_s"] = {
        "read": round(t_read, 4),
        "score": round(t_score, 4),
        "total": round(time.perf_counter() - t0, 4),
    }
    try:
        write_json(args.json, result)
    except OSError as e:
        print(f"mrgfast score: cannot write {args.json}: {e}", file=sys.stderr)
        return 1
    written.insert(0, args.json)
    print(f"wrote {', '.join(written)} ({time.perf_counter() - t0:.2f} s)")
    return 0
