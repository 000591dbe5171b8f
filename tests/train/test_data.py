"""R2Gen loader and synthetic generator on fixture trees (no model needed)."""

from __future__ import annotations

import json
import shutil

import pytest

from mrgfast.data.r2gen import DataError, format_target, read_annotation, to_dataset
from mrgfast.data.synth import generate


def _tree(tmp_path, n=3):
    root = tmp_path / "iu"
    generate(root, n_train=n, n_val=1, n_test=1, image_size=56, views=2, seed=1)
    return root


def test_synth_layout_and_labels(tmp_path):
    root = _tree(tmp_path, n=5)
    ann = json.loads((root / "annotation.json").read_text())
    assert [len(ann[s]) for s in ("train", "val", "test")] == [5, 1, 1]
    rec = ann["train"][0]
    assert set(rec) >= {"id", "report", "image_path", "split"} and len(rec["image_path"]) == 2
    for p in rec["image_path"]:
        assert (root / "images" / p).is_file()
    # deterministic in the seed
    other = tmp_path / "again"
    generate(other, n_train=5, n_val=1, n_test=1, image_size=56, views=2, seed=1)
    assert json.loads((other / "annotation.json").read_text()) == ann


def test_loader_reads_multiview_into_trl_format(tmp_path):
    root = _tree(tmp_path)
    data = read_annotation(root / "annotation.json", kind="iu_xray", splits=("train", "test"))
    assert len(data["train"]) == 3 and all(len(s.image_paths) == 2 for s in data["train"])
    mimic = read_annotation(root / "annotation.json", kind="mimic_cxr", splits=("train",))
    assert all(len(s.image_paths) == 1 for s in mimic["train"])  # first view only by default
    ds = to_dataset(data["train"], instruction="Describe.")
    row = ds[0]
    assert row["prompt"] == [{"role": "user", "content": "Describe."}]
    assert len(row["images"]) == 2 and row["images"][0].size == (56, 56)
    assert row["report"] == data["train"][0].report
    target = row["completion"][0]["content"]
    assert target.startswith("<think>") and target.endswith(f"<report>{row['report']}</report>")
    assert format_target("R.", None).startswith("<think>") and "<report>R.</report>" in format_target("R.")


def test_missing_images_fail_fast_naming_paths_and_count(tmp_path):
    root = _tree(tmp_path)
    ann = json.loads((root / "annotation.json").read_text())
    gone = [ann["train"][0]["image_path"][0], ann["train"][1]["image_path"][1]]
    for p in gone:
        (root / "images" / p).unlink()
    (root / "images" / ann["train"][2]["image_path"][0]).write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        read_annotation(root / "annotation.json", splits=("train",))
    msg = str(e.value)
    assert "3 image(s) missing or unreadable" in msg and "3 studies" in msg
    assert gone[0] in msg and "unreadable" in msg and "--skip-missing-images" in msg


def test_skip_missing_writes_ids_and_keeps_the_rest(tmp_path):
    root = _tree(tmp_path, n=4)
    ann = json.loads((root / "annotation.json").read_text())
    bad_id = ann["train"][1]["id"]
    shutil.rmtree(root / "images" / bad_id)
    skipped = tmp_path / "out" / "skipped_ids.txt"
    data = read_annotation(root / "annotation.json", splits=("train",), skip_missing=True, skipped_file=skipped)
    assert [s.id for s in data["train"]] == [r["id"] for r in ann["train"] if r["id"] != bad_id]
    lines = skipped.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train\t{bad_id}\t") and "missing" in lines[0]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda a: a["train"][1].pop("report"), "train[1]: missing field 'report'"),
        (lambda a: a["train"][0].update(report="  "), "field 'report' must be a non-empty string"),
        (lambda a: a["train"][0].update(image_path=[]), "field 'image_path' must be a non-empty list"),
        (lambda a: a.pop("train"), "split 'train' not present"),
    ],
)
def test_bad_records_name_row_and_field(tmp_path, mutate, expected):
    root = _tree(tmp_path)
    ann = json.loads((root / "annotation.json").read_text())
    mutate(ann)
    (root / "annotation.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        read_annotation(root / "annotation.json", splits=("train",))


def test_missing_annotation_and_root(tmp_path):
    with pytest.raises(DataError, match="annotation file not found"):
        read_annotation(tmp_path / "nope.json")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(DataError, match="image root not found"):
        read_annotation(tmp_path / "a.json")
