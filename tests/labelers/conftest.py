"""The session's tiny CheXbert (see tiny_chexbert.py): nothing is downloaded."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tiny_chexbert import build_bert_folder, tiny_chexbert_state


@pytest.fixture(scope="session")
def tiny_chexbert(tmp_path_factory):
    """(checkpoint path, bert folder) of a tiny random CheXbert."""
    root = tmp_path_factory.mktemp("chexbert")
    bert_path = root / "bert-base-uncased"
    build_bert_folder(bert_path)
    ckpt = root / "chexbert.pth"
    torch.save({"epoch": 1, "model_state_dict": tiny_chexbert_state(bert_path)}, ckpt)
    return ckpt, bert_path
