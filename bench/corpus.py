"""A realistic generated corpus of chest X-ray reports for the reward benchmark.

Deterministic in ``seed``. Reports are written in the two house styles the engine meets:
IU X-Ray (short "Findings"/"Impression" prose with ``XXXX`` de-identification tokens) and
MIMIC-CXR (section headers, longer sentences, numbered impressions, device lines, comparisons).
Each report draws a latent set of findings and phrases every one of them positively, negatively
or uncertainly with varied wording, so the labeler sees the language mix of real reports:
negation lists, pseudo-negations ("no change in"), hedges, normal statements, devices.

``pairs(n, seed)`` returns (generated, references): each "generated" report is a perturbed
rewrite of its reference (some findings dropped, flipped or rephrased), as a policy's
completions would be.

Run ``python bench/corpus.py`` to print a few samples.
"""

from __future__ import annotations

import random

SIDES = ["right", "left", "bilateral"]
ZONES = ["upper lobe", "lower lobe", "base", "lung base", "midlung", "apex", "perihilar region", "middle lobe"]
SIZES = ["small", "trace", "moderate", "large", "tiny", "minimal", "mild"]

# observation -> (positive templates, negative templates, uncertain templates)
POS: dict[str, list[str]] = {
    "card": [
        "The heart is {deg} enlarged.",
        "{Deg} cardiomegaly.",
        "Cardiomegaly is {stab}.",
        "The cardiac silhouette is {deg} enlarged.",
        "Heart size is {deg} enlarged.",
        "{Deg} enlargement of the cardiac silhouette.",
    ],
    "ecm": [
        "The mediastinum is widened.",
        "Widening of the superior mediastinum.",
        "The cardiomediastinal silhouette is enlarged.",
    ],
    "opac": [
        "Patchy opacity in the {side} {zone}.",
        "{Side} {zone} airspace disease.",
        "There are {size} {side} {zone} opacities.",
        "Streaky XXXX opacities in the lung bases.",
        "Increased interstitial markings.",
        "Hazy opacification of the {side} hemithorax.",
    ],
    "lesion": [
        "A {mm} mm nodule is seen in the {side} {zone}.",
        "{Side} hilar mass.",
        "Spiculated {side} {zone} mass.",
        "Multiple pulmonary nodules.",
    ],
    "edema": [
        "{Deg} pulmonary edema.",
        "Mild interstitial edema.",
        "Pulmonary vascular congestion.",
        "There is {deg} pulmonary edema, improved since the prior study.",
    ],
    "cons": [
        "{Side} {zone} consolidation.",
        "Dense consolidation in the {side} {zone}.",
        "Focal consolidation at the {side} {zone}.",
    ],
    "pna": ["Findings consistent with {side} {zone} pneumonia.", "Multifocal pneumonia.", "{Side} {zone} pneumonia."],
    "atel": [
        "{Side} basilar atelectasis.",
        "Bibasilar atelectasis.",
        "Subsegmental atelectasis in the {side} {zone}.",
        "Plate-like atelectasis at the {side} base.",
        "Linear atelectasis at the {side} base.",
    ],
    "ptx": [
        "{Size} {side} apical pneumothorax.",
        "There is a {size} {side} pneumothorax.",
        "{Size} {side} pneumothorax is {stab}.",
    ],
    "eff": [
        "{Size} {side} pleural effusion.",
        "There is a {size} {side} pleural effusion.",
        "{Size} bilateral pleural effusions.",
        "Layering {side} effusion.",
    ],
    "po": ["{Side} apical pleural thickening.", "Calcified pleural plaques.", "Biapical pleural-parenchymal scarring."],
    "fx": [
        "Old healed {side} rib fractures.",
        "Acute fracture of the {side} {ord} rib.",
        "Compression fracture of a midthoracic vertebral body.",
    ],
    "dev": [
        "Endotracheal tube terminates {cm} cm above the carina.",
        "NG tube tip is in the stomach.",
        "{Side} PICC line tip in the mid SVC.",
        "{Side} internal jugular central venous catheter tip in the SVC.",
        "Left-sided pacemaker with leads in the right atrium and right ventricle.",
        "Median sternotomy wires are intact.",
        "{Side} chest tube in place.",
        "Enteric tube courses below the diaphragm.",
    ],
}
NEG: dict[str, list[str]] = {
    "card": [
        "Heart size is normal.",
        "The heart is normal in size.",
        "No cardiomegaly.",
        "The cardiac silhouette is within normal limits.",
        "Normal heart size.",
    ],
    "ecm": [
        "The mediastinum is unremarkable.",
        "Mediastinal contours are normal.",
        "The cardiomediastinal silhouette is within normal limits.",
        "Normal cardiomediastinal silhouette.",
    ],
    "opac": ["The lungs are clear.", "Lungs are clear bilaterally.", "No focal airspace disease.", "No infiltrates."],
    "lesion": ["No pulmonary nodules or masses.", "No suspicious pulmonary nodules."],
    "edema": ["No pulmonary edema.", "No evidence of CHF.", "There is no pulmonary vascular congestion."],
    "cons": ["No focal consolidation.", "There is no focal airspace consolidation."],
    "pna": ["No evidence of pneumonia.", "No radiographic evidence of pneumonia."],
    "atel": ["No atelectasis.", "Previously seen atelectasis has resolved."],
    "ptx": ["No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen.", "Negative for pneumothorax."],
    "eff": [
        "No pleural effusion.",
        "No effusions.",
        "The costophrenic angles are sharp.",
        "No XXXX of pleural effusion.",
    ],
    "po": ["No pleural thickening."],
    "fx": [
        "Osseous structures are intact.",
        "No acute fracture.",
        "No displaced rib fractures.",
        "The bony thorax is intact.",
    ],
    "dev": ["The endotracheal tube has been removed.", "Interval removal of the right internal jugular catheter."],
}
UNC: dict[str, list[str]] = {
    "card": ["Borderline heart size.", "Possible mild cardiomegaly.", "Heart size is unchanged."],
    "ecm": ["Possible mediastinal widening.", "Stable cardiomediastinal silhouette."],
    "opac": ["Questionable faint opacity at the {side} base.", "Possible {side} {zone} infiltrate."],
    "lesion": [
        "Possible {mm} mm nodule in the {side} {zone}.",
        "An underlying mass cannot be excluded.",
        "{Side} {zone} nodule versus nipple shadow.",
    ],
    "edema": ["Possible mild interstitial edema.", "Mild pulmonary vascular congestion."],
    "cons": ["Early consolidation cannot be excluded.", "{Side} basilar atelectasis versus consolidation."],
    "pna": [
        "{Side} {zone} opacity concerning for pneumonia.",
        "Findings suggestive of early pneumonia.",
        "Superimposed infection is not excluded.",
        "Cannot rule out early pneumonia at the {side} base.",
    ],
    "atel": [
        "Likely {side} basilar atelectasis.",
        "Opacity at the {side} base may represent atelectasis.",
        "Minimal bibasilar airspace disease, most XXXX atelectasis.",
    ],
    "ptx": ["A tiny apical pneumothorax cannot be excluded.", "Possible small {side} apical pneumothorax."],
    "eff": [
        "Possible {size} {side} pleural effusion.",
        "Blunting of the {side} costophrenic angle.",
        "A small {side} effusion may be present.",
    ],
    "po": ["Possible {side} apical pleural thickening."],
    "fx": ["Possible nondisplaced fracture of the {side} {ord} rib.", "A subtle rib fracture cannot be excluded."],
    "dev": ["A tubular structure over the left neck may represent an external catheter."],
}
FILLER = [
    "PA and lateral views of the chest were obtained.",
    "Comparison is made to the prior study.",
    "Low lung volumes.",
    "The lungs are hyperinflated.",
    "Degenerative changes of the thoracic spine.",
    "Atherosclerotic calcification of the aortic arch.",
    "No free air below the diaphragm.",
    "Calcified granuloma in the {side} {zone}.",
    "XXXX XXXX are intact.",
    "There is no significant interval change.",
    "No acute cardiopulmonary process.",
    "Findings were discussed with Dr. XXXX at 3:15 p.m.",
    "The trachea is midline.",
    "Mild thoracic dextroscoliosis.",
    "Surgical clips in the right upper quadrant.",
    "Moderate hiatal hernia.",
    "Healed granulomatous disease.",
]
PSEUDO = [
    "No change in the {size} {side} pleural effusion.",
    "No significant change in the moderate cardiomegaly.",
    "No interval change in bibasilar atelectasis.",
    "The {size} {side} pneumothorax has not increased in size.",
]
OBS_KEYS = list(POS)
ORDS = ["fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]


def _fill(t: str, r: random.Random) -> str:
    deg = r.choice(["mildly", "moderately", "markedly", "severely", "slightly"])
    side = r.choice(SIDES)
    size = r.choice(SIZES)
    stab = r.choice(["stable", "unchanged", "again seen", "slightly increased", "decreased"])
    subs = {
        "deg": deg,
        "Deg": deg.capitalize().replace("ly", "") if r.random() < 0.5 else deg.capitalize(),
        "side": side,
        "Side": side.capitalize(),
        "zone": r.choice(ZONES),
        "size": size,
        "Size": size.capitalize(),
        "stab": stab,
        "mm": str(r.randint(3, 30)),
        "cm": f"{r.uniform(2, 7):.1f}",
        "ord": r.choice(ORDS),
    }
    return t.format(**subs)


def _state(r: random.Random) -> dict[str, int]:
    """Latent findings: 1 positive, 0 negated, -1 uncertain; keys left out are not mentioned."""
    st: dict[str, int] = {}
    sick = r.random() < 0.6
    for k in OBS_KEYS:
        p_mention = 0.75 if k in ("card", "eff", "ptx", "opac", "cons") else 0.35
        if r.random() > p_mention:
            continue
        if sick and r.random() < (0.25 if k != "dev" else 0.5):
            st[k] = 1
        elif r.random() < 0.12:
            st[k] = -1
        else:
            st[k] = 0
    return st


def _sentences(st: dict[str, int], r: random.Random) -> list[str]:
    out = []
    for k, code in st.items():
        bank = {1: POS, 0: NEG, -1: UNC}[code][k]
        out.append(_fill(r.choice(bank), r))
    # IU-style compressed negation list
    negs = [k for k, c in st.items() if c == 0 and k in ("eff", "ptx", "cons", "edema")]
    if len(negs) >= 2 and r.random() < 0.5:
        names = {
            "eff": "pleural effusion",
            "ptx": "pneumothorax",
            "cons": "focal consolidation",
            "edema": "pulmonary edema",
        }
        out = [s for s, k in zip(out, st) if k not in negs]
        lst = [names[k] for k in negs]
        out.append("No " + ", ".join(lst[:-1]) + (", or " if len(lst) > 2 else " or ") + lst[-1] + ".")
    if r.random() < 0.25:
        out.append(_fill(r.choice(PSEUDO), r))
    for _ in range(r.randint(0, 2)):
        out.append(_fill(r.choice(FILLER), r))
    r.shuffle(out)
    return out


def iu_report(st: dict[str, int], r: random.Random) -> str:
    s = _sentences(st, r)
    if r.random() < 0.5:
        cut = max(1, len(s) - r.randint(1, 2))
        imp = " ".join(s[cut:]) or "No acute cardiopulmonary abnormality."
        return " ".join(s[:cut]) + " " + imp
    return " ".join(s)


def mimic_report(st: dict[str, int], r: random.Random) -> str:
    s = _sentences(st, r)
    parts = []
    if r.random() < 0.6:
        parts.append(
            "INDICATION: "
            + r.choice(
                [
                    "Shortness of breath.",
                    "Evaluate for pneumonia.",
                    "Fever and cough.",
                    "Line placement.",
                    "Chest pain.",
                ]
            )
        )
    if r.random() < 0.4:
        parts.append("COMPARISON: " + r.choice(["None.", "Chest radiograph from ___.", "Prior study."]))
    findings = " ".join(s)
    parts.append("FINDINGS: " + findings)
    pos = [x for x in s if not x.lower().startswith("no ")]
    if pos and r.random() < 0.7:
        items = pos[: r.randint(1, min(3, len(pos)))]
        if len(items) > 1:
            parts.append("IMPRESSION:\n" + "\n".join(f"{i + 1}. {t}" for i, t in enumerate(items)))
        else:
            parts.append("IMPRESSION: " + items[0])
    else:
        parts.append(
            "IMPRESSION: "
            + r.choice(
                [
                    "No acute cardiopulmonary process.",
                    "No acute intrathoracic abnormality.",
                    "Stable appearance of the chest.",
                ]
            )
        )
    sep = "\n\n" if r.random() < 0.7 else "\n"
    return sep.join(parts)


def report(r: random.Random, st: dict[str, int] | None = None) -> str:
    st = _state(r) if st is None else st
    text = iu_report(st, r) if r.random() < 0.5 else mimic_report(st, r)
    if r.random() < 0.1:
        text = text.lower()  # R2Gen-style lowercased text
    return text


def corpus(n: int = 10_000, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    return [report(r) for _ in range(n)]


def pairs(n: int = 10_000, seed: int = 0) -> tuple[list[str], list[str]]:
    """(generated, references): each generated report rewrites its reference with errors."""
    r = random.Random(seed)
    gen, ref = [], []
    for _ in range(n):
        st = _state(r)
        ref.append(report(r, st))
        g = dict(st)
        for k in list(g):
            x = r.random()
            if x < 0.15:
                del g[k]
            elif x < 0.25:
                g[k] = r.choice([1, 0, -1])
        if r.random() < 0.2:
            g[r.choice(OBS_KEYS)] = r.choice([1, 0])
        gen.append(report(r, g))
    return gen, ref


if __name__ == "__main__":
    for t in corpus(6, seed=1):
        print(t, "\n" + "-" * 60)
