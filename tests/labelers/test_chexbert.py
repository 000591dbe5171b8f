"""The CheXbert backend against a straightforward port of CheXbert's own inference path
(stanfordmlgroup/CheXbert: ``src/label.py``, ``src/bert_tokenizer.py``, ``src/models/bert_labeler.py``,
``src/datasets/unlabeled_dataset.py``, ``src/utils.py``), run on the same tiny random weights.

The port keeps CheXbert's structure: pandas-style cleaning, ``tokenizer.tokenize`` then the special
tokens (``encode_plus`` of a token list in the transformers CheXbert used; it no longer exists),
``res[:511] + [SEP]`` past 512, ``[CLS, SEP]`` for an empty report, batches of 18 in file order padded
with 0 and masked by ``generate_attention_masks``, ``bert_labeler.forward`` (CLS vector, dropout in eval,
14 heads), argmax, and label.py's class -> value map (0 blank, 1 positive, 2 negative, 3 uncertain).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tiny_chexbert import report_corpus, tiny_chexbert_state
from torch import nn

import mrgfast
from mrgfast.labelers import CheXbert, resolve_labeler
from mrgfast.labelers.chexbert import CheXbertError

# CheXbert's src/constants.py CONDITIONS
CONDITIONS = [
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
]


class bert_labeler(nn.Module):  # CheXbert's class name
    def __init__(self, config, p=0.1):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config)
        self.dropout = nn.Dropout(p)
        hidden_size = self.bert.pooler.dense.in_features
        self.linear_heads = nn.ModuleList([nn.Linear(hidden_size, 4, bias=True) for _ in range(13)])
        self.linear_heads.append(nn.Linear(hidden_size, 2, bias=True))

    def forward(self, source_padded, attention_mask):
        final_hidden = self.bert(source_padded, attention_mask=attention_mask)[0]
        cls_hidden = final_hidden[:, 0, :].squeeze(dim=1)
        cls_hidden = self.dropout(cls_hidden)
        return [self.linear_heads[i](cls_hidden) for i in range(14)]


def chexbert_tokenize(impressions, tokenizer):
    import re

    new_impressions = []
    for imp in impressions:
        imp = imp.strip()  # impressions.str.strip()
        imp = imp.replace("\n", " ")  # .replace('\n', ' ', regex=True)
        imp = re.sub(r"\s+", " ", imp)  # .replace('\s+', ' ', regex=True)
        imp = imp.strip()
        tokenized_imp = tokenizer.tokenize(imp)
        if tokenized_imp:
            res = [tokenizer.cls_token_id, *tokenizer.convert_tokens_to_ids(tokenized_imp), tokenizer.sep_token_id]
            if len(res) > 512:
                res = [*res[:511], tokenizer.sep_token_id]  # res[:511] + [sep]
            new_impressions.append(res)
        else:
            new_impressions.append([tokenizer.cls_token_id, tokenizer.sep_token_id])
    return new_impressions


def generate_attention_masks(batch, source_lengths):
    masks = torch.ones(batch.size(0), batch.size(1), dtype=torch.float)
    for idx, src_len in enumerate(source_lengths):
        masks[idx, src_len:] = 0
    return masks


def chexbert_label(checkpoint_path, bert_path, reports, batch_size=18):
    """label.py's label(): returns CheXbert's y_pred as a list of 14 per-condition lists of values."""
    from transformers import BertConfig, BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(bert_path))
    model = bert_labeler(BertConfig.from_json_file(str(bert_path / "config.json")))
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    new_state_dict = {k[7:]: v for k, v in checkpoint["model_state_dict"].items()}  # remove `module.`
    model.load_state_dict(new_state_dict)
    model.eval()
    encoded = chexbert_tokenize(reports, tokenizer)
    y_pred = [[] for _ in range(len(CONDITIONS))]
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = [torch.LongTensor(e) for e in encoded[start : start + batch_size]]
            lens = [len(b) for b in batch]
            padded = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True, padding_value=0)
            attn_mask = generate_attention_masks(padded, lens)
            out = model(padded, attn_mask)
            for j in range(len(out)):
                y_pred[j].append(out[j].argmax(dim=1))
    y_pred = [torch.cat(y, dim=0) for y in y_pred]
    values = {0: None, 1: 1, 2: 0, 3: -1}
    return [[values[int(c)] for c in y] for y in y_pred]


def as_mrgfast_rows(y_pred, n):
    """CheXbert's per-condition values laid out as mrgfast rows, mapping by observation name."""
    rows = np.full((n, len(mrgfast.OBSERVATIONS)), mrgfast.BLANK, dtype=np.int8)
    for cond, values in zip(CONDITIONS, y_pred):
        col = mrgfast.OBSERVATIONS.index(cond)
        for i, v in enumerate(values):
            if v is not None:
                rows[i, col] = v
    return rows


REPORTS = report_corpus(240)


def test_backend_equals_chexbert_label_py(tiny_chexbert):
    ckpt, bert_path = tiny_chexbert
    backend = CheXbert(ckpt, bert_path, device="cpu", batch_size=7)
    got = backend.label(REPORTS)
    expected = as_mrgfast_rows(chexbert_label(ckpt, bert_path, REPORTS), len(REPORTS))
    assert got.dtype == np.int8 and got.shape == (len(REPORTS), 14)
    bad = np.argwhere(got != expected)
    assert bad.size == 0, f"{len(bad)} cells differ, first at report {bad[0][0]} ({REPORTS[bad[0][0]]!r:.80})"
    # the corpus exercises what it claims to: long reports are cut, empty ones are [CLS][SEP]
    lengths = [len(ids) for ids in backend.encode(REPORTS)]
    assert max(lengths) == 512 and lengths[0] == 2 and lengths[1] == 2
    # and the random heads produce every class somewhere (the comparison is not all-blank)
    for code in (1, 0, -1, mrgfast.BLANK):
        assert (got[:, 1:] == code).any(), f"code {code} never produced"


def test_backend_through_mrgfast_api(tiny_chexbert):
    ckpt, bert_path = tiny_chexbert
    backend = resolve_labeler("chexbert", checkpoint=ckpt, bert_path=bert_path, device="cpu")
    texts = REPORTS[6:30]
    rows = mrgfast.label(texts, labeler=backend)
    assert np.array_equal(rows, backend.label(texts))
    assert mrgfast.label([], labeler=backend).shape == (0, 14)
    recs = mrgfast.label(texts[:2], labeler=backend, records=True)
    assert set(recs[0]) == set(mrgfast.OBSERVATIONS)
    pairs = mrgfast.mccs(texts[:12], texts[12:24], labeler=backend)
    assert np.allclose(pairs, mrgfast.mccs_from_labels(backend.label(texts[:12]), backend.label(texts[12:24])))
    group = mrgfast.mccs_group(texts[:5], texts[7], labeler=backend)
    assert np.allclose(group, mrgfast.mccs_from_labels(backend.label(texts[:5]), backend.label([texts[7]] * 5)))
    ce = mrgfast.ce_metrics(texts[:12], texts[12:24], labeler=backend)
    assert ce == mrgfast.ce_metrics(backend.label(texts[:12]), backend.label(texts[12:24]))
    with pytest.raises(TypeError, match="report 1"):
        backend.label(["ok", 3])


def test_half_precision_runs(tiny_chexbert):
    ckpt, bert_path = tiny_chexbert
    out = CheXbert(ckpt, bert_path, device="cpu", dtype="bfloat16").label(REPORTS[:20])
    assert out.shape == (20, 14) and out.dtype == np.int8


def test_missing_files_are_named(tiny_chexbert, tmp_path):
    ckpt, bert_path = tiny_chexbert
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        CheXbert(tmp_path / "nope.pth", bert_path)
    with pytest.raises(FileNotFoundError, match="no-bert"):
        CheXbert(ckpt, tmp_path / "no-bert")
    partial = tmp_path / "bert"
    partial.mkdir()
    (partial / "config.json").write_text((bert_path / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"vocab\.txt"):
        CheXbert(ckpt, partial)
    with pytest.raises(ValueError, match="needs checkpoint, bert_path"):
        resolve_labeler("chexbert")


def test_wrong_layouts_are_refused(tiny_chexbert, tmp_path):
    _, bert_path = tiny_chexbert
    state = tiny_chexbert_state(bert_path)

    def save(obj, name):
        p = tmp_path / name
        torch.save(obj, p)
        return p

    with pytest.raises(CheXbertError, match="model_state_dict"):
        CheXbert(save({"state_dict": state}, "a.pth"), bert_path)
    with pytest.raises(CheXbertError, match=r"module\."):
        CheXbert(save({"model_state_dict": {k[7:]: v for k, v in state.items()}}, "b.pth"), bert_path)
    thirteen = {k: v for k, v in state.items() if not k.startswith("module.linear_heads.13.")}
    with pytest.raises(CheXbertError, match=r"14 linear heads.*has 13"):
        CheXbert(save({"model_state_dict": thirteen}, "c.pth"), bert_path)
    fifteen = tiny_chexbert_state(bert_path, n_heads=15)
    with pytest.raises(CheXbertError, match="has 15"):
        CheXbert(save({"model_state_dict": fifteen}, "d.pth"), bert_path)
    wrong_classes = dict(state)
    wrong_classes["module.linear_heads.13.weight"] = torch.zeros(4, 32)
    wrong_classes["module.linear_heads.13.bias"] = torch.zeros(4)
    with pytest.raises(CheXbertError, match=r"linear_heads\.13 \(No Finding\) must have 2 classes"):
        CheXbert(save({"model_state_dict": wrong_classes}, "e.pth"), bert_path)
    no_layer = {k: v for k, v in state.items() if ".layer.1." not in k}
    with pytest.raises(CheXbertError, match="missing"):
        CheXbert(save({"model_state_dict": no_layer}, "f.pth"), bert_path)
    (tmp_path / "g.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheXbertError, match="weights-only"):
        CheXbert(tmp_path / "g.pth", bert_path)


def test_old_checkpoint_with_position_ids_buffer_loads(tiny_chexbert, tmp_path):
    """Checkpoints saved by older transformers carry bert.embeddings.position_ids, a buffer newer
    versions keep out of the state dict; it is dropped, the labels are unchanged."""
    ckpt, bert_path = tiny_chexbert
    state = tiny_chexbert_state(bert_path)
    state["module.bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    p = tmp_path / "old.pth"
    torch.save({"model_state_dict": state}, p)
    texts = REPORTS[:10]
    assert np.array_equal(
        CheXbert(p, bert_path, device="cpu").label(texts), CheXbert(ckpt, bert_path, device="cpu").label(texts)
    )
