"""``mrgfast eval --model PATH [--adapter PATH] --data annotation.json --split test``."""

from __future__ import annotations

import argparse
import logging
import sys

from mrgfast.contracts import check_mccs_params

HELP = "generate reports for a split and score them: CE, MCCS, format rate, BLEU/METEOR/ROUGE-L/CIDEr"

DESCRIPTION = """\
Generate a report for every study of --split of an R2Gen annotation file (batched; greedy unless
--do-sample), write each batch to <out>/predictions.jsonl as soon as it is generated (id, generated
text, extracted report, reference), then compute the metrics: clinical efficacy (mrgfast labeler;
precision/recall/F1 per observation, micro and macro over 14 and over the 5-observation subset),
mean MCCS, format-compliance rate, and BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap).
They are printed as a table and written to <out>/metrics.json.

Interrupted? Run the same command again: studies already in predictions.jsonl are skipped (a
partial last line left by a kill is cut off and regenerated). Different generation settings stop
with the differences listed (--overwrite starts over). The MCCS/CE numbers are those of
`mrgfast score --pred P --pred-field generated --ref P --ref-field reference` on the predictions
file: both run the same code (mrgfast.scoring.score_pairs).
"""

EPILOG = """\
examples:
  mrgfast eval --model runs/tiny/sft/final --adapter runs/tiny/grpo/final \\
      --data .mrgfast/synth/annotation.json --dataset-kind synthetic --max-new-tokens 80 --out runs/tiny/eval_test
  mrgfast eval --model runs/tiny/grpo/final --data ...   # an adapter folder: its base model is found
  mrgfast eval --model /models/Qwen2.5-VL-7B --adapter runs/iu/grpo/final --data /data/iu_xray/annotation.json \\
      --vllm --batch-size 256                              # vLLM generation (GPU + pip install vllm)
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval", help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("model and data")
    g.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="local model folder (or a LoRA adapter folder whose base model is local)",
    )
    g.add_argument("--adapter", default=None, metavar="PATH", help="PEFT LoRA adapter folder applied to --model")
    g.add_argument("--data", required=True, metavar="FILE", help="R2Gen annotation.json")
    g.add_argument("--image-root", default=None, metavar="DIR", help="image root (default: <annotation dir>/images)")
    g.add_argument(
        "--dataset-kind",
        default="iu_xray",
        choices=("iu_xray", "mimic_cxr", "synthetic"),
        help="sets the default views per study: IU X-Ray 2, MIMIC-CXR 1, synthetic 2 (default iu_xray)",
    )
    g.add_argument("--max-images", type=int, default=None, metavar="N", help="views per study (default per kind)")
    g.add_argument("--split", default="test", help="split to evaluate (default test)")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N studies of the split")
    g.add_argument("--instruction", default=None, help="prompt instruction (default: the one training uses)")
    g = p.add_argument_group("generation")
    g.add_argument("--batch-size", type=int, default=16, help="studies per generate call (default 16)")
    g.add_argument("--max-new-tokens", type=int, default=512, help="default 512")
    g.add_argument("--do-sample", action="store_true", help="sample (default: greedy decoding)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1.0: off)")
    g.add_argument("--top-k", type=int, default=0, help="top-k sampling (default 0: off)")
    g.add_argument("--num-beams", type=int, default=1, help="beam search width (default 1; transformers only)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="default 1.0 (off)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument("--vllm", action="store_true", help="generate with vLLM (needs vllm installed and a GPU)")
    g.add_argument("--vllm-gpu-memory-utilization", type=float, default=0.85, help="default 0.85")
    g.add_argument("--attn-implementation", default="auto", choices=("auto", "flash_attention_2", "sdpa", "eager"))
    g.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "bfloat16", "float16", "float32"),
        help="auto: bf16 on a GPU, fp32 on the CPU",
    )
    g.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    g.add_argument("--trust-remote-code", action="store_true")
    g = p.add_argument_group("outputs and metrics")
    g.add_argument(
        "--out",
        default="eval",
        metavar="DIR",
        help="output folder for predictions.jsonl and metrics.json (default eval/)",
    )
    g.add_argument(
        "--predictions", default=None, metavar="FILE", help="predictions file (default <out>/predictions.jsonl)"
    )
    g.add_argument("--metrics", default=None, metavar="FILE", help="metrics file (default <out>/metrics.json)")
    g.add_argument("--overwrite", action="store_true", help="discard existing predictions and start over")
    g.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    g.add_argument("--no-nlg", action="store_true", help="skip the language metrics (BLEU, METEOR, ROUGE-L, CIDEr)")
    import mrgfast

    g.add_argument(
        "--margin", type=float, default=mrgfast.DEFAULT_MARGIN, help=f"MCCS margin (default {mrgfast.DEFAULT_MARGIN})"
    )
    g.add_argument(
        "--uncertain",
        type=float,
        default=mrgfast.DEFAULT_UNCERTAIN,
        help=f"MCCS value of an uncertain finding (default {mrgfast.DEFAULT_UNCERTAIN})",
    )
    g.add_argument("--uncertain-positive", action="store_true", help="CE: count uncertain as positive")
    g.add_argument(
        "--side-weight",
        type=float,
        default=mrgfast.DEFAULT_SIDE_WEIGHT,
        help=f"MCCS+ side weight, in (0, 1) (default {mrgfast.DEFAULT_SIDE_WEIGHT}): MCCS+ and side-aware CE are "
        "reported beside MCCS and CE",
    )
    g.add_argument("--threads", type=int, default=None, help="labelling threads (default: every core)")
    from mrgfast.cli.labeler_options import add_labeler_options

    add_labeler_options(g, many=True)
    g.add_argument(
        "--radeval",
        metavar="METRICS",
        default=None,
        help="also compute RadEval metrics, a comma list (e.g. radgraph,bertscore); offline: their model "
        "files must be local (pip install RadEval)",
    )
    g.add_argument(
        "--image-check",
        default="exists",
        choices=("decode", "open", "exists", "none"),
        help="check images before generating: decode (every pixel), open (parse headers), exists (default), none",
    )
    progress = g.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None)
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=main)
    return p


def options_from_args(args):
    from mrgfast.eval.generate import GenerationSettings
    from mrgfast.eval.run import EvalOptions

    gen = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    return EvalOptions(
        model=args.model,
        adapter=args.adapter,
        data=args.data,
        image_root=args.image_root,
        dataset_kind=args.dataset_kind,
        max_images=args.max_images,
        split=args.split,
        limit=args.limit,
        out=args.out,
        predictions=args.predictions,
        metrics=args.metrics,
        batch_size=args.batch_size,
        generation=gen,
        instruction=args.instruction,
        use_vllm=args.vllm,
        vllm_gpu_memory_utilization=args.vllm_gpu_memory_utilization,
        attn_implementation=args.attn_implementation,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        image_check=args.image_check,
        overwrite=args.overwrite,
        meteor=False if args.no_meteor else None,
        nlg=not args.no_nlg,
        margin=args.margin,
        uncertain=args.uncertain,
        uncertain_positive=args.uncertain_positive,
        side_weight=args.side_weight,
        threads=args.threads,
        progress=args.progress,
        labelers=args.labelers,
        radeval=[m.strip() for m in args.radeval.split(",") if m.strip()] if args.radeval else None,
    )


def main(args) -> int:
    try:
        check_mccs_params(args.margin, args.uncertain)
    except ValueError as e:
        print(f"mrgfast eval: --margin/--uncertain: {e}", file=sys.stderr)
        return 2
    from mrgfast.contracts import check_side_weight

    try:
        check_side_weight(args.side_weight)
    except ValueError as e:
        print(f"mrgfast eval: --side-weight: {e}", file=sys.stderr)
        return 2
    from mrgfast.contracts import check_threads

    try:
        check_threads(args.threads, "--threads")
    except ValueError as e:
        print(f"mrgfast eval: {e}", file=sys.stderr)
        return 2
    from mrgfast.cli.labeler_options import labelers_from_args

    try:
        args.labelers = labelers_from_args(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"mrgfast eval: {e}", file=sys.stderr)
        return 2
    logger = logging.getLogger("mrgfast")
    if not any(getattr(h, "_mrgfast_eval", False) for h in logger.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        h._mrgfast_eval = True
        logger.addHandler(h)
    logger.setLevel(logging.INFO)

    from mrgfast.eval.generate import GenerationError
    from mrgfast.eval.metrics import format_eval_table
    from mrgfast.eval.radeval_metrics import RadEvalError, check_available
    from mrgfast.eval.run import EvalError, run_eval

    opts = options_from_args(args)
    if opts.radeval:
        try:
            check_available(opts.radeval)
        except RadEvalError as e:
            print(f"mrgfast eval: {e}", file=sys.stderr)
            return 2
    done = [0, 0]

    def on_batch(n, total):
        done[0], done[1] = n, total

    from mrgfast.runlock import FolderLocked

    try:
        result = run_eval(opts, on_batch=on_batch)
    except FolderLocked as e:
        print(f"mrgfast eval: {e}", file=sys.stderr)
        return 2
    except (EvalError, GenerationError, RadEvalError) as e:
        print(f"mrgfast eval: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"mrgfast eval: interrupted; {opts.predictions_path} holds {done[0]} of {done[1] or '?'} predictions. "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return 130
    title = (
        f"mrgfast eval: {result['model']}"
        + (f" + {result['adapter']}" if result["adapter"] else "")
        + f" on {args.data} [{args.split}] ({result['engine']}, "
        + ("sampling" if args.do_sample else "greedy")
        + ")"
    )
    print(format_eval_table(result, title=title))
    t = result["timing_s"]
    gen_note = (
        f"generated {result['generated_now']} ({t['generate']:.1f} s, {t['generate_per_study']:.3f} s/study)"
        if result["generated_now"]
        else "generated 0 (all predictions were already written)"
    )
    print(
        f"{gen_note}, resumed {result['resumed']}; wrote {opts.metrics_path} and {opts.predictions_path} "
        f"({t['total']:.1f} s)"
    )
    print(f"same CE/MCCS from the predictions file: {result['score_command']}")
    return 0
