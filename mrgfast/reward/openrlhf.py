"""OpenRLHF reward-function file: ``reward_func(queries, prompts, labels)``.

OpenRLHF loads a custom reward from a Python file given as ``--reward.remote_url`` (OpenRLHF >=
0.10.2; tested with 0.11.2) or ``--remote_rm_url`` (older releases); the dataset field named by
``--data.label_key`` (``--label_key`` before 0.10.2), the reference report, arrives as ``labels``::

    python -m openrlhf.cli.train_ppo_ray ... --data.label_key report \\
        --reward.remote_url $(python -c "import mrgfast.reward.openrlhf as m; print(m.__file__)")

Settings travel in the file itself: ``python -m mrgfast.reward.openrlhf reward_mrg.py --margin 0.5
--threads 2`` writes a reward file with them bound (pass that file as ``--reward.remote_url``; it
goes to every Ray worker as a path, where environment variables would need Ray's runtime
environment). This file itself reads ``MRGFAST_MARGIN``, ``MRGFAST_UNCERTAIN``,
``MRGFAST_MCCS_WEIGHT``, ``MRGFAST_FORMAT_WEIGHT``, ``MRGFAST_THREADS`` and
``MRGFAST_RESPONSE_MARKER``; ``MRGFAST_LABELER=chexbert`` with ``MRGFAST_CHEXBERT_CHECKPOINT`` and
``MRGFAST_BERT_PATH`` for the paper-exact CheXbert reward; ``MRGFAST_SIDES=1`` (``--sides`` in the
file writer) for MCCS+, the side-aware MCCS, with ``MRGFAST_SIDE_WEIGHT`` (``--side-weight``).

``queries`` are prompt + response as OpenRLHF decodes them (special tokens kept, image placeholders
expanded by the processor), so the response is found by the chat template's assistant-turn opener
(the last one the prompt ends its generation prompt with: Qwen/ChatML, Gemma, Llama 3, DeepSeek,
Mistral; ``response_marker`` sets another), never by matching the prompt's text; trailing special
tokens (end of turn / sequence, padding) are removed. Each score is ``0.75 · MCCS + 0.25 · format``
in [0, 1].

Returns ``{"rewards", "scores", "extra_logs"}`` (float32 tensors; ``extra_logs`` holds the per-sample
``mccs``, ``format`` and ``malformed`` values, which OpenRLHF logs). A ``None`` or non-text query
scores 0.0 and is counted in ``malformed``. An empty or non-text label (OpenRLHF passes ``""`` when
no label key is given), or a query whose response cannot be found, is an error: it is logged at
ERROR (OpenRLHF itself logs a failing reward call at INFO only) and raised.

This file is loaded by path (outside the package), so it imports only absolute names, and torch
lazily.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrgfast import engine
from mrgfast.contracts import check_mccs_params
from mrgfast.labelers import LABELER_NAMES, resolve_labeler
from mrgfast.reward._common import check_sides
from mrgfast.reward.clinical import mccs_of_reports
from mrgfast.reward.combined import FORMAT_WEIGHT, MCCS_WEIGHT
from mrgfast.reward.completions import completion_text
from mrgfast.reward.format import parse_completion

logger = logging.getLogger("mrgfast.reward.openrlhf")

# The text each chat template opens the assistant's turn with (what a generation prompt ends with).
ASSISTANT_OPENERS = (
    "<|im_start|>assistant\n",  # Qwen, Qwen2.5-VL, ChatML
    "<start_of_turn>model\n",  # Gemma, MedGemma
    "<|start_header_id|>assistant<|end_header_id|>\n\n",  # Llama 3
    "<｜Assistant｜>",  # DeepSeek V3 / R1 (full-width bars)
    "[/INST]",  # Mistral, Llama 2
)
# Special tokens decoding may leave at the end of a response: <|...|> (Qwen, Llama 3), <｜...｜>
# (DeepSeek's end of sentence), and the bare ones of Gemma and SentencePiece tokenizers.
_TRAILING_SPECIAL = re.compile(
    r"(?:<\|[^<>|\s]{1,64}\|>|<｜[^<>｜]{1,64}｜>|</s>|<eos>|<pad>|<end_of_turn>|<end_of_text>)\s*\Z"
)
# Below this many samples a call labels on one thread: OpenRLHF calls once per sample from many
# threads at once, and all-core work in each call only oversubscribes the CPU.
ALL_CORES_MIN_BATCH = 64

ENV_NAMES = {
    "margin": "MRGFAST_MARGIN",
    "uncertain": "MRGFAST_UNCERTAIN",
    "mccs_weight": "MRGFAST_MCCS_WEIGHT",
    "format_weight": "MRGFAST_FORMAT_WEIGHT",
    "threads": "MRGFAST_THREADS",
    "response_marker": "MRGFAST_RESPONSE_MARKER",
    "labeler": "MRGFAST_LABELER",
    "chexbert_checkpoint": "MRGFAST_CHEXBERT_CHECKPOINT",
    "bert_path": "MRGFAST_BERT_PATH",
    "sides": "MRGFAST_SIDES",
    "side_weight": "MRGFAST_SIDE_WEIGHT",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_TEXT_SETTINGS = ("response_marker", "labeler", "chexbert_checkpoint", "bert_path")


class RewardSettings:
    """The reward's options; ``threads=None`` sizes the labeller per call (see ALL_CORES_MIN_BATCH).

    A plain class, not a dataclass: OpenRLHF executes this file without registering it in
    ``sys.modules``, where dataclasses look their module up.
    """

    NAMES = (
        "margin",
        "uncertain",
        "mccs_weight",
        "format_weight",
        "threads",
        "response_marker",
        "labeler",
        "chexbert_checkpoint",
        "bert_path",
        "sides",
        "side_weight",
    )
    DEFAULTS = (
        engine.DEFAULT_MARGIN,
        engine.DEFAULT_UNCERTAIN,
        MCCS_WEIGHT,
        FORMAT_WEIGHT,
        None,
        None,
        None,
        None,
        None,
        False,
        engine.DEFAULT_SIDE_WEIGHT,
    )

    def __init__(
        self,
        margin: float = engine.DEFAULT_MARGIN,
        uncertain: float = engine.DEFAULT_UNCERTAIN,
        mccs_weight: float = MCCS_WEIGHT,
        format_weight: float = FORMAT_WEIGHT,
        threads: int | None = None,
        response_marker: str | None = None,
        labeler: str | None = None,
        chexbert_checkpoint: str | None = None,
        bert_path: str | None = None,
        sides: bool = False,
        side_weight: float = engine.DEFAULT_SIDE_WEIGHT,
    ):
        for name, value in (
            ("margin", margin),
            ("uncertain", uncertain),
            ("mccs_weight", mccs_weight),
            ("format_weight", format_weight),
            ("side_weight", side_weight),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"mrgfast OpenRLHF reward: {name} must be a number, got {value!r}")
        check_mccs_params(margin, uncertain)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"mrgfast OpenRLHF reward: threads must be an integer >= 1 or None, got {threads!r}")
        if response_marker is not None and (not isinstance(response_marker, str) or not response_marker):
            raise ValueError(
                f"mrgfast OpenRLHF reward: response_marker must be a non-empty string, got {response_marker!r}"
            )
        self.margin, self.uncertain = float(margin), float(uncertain)
        self.mccs_weight, self.format_weight = float(mccs_weight), float(format_weight)
        if labeler not in (None, *LABELER_NAMES):
            raise ValueError(f"mrgfast OpenRLHF reward: labeler must be one of {list(LABELER_NAMES)}, got {labeler!r}")
        self.threads, self.response_marker = threads, response_marker
        self.labeler, self.chexbert_checkpoint, self.bert_path = labeler, chexbert_checkpoint, bert_path
        try:
            check_sides(sides, side_weight, None if labeler in (None, "rust") else _Named(labeler))
        except (TypeError, ValueError) as e:
            raise type(e)(f"mrgfast OpenRLHF reward: {e}") from None
        self.sides, self.side_weight = sides, float(side_weight)

    def resolved_labeler(self):
        """The labeler these settings name (CheXbert is loaded once per process and kept)."""
        if self.labeler in (None, "rust"):
            return resolve_labeler(None)
        return resolve_labeler(self.labeler, checkpoint=self.chexbert_checkpoint, bert_path=self.bert_path)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.NAMES}

    def __repr__(self) -> str:
        return f"RewardSettings({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"

    def threads_for(self, n: int) -> int | None:
        if self.threads is not None:
            return self.threads
        return 1 if n < ALL_CORES_MIN_BATCH else None


class _Named:
    """A labeler named in the settings, before it is loaded (for the MCCS+ check)."""

    def __init__(self, name: str):
        self.name = name


def settings_from_env() -> RewardSettings:
    """The settings named by the ``MRGFAST_*`` environment variables (unset ones keep defaults)."""
    values: dict[str, Any] = {}
    for key in RewardSettings.NAMES:
        name = ENV_NAMES[key]
        raw = os.environ.get(name)
        if raw is None or raw == "":
            continue
        if key in _TEXT_SETTINGS:
            values[key] = raw.replace("\\n", "\n") if key == "response_marker" else raw  # \n: easier to pass
            continue
        if key == "sides":
            if raw.strip().lower() not in (*_TRUE, *_FALSE):
                raise ValueError(f"environment variable {name}={raw!r} is not a boolean (1/0, true/false)")
            values[key] = raw.strip().lower() in _TRUE
            continue
        try:
            values[key] = int(raw) if key == "threads" else float(raw)
        except ValueError:
            kind = "an integer" if key == "threads" else "a number"
            raise ValueError(f"environment variable {name}={raw!r} is not {kind}") from None
        if key == "threads" and values[key] < 1:
            raise ValueError(f"environment variable {name} must be >= 1, got {values[key]}")
    return RewardSettings(**values)


def _strip_trailing_special(text: str) -> str:
    text = text.rstrip()
    while True:
        m = _TRAILING_SPECIAL.search(text)
        if m is None:
            return text
        text = text[: m.start()].rstrip()


def _last_opener(prompt: str, markers: Sequence[str]) -> str | None:
    """The marker whose last occurrence in ``prompt`` ends latest (the generation prompt's opener)."""
    best, best_end = None, -1
    for m in markers:
        at = prompt.rfind(m)
        if at >= 0 and at + len(m) > best_end:
            best, best_end = m, at + len(m)
    return best


def response_of(query: str, prompt: Any, *, response_marker: str | None = None) -> str:
    """The response part of ``query`` (= prompt + response), without trailing special tokens.

    With a chat-template prompt the response starts after the prompt's last assistant-turn opener:
    the prompt holds it ``k`` times, so the response follows its ``k``-th occurrence in the query
    (the query's prompt part may differ from ``prompt``: image placeholders expanded, special
    tokens decoded). Text the prompt puts after the opener (``<think>\\n`` in some templates) is
    skipped too. Without an opener the prompt must be an exact prefix of the query.
    """
    if not isinstance(prompt, str) or not prompt:
        return _strip_trailing_special(query)
    markers = (response_marker,) if response_marker else ASSISTANT_OPENERS
    opener = _last_opener(prompt, markers)
    if opener is not None:
        k = prompt.count(opener)
        at = -1
        for _ in range(k):
            at = query.find(opener, at + 1)
            if at < 0:
                raise ValueError(
                    f"mrgfast OpenRLHF reward: the prompt opens the assistant turn with {opener!r} {k} time(s) "
                    "but the query holds it fewer times; cannot tell where the response starts"
                )
        response = query[at + len(opener) :]
        after = prompt[prompt.rfind(opener) + len(opener) :]
        if after and response.startswith(after):
            response = response[len(after) :]
        return _strip_trailing_special(response)
    if query.startswith(prompt):
        return _strip_trailing_special(query[len(prompt) :])
    raise ValueError(
        "mrgfast OpenRLHF reward: the prompt has no known assistant-turn opener "
        f"({', '.join(repr(m) for m in markers)}) and is not a prefix of the query; cannot tell where the "
        "response starts. Use --data.apply_chat_template, or set response_marker to the text your chat "
        "template opens the assistant turn with"
    )


def _references(labels: Sequence[Any] | None, n: int) -> list[str]:
    if labels is None:
        raise ValueError(
            "mrgfast OpenRLHF reward: labels is None; pass --data.label_key <field holding the reference report>"
        )
    if len(labels) != n:
        raise ValueError(f"mrgfast OpenRLHF reward: {n} queries but {len(labels)} labels (--data.label_key field)")
    refs: list[str] = []
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(
                f"mrgfast OpenRLHF reward: labels[{i}] is {type(label).__name__}, not the reference report; "
                "set --data.label_key (--label_key before OpenRLHF 0.10.2) to the dataset field holding it"
            )
        if not label.strip():
            raise ValueError(
                f"mrgfast OpenRLHF reward: labels[{i}] is empty; OpenRLHF passes '' when no label key is given: "
                "pass --data.label_key (--label_key before OpenRLHF 0.10.2) naming the reference-report field, "
                "and check that no row's reference is empty"
            )
        refs.append(label)
    return refs


def score_queries(
    queries: Sequence[Any],
    prompts: Sequence[Any] | None,
    labels: Sequence[Any] | None,
    settings: RewardSettings | None = None,
) -> dict[str, np.ndarray]:
    """The reward parts as NumPy arrays: ``total``, ``mccs``, ``format``, ``malformed``."""
    s = settings_from_env() if settings is None else settings
    n = len(queries)
    if prompts is not None and len(prompts) != n:
        raise ValueError(f"mrgfast OpenRLHF reward: {n} queries but {len(prompts)} prompts")
    refs = _references(labels, n)
    texts: list[str | None] = []
    for i, q in enumerate(queries):
        t = completion_text(q)
        prompt = prompts[i] if prompts is not None else None
        texts.append(None if t is None else response_of(t, prompt, response_marker=s.response_marker))
    bad = [i for i, t in enumerate(texts) if t is None]
    if bad:
        logger.warning("mrgfast OpenRLHF reward: %d of %d queries are malformed; they score 0.0", len(bad), n)
    parsed = [None if t is None else parse_completion(t) for t in texts]
    f = np.array([0.0 if p is None else p[1] for p in parsed], dtype=np.float64)
    m = mccs_of_reports(
        [None if p is None else p[0] for p in parsed],
        refs,
        margin=s.margin,
        uncertain=s.uncertain,
        threads=s.threads_for(n),
        labeler=s.resolved_labeler(),
        sides=s.sides,
        side_weight=s.side_weight,
    )
    malformed = np.array([t is None for t in texts], dtype=np.float64)
    return {"total": s.mccs_weight * m + s.format_weight * f, "mccs": m, "format": f, "malformed": malformed}


def _as_tensors(parts: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    rewards = torch.from_numpy(parts["total"].astype(np.float32))
    return {
        "rewards": rewards,
        "scores": rewards.clone(),
        "extra_logs": {key: torch.from_numpy(parts[key].astype(np.float32)) for key in ("mccs", "format", "malformed")},
    }


def _call(queries, prompts, labels, settings: RewardSettings | None) -> dict[str, Any]:
    try:
        parts = score_queries(list(queries), None if prompts is None else list(prompts), labels, settings)
    except (TypeError, ValueError) as e:
        logger.error("%s", e)
        raise
    return _as_tensors(parts)


def reward_func(queries, prompts, labels, **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's custom reward function, settings from ``MRGFAST_*``: ``{"rewards", "scores", "extra_logs"}``."""
    return _call(queries, prompts, labels, None)


def make_reward_func(**settings: Any) -> Callable[..., dict[str, Any]]:
    """``reward_func`` with its settings bound (the keyword names of ``RewardSettings``)."""
    bound = RewardSettings(**settings)

    def bound_reward_func(queries, prompts, labels, **kwargs: Any) -> dict[str, Any]:
        return _call(queries, prompts, labels, bound)

    bound_reward_func.settings = bound  # type: ignore[attr-defined]
    return bound_reward_func


def write_reward_file(path: str | os.PathLike, **settings: Any) -> Path:
    """Write an OpenRLHF reward file with ``settings`` bound (atomically); returns its path."""
    bound = RewardSettings(**settings)  # checked before anything is written
    out = Path(path)
    if out.suffix != ".py":
        raise ValueError(f"{out}: OpenRLHF loads a reward function only from a file ending in .py")
    defaults = dict(zip(RewardSettings.NAMES, RewardSettings.DEFAULTS))
    given = {k: v for k, v in bound.as_dict().items() if v != defaults[k]}
    text = (
        '"""OpenRLHF reward file written by `python -m mrgfast.reward.openrlhf`: pass it as --reward.remote_url."""\n\n'
        "import json\n\n"
        "from mrgfast.reward.openrlhf import make_reward_func\n\n"
        f"SETTINGS = json.loads({json.dumps(json.dumps(given, ensure_ascii=False), ensure_ascii=False)})\n"
        "reward_func = make_reward_func(**SETTINGS)\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mrgfast.reward.openrlhf",
        description="Write an OpenRLHF reward file (--reward.remote_url) with mrgfast's reward settings bound.",
    )
    parser.add_argument("out", help="the .py file to write")
    parser.add_argument("--margin", type=float, default=engine.DEFAULT_MARGIN)
    parser.add_argument("--uncertain", type=float, default=engine.DEFAULT_UNCERTAIN)
    parser.add_argument("--mccs-weight", type=float, default=MCCS_WEIGHT)
    parser.add_argument("--format-weight", type=float, default=FORMAT_WEIGHT)
    parser.add_argument("--threads", type=int, default=None, help="labeller threads per call (default: sized per call)")
    parser.add_argument(
        "--response-marker",
        default=None,
        help="the text the chat template opens the assistant turn with (\\n for a newline)",
    )
    parser.add_argument("--labeler", choices=LABELER_NAMES, default=None, help="rust (default) or chexbert")
    parser.add_argument("--chexbert-checkpoint", default=None, help="chexbert.pth (with --labeler chexbert)")
    parser.add_argument("--bert-path", default=None, help="local bert-base-uncased folder (with --labeler chexbert)")
    parser.add_argument(
        "--sides", action="store_true", help="MCCS+, the side-aware MCCS, in place of MCCS (the rule labeler)"
    )
    parser.add_argument(
        "--side-weight", type=float, default=engine.DEFAULT_SIDE_WEIGHT, help="MCCS+'s side weight, in (0, 1)"
    )
    args = parser.parse_args(argv)
    try:
        out = write_reward_file(
            args.out,
            margin=args.margin,
            uncertain=args.uncertain,
            mccs_weight=args.mccs_weight,
            format_weight=args.format_weight,
            threads=args.threads,
            response_marker=None if args.response_marker is None else args.response_marker.replace("\\n", "\n"),
            labeler=args.labeler,
            chexbert_checkpoint=args.chexbert_checkpoint,
            bert_path=args.bert_path,
            sides=args.sides,
            side_weight=args.side_weight,
        )
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
