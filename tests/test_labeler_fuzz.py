"""Fuzz / robustness of the Rust labeler: >= 100k random and adversarial strings through
mrgfast.label (no exception, only valid codes), huge reports, control characters and NUL,
and a linear-time check (ratios, not absolute times)."""

from __future__ import annotations

import random
import time

import numpy as np

import mrgfast
from mrgfast.contracts import SIDED_OBSERVATIONS
from mrgfast.reference.labeler import rules

VALID = np.array([1, 0, -1, mrgfast.BLANK], dtype=np.int8)
PHRASES = sorted({" ".join(e.tokens) for e in rules().entries.values()})
ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" .,;:?!-*/()[]'\"\n\r\t")
    + [
        "\x00",
        "\x01",
        "\x1b",
        "\x7f",
        "\u2022",
        "\u00a0",
        "\u3000",
        "\u200b",
        "\ufeff",
        "\u00e9",
        "\u00df",
        "\u0130",
        "\u212a",
        "\U0001f600",
        "\U0010ffff",
        "\u0301",
        "\u2028",
        "\u0085",
    ]
)


def _check(rows: np.ndarray, n: int) -> None:
    assert rows.shape == (n, len(mrgfast.OBSERVATIONS))
    assert np.isin(rows, VALID).all()
    nf = rows[:, 0]
    assert np.isin(nf, [1, mrgfast.BLANK]).all(), "No Finding is only ever 1 or blank"


def _random_strings(rng: random.Random, n: int):
    out = []
    for k in range(n):
        kind = k % 6
        if kind == 0:  # random characters
            out.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 80))))
        elif kind == 1:  # random code points (no surrogates)
            cps = [rng.randint(0, 0x10FFFF) for _ in range(rng.randint(0, 40))]
            out.append("".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF))
        elif kind == 2:  # rule phrases with hostile separators
            out.append("".join(rng.choice(PHRASES) + rng.choice(ALPHABET[62:]) for _ in range(rng.randint(0, 25))))
        elif kind == 3:  # only punctuation / whitespace
            out.append("".join(rng.choice(" .,;:?!-*\n\r\t\u2022") for _ in range(rng.randint(0, 60))))
        elif kind == 4:  # trigger storms
            out.append(
                " ".join(
                    rng.choice(
                        [
                            "no",
                            "not",
                            "or",
                            "vs",
                            "possible",
                            "cannot",
                            "exclude",
                            "but",
                            "effusion",
                            "heart",
                            "enlarged",
                            "normal",
                            "XXXX",
                            ",",
                            ".",
                        ]
                    )
                    for _ in range(rng.randint(0, 60))
                )
            )
        else:  # byte soup decoded leniently
            out.append(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 60))).decode("utf-8", "replace"))
    return out


def test_100k_random_and_adversarial_strings():
    rng = random.Random(20240601)
    total = 0
    for _ in range(10):
        batch = _random_strings(rng, 10_000)
        _check(mrgfast.label(batch), len(batch))
        _check(mrgfast.label(batch[:2000], threads=1), 2000)
        total += len(batch)
    assert total >= 100_000


def _check_details(texts) -> None:
    """Details never change the codes; sides and degrees are valid codes, 0 unless the code is 1 or -1,
    and sides 0 outside the sided observations."""
    d = mrgfast.label(texts, details=True)
    np.testing.assert_array_equal(d.codes, mrgfast.label(texts))
    assert d.sides.shape == d.degrees.shape == d.codes.shape
    assert np.isin(d.sides, [0, 1, 2, 3]).all() and np.isin(d.degrees, [0, 1, 2, 3]).all()
    present = np.isin(d.codes, [1, -1])
    assert (d.sides[~present] == 0).all() and (d.degrees[~present] == 0).all()
    sided = np.isin(np.array(mrgfast.OBSERVATIONS), list(SIDED_OBSERVATIONS))
    assert (d.sides[:, ~sided] == 0).all()


def test_100k_random_strings_with_details():
    rng = random.Random(20261204)
    total = 0
    for _ in range(10):
        batch = _random_strings(rng, 10_000)
        _check_details(batch)
        total += len(batch)
    assert total >= 100_000
    _check_details(["\x00" * 1000, "left right bilateral " * 5000, "small left " * 20000 + "effusion"])


def test_empty_and_whitespace_reports_are_all_blank():
    texts = ["", " ", "\n\n", "\t\r\n", "\u3000\u00a0\u2028"]
    assert (mrgfast.label(texts) == mrgfast.BLANK).all()


def test_nul_and_control_characters():
    texts = [
        "\x00" * 1000,
        "no\x00effusion",
        "\x00No pneumothorax.\x00",
        "\x1b[31mcardiomegaly\x1b[0m",
        "".join(chr(c) for c in range(32)) * 10,
        "Small left pleural effusion.\x00\x00",
    ]
    rows = mrgfast.label(texts)
    _check(rows, len(texts))
    eff = mrgfast.OBSERVATIONS.index("Pleural Effusion")
    assert rows[1, eff] == 0 and rows[5, eff] == 1, "NUL separates words like a space"


def test_one_megabyte_report():
    unit = (
        "FINDINGS: No focal consolidation, pleural effusion, or pneumothorax. The heart is mildly enlarged. "
        "Possible left lower lobe atelectasis versus pneumonia. XXXX XXXX are intact.\n\n"
    )
    big = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    rows = mrgfast.label([big, "\u00e9" * 500_000, "." * 1_000_000, "no " * 350_000])
    _check(rows, 4)
    card = mrgfast.OBSERVATIONS.index("Cardiomegaly")
    assert rows[0, card] == 1


def _time(text: str, reps: int = 3, details: bool = False) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        mrgfast.label([text], threads=1, details=details)
        best = min(best, time.perf_counter() - t)
    return best


def test_linear_time():
    units = [
        "No pneumothorax, effusion or consolidation is seen and the heart is not enlarged. Possible atelectasis. ",
        "no effusion or pneumonia , possible nodule vs mass , heart normal ",  # one endless sentence
        "XXXX \u00e9\x00 ;;; ,,, 1.5 Dr. e.g. ",
    ]
    units.append(
        "Small left basilar opacity, likely atelectasis or scarring in the right lower lobe and left effusions, "
    )
    for unit in units:
        one = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
        four = (unit * (4_000_000 // len(unit) + 1))[:4_000_000]
        for details in (False, True):
            t1, t4 = _time(one, details=details), _time(four, details=details)
            assert t4 < 8 * max(t1, 1e-3), f"4 MB took {t4 / t1:.1f}x the 1 MB time for unit {unit[:30]!r}"
