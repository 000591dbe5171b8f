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

Sides and degrees (issue 21). The coders' modifiers map onto the labeler's detail codes
(`mrgfast.contracts.SIDE_NAMES`, `DEGREE_NAMES`; `mesh_details`):

| MeSH modifier | side | | MeSH modifier | degree |
|---|---|---|---|---|
| left | left | | mild, small | mild |
| right | right | | moderate | moderate |
| bilateral | bilateral | | severe, large | severe |
| anything else (base, apex, lingula, lower lobe, posterior...) | none | | anything else (borderline, chronic...) | none |

Per report and observation, the coders' side is the union of the sides of the terms that map onto it (a
left and a right term: bilateral), their degree the highest of those terms' degrees (the labeler does the
same over its mentions). Where the coders give a side to an observation that has one
(`SIDED_OBSERVATIONS`) and the labeler finds it (1 or -1), side accuracy counts the reports where the
labeler states exactly that side (not stated counts as wrong, and bilateral against one side too); degree
agreement is the same over the reports where the coders give a degree. Both per observation, with the
number of sided (graded) MeSH terms. Observations without a side (Cardiomegaly, Enlarged
Cardiomediastinum) are left out of side accuracy by design and their sided terms counted apart.

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
from mrgfast.contracts import (
    DEGREE_NAMES,
    NEGATIVE,
    OBSERVATIONS,
    POSITIVE,
    SIDE_NAMES,
    SIDED_OBSERVATIONS,
)
from mrgfast.labelers.reference_labels import ReferenceLabels, format_reference_score, score_against_reference

# the coders' side and degree modifiers, onto the labeler's codes (module doc)
MESH_SIDES = {
    "left": SIDE_NAMES.index("left"),
    "right": SIDE_NAMES.index("right"),
    "bilateral": SIDE_NAMES.index("bilateral"),
}
MESH_DEGREES = {
    "mild": DEGREE_NAMES.index("mild"),
    "small": DEGREE_NAMES.index("mild"),
    "moderate": DEGREE_NAMES.index("moderate"),
    "severe": DEGREE_NAMES.index("severe"),
    "large": DEGREE_NAMES.index("severe"),
}

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


def mesh_details(term: str) -> tuple[int, int]:
    """(side, degree) codes one MeSH term's modifiers give (0: none; see the module doc)."""
    side, degree = 0, 0
    for m in term.split("/")[1:]:
        m = m.strip().lower()
        side |= MESH_SIDES.get(m, 0)
        degree = max(degree, MESH_DEGREES.get(m, 0))
    return side, degree


def mesh_report_details(mesh: str) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per observation of one report's terms: the union of their sides, the highest degree, and the number of
    sided terms."""
    sides: dict[str, int] = {}
    degrees: dict[str, int] = {}
    sided_terms: dict[str, int] = {}
    for term in mesh.split(";"):
        if not term.strip():
            continue
        side, degree = mesh_details(term)
        for obs in mesh_observations(term):
            if side:
                sides[obs] = sides.get(obs, 0) | side
                sided_terms[obs] = sided_terms.get(obs, 0) + 1
            if degree:
                degrees[obs] = max(degrees.get(obs, 0), degree)
    return sides, degrees, sided_terms


def detail_agreement(meshes: list[str], labelled: mrgfast.Labelled) -> dict:
    """Side accuracy and degree agreement of the labeler's details against the coders' (JSON-ready)."""
    side_rows: dict[str, dict] = {}
    degree_rows: dict[str, dict] = {}
    unsided_terms: dict[str, int] = {}
    for i, mesh in enumerate(meshes):
        sides, degrees, terms = mesh_report_details(mesh)
        for obs, n_terms in terms.items():
            if obs not in SIDED_OBSERVATIONS:
                unsided_terms[obs] = unsided_terms.get(obs, 0) + n_terms
                continue
            row = side_rows.setdefault(
                obs, {"sided_terms": 0, "n": 0, "correct": 0, "not_stated": 0, "partial": 0, "wrong": 0}
            )
            row["sided_terms"] += n_terms
            j = OBSERVATIONS.index(obs)
            if labelled.codes[i, j] not in (1, -1):
                continue
            got, want = int(labelled.sides[i, j]), sides[obs]
            row["n"] += 1
            if got == want:
                row["correct"] += 1
            elif got == 0:
                row["not_stated"] += 1
            elif got & want:
                row["partial"] += 1  # bilateral against one side, or one side against bilateral
            else:
                row["wrong"] += 1
        for obs, want in degrees.items():
            j = OBSERVATIONS.index(obs)
            row = degree_rows.setdefault(obs, {"n": 0, "agree": 0, "not_stated": 0})
            if labelled.codes[i, j] not in (1, -1):
                continue
            got = int(labelled.degrees[i, j])
            row["n"] += 1
            row["agree"] += got == want
            row["not_stated"] += got == 0
    for rows, key in ((side_rows, "correct"), (degree_rows, "agree")):
        for row in rows.values():
            row["accuracy"] = row[key] / row["n"] if row["n"] else None
    n_side = sum(r["n"] for r in side_rows.values())
    n_deg = sum(r["n"] for r in degree_rows.values())
    return {
        "side": {
            "n": n_side,
            "accuracy": sum(r["correct"] for r in side_rows.values()) / n_side if n_side else None,
            "per_observation": dict(sorted(side_rows.items(), key=lambda kv: -kv[1]["sided_terms"])),
            "sided_terms_of_observations_without_a_side": unsided_terms,
        },
        "degree": {
            "n": n_deg,
            "agreement": sum(r["agree"] for r in degree_rows.values()) / n_deg if n_deg else None,
            "per_observation": dict(sorted(degree_rows.items(), key=lambda kv: -kv[1]["n"])),
        },
    }


def format_detail_agreement(d: dict) -> str:
    """The side and degree tables as text."""
    width = max(len(o) for o in OBSERVATIONS) + 2

    def pct(x):
        return "   n/a" if x is None else f"{x:6.3f}"

    side = d["side"]
    lines = [
        f"side accuracy (coders give a side, the labeler finds the finding): {pct(side['accuracy']).strip()} "
        f"over {side['n']} report-observations",
        f"  {'observation':<{width}}{'sided terms':>12}{'n':>6}{'accuracy':>9}{'unstated':>9}{'partial':>8}{'wrong':>6}",
    ]
    for obs, r in side["per_observation"].items():
        lines.append(
            f"  {obs:<{width}}{r['sided_terms']:>12}{r['n']:>6}{pct(r['accuracy']):>9}{r['not_stated']:>9}"
            f"{r['partial']:>8}{r['wrong']:>6}"
        )
    if side["sided_terms_of_observations_without_a_side"]:
        lines.append(
            "  (sided terms of observations without a side, left out: "
            + ", ".join(f"{o} {n}" for o, n in side["sided_terms_of_observations_without_a_side"].items())
            + ")"
        )
    deg = d["degree"]
    lines.append(
        f"degree agreement (coders give a degree, the labeler finds the finding): {pct(deg['agreement']).strip()} "
        f"over {deg['n']} report-observations"
    )
    lines.append(f"  {'observation':<{width}}{'n':>6}{'agreement':>10}{'unstated':>9}")
    for obs, r in deg["per_observation"].items():
        lines.append(f"  {obs:<{width}}{r['n']:>6}{pct(r['accuracy']):>10}{r['not_stated']:>9}")
    return "\n".join(lines)


def mesh_labels(mesh: str) -> list[int]:
    """Binary labels (1 present / 0 absent, `OBSERVATIONS` order) of one report's `;`-separated MeSH terms."""
    present: set[str] = set()
    for term in mesh.split(";"):
        if term.strip():
            present |= mesh_observations(term)
    if not present - {"Support Devices"}:
        present.add("No Finding")
    return [POSITIVE if o in present else NEGATIVE for o in OBSERVATIONS]


def load(path: str, meshes: list[str] | None = None) -> ReferenceLabels:
    """The CSV as reference labels; ``meshes`` (when given) receives each kept report's MeSH string."""
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
            if meshes is not None:
                meshes.append(row["MeSH"] or "")
    return ReferenceLabels(path, "binary", ids, lines, texts, np.array(labels, dtype=np.int8))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", required=True, help="the Open-i MeSH CSV (uid, MeSH, ..., findings, impression)")
    ap.add_argument("--json", default=None, help="write the scores here")
    args = ap.parse_args(argv)
    meshes: list[str] = []
    ref = load(args.mesh, meshes)
    labelled = mrgfast.label(ref.texts, details=True)
    predicted = labelled.codes
    result = score_against_reference(predicted, ref, labeler="rust")
    result["details"] = detail_agreement(meshes, labelled)
    result["rules_sha256"] = mrgfast._core.RULES_SHA256
    result["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(format_reference_score(result, title=f"rust labeler vs MeSH coding (bench/agree_mesh.py): {args.mesh}"))
    print(format_detail_agreement(result["details"]))
    print(f"rules.txt sha256 {result['rules_sha256'][:12]}")
    if args.json:
        from mrgfast.atomic import write_json

        write_json(args.json, result)
        print(f"wrote {os.path.abspath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
