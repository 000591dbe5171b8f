"""Dataset loading refuses early and by name (issue 10): paths out of the image root, truncated images,
reports that are not valid text, empty splits."""

from __future__ import annotations

import json
import os

import pytest

from mrgfast.data.r2gen import DataError, read_annotation
from mrgfast.data.synth import generate


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "iu"
    generate(root, n_train=3, n_val=1, n_test=1, image_size=56, views=1, seed=1)
    return root


def _edit(root, fn):
    p = root / "annotation.json"
    ann = json.loads(p.read_text())
    fn(ann)
    p.write_text(json.dumps(ann))
    return p


@pytest.mark.parametrize("escape", ["ABS", "../../../etc/passwd", "sub/../../x.png", "ABS_MISSING"])
def test_image_path_outside_the_root_is_refused_without_probing(tree, tmp_path, escape):
    outside = tmp_path / "secret.png"
    outside.write_bytes(
        (tree / "images" / json.loads((tree / "annotation.json").read_text())["train"][0]["image_path"][0]).read_bytes()
    )
    value = {"ABS": str(outside), "ABS_MISSING": str(tmp_path / "nothing.png")}.get(escape, escape)
    ann = _edit(tree, lambda a: a["train"][1].__setitem__("image_path", [value]))
    with pytest.raises(DataError) as e:
        read_annotation(ann, splits=("train",), check="none")
    msg = str(e.value)
    assert "train[1]" in msg and "is not a relative path inside the image root" in msg
    assert "missing" not in msg and "exist" not in msg  # the same words whether the file exists or not


def test_symlink_out_of_the_root_is_refused(tree, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"x")
    os.symlink(outside, tree / "images" / "link.png")
    ann = _edit(tree, lambda a: a["train"][0].__setitem__("image_path", ["link.png"]))
    with pytest.raises(DataError, match=r"train\[0\].*'link.png' is not a relative path inside"):
        read_annotation(ann, splits=("train",), check="none")


def test_truncated_png_found_at_load_with_study_and_path(tree):
    ann = json.loads((tree / "annotation.json").read_text())
    rec = ann["train"][2]
    img = tree / "images" / rec["image_path"][0]
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixels cut
    read_annotation(tree / "annotation.json", splits=("train",), check="open")  # the header check misses it
    with pytest.raises(DataError) as e:
        read_annotation(tree / "annotation.json", splits=("train",))  # default: decode fully
    assert f"study {rec['id']}: {img}" in str(e.value)
    kept = read_annotation(
        tree / "annotation.json", splits=("train",), skip_missing=True, skipped_file=tree / "skipped.txt"
    )
    assert rec["id"] not in [s.id for s in kept["train"]] and len(kept["train"]) == 2
    assert rec["id"] in (tree / "skipped.txt").read_text()


def test_report_that_is_not_valid_text(tree):
    ann = _edit(tree, lambda a: a["train"][0].__setitem__("report", "effusion \ud800"))
    with pytest.raises(DataError, match=r"train\[0\].*'report' is not valid text"):
        read_annotation(ann, splits=("train",), check="none")


def test_empty_split_is_named(tree):
    ann = _edit(tree, lambda a: a.__setitem__("test", []))
    with pytest.raises(DataError, match=r"annotation.json: split 'test' holds no studies"):
        read_annotation(ann, splits=("train", "test"), check="none")
