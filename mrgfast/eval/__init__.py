"""Evaluation of a report-generation model on a split: ``mrgfast eval``.

* :mod:`mrgfast.eval.run` — :func:`run_eval`: batched generation (transformers or vLLM), predictions
  written and flushed as they are produced, resume by id, metrics file;
* :mod:`mrgfast.eval.predictions` — the predictions JSONL (reading with resume/repair, writing);
* :mod:`mrgfast.eval.metrics` — :func:`eval_metrics`: the shared ``mrgfast score`` code (MCCS, CE)
  plus format compliance and BLEU-1..4 / METEOR / ROUGE-L / CIDEr (pycocoevalcap);
* :mod:`mrgfast.eval.generate` — the generators.

Importing this package is light; torch/transformers load when generation starts.
"""

from mrgfast.eval.metrics import eval_metrics, format_eval_table

__all__ = ["eval_metrics", "format_eval_table"]
