"""The MRG-R1 output format: ``<think>…</think><report>…</report>``.

* :func:`format_score` is 1.0 when the completion is exactly one non-empty ``<think>`` block
  followed by one non-empty ``<report>`` block, with only whitespace around and between them;
  otherwise 0.0.
* :func:`extract_report` is the text MCCS scores: inside ``<report>…</report>``; with no such
  block, the text after the last ``</think>``; else the whole completion.

Both are plain string scans (no regex backtracking), a few hundred nanoseconds per completion.
"""

from __future__ import annotations

from typing import Any

from mrgfast.reward._common import RewardFunction, check_length

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
REPORT_OPEN = "<report>"
REPORT_CLOSE = "</report>"
_TAGS = (THINK_OPEN, THINK_CLOSE, REPORT_OPEN, REPORT_CLOSE)


def format_score(text: str) -> float:
    """1.0 for exactly ``<think>non-empty</think> <report>non-empty</report>``, else 0.0."""
    s = text.strip()
    if not (s.startswith(THINK_OPEN) and s.endswith(REPORT_CLOSE)):
        return 0.0
    # exactly one of each tag, so neither block nests or repeats another
    for tag in _TAGS:
        if s.count(tag) != 1:
            return 0.0
    think_end = s.index(THINK_CLOSE)
    report_start = s.index(REPORT_OPEN)
    if report_start < think_end:
        return 0.0
    if s[think_end + len(THINK_CLOSE) : report_start].strip():
        return 0.0  # text between the blocks
    think = s[len(THINK_OPEN) : think_end]
    report = s[report_start + len(REPORT_OPEN) : -len(REPORT_CLOSE)]
    if not think.strip() or not report.strip():
        return 0.0
    return 1.0


def extract_report(text: str) -> str:
    """The report part of a completion, the text MCCS labels.

    1. the text inside the first ``<report>…</report>`` block;
    2. otherwise the text after the last ``</think>`` (a dangling ``<report>`` opening tag there,
       as left by a completion cut at the length limit, is dropped);
    3. otherwise the whole completion (without a leading unclosed ``<report>`` tag).

    The result is stripped of surrounding whitespace.
    """
    start = text.find(REPORT_OPEN)
    if start >= 0:
        end = text.find(REPORT_CLOSE, start + len(REPORT_OPEN))
        if end >= 0:
            return text[start + len(REPORT_OPEN) : end].strip()
    think_end = text.rfind(THINK_CLOSE)
    if think_end >= 0:
        tail = text[think_end + len(THINK_CLOSE) :]
        opened = tail.find(REPORT_OPEN)
        if opened >= 0 and not tail[:opened].strip():
            tail = tail[opened + len(REPORT_OPEN) :]
        return tail.strip()
    stripped = text.strip()
    if stripped.startswith(REPORT_OPEN):
        stripped = stripped[len(REPORT_OPEN) :].strip()
    return stripped


def parse_completion(text: str) -> tuple[str, float]:
    """``(extract_report(text), format_score(text))`` in one scan.

    The common case, a completion whose only ``<`` characters are the four tags, is decided from
    the positions of those four characters (memchr-speed scans); anything else falls back to the
    two functions above, so the results are always identical to theirs.
    """
    n_lt = text.count("<")
    if n_lt == 4:
        p0 = text.find("<")
        p1 = text.find("<", p0 + 1)
        p2 = text.find("<", p1 + 1)
        p3 = text.find("<", p2 + 1)
        if (
            text.startswith(THINK_OPEN, p0)
            and text.startswith(THINK_CLOSE, p1)
            and text.startswith(REPORT_OPEN, p2)
            and text.startswith(REPORT_CLOSE, p3)
        ):
            report = text[p2 + 8 : p3].strip()
            ok = (
                bool(report)
                and (p0 == 0 or text[:p0].isspace())
                and (p3 + 9 == len(text) or text[p3 + 9 :].isspace())
                and (p2 == p1 + 8 or text[p1 + 8 : p2].isspace())
                and not text[p0 + 7 : p1].isspace()
                and p1 > p0 + 7
            )
            return report, 1.0 if ok else 0.0
    elif n_lt == 0:
        return text.strip(), 0.0
    return extract_report(text), format_score(text)


class FormatReward(RewardFunction):
    """TRL reward function: :func:`format_score` of each completion (1.0 or 0.0).

    Needs no dataset column. Malformed completions (``None``, non-text) score 0.0 and are counted
    in ``<name>/malformed``.
    """

    def __init__(self, *, name: str = "format_reward"):
        super().__init__(name)

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns: Any) -> list[float]:
        texts, bad = self._texts(completions)
        check_length("prompts", prompts, len(texts), self.__name__)
        self._log_metrics(columns, {"malformed": len(bad)})
        return [0.0 if t is None else parse_completion(t)[1] for t in texts]
