"""Held-out evaluation: greedy reports, CE metrics and mean MCCS against the references."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("mrgfast.eval")


def generate_reports(model, processor, studies, *, instruction: str, batch_size: int = 32,
                     max_new_tokens: int = 128, progress: bool = True) -> list[str]:
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    tok = getattr(processor, "tokenizer", processor)
    tok.padding_side = "left"
    model.eval()
    device = next(model.parameters()).device
    outs: list[str] = []
    it = range(0, len(studies), batch_size)
    for start in tqdm(it, desc="eval", disable=not progress, leave=False):
        batch = studies[start:start + batch_size]
        texts, images = [], []
        for s in batch:
            msgs = [{"role": "user", "content": [{"type": "image"} for _ in s.image_paths]
                     + [{"type": "text", "text": instruction}]}]
            texts.append(processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
            for p in s.image_paths:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
        enc = processor(text=texts, images=images, return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        gen = gen[:, enc["input_ids"].shape[1]:]
        outs += tok.batch_decode(gen, skip_special_tokens=True)
    return outs


def score(completions: list[str], references: list[str], *, margin: float = 0.5, uncertain: float = 1.0) -> dict:
    import numpy as np

    import mrgfast
    from mrgfast.reward import FormatReward, extract_report

    reports = [extract_report(c) for c in completions]
    pred = mrgfast.label(reports)
    ref = mrgfast.label(references)
    ce = mrgfast.ce_metrics(pred, ref)
    m = np.asarray(mrgfast.mccs(reports, references, margin=margin, uncertain=uncertain), dtype=float)
    fmt = FormatReward()(prompts=[None] * len(completions), completions=completions)
    return {
        "n": len(completions),
        "ce_f1_micro": float(ce["micro"]["f1"]), "ce_precision_micro": float(ce["micro"]["precision"]),
        "ce_recall_micro": float(ce["micro"]["recall"]), "ce_f1_macro": float(ce["macro"]["f1"]),
        "mccs_mean": float(m.mean()) if len(m) else 0.0,
        "format_rate": float(np.mean(fmt)) if fmt else 0.0,
    }


def evaluate(model, processor, studies, *, instruction: str, out_dir: str | Path, tag: str, batch_size: int = 32,
             max_new_tokens: int = 128, margin: float = 0.5, uncertain: float = 1.0) -> dict:
    t0 = time.time()
    completions = generate_reports(model, processor, studies, instruction=instruction, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens)
    res = score(completions, [s.report for s in studies], margin=margin, uncertain=uncertain)
    res["tag"] = tag
    res["seconds"] = round(time.time() - t0, 1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"predictions_{tag}.jsonl", "w") as fh:
        for s, c in zip(studies, completions):
            fh.write(json.dumps({"id": s.id, "completion": c, "reference": s.report}) + "\n")
    (out_dir / f"eval_{tag}.json").write_text(json.dumps(res, indent=1))
    log.info("eval %s: CE-F1(micro)=%.4f MCCS=%.4f format=%.3f (n=%d, %.0fs)", tag, res["ce_f1_micro"],
             res["mccs_mean"], res["format_rate"], res["n"], res["seconds"])
    return res
