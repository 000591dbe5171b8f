"""CheXbert (Smit et al., 2020) from local files: the BERT labeler MRG-R1 computed MCCS with.

Why a re-implementation: f1chexbert (0.0.2) and RadEval (2.2.1) both fetch ``bert-base-uncased`` and
``chexbert.pth`` from the Hugging Face hub by name (``from_pretrained("bert-base-uncased")``,
``hf_hub_download``) and unpickle the checkpoint without ``weights_only``; neither takes local paths.
This module reproduces CheXbert's own inference path (``src/label.py`` + ``src/models/bert_labeler.py``
of stanfordmlgroup/CheXbert) from a local checkpoint and a local bert-base-uncased folder:

1. clean each report as label.py does: strip, newlines to spaces, runs of whitespace to one space, strip;
2. WordPiece-tokenise; a non-empty report is ``[CLS] tokens [SEP]``, cut to 511 ids plus ``[SEP]`` when
   longer than 512; an empty one is ``[CLS] [SEP]``;
3. the CLS vector of BERT's last layer through each of the 14 linear heads, argmax per head.

Head classes: heads 0-12 are 0 blank / 1 positive / 2 negative / 3 uncertain, head 13 (No Finding)
0 blank / 1 positive, in CheXbert's order (No Finding last). The output is `mrgfast.label`'s array.
Batches are length-sorted (less padding), run under ``torch.inference_mode`` on the GPU when there is
one, optionally in bf16/fp16.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrgfast.contracts import BLANK, NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN

CHEXBERT_ORDER: tuple[str, ...] = (*OBSERVATIONS[1:], OBSERVATIONS[0])
"""CheXbert's head order: the 13 findings in CheXpert order, No Finding last."""

N_HEADS = 14
HEAD_CLASSES: tuple[int, ...] = (4,) * 13 + (2,)
"""Classes per head: 4 (blank, positive, negative, uncertain) for 0-12, 2 (blank, positive) for 13."""

CLASS_CODES = np.array([BLANK, POSITIVE, NEGATIVE, UNCERTAIN], dtype=np.int8)
"""mrgfast code of each CheXbert class index."""

COLUMN_OF_HEAD = np.array([OBSERVATIONS.index(name) for name in CHEXBERT_ORDER], dtype=np.intp)
"""Output column (in `OBSERVATIONS` order) of each head."""

MAX_TOKENS = 512
BERT_FILES = ("config.json", "vocab.txt")
"""What ``bert_path`` must hold: bert-base-uncased's config and WordPiece vocabulary."""

_WHITESPACE = re.compile(r"\s+")
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


class CheXbertError(ValueError):
    """A CheXbert checkpoint or BERT folder that cannot be used (the message names the file and why)."""


def clean_report(text: str) -> str:
    """CheXbert label.py's cleaning: strip, newlines to spaces, whitespace runs to one space, strip."""
    return _WHITESPACE.sub(" ", text.strip().replace("\n", " ")).strip()


def load_state_dict(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's weights without the ``module.`` prefix, checked for CheXbert's layout.

    ``torch.load(weights_only=True)``: tensors and plain containers only, no arbitrary pickle.
    """
    import torch

    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CheXbert checkpoint not found: {path} (the standard file is chexbert.pth)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a pickle with objects beyond tensors
        raise CheXbertError(f"{path}: cannot be read as a weights-only torch checkpoint: {e}") from e
    if not isinstance(blob, dict) or "model_state_dict" not in blob:
        keys = sorted(blob)[:8] if isinstance(blob, dict) else type(blob).__name__
        raise CheXbertError(f"{path}: expected a dict with 'model_state_dict' (CheXbert's layout), got {keys}")
    raw = blob["model_state_dict"]
    if not isinstance(raw, dict) or not raw:
        raise CheXbertError(f"{path}: 'model_state_dict' is empty or not a dict")
    unprefixed = [k for k in raw if not k.startswith("module.")]
    if unprefixed:
        raise CheXbertError(
            f"{path}: model_state_dict keys must carry the 'module.' prefix (DataParallel, as CheXbert saves); "
            f"e.g. {unprefixed[:3]}"
        )
    state = {k[len("module.") :]: v for k, v in raw.items()}
    other = [k for k in state if not (k.startswith("bert.") or k.startswith("linear_heads."))]
    if other:
        raise CheXbertError(f"{path}: keys outside bert.* and linear_heads.*: {other[:5]}")
    if not any(k.startswith("bert.") for k in state):
        raise CheXbertError(f"{path}: no bert.* weights in model_state_dict")
    heads = sorted({int(k.split(".")[1]) for k in state if k.startswith("linear_heads.") and k.split(".")[1].isdigit()})
    if heads != list(range(N_HEADS)):
        raise CheXbertError(
            f"{path}: CheXbert has {N_HEADS} linear heads (linear_heads.0..13), this checkpoint has "
            f"{len(heads)}: {heads}"
        )
    for i, n_classes in enumerate(HEAD_CLASSES):
        w, b = state.get(f"linear_heads.{i}.weight"), state.get(f"linear_heads.{i}.bias")
        if w is None or b is None:
            raise CheXbertError(f"{path}: linear_heads.{i} lacks its weight or bias")
        if w.ndim != 2 or w.shape[0] != n_classes or tuple(b.shape) != (n_classes,):
            raise CheXbertError(
                f"{path}: linear_heads.{i} ({CHEXBERT_ORDER[i]}) must have {n_classes} classes, "
                f"has weight {tuple(w.shape)} and bias {tuple(b.shape)}"
            )
    return state


def _check_bert_path(bert_path: str | os.PathLike) -> str:
    path = os.fspath(bert_path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"BERT folder not found: {path} (a local bert-base-uncased: {', '.join(BERT_FILES)})")
    missing = [f for f in BERT_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(
            f"BERT folder {path} lacks {', '.join(missing)} (CheXbert needs bert-base-uncased's {', '.join(BERT_FILES)})"
        )
    return path


class CheXbert:
    """The CheXbert labeler from ``checkpoint`` (chexbert.pth) and ``bert_path`` (bert-base-uncased's
    config.json and vocab.txt). Never downloads.

    ``label(reports)`` returns the (n, 14) int8 array of `mrgfast.label`. ``device``: ``None`` picks
    CUDA when present; ``dtype``: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` (GPU).
    """

    name = "chexbert"

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        bert_path: str | os.PathLike,
        *,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = 64,
    ):
        import torch
        from torch import nn
        from transformers import BertConfig, BertModel, BertTokenizer

        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not os.path.isfile(os.fspath(checkpoint)) and not os.path.isdir(os.fspath(bert_path)):
            raise FileNotFoundError(
                f"CheXbert checkpoint not found: {os.fspath(checkpoint)}, and BERT folder not found: "
                f"{os.fspath(bert_path)} (chexbert.pth and a local bert-base-uncased: {', '.join(BERT_FILES)})"
            )
        state = load_state_dict(checkpoint)
        bert_dir = _check_bert_path(bert_path)
        self.checkpoint = os.fspath(checkpoint)
        self.bert_path = bert_dir
        self.batch_size = int(batch_size)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = getattr(torch, _DTYPES[dtype])

        config = BertConfig.from_json_file(os.path.join(bert_dir, "config.json"))
        self.tokenizer = BertTokenizer.from_pretrained(bert_dir, local_files_only=True)
        if config.max_position_embeddings < MAX_TOKENS:
            raise CheXbertError(
                f"{bert_dir}/config.json: max_position_embeddings {config.max_position_embeddings} < {MAX_TOKENS} "
                "(CheXbert reads up to 512 tokens)"
            )

        model = nn.Module()
        model.bert = BertModel(config, add_pooling_layer=any(k.startswith("bert.pooler.") for k in state))
        hidden = config.hidden_size
        model.linear_heads = nn.ModuleList([nn.Linear(hidden, n) for n in HEAD_CLASSES])
        # buffers newer transformers keep out of the state dict; older checkpoints may hold them
        expected = set(model.state_dict())
        state = {k: v for k, v in state.items() if k in expected or not k.endswith("position_ids")}
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise CheXbertError(
                f"{self.checkpoint} does not fit {bert_dir}/config.json: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        shapes = [k for k, v in model.state_dict().items() if tuple(state[k].shape) != tuple(v.shape)]
        if shapes:
            k = shapes[0]
            raise CheXbertError(
                f"{self.checkpoint} does not fit {bert_dir}/config.json: {k} is {tuple(state[k].shape)}, "
                f"the config gives {tuple(model.state_dict()[k].shape)}"
            )
        model.load_state_dict(state, strict=True)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()

    def encode(self, reports: Sequence[str]) -> list[list[int]]:
        """Token ids per report exactly as CheXbert's label.py builds them (cleaned, cut at 512, [SEP] kept)."""
        for i, r in enumerate(reports):
            if not isinstance(r, str):
                raise TypeError(f"report {i} is {type(r).__name__}, not str")
        tok = self.tokenizer
        cls, sep = tok.cls_token_id, tok.sep_token_id
        cleaned = [clean_report(r) for r in reports]
        pieces = tok(cleaned, add_special_tokens=False)["input_ids"] if cleaned else []
        out = []
        for ids in pieces:
            ids = [cls, *ids, sep]
            if len(ids) > MAX_TOKENS:
                ids = [*ids[: MAX_TOKENS - 1], sep]
            out.append(ids)
        return out

    def head_classes(self, reports: Sequence[str]) -> np.ndarray:
        """The argmax class of each head, (n, 14) in CheXbert's head order."""
        import torch

        ids = self.encode(reports)
        n = len(ids)
        out = np.zeros((n, N_HEADS), dtype=np.int64)
        order = sorted(range(n), key=lambda i: len(ids[i]))
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                width = len(ids[batch[-1]])
                x = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    x[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                hidden = self.model.bert(x.to(self.device), attention_mask=mask.to(self.device))[0]
                cls_vec = hidden[:, 0, :]
                classes = torch.stack([head(cls_vec).argmax(dim=1) for head in self.model.linear_heads], dim=1)
                out[batch] = classes.cpu().numpy()
        return out

    def label(self, reports: Sequence[str], *, threads: int | None = None) -> np.ndarray:
        """(n, 14) int8 codes in `mrgfast.OBSERVATIONS` order (``threads`` is ignored: torch decides)."""
        classes = self.head_classes(reports)
        labels = np.empty((len(classes), len(OBSERVATIONS)), dtype=np.int8)
        labels[:, COLUMN_OF_HEAD] = CLASS_CODES[classes]
        return labels

    def __repr__(self) -> str:
        return f"CheXbert(checkpoint={self.checkpoint!r}, bert_path={self.bert_path!r}, device={str(self.device)!r})"
