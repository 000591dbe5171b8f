"""bench/agree_mesh.py: the written MeSH -> observation mapping on hand-made terms, and the script end to end on
a small hand-made Open-i-style CSV (the real development set stays outside the repository)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

import mrgfast

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "agree_mesh.py"
OBS = list(mrgfast.OBSERVATIONS)


@pytest.fixture(scope="module")
def agree_mesh():
    spec = importlib.util.spec_from_file_location("agree_mesh", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("term", "want"),
    [
        ("Cardiomegaly/mild", {"Cardiomegaly"}),
        ("Cardiac Shadow/enlarged/mild", {"Cardiomegaly"}),
        ("Heart/apex/prominent", set()),
        ("Mediastinum/prominent", {"Enlarged Cardiomediastinum"}),
        ("Shift/mediastinum/left", set()),
        ("Lung/hilum/lymph nodes/bilateral", {"Enlarged Cardiomediastinum"}),
        ("Lung/hypoinflation", set()),
        ("Opacity/lung/base/left/patchy", {"Lung Opacity"}),
        ("Opacity/lung/upper lobe/right/round", {"Lung Lesion"}),
        ("Density/ribs/left", set()),
        ("Density/right/paratracheal", {"Enlarged Cardiomediastinum"}),
        ("Markings/bronchovascular", set()),
        ("Markings/lung/interstitial", {"Lung Opacity"}),
        ("Cicatrix/pleura/apex", {"Pleural Other"}),
        ("Cicatrix/lung/base/left", {"Lung Opacity"}),
        ("Pulmonary Fibrosis/interstitial", {"Lung Opacity"}),
        ("Nodule/lung/lower lobe", {"Lung Lesion"}),
        ("Mass/breast/large", set()),
        ("Pulmonary Congestion/mild", {"Edema"}),
        ("Hemopneumothorax/right", {"Pneumothorax", "Pleural Effusion"}),
        ("Costophrenic Angle/left/blunted", {"Pleural Effusion"}),
        ("Thickening/pleura/apex", {"Pleural Other"}),
        ("Fractures, Bone/ribs/healed", {"Fracture"}),
        ("Catheters, Indwelling/right", {"Support Devices"}),
        ("Medical Device/breast/bilateral", set()),
        ("Surgical Instruments/abdomen/right", set()),
        ("Calcified Granuloma/lung/hilum", set()),
        ("normal", set()),
    ],
)
def test_mapping(agree_mesh, term, want):
    assert agree_mesh.mesh_observations(term) == want


def test_no_finding_is_derived(agree_mesh):
    labels = agree_mesh.mesh_labels("Catheters, Indwelling/left;Calcified Granuloma/lung")
    assert {o for o, c in zip(OBS, labels) if c == 1} == {"Support Devices", "No Finding"}
    labels = agree_mesh.mesh_labels("Cardiomegaly;Pulmonary Atelectasis/base/left")
    assert {o for o, c in zip(OBS, labels) if c == 1} == {"Cardiomegaly", "Atelectasis"}


def test_script_end_to_end(tmp_path, agree_mesh):
    src = tmp_path / "mesh.csv"
    rows = [
        ("1", "normal", "The heart is normal in size. The lungs are clear.", "No acute disease."),
        ("2", "Cardiomegaly;Pleural Effusion/left/small", "Cardiomegaly. Small left pleural effusion.", ""),
        ("3", "Pneumothorax/right", "", "No pneumothorax."),
        ("4", "normal", "", ""),  # no text: left out
    ]
    with src.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"])
        for uid, mesh, findings, impression in rows:
            w.writerow([uid, mesh, "", "", "", "", findings, impression])
    out = tmp_path / "m.json"
    assert agree_mesh.main(["--mesh", str(src), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 3
    per = result["per_observation"]
    assert (per["Cardiomegaly"]["tp"], per["Cardiomegaly"]["fp"]) == (1, 0)
    assert (per["Pneumothorax"]["tp"], per["Pneumothorax"]["fn"]) == (0, 1)  # the coders say present
    assert (per["No Finding"]["tp"], per["No Finding"]["fp"]) == (1, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,text\n1,x\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="columns"):
        agree_mesh.main(["--mesh", str(bad)])


@pytest.mark.parametrize(
    ("term", "want"),
    [
        ("Pleural Effusion/left/small", (1, 1)),
        ("Opacity/lung/base/right/mild", (2, 1)),
        ("Airspace Disease/lung/bilateral/patchy", (3, 0)),
        ("Cardiomegaly/moderate", (0, 2)),
        ("Pleural Effusion/left/large", (1, 3)),
        ("Cardiomegaly/severe", (0, 3)),
        ("Cardiomegaly/borderline", (0, 0)),
        ("Opacity/lung/lingula", (0, 0)),
    ],
)
def test_detail_mapping(agree_mesh, term, want):
    assert agree_mesh.mesh_details(term) == want


def test_side_and_degree_agreement_on_a_hand_made_csv(tmp_path, agree_mesh):
    src = tmp_path / "mesh.csv"
    rows = [
        # left + right terms of one observation: bilateral; the labeler reads both sentences: bilateral
        (
            "1",
            "Pleural Effusion/left/small;Pleural Effusion/right/moderate",
            "Small left and moderate right effusions.",
            "",
        ),
        ("2", "Pulmonary Atelectasis/base/left", "Right basilar atelectasis.", ""),  # wrong side
        ("3", "Opacity/lung/base/right", "Opacity at the base.", ""),  # not stated by the labeler
        ("4", "Cardiomegaly/mild", "Mild cardiomegaly.", ""),
        ("5", "Pneumothorax/right/large", "No pneumothorax.", ""),  # the labeler does not find it: left out
    ]
    with src.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"])
        for uid, mesh, findings, impression in rows:
            w.writerow([uid, mesh, "", "", "", "", findings, impression])
    out = tmp_path / "m.json"
    assert agree_mesh.main(["--mesh", str(src), "--json", str(out)]) == 0
    det = json.loads(out.read_text())["details"]
    side = det["side"]["per_observation"]
    eff = side["Pleural Effusion"]
    assert (eff["n"], eff["correct"], eff["sided_terms"]) == (1, 1, 2)
    assert (side["Atelectasis"]["n"], side["Atelectasis"]["wrong"]) == (1, 1)
    assert (side["Lung Opacity"]["n"], side["Lung Opacity"]["not_stated"]) == (1, 1)
    assert side["Pneumothorax"]["n"] == 0 and side["Pneumothorax"]["sided_terms"] == 1
    assert det["side"]["accuracy"] == pytest.approx(1 / 3)
    deg = det["degree"]["per_observation"]
    assert deg["Pleural Effusion"]["agree"] == 1 and deg["Cardiomegaly"]["agree"] == 1
    assert det["degree"]["agreement"] == pytest.approx(1.0)
