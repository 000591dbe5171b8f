"""Builders of a tiny random BERT saved in exactly CheXbert's checkpoint format, with a WordPiece vocabulary
trained here: nothing is downloaded.

`chexbert.pth` is ``{"model_state_dict": {"module.bert.*": ..., "module.linear_heads.0..13.*": ...}}``
(CheXbert trains under ``nn.DataParallel``, hence the prefix); heads 0-12 have 4 classes, head 13 two.
"""

from __future__ import annotations

import json
import os
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    "The heart is normal in size.",
    "Mild cardiomegaly.",
    "No pleural effusion or pneumothorax.",
    "Small right pleural effusion.",
    "Patchy opacity in the left lower lobe may represent atelectasis or pneumonia.",
    "Endotracheal tube terminates 3 cm above the carina.",
    "Median sternotomy wires are intact.",
    "The lungs are clear.",
    "No acute cardiopulmonary process.",
    "Mediastinal contours are widened.",
    "Interstitial edema.",
    "Healed rib fracture on the right.",
    "Pulmonary nodule in the right upper lobe.",
    "Hilar adenopathy.",
    "Pleural thickening at the left apex.",
    "Hydropneumothorax on the left.",
    "Right PICC line tip in the SVC.",
    "Focal consolidation cannot be excluded.",
    "Stable appearance of the chest.",
    "Degenerative changes of the thoracic spine.",
]


def report_corpus(n: int, seed: int = 0) -> list[str]:
    """`n` varied reports: empty, whitespace only, very long (> 512 WordPieces), unicode, odd spacing."""
    rng = random.Random(seed)
    extras = ["é", "ñ", "肺", "🫁", "\u00a0", "\t", "\n\n", "  ", "XXXX", "1.5 cm", "—", "°"]
    out = ["", "   ", "\n", " ".join(SENTENCES) * 12, "肺 " * 600, "Effusion. " * 300]
    while len(out) < n:
        k = rng.randint(1, 8)
        parts = [rng.choice(SENTENCES) for _ in range(k)]
        if rng.random() < 0.4:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(extras))
        sep = rng.choice([" ", "\n", "  ", " \n ", "\t"])
        text = sep.join(parts)
        if rng.random() < 0.2:
            text = text.upper()
        out.append(text)
    return out


def build_bert_folder(path) -> None:
    """bert-base-uncased's two files, tiny: config.json and a WordPiece vocab.txt trained on the corpus."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig

    path.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(report_corpus(300, seed=1) * 3, vocab_size=400, min_frequency=1)
    wp.save_model(str(path))
    vocab_size = sum(1 for _ in open(path / "vocab.txt", encoding="utf-8"))
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    config.save_pretrained(str(path))
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))


def tiny_chexbert_state(bert_path, seed: int = 0, n_heads: int = 14) -> dict:
    """A random CheXbert: BertModel (with pooler) + 13 four-class heads + one two-class head."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig.from_json_file(str(bert_path / "config.json"))
    bert = BertModel(config)
    heads = [torch.nn.Linear(config.hidden_size, 4 if i < 13 else 2) for i in range(n_heads)]
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    for i, h in enumerate(heads):
        # scaled so that every class wins on some reports
        state[f"module.linear_heads.{i}.weight"] = h.weight.detach() * 8
        state[f"module.linear_heads.{i}.bias"] = h.bias.detach()
    return state
