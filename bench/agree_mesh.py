"""Agreement of the rule labeler with human MeSH coding of IU X-Ray reports (Open-i), by a written mapping.

The Open-i coders read each whole report and gave it MeSH terms (`Pleural Effusion/left/small`,
`Opacity/lung/base/right`, `normal`...). They are a radiologist's reading of what is present, not CheXpert's
observation list, so agreement needs a mapping of MeSH heads onto the 14 observations. The mapping below
(`mesh_observations`) is mrgfast's judgement, written down once and not tuned to the score:

| MeSH term (head / modifiers) | observation |
|---|---|
| Cardiomegaly; Cardiac Shadow, Heart, Heart Ventricles, Heart Atria with enlarged / borderline / prominent (not Heart/apex) | Cardiomegaly |
| Mediastinum with prominent / enlarged / widened / paratracheal / lymph nodes; Lymph Nodes; Lung/hilum with prominent / enlarged / lymph nodes; Thickening, Density or Opacity with paratracheal | Enlarged Cardiomediastinum |
| Opacity, Density (round or nodular: Lung Lesion; on a bone, breast or soft tissue: nothing), Airspace Disease, Infiltrate, Markings (not bronchovascular), Lung/interstitial, Lung Diseases Interstitial, Pulmonary Fibrosis, Cicatrix of the lung | Lung Opacity |
| Nodule, Mass (not breast), Cavitation, Cysts/lung, any head naming a neoplasm or carcinoma | Lung Lesion |
| Pulmonary Edema, Edema, Pulmonary Congestion (CheXpert files vascular congestion under Edema), Heart Failure | Edema |
| Consolidation | Consolidation |
| Pneumonia, Bronchopneumonia | Pneumonia |
| Pulmonary Atelectasis, Atelectasis | Atelectasis |
| Pneumothorax, Hydro-/Hemopneumothorax | Pneumothorax (the compounds: Pleural Effusion too) |
| Pleural Effusion, Hemothorax, Hydrothorax, Empyema; Costophrenic Angle or Pleura with blunted | Pleural Effusion |
| Thickening/pleura, Cicatrix/pleura, Pleura (not blunted) | Pleural Other |
| Fractures, Bone (healed included) | Fracture |
| Catheters Indwelling, Implanted Medical Device, Medical Device, Tube Inserted, Stents, Pacemaker, Defibrillators, Heart Valve Prosthesis (nothing on the breast) | Support Devices |
| No Finding | 1 when no term maps onto an observation other than Support Devices |

Everything else (calcified granuloma, emphysema, hyperinflation, degenerative spine, surgical clips
("Surgical Instruments"), sutures, hernia, aortic calcification...) maps onto nothing. Two radiologist's
readings differ from CheXbert's on purpose: pulmonary fibrosis is Lung Opacity (CheXbert: Pleural Other), and
surgical clips are not devices (both agree there).

The labeler reads the findings and the impression (what the coders read), joined; reports with neither are
left out. Scoring is present/absent (labeler 1 or -1 = present) with the MeSH side as the reference:
per observation precision, recall, F1 and kappa, micro and macro (`mrgfast.labelers.reference_labels`).

    python bench/agree_mesh.py --mesh /path/to/iu_reports_mesh_dev.csv [--json out.json]

The data are not part of the repository (public research data; see the folder's README).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys

import numpy as np

import mrgfast
from mrgfast.contracts import NEGATIVE, OBSERVATIONS, POSITIVE
from mrgfast.labelers.reference_labels import ReferenceLabels, format_reference_score, score_against_reference

NON_LUNG_SITES = frozenset(
    {
        "ribs",
        "sternum",
        "thoracic vertebrae",
        "lumbar vertebrae",
        "cervical vertebrae",
        "spine",
        "clavicle",
        "humerus",
        "shoulder",
        "scapula",
        "breast",
        "abdomen",
        "soft tissue",
    }
)
DEVICE_HEADS = frozenset(
    {
        "catheters, indwelling",
        "implanted medical device",
        "medical device",
        "tube, inserted",
        "stents",
        "pacemaker, artificial",
        "defibrillators, implantable",
        "heart valve prosthesis",
    }
)
SIZE_WORDS = frozenset({"enlarged", "prominent", "widened", "borderline"})


def mesh_observations(term: str) -> set[str]:
    """The observations one MeSH term (``Head/modifier/...``) maps onto (see the module doc)."""
    parts = [p.strip().lower() for p in term.split("/")]
    head, mods = parts[0], set(parts[1:])
    out: set[str] = set()
    if head == "cardiomegaly":
        out.add("Cardiomegaly")
    elif head in ("cardiac shadow", "heart", "heart ventricles", "heart atria"):
        if mods & SIZE_WORDS and "apex" not in mods:
            out.add("Cardiomegaly")
    elif head == "mediastinum":
        if mods & (SIZE_WORDS | {"paratracheal", "lymph nodes"}):
            out.add("Enlarged Cardiomediastinum")
    elif head == "lymph nodes":
        out.add("Enlarged Cardiomediastinum")
    elif head == "lung":
        if "hilum" in mods and mods & {"prominent", "enlarged", "lymph nodes"}:
            out.add("Enlarged Cardiomediastinum")
        elif "interstitial" in mods:
            out.add("Lung Opacity")
    elif head in ("opacity", "density"):
        if "paratracheal" in mods:
            out.add("Enlarged Cardiomediastinum")
        elif mods & {"round", "nodular"}:
            out.add("Lung Lesion")
        elif not mods & NON_LUNG_SITES:
            out.add("Lung Opacity")
    elif head == "thickening":
        if "paratracheal" in mods:
            out.add("Enlarged Cardiomediastinum")
        elif "pleura" in mods:
            out.add("Pleural Other")
    elif head in ("airspace disease", "infiltrate", "lung diseases, interstitial", "pulmonary fibrosis"):
        out.add("Lung Opacity")
    elif head == "markings":
        if "bronchovascular" not in mods:
            out.add("Lung Opacity")
    elif head == "cicatrix":
        if "pleura" in mods:
            out.add("Pleural Other")
        elif not mods & NON_LUNG_SITES:
            out.add("Lung Opacity")
    elif head in ("nodule", "mass"):
        if "breast" not in mods:
            out.add("Lung Lesion")
    elif head == "cavitation" or (head == "cysts" and "lung" in mods) or "neoplasm" in head or "carcinoma" in head:
        out.add("Lung Lesion")
    elif head in ("pulmonary edema", "edema", "pulmonary congestion", "heart failure"):
        out.add("Edema")
    elif head == "consolidation":
        out.add("Consolidation")
    elif head in ("pneumonia", "bronchopneumonia"):
        out.add("Pneumonia")
    elif head in ("pulmonary atelectasis", "atelectasis"):
        out.add("Atelectasis")
    elif head == "pneumothorax":
        out.add("Pneumothorax")
    elif head in ("hydropneumothorax", "hemopneumothorax"):
        out |= {"Pneumothorax", "Pleural Effusion"}
    elif head in ("pleural effusion", "hemothorax", "hydrothorax", "empyema", "empyema, pleural"):
        out.add("Pleural Effusion")
    elif head in ("costophrenic angle", "pleura"):
        if "blunted" in mods:
            out.add("Pleural Effusion")
        elif head == "pleura":
            out.add("Pleural Other")
    elif head == "fractures, bone":
        out.add("Fracture")
    elif head in DEVICE_HEADS and "breast" not in mods:
        out.add("Support Devices")
    return out


def mesh_labels(mesh: str) -> list[int]:
    """Binary labels (1 present / 0 absent, `OBSERVATIONS` order) of one report's `;`-separated MeSH terms."""
    present: set[str] = set()
    for term in mesh.split(";"):
        if term.strip():
            present |= mesh_observations(term)
    if not present - {"Support Devices"}:
        present.add("No Finding")
    return [POSITIVE if o in present else NEGATIVE for o in OBSERVATIONS]


def load(path: str) -> ReferenceLabels:
    ids, lines, texts, labels = [], [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"uid", "MeSH", "findings", "impression"} - set(reader.fieldnames or ())
        if missing:
            raise SystemExit(f"{path}: columns {sorted(missing)} missing (an Open-i MeSH CSV has uid, MeSH, ...)")
        for row in reader:
            text = " ".join(t.strip() for t in (row["findings"], row["impression"]) if t and t.strip())
            if not text:
                continue
            ids.append(row["uid"])
            lines.append(reader.line_num)
            texts.append(text)
            labels.append(mesh_labels(row["MeSH"] or ""))
    return ReferenceLabels(path, "binary", ids, lines, texts, np.array(labels, dtype=np.int8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", required=True, help="the Open-i MeSH CSV (uid, MeSH, ..., findings, impression)")
    ap.add_argument("--json", default=None, help="write the scores here")
    args = ap.parse_args(argv)
    ref = load(args.mesh)
    predicted = mrgfast.label(ref.texts)
    result = score_against_reference(predicted, ref, labeler="rust")
    result["rules_sha256"] = mrgfast._core.RULES_SHA256
    result["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(format_reference_score(result, title=f"rust labeler vs MeSH coding (bench/agree_mesh.py): {args.mesh}"))
    print(f"rules.txt sha256 {result['rules_sha256'][:12]}")
    if args.json:
        from mrgfast.atomic import write_json

        write_json(args.json, result)
        print(f"wrote {os.path.abspath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
