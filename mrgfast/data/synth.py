"""Synthetic chest films in the R2Gen ``annotation.json`` layout.

Every study is drawn from a small set of latent findings, and the *visible* features of the drawing
decide them:

=====================  ==========================================  ==========================
observation            what is drawn                               uncertain when
=====================  ==========================================  ==========================
Cardiomegaly           heart width / thorax width (CTR)            CTR in a borderline band
Pleural Effusion       bright fluid at a base with a meniscus      the meniscus is small
Pneumothorax           a pleural line with no lung markings        never (always stated)
Support Devices        bright tube / line (ET tube, central line)  never (blank when absent)
Consolidation          a bright fuzzy patch in one lung zone       the patch is faint
=====================  ==========================================  ==========================

Reports are written from the findings with varied phrasing, negations and uncertainty, in IU X-Ray
style, so that the Rust labeler's labels of a report equal the latent findings. Each record also
carries a short ``think`` text (what is visible) used as the reasoning target of the SFT warm start.
Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SIDES = ("right", "left")
ZONES = ("upper", "lower")


@dataclass
class Findings:
    ctr: float  # cardiothoracic ratio drawn
    effusion: str | None  # None, "right", "left", "bilateral"
    effusion_size: str  # "small", "moderate", "large" (only meaningful when effusion)
    pneumothorax: str | None  # None, "right", "left"
    devices: list[str] = field(default_factory=list)  # subset of ("et", "line")
    consolidation: tuple[str, str] | None = None  # (side, zone)
    consolidation_faint: bool = False

    # CheXpert codes implied by the drawing (1 / 0 / -1 / None)
    def labels(self) -> dict[str, int | None]:
        card = 1 if self.ctr >= CTR_ENLARGED else (-1 if self.ctr >= CTR_BORDERLINE else 0)
        eff = 0 if self.effusion is None else (-1 if self.effusion_size == "small" else 1)
        ptx = 0 if self.pneumothorax is None else 1
        dev = 1 if self.devices else None
        cons = 0 if self.consolidation is None else (-1 if self.consolidation_faint else 1)
        return {
            "Cardiomegaly": card,
            "Pleural Effusion": eff,
            "Pneumothorax": ptx,
            "Support Devices": dev,
            "Consolidation": cons,
        }


CTR_BORDERLINE = 0.50
CTR_ENLARGED = 0.56


def sample_findings(rng: random.Random, p: float = 0.35) -> Findings:
    r = rng.random()
    if r < 1 - p:
        ctr = rng.uniform(0.36, 0.47)
    elif r < 1 - p * 0.3:
        ctr = rng.uniform(0.58, 0.68)
    else:
        ctr = rng.uniform(0.51, 0.545)
    effusion = None
    size = "moderate"
    if rng.random() < p:
        effusion = rng.choice(["right", "left", "bilateral"])
        size = rng.choice(["small", "moderate", "moderate", "large"])
    ptx = rng.choice(SIDES) if rng.random() < p * 0.6 else None
    devices = []
    if rng.random() < p:
        devices = rng.choice([["et"], ["line"], ["et", "line"]])
    cons = None
    faint = False
    if rng.random() < p:
        cons = (rng.choice(SIDES), rng.choice(ZONES))
        faint = rng.random() < 0.25
    return Findings(
        ctr=ctr,
        effusion=effusion,
        effusion_size=size,
        pneumothorax=ptx,
        devices=devices,
        consolidation=cons,
        consolidation_faint=faint,
    )


# --------------------------------------------------------------------------------------------- drawing
def _grid(n: int):
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / (n - 1)
    return x, y


def draw_frontal(f: Findings, size: int, rng: np.random.Generator) -> np.ndarray:
    """A PA film, in [0, 1] float, patient's right on the image's left (radiological convention)."""
    x, y = _grid(size)
    img = np.full((size, size), 0.08, np.float32)
    # soft tissue / thorax
    thorax = ((x - 0.5) / 0.44) ** 2 + ((y - 0.55) / 0.46) ** 2 < 1
    img[thorax] = 0.45
    # lungs: two dark ovals with faint vascular markings
    lungs = {}
    for side, cx in (("right", 0.31), ("left", 0.69)):
        m = ((x - cx) / 0.17) ** 2 + ((y - 0.48) / 0.33) ** 2 < 1
        lungs[side] = (m, cx)
        img[m] = 0.16
    markings = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    # smooth the noise a little so it looks like markings, not pixels
    k = np.ones(3, np.float32) / 3
    markings = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, markings)
    markings = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 0, markings)
    lung_any = lungs["right"][0] | lungs["left"][0]
    img[lung_any] += 0.05 * markings[lung_any]
    # spine / mediastinum
    img[(np.abs(x - 0.5) < 0.06) & thorax] = 0.6
    # heart: ellipse centred slightly left (image right), width from the CTR
    hw = f.ctr * 0.88 / 2
    heart = ((x - 0.53) / hw) ** 2 + ((y - 0.70) / 0.16) ** 2 < 1
    img[heart & thorax] = 0.72
    # diaphragm domes
    for cx in (0.31, 0.69):  # right, left
        dome = (y > 0.80 - 0.05 * np.cos((x - cx) / 0.17 * math.pi / 2)) & (np.abs(x - cx) < 0.2)
        img[dome & thorax] = 0.7
    # pneumothorax: lateral apical region without markings, bounded by a thin bright pleural line
    if f.pneumothorax:
        m, cx = lungs[f.pneumothorax]
        sgn = -1 if f.pneumothorax == "right" else 1
        edge_x = cx + sgn * 0.02
        lateral = (sgn * (x - edge_x) > 0) & m & (y < 0.62)
        img[lateral] = 0.05
        line = (np.abs(x - edge_x) < 0.012) & m & (y < 0.62)
        img[line] = 0.75
    # consolidation: fuzzy bright patch
    if f.consolidation:
        side, zone = f.consolidation
        _, cx = lungs[side]
        cy = 0.33 if zone == "upper" else 0.6
        blob = np.exp(-(((x - cx) / 0.08) ** 2 + ((y - cy) / 0.08) ** 2))
        img += (0.25 if f.consolidation_faint else 0.55) * blob * lungs[side][0]
    # effusion: fluid at the base, meniscus climbing the lateral wall
    if f.effusion:
        height = {"small": 0.07, "moderate": 0.17, "large": 0.3}[f.effusion_size]
        sides = SIDES if f.effusion == "bilateral" else (f.effusion,)
        for side in sides:
            m, cx = lungs[side]
            sgn = -1 if side == "right" else 1
            lateral = np.clip(sgn * (x - cx) / 0.17, -1, 1)  # -1 medial .. 1 lateral
            level = 0.80 - height - 0.06 * (lateral + 1)  # meniscus: higher laterally
            fluid = (y > level) & (np.abs(x - cx) < 0.2) & thorax
            img[fluid] = np.maximum(img[fluid], 0.68)
    # devices
    if "et" in f.devices:  # endotracheal tube down the trachea
        img[(np.abs(x - 0.5) < 0.012) & (y > 0.05) & (y < 0.36)] = 0.97
    if "line" in f.devices:  # right-sided central line curving to the SVC
        t = np.linspace(0, 1, size * 3)
        px = 0.12 + 0.38 * t
        py = 0.18 + 0.25 * t**2
        for xx, yy in zip(px, py):
            i, j = int(yy * (size - 1)), int(xx * (size - 1))
            img[max(i - 1, 0) : i + 1, max(j - 1, 0) : j + 1] = 0.97
    img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def draw_lateral(f: Findings, size: int, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(size)
    img = np.full((size, size), 0.08, np.float32)
    thorax = ((x - 0.5) / 0.4) ** 2 + ((y - 0.55) / 0.46) ** 2 < 1
    img[thorax] = 0.2
    # heart projects anteriorly (image left); its depth follows the CTR
    hw = 0.12 + 0.35 * (f.ctr - 0.36)
    heart = ((x - 0.3 - hw / 2) / (hw + 0.06)) ** 2 + ((y - 0.66) / 0.16) ** 2 < 1
    img[heart & thorax] = 0.65
    img[(x > 0.78) & thorax] = 0.55  # spine
    if f.effusion:
        height = {"small": 0.06, "moderate": 0.14, "large": 0.25}[f.effusion_size]
        fluid = (y > 0.82 - height - 0.1 * np.clip(x - 0.5, 0, 1)) & thorax & (x > 0.45)
        img[fluid] = np.maximum(img[fluid], 0.62)
    if "et" in f.devices:
        img[(np.abs(x - 0.45) < 0.012) & (y > 0.05) & (y < 0.36)] = 0.97
    img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


# --------------------------------------------------------------------------------------------- reports
_CARD = {
    1: [
        "The heart is enlarged.",
        "Cardiomegaly is present.",
        "The cardiac silhouette is enlarged.",
        "There is cardiomegaly.",
    ],
    -1: [
        "The heart may be mildly enlarged.",
        "Possible mild cardiomegaly.",
        "Borderline heart size, cardiomegaly cannot be excluded.",
    ],
    0: [
        "The heart size is normal.",
        "Heart size is within normal limits.",
        "No cardiomegaly.",
        "The cardiac silhouette is normal in size.",
    ],
}
_SIZE = {"small": "small", "moderate": "moderate", "large": "large"}


def _effusion_sentence(f: Findings, r: random.Random) -> str:
    if f.effusion is None:
        return r.choice(
            [
                "No pleural effusion.",
                "There is no pleural effusion.",
                "No effusion is seen.",
                "The costophrenic angles are sharp, without pleural effusion.",
            ]
        )
    where = "bilateral" if f.effusion == "bilateral" else f.effusion
    plural = "effusions" if f.effusion == "bilateral" else "effusion"
    if f.effusion_size == "small":
        return r.choice(
            [
                f"Possible small {where} pleural {plural}.",
                (
                    f"Blunting of the {where} costophrenic angle may represent a small pleural effusion."
                    if f.effusion != "bilateral"
                    else "Blunting of both costophrenic angles may represent small pleural effusions."
                ),
                f"Small {where} pleural {plural} cannot be excluded.",
            ]
        )
    sz = _SIZE[f.effusion_size]
    if f.effusion == "bilateral":
        return r.choice(
            [
                f"There are {sz} bilateral pleural effusions.",
                f"{sz.capitalize()} bilateral pleural effusions.",
                f"{sz.capitalize()} bilateral pleural effusions are present.",
            ]
        )
    return r.choice(
        [
            f"There is a {sz} {where} pleural effusion.",
            f"{sz.capitalize()} {where} pleural effusion.",
            f"A {sz} {where} pleural effusion is present.",
        ]
    )


def _ptx_sentence(f: Findings, r: random.Random) -> str:
    if f.pneumothorax is None:
        return r.choice(["No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."])
    return r.choice(
        [
            f"There is a {f.pneumothorax} apical pneumothorax.",
            f"{f.pneumothorax.capitalize()} pneumothorax is present.",
            f"A {f.pneumothorax} pneumothorax is seen.",
        ]
    )


def _device_sentences(f: Findings, r: random.Random) -> list[str]:
    out = []
    if "et" in f.devices:
        out.append(
            r.choice(
                [
                    "An endotracheal tube is in place.",
                    "ET tube terminates above the carina.",
                    "The endotracheal tube is in standard position.",
                ]
            )
        )
    if "line" in f.devices:
        out.append(
            r.choice(
                [
                    "A right central venous catheter tip is in the SVC.",
                    "Right-sided central line is in place.",
                    "A right PICC line terminates in the SVC.",
                ]
            )
        )
    return out


def _cons_sentence(f: Findings, r: random.Random) -> str:
    if f.consolidation is None:
        return r.choice(
            [
                "No focal consolidation.",
                "There is no focal airspace consolidation.",
                "The lungs are without focal consolidation.",
            ]
        )
    side, zone = f.consolidation
    if f.consolidation_faint:
        return r.choice(
            [
                f"Possible {side} {zone} lobe consolidation.",
                f"Subtle {side} {zone} lung opacity may represent consolidation.",
            ]
        )
    return r.choice(
        [
            f"There is {side} {zone} lobe consolidation.",
            f"Focal consolidation in the {side} {zone} lobe.",
            f"{side.capitalize()} {zone} lobe consolidation is present.",
        ]
    )


def write_report(f: Findings, r: random.Random) -> str:
    heart = r.choice(_CARD[f.labels()["Cardiomegaly"]])
    sentences = [heart]
    if r.random() < 0.5:
        sentences.append(r.choice(["The mediastinum is unremarkable.", "Mediastinal contours are normal."]))
    lung = [_cons_sentence(f, r), _effusion_sentence(f, r), _ptx_sentence(f, r)]
    r.shuffle(lung)
    sentences += lung
    sentences += _device_sentences(f, r)
    if r.random() < 0.3:
        sentences.append(r.choice(["Osseous structures are intact.", "No acute bony abnormality."]))
    return " ".join(sentences)


def write_think(f: Findings) -> str:
    """What is visible, in a fixed short form (the reasoning target of the SFT warm start)."""
    parts = []
    lab = f.labels()
    parts.append({1: "heart wide", -1: "heart borderline", 0: "heart normal"}[lab["Cardiomegaly"]])
    if f.effusion:
        parts.append(f"{f.effusion} base fluid")
    if f.pneumothorax:
        parts.append(f"{f.pneumothorax} apex edge")
    if f.consolidation:
        parts.append(f"{f.consolidation[0]} {f.consolidation[1]} patch")
    if f.devices:
        parts.append("tube seen")
    return ", ".join(parts) + "."


# --------------------------------------------------------------------------------------------- writer
def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray((arr * 255).astype(np.uint8), mode="L").convert("RGB").save(path)


def generate(
    out: str | os.PathLike,
    *,
    n_train: int = 600,
    n_val: int = 50,
    n_test: int = 150,
    image_size: int = 112,
    views: int = 2,
    seed: int = 0,
    prevalence: float = 0.35,
) -> Path:
    """Write ``out/annotation.json`` and ``out/images/<id>/<k>.png``; returns the annotation path.

    The layout is the R2Gen one for IU X-Ray (two views per study: frontal ``0.png``, lateral
    ``1.png``). Each record carries, besides the R2Gen keys, ``think`` (the visible features) and
    ``labels`` (the CheXpert codes implied by the drawing), which the R2Gen loader ignores.
    """
    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, got {views}")
    if image_size < 56:
        raise ValueError(f"image_size must be >= 56 (Qwen2.5-VL's minimum), got {image_size}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    r = random.Random(seed)
    nrng = np.random.default_rng(seed)
    ann: dict[str, list] = {"train": [], "val": [], "test": []}
    k = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for _ in range(n):
            k += 1
            sid = f"SYN{k:05d}"
            f = sample_findings(r, prevalence)
            d = out / "images" / sid
            d.mkdir(exist_ok=True)
            paths = []
            _save_png(draw_frontal(f, image_size, nrng), d / "0.png")
            paths.append(f"{sid}/0.png")
            if views == 2:
                _save_png(draw_lateral(f, image_size, nrng), d / "1.png")
                paths.append(f"{sid}/1.png")
            ann[split].append(
                {
                    "id": sid,
                    "report": write_report(f, r),
                    "image_path": paths,
                    "split": split,
                    "think": write_think(f),
                    "labels": f.labels(),
                }
            )
    path = out / "annotation.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ann, indent=1))
    os.replace(tmp, path)  # annotation.json appears only once the images are all written
    (out / "SYNTHETIC.md").write_text(
        f"Synthetic chest films written by `mrgfast data synth` (seed={seed}, image_size={image_size}, "
        f"views={views}, prevalence={prevalence}).\nImage root: images/. Not real patient data.\n"
    )
    return path
