"""A deterministic stand-in labeler for tests of the reward plumbing (independent of the Rust rules)."""

import numpy as np

import mrgfast

KEYWORDS = {
    "effusion": mrgfast.OBSERVATIONS.index("Pleural Effusion"),
    "cardiomegaly": mrgfast.OBSERVATIONS.index("Cardiomegaly"),
    "pneumothorax": mrgfast.OBSERVATIONS.index("Pneumothorax"),
    "edema": mrgfast.OBSERVATIONS.index("Edema"),
    "tube": mrgfast.OBSERVATIONS.index("Support Devices"),
}


def fake_label_rows(reports):
    """A deterministic stand-in labeler: keyword -> observation; 'no X' negative, 'possible X' uncertain."""
    out = np.full((len(reports), len(mrgfast.OBSERVATIONS)), mrgfast.BLANK, dtype=np.int8)
    for i, text in enumerate(reports):
        t = text.lower()
        for word, col in KEYWORDS.items():
            if f"no {word}" in t:
                out[i, col] = 0
            elif f"possible {word}" in t:
                out[i, col] = -1
            elif word in t:
                out[i, col] = 1
    return out
