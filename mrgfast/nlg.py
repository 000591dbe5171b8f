"""Natural-language generation metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) through pycocoevalcap,
the implementation the R2Gen line of report-generation papers reports, so numbers are comparable.

METEOR runs the Java jar shipped inside pycocoevalcap; without a `java` on PATH it is skipped
with a reason in the result rather than failing the whole evaluation.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def normalize(text: str) -> str:
    """Lower-case and split punctuation off words (R2Gen-style), one space between tokens."""
    return " ".join(_TOKEN.findall(text.lower().replace("\n", " ")))


def nlg_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    meteor: bool | None = None,
) -> dict[str, object]:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr of predictions against references.

    `meteor=None` runs METEOR when Java is available; True requires it; False skips it.
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as e:  # pragma: no cover - dependency is declared
        raise ImportError("language metrics need pycocoevalcap: pip install pycocoevalcap") from e
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} vs {len(references)}")
    out: dict[str, object] = {"n": len(predictions)}
    if not predictions:
        return out
    # pycocoevalcap's scorers assert on empty hypotheses; a lone "." keeps them well-defined (scores 0).
    res = {i: [normalize(p) or "."] for i, p in enumerate(predictions)}
    gts = {i: [normalize(r) or "."] for i, r in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for k, v in enumerate(bleu, start=1):
        out[f"bleu{k}"] = float(v)
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    java = shutil.which("java") is not None
    if meteor is None:
        meteor = java
    if meteor:
        if not java:
            raise RuntimeError("METEOR needs a Java runtime on PATH (pycocoevalcap runs meteor-1.5.jar)")
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            out["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:
            _close_meteor(scorer)
    else:
        out["meteor"] = None
        out["meteor_skipped"] = "no java on PATH" if not java else "disabled"
    return out


def _close_meteor(scorer) -> None:
    """pycocoevalcap leaves the METEOR subprocess running until garbage collection; stop it now."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is None or proc.poll() is not None:
        return
    with getattr(scorer, "lock", _NullLock()):
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()
        proc.kill()
        proc.wait()
    # The dead process object stays: pycocoevalcap's __del__ closes and kills it again, harmlessly.


class _NullLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
