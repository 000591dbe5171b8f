"""``mrgfast demo``: label and score the bundled sample pairs, print the MCCS and CE table."""

from __future__ import annotations

import argparse
import json
import sys
import time

HELP = "label and score the bundled sample report pairs (a one-command tour of the reward engine)"

DESCRIPTION = """\
Label the bundled sample pairs (mrgfast/data/sample_pairs.jsonl: generated and reference chest
X-ray reports), print the labels of the first few pairs with their MCCS and MRG-R1 reward, then the
MCCS summary and the clinical-efficacy table over all pairs. Nothing is downloaded.
"""

SAMPLE = "sample_pairs.jsonl"
# (generated, reference) field names accepted in the sample file, first match wins
FIELD_PAIRS = (("generated", "reference"), ("pred", "ref"), ("prediction", "report"), ("completion", "report"))


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--show", type=int, default=3, metavar="N", help="pairs shown in detail (default 3)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the full result as JSON")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write the per-observation F1 bar chart (PNG)")
    p.set_defaults(func=run)


def load_sample_pairs() -> list[tuple[str, str, str]]:
    """(id, generated, reference) of every bundled sample pair."""
    from importlib import resources

    try:
        text = resources.files("mrgfast.data").joinpath(SAMPLE).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError) as e:
        raise RuntimeError(f"the bundled sample file mrgfast/data/{SAMPLE} is missing ({e})") from None
    pairs = []
    fields = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RuntimeError(f"mrgfast/data/{SAMPLE}:{number}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise RuntimeError(f"mrgfast/data/{SAMPLE}:{number}: expected a JSON object")
        if fields is None:
            fields = next((f for f in FIELD_PAIRS if f[0] in obj and f[1] in obj), None)
            if fields is None:
                raise RuntimeError(
                    f"mrgfast/data/{SAMPLE}:{number}: no generated/reference fields among {sorted(obj)}; "
                    f"expected one of {FIELD_PAIRS}"
                )
        g, r = obj.get(fields[0]), obj.get(fields[1])
        if not isinstance(g, str) or not isinstance(r, str):
            raise RuntimeError(f"mrgfast/data/{SAMPLE}:{number}: fields {fields} must both be strings")
        pairs.append((str(obj.get("id", number)), g, r))
    if not pairs:
        raise RuntimeError(f"mrgfast/data/{SAMPLE} holds no pairs")
    return pairs


def _short_labels(row, blank: int, names) -> str:
    sym = {1: "+", 0: "-", -1: "?"}
    items = [f"{sym[c]}{n}" for n, c in zip(names, row) if c != blank]
    return ", ".join(items) if items else "(nothing mentioned)"


def run(args) -> int:
    import mrgfast
    from mrgfast.reward import extract_report, mrg_reward
    from mrgfast.scoring import format_table, score_pairs

    try:
        pairs = load_sample_pairs()
    except RuntimeError as e:
        print(f"mrgfast demo: {e}", file=sys.stderr)
        return 1
    ids = [p[0] for p in pairs]
    gen = [p[1] for p in pairs]
    ref = [p[2] for p in pairs]

    t0 = time.perf_counter()
    result = score_pairs(gen, ref, ids=ids)
    elapsed = time.perf_counter() - t0
    rewards = mrg_reward(prompts=[""] * len(gen), completions=gen, report=ref)

    if args.show > 0:
        g_labels = mrgfast.label([extract_report(g) for g in gen[: args.show]])
        r_labels = mrgfast.label(ref[: args.show])
        for k in range(min(args.show, len(pairs))):
            print(f"[{ids[k]}] generated: {gen[k]}")
            print(f"     labels: {_short_labels(g_labels[k].tolist(), mrgfast.BLANK, mrgfast.OBSERVATIONS)}")
            print(f"  reference: {ref[k]}")
            print(f"     labels: {_short_labels(r_labels[k].tolist(), mrgfast.BLANK, mrgfast.OBSERVATIONS)}")
            print(
                f"  MCCS {result['per_sample'][k]['mccs']:.3f}   MRG-R1 reward (0.75 MCCS + 0.25 format) "
                f"{rewards[k]:.3f}\n"
            )
    print(
        format_table(result, title=f"{len(pairs)} bundled sample pairs, labelled and scored in {elapsed * 1e3:.1f} ms")
    )
    print(f"mean MRG-R1 reward: {sum(rewards) / len(rewards):.4f}")
    if args.json:
        from mrgfast.atomic import write_json

        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        from mrgfast.scoring import plot_f1

        plot_f1(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
