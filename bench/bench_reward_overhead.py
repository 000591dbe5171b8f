"""Reward overhead of one GRPO batch through the TRL-facing functions vs one BERT-base forward.

A CheXbert-based clinical reward (the MRG-R1 paper's) runs a BERT-base encoder over every generated
report and reference of the batch. mrgfast's reward labels them with the Rust rule engine instead.
This suite times both on the same texts, side by side in one run:

* ``mrg_reward`` (0.75 MCCS + 0.25 format) called exactly as TRL calls a reward function, with the
  completions as strings and as chat messages, and ``mccs_reward`` + ``format_reward`` as two
  functions (the README's ``reward_weights=[0.75, 0.25]`` form);
* ``BertModel(BertConfig())`` (BERT-base, random weights: its speed does not depend on them) over
  the same reports as token ids of realistic lengths (~1.3 WordPiece tokens per word + [CLS]/[SEP],
  at most 512), sorted by length and run in padded batches of 32 under ``torch.inference_mode``.

* ``MCCSReward(labeler=CheXbert(...))``, the paper-exact reward: the same TRL call with the CheXbert
  backend (`mrgfast.labelers.CheXbert`) labelling each distinct reference once and every report. With
  ``--chexbert-checkpoint/--bert-path`` it loads real weights; otherwise it builds a BERT-base-sized
  CheXbert with random weights in CheXbert's checkpoint format and a WordPiece vocabulary trained on the
  batch's own text (speed does not depend on the weights; ``--no-chexbert`` skips it).

Prints a table, checks the acceptance (reward < 2 ms per 128-completion batch and >= 1,000x cheaper
than the BERT forward) and writes bench/results/reward_overhead.json with the machine.

    python bench/bench_reward_overhead.py                  # 16 prompts x 8 completions
    python bench/bench_reward_overhead.py --prompts 4 --bert-reps 1 --reps 50   # quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Typical MIMIC-CXR / IU X-Ray sentences to bring the synthetic reports to realistic lengths.
FILLER = [
    "The cardiomediastinal silhouette is within normal limits.",
    "There is no focal consolidation, pleural effusion, or pneumothorax.",
    "The osseous structures are unremarkable for age.",
    "Mild degenerative changes are noted in the thoracic spine.",
    "There is no evidence of pulmonary edema.",
    "Hilar contours are normal.",
    "Atelectasis at the left lung base is likely.",
    "Lung volumes are low, with crowding of the bronchovascular markings.",
    "No acute cardiopulmonary process.",
    "Median sternotomy wires are intact.",
    "A right-sided PICC line terminates in the mid superior vena cava.",
    "Compared to the prior study, there is no significant interval change.",
    "Calcification of the aortic knob is noted.",
    "Patchy opacity in the right lower lobe may represent pneumonia in the appropriate clinical setting.",
    "The stomach is distended with air.",
    "Surgical clips project over the right upper quadrant.",
]
THINK_FILLER = [
    "Frontal and lateral views are available.",
    "The heart borders look sharp and the width is under half of the thorax.",
    "Both costophrenic angles are visible.",
    "No pleural line is seen at either apex.",
    "There is a tubular density projecting over the trachea.",
    "The lower zones look slightly hazy but the vessels remain visible.",
    "Bones and soft tissues show nothing acute.",
    "Compared with a normal film the mediastinum is not widened.",
]


def make_batch(prompts: int, generations: int, seed: int):
    """(completions, references): G completions per prompt, MIMIC-like lengths (~60-word reports)."""
    from mrgfast.data.synth import sample_findings, write_report, write_think

    rng = random.Random(seed)

    def grow(text: str, pool, target: int) -> str:
        words = len(text.split())
        parts = [text]
        while words < target:
            s = rng.choice(pool)
            parts.append(s)
            words += len(s.split())
        return " ".join(parts)

    def target(mean: float, sd: float, lo: int, hi: int) -> int:
        return int(min(hi, max(lo, rng.gauss(mean, sd))))

    completions, references = [], []
    for _ in range(prompts):
        f = sample_findings(rng)
        ref = grow(write_report(f, rng), FILLER, target(60, 20, 20, 150))
        for _ in range(generations):
            g = f if rng.random() < 0.5 else sample_findings(rng)
            think = grow(write_think(g), THINK_FILLER, target(50, 15, 15, 120))
            report = grow(write_report(g, rng), FILLER, target(60, 20, 20, 150))
            r = rng.random()
            if r < 0.8:
                text = f"<think>{think}</think>\n<report>{report}</report>"
            elif r < 0.9:
                text = f"<think>{think}</think>\n{report}"  # no report block: format 0
            else:
                text = report
            completions.append(text)
            references.append(ref)
    return completions, references


def time_call(fn, reps: int, warmup: int = 10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    times.sort()
    return {
        "median_us": statistics.median(times),
        "p10_us": times[int(0.1 * (len(times) - 1))],
        "p90_us": times[int(0.9 * (len(times) - 1))],
        "min_us": times[0],
        "reps": reps,
    }


def bench_rewards(completions, references, reps: int, threads):
    from mrgfast.reward import FormatReward, MCCSReward, MRGReward

    n = len(completions)
    prompts = [[{"role": "user", "content": "Describe the chest film."}]] * n
    chat = [[{"role": "assistant", "content": c}] for c in completions]
    ids = [[0] * 8] * n
    metrics = {}

    def trl_kwargs():
        # everything TRL's _calculate_rewards passes besides the dataset columns
        return {
            "trainer_state": None,
            "log_extra": lambda column, values: None,
            "log_metric": lambda name, value: metrics.__setitem__(name, value),
        }

    mrg = MRGReward(threads=threads)
    mccs = MCCSReward(threads=threads)
    fmt = FormatReward()
    out = {}
    out["mrg_reward (strings)"] = time_call(
        lambda: mrg(prompts=prompts, completions=completions, completion_ids=ids, report=references, **trl_kwargs()),
        reps,
    )
    out["mrg_reward (chat messages)"] = time_call(
        lambda: mrg(prompts=prompts, completions=chat, completion_ids=ids, report=references, **trl_kwargs()), reps
    )

    def two():
        mccs(prompts=prompts, completions=completions, completion_ids=ids, report=references, **trl_kwargs())
        fmt(prompts=prompts, completions=completions, completion_ids=ids, report=references, **trl_kwargs())

    out["mccs_reward + format_reward"] = time_call(two, reps)
    values = mrg(prompts=prompts, completions=completions, completion_ids=ids, report=references)
    return out, values


def bench_bert(texts, reps: int, batch_size: int, threads: int):
    import torch
    from transformers import BertConfig, BertModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = BertModel(BertConfig()).eval()  # BERT-base: 12 layers, hidden 768, 110 M parameters
    vocab = model.config.vocab_size
    lengths = [min(512, 2 + math.ceil(1.3 * len(t.split()))) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    batches = []
    g = torch.Generator().manual_seed(0)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = max(lengths[i] for i in idx)
        ids = torch.randint(1000, vocab, (len(idx), width), generator=g)
        mask = torch.zeros(len(idx), width, dtype=torch.long)
        for row, i in enumerate(idx):
            mask[row, : lengths[i]] = 1
        batches.append((ids, mask))

    def forward():
        with torch.inference_mode():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask)

    with torch.inference_mode():  # warm-up on a small batch
        model(input_ids=batches[0][0][:2, :16], attention_mask=batches[0][1][:2, :16])
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        forward()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return {
        "median_us": statistics.median(times),
        "min_us": min(times),
        "reps": reps,
        "sequences": len(texts),
        "tokens": int(sum(lengths)),
        "mean_tokens": float(np.mean(lengths)),
        "padded_tokens": int(sum(b[0].numel() for b in batches)),
        "batch_size": batch_size,
        "torch_threads": threads,
        "torch": torch.__version__,
    }


def build_random_chexbert(texts, folder: Path):
    """A BERT-base-sized CheXbert with random weights, saved as chexbert.pth + a bert folder."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel

    bert_dir = folder / "bert-base-uncased"
    bert_dir.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=30522, min_frequency=1)
    wp.save_model(str(bert_dir))
    vocab = sum(1 for _ in open(bert_dir / "vocab.txt", encoding="utf-8"))
    config = BertConfig(vocab_size=vocab)  # BERT-base: 12 layers, hidden 768
    config.save_pretrained(str(bert_dir))
    torch.manual_seed(0)
    bert = BertModel(config)
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    for i in range(14):
        head = torch.nn.Linear(config.hidden_size, 4 if i < 13 else 2)
        state[f"module.linear_heads.{i}.weight"] = head.weight.detach()
        state[f"module.linear_heads.{i}.bias"] = head.bias.detach()
    ckpt = folder / "chexbert.pth"
    torch.save({"model_state_dict": state}, ckpt)
    return ckpt, bert_dir


def bench_chexbert_reward(completions, references, reps: int, checkpoint, bert_path, batch_size: int, real: bool):
    import torch

    from mrgfast.labelers import CheXbert
    from mrgfast.reward import MCCSReward

    torch.set_num_threads(os.cpu_count() or 1)
    backend = CheXbert(checkpoint, bert_path, batch_size=batch_size)
    reward = MCCSReward(labeler=backend, name="mccs_reward_chexbert")
    n = len(completions)
    prompts = [[{"role": "user", "content": "Describe the chest film."}]] * n
    out = time_call(lambda: reward(prompts=prompts, completions=completions, report=references), reps, warmup=1)
    out["device"] = str(backend.device)
    out["weights"] = str(checkpoint) if real else "random BERT-base in CheXbert format"
    return out


def machine():
    import mrgfast

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    probe = mrgfast.label(["Cardiomegaly. Small right pleural effusion. No pneumothorax."])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mrgfast": mrgfast.__version__,
        "labeler_finds_findings": bool((probe != mrgfast.BLANK).any()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--reps", type=int, default=300, help="timed reward calls (default 300)")
    ap.add_argument("--bert-reps", type=int, default=2, help="timed BERT forwards over the batch (default 2)")
    ap.add_argument("--bert-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="reward labelling threads (default: every core)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chexbert-checkpoint", default=None, help="real chexbert.pth (default: random BERT-base)")
    ap.add_argument("--bert-path", default=None, help="bert-base-uncased folder for --chexbert-checkpoint")
    ap.add_argument("--no-chexbert", action="store_true", help="skip the CheXbert-labelled reward")
    ap.add_argument("--out", default=str(HERE / "results" / "reward_overhead.json"))
    args = ap.parse_args(argv)

    from mrgfast.reward import extract_report

    completions, references = make_batch(args.prompts, args.generations, args.seed)
    n = len(completions)
    rewards, values = bench_rewards(completions, references, args.reps, args.threads)
    # what a CheXbert reward encodes: every generated report, and each distinct reference once
    bert_texts = [extract_report(c) for c in completions] + list(dict.fromkeys(references))
    bert = bench_bert(bert_texts, args.bert_reps, args.bert_batch, threads=os.cpu_count() or 1)
    chexbert = None
    if not args.no_chexbert:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            ckpt, bert_dir = args.chexbert_checkpoint, args.bert_path
            if not ckpt:
                ckpt, bert_dir = build_random_chexbert(completions + references, Path(tmp))
            chexbert = bench_chexbert_reward(
                completions,
                references,
                args.bert_reps,
                ckpt,
                bert_dir,
                args.bert_batch,
                real=bool(args.chexbert_checkpoint),
            )

    main_key = "mrg_reward (strings)"
    reward_us = rewards[main_key]["median_us"]
    ratio = bert["median_us"] / reward_us
    words_c = [len(c.split()) for c in completions]
    words_r = [len(r.split()) for r in dict.fromkeys(references)]

    print(
        f"GRPO batch: {args.prompts} prompts x {args.generations} completions = {n} completions; "
        f"completion words mean {np.mean(words_c):.0f} (max {max(words_c)}), reference words mean "
        f"{np.mean(words_r):.0f}; mean reward {np.mean(values):.3f}"
    )
    print(f"{'implementation':<46}{'median':>14}{'p90':>14}{'per completion':>16}{'BERT / this':>13}")
    for name, r in rewards.items():
        print(
            f"{name:<46}{r['median_us']:>12,.0f}us{r['p90_us']:>12,.0f}us{r['median_us'] / n:>14.2f}us"
            f"{bert['median_us'] / r['median_us']:>12,.0f}x"
        )
    label = f"BERT-base forward ({bert['sequences']} texts, {bert['tokens']:,} tokens)"
    print(f"{label:<46}{bert['median_us']:>12,.0f}us{'':>14}{bert['median_us'] / n:>14,.0f}us{1:>12}x")
    if chexbert is not None:
        label = "mccs_reward, CheXbert labeler (paper-exact)"
        print(
            f"{label:<46}{chexbert['median_us']:>12,.0f}us{chexbert['p90_us']:>12,.0f}us"
            f"{chexbert['median_us'] / n:>14,.0f}us{bert['median_us'] / chexbert['median_us']:>12.2f}x"
        )
        print(
            f"CheXbert reward / Rust reward ({main_key}) = {chexbert['median_us'] / reward_us:,.0f}x "
            f"per GRPO batch ({chexbert['device']}, {chexbert['weights']})"
        )

    ok_time = reward_us < 2000
    ok_ratio = ratio >= 1000
    print(
        f"acceptance: reward {reward_us:.0f} us < 2000 us: {'PASS' if ok_time else 'FAIL'}; "
        f"BERT / reward = {ratio:.0f}x >= 1000x: {'PASS' if ok_ratio else 'FAIL'}"
    )
    info = machine()
    if not info["labeler_finds_findings"]:
        print("note: the installed labeler finds no findings in a report that has some (placeholder build?)")

    result = {
        "suite": "reward_overhead",
        "machine": info,
        "batch": {
            "prompts": args.prompts,
            "generations": args.generations,
            "completions": n,
            "completion_words_mean": float(np.mean(words_c)),
            "completion_chars_mean": float(np.mean([len(c) for c in completions])),
            "reference_words_mean": float(np.mean(words_r)),
            "seed": args.seed,
        },
        "reward_threads": args.threads,
        "rewards": rewards,
        "bert_base_forward": bert,
        "ratio_bert_over_reward": ratio,
        "chexbert_reward": chexbert,
        "ratio_chexbert_reward_over_rust_reward": (chexbert["median_us"] / reward_us) if chexbert else None,
        "acceptance": {"reward_under_2ms": ok_time, "at_least_1000x_cheaper": ok_ratio},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if (ok_time and ok_ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
