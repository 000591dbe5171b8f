"""Why the rule labeler gave each code: per observation, every mention, the triggers that scoped it, the
words that gave its side and degree, and the rules.txt lines behind them, so a clinician can review a
call (``mrgfast label --explain TEXT``).

The trace comes from the pure-Python reference (`mrgfast.reference.labeler`), which runs the same
rules with the same algorithm as the Rust engine (the differential tests hold them equal); the
explanation states the engine's own codes and flags any difference.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mrgfast.contracts import (
    BLANK,
    DEGREE_NAMES,
    DEGREE_NONE,
    NEGATIVE,
    OBSERVATIONS,
    POSITIVE,
    SIDE_NAMES,
    SIDE_NONE,
    UNCERTAIN,
)
from mrgfast.reference import labeler as ref

CODE_NAMES = {POSITIVE: "1 (positive)", NEGATIVE: "0 (negative)", UNCERTAIN: "-1 (uncertain)", BLANK: "blank"}
# what each trigger role does to a mention it covers (code_at: strong > negation > uncertainty > positive)
ROLE_CODE = {
    "strong_pre": UNCERTAIN,
    "strong_post": UNCERTAIN,
    "strong_near": UNCERTAIN,
    "neg_pre": NEGATIVE,
    "neg_post": NEGATIVE,
    "unc_pre": UNCERTAIN,
    "unc_post": UNCERTAIN,
    "unc_or": UNCERTAIN,
    "neg_near_post": NEGATIVE,
}
ROLE_RANK = {"strong": 0, "neg": 1, "unc": 2}


def _rule(e: ref.Entry, prefix: str, obs: str | None = None) -> str:
    """The rules.txt line(s) giving the phrase this role; with `obs`, the one naming that observation."""
    lines = [(n, sec) for n, sec in e.lines if sec.startswith(prefix)]
    if obs is not None:
        named = [(n, sec) for n, sec in lines if obs in sec]
        lines = named or lines
    return "; ".join(f"rules.txt:{n} {sec}" for n, sec in lines) or "rules.txt (?)"


def _phrase(e: ref.Entry) -> str:
    return " ".join(e.tokens) + ("*" if e.prefix else "")


def _triggers(U: list, words: list[str], trace: list) -> list[dict[str, str]]:
    out = []
    for role, q in trace:
        e = U[q][1]
        if role.startswith("mod:"):
            out.append(
                {
                    "kind": "modifier",
                    "class": role[4:],
                    "text": words[q],
                    "phrase": _phrase(e),
                    "rule": _rule(e, "@mod"),
                }
            )
        else:
            out.append(
                {"kind": "trigger", "role": role, "text": words[q], "phrase": _phrase(e), "rule": _rule(e, "@trigger")}
            )
    return out


def _decider(code: int, found: list[dict[str, str]]) -> str:
    trig = [t for t in found if t["kind"] == "trigger"]
    mods = [t for t in found if t["kind"] == "modifier"]
    if code == POSITIVE and not trig:
        if mods:
            m = mods[0]
            return f'{m["class"]} modifier "{m["text"]}" ({m["rule"]}), no negation or uncertainty trigger in scope'
        return "no negation or uncertainty trigger in scope: positive"
    ranked = sorted(trig, key=lambda t: ROLE_RANK[t["role"].split("_")[0]])
    if ranked:
        t = ranked[0]
        return f'{t["role"]} "{t["text"]}" ({t["rule"]})'
    if mods:
        m = mods[0]
        return f'{m["class"]} modifier "{m["text"]}" ({m["rule"]})'
    return "?"


def _apply_flags(
    code: int, u_flag: bool, p_flag: bool, h_flag: bool, head: bool, noun: str
) -> tuple[int | None, str | None]:
    """The code a rule's flags leave of ``code``, and the note saying why (``noun``: what one reading is;
    ``head``: no finding mention came before it in its sentence)."""
    if p_flag and code == NEGATIVE:
        return None, f"flag p: a negative {noun} is not counted"
    if h_flag and not head:
        return None, f"flag h: counted only when it heads its sentence (a finding is named before this {noun})"
    if u_flag and code == POSITIVE:
        return UNCERTAIN, f"flag u: a positive {noun} counts as uncertain"
    return code, None


def _details(U: list, words: list[str], trace: list, inherited: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """A reading's side and degree with the words (and rule lines) that state them; ``inherited`` names what
    was taken from the finding before it ("left basilar opacity, likely atelectasis")."""
    out: dict[str, Any] = {}
    for kind in ("side", "degree"):
        used = [q for k, q in trace if k == kind]
        out[kind + "_words"] = [
            {"text": words[q], "phrase": _phrase(U[q][1]), "rule": _rule(U[q][1], "@" + kind)} for q in used
        ]
        if kind in inherited:
            q, name = inherited[kind]
            out[kind + "_from"] = {"text": words[q], "value": name}
    return out


def explain(text: str) -> dict[str, Any]:
    """The decision trail of one report (JSON-ready): per observation its code, side and degree, and every
    mention or descriptor that contributed, with the triggers/modifiers that decided it, the words that
    gave its side and degree, and their rule lines."""
    import mrgfast

    r = ref.rules()
    engine = mrgfast.label([text], details=True)
    engine_codes = [int(c) for c in engine.codes[0]]
    engine_sides = [int(c) for c in engine.sides[0]]
    engine_degrees = [int(c) for c in engine.degrees[0]]
    ref_codes, ref_sides, ref_degrees = ref.label_report_details(text)
    calls: dict[str, list[dict[str, Any]]] = {o: [] for o in OBSERVATIONS}
    W = r.params["detail_window"]
    if not all(ch in ref.WHITESPACE for ch in text):
        texts: list[list[str]] = []
        for s_idx, (U, words) in enumerate(zip(ref.sentences(r, text, texts), texts)):
            sentence = " ".join(words)
            prev: tuple[int, int, int] | None = None  # as ref._label: the last present sided mention
            head = True  # as ref._label: no finding mention before this unit in the sentence
            for p, u in enumerate(U):
                e = ref._entry_of(u)
                if e is None:
                    continue
                first = head
                head = head and not e.mentions
                # (targets, code, trace, what a reading is called, kind, section, details)
                readings = []
                if e.mentions:
                    trace: list = []
                    code = ref.code_at(r, U, p, trace)
                    det = None
                    if code != NEGATIVE:
                        dtrace: list = []
                        side, degree = ref.details_of(r, U, (p,), trace=dtrace)
                        inherited: dict[str, tuple[int, str]] = {}
                        if prev is not None:
                            take_side, take_degree = ref._inherits(U, prev[0], p, W)
                            if take_side and side == SIDE_NONE and prev[1] != SIDE_NONE:
                                side = prev[1]
                                inherited["side"] = (prev[0], SIDE_NAMES[side])
                            if take_degree and degree == DEGREE_NONE and prev[2] != DEGREE_NONE:
                                degree = prev[2]
                                inherited["degree"] = (prev[0], DEGREE_NAMES[degree])
                        det = (side, degree, _details(U, words, dtrace, inherited))
                        prev = (p, side, degree) if any(ref.SIDED[t[0]] for t in e.mentions) else None
                    else:
                        prev = None
                    readings.append((e.mentions, code, trace, "mention of this phrase", "mention", "@mention", det))
                if e.desc_group is not None:
                    trace = []
                    mods: list[int] = []
                    code = ref.desc_code(r, U, p, e.desc_group, trace, mods_out=mods)
                    if code is not None:
                        det = None
                        if code != NEGATIVE:
                            dtrace = []
                            side, degree = ref.details_of(r, U, (p,), mods, trace=dtrace)
                            det = (side, degree, _details(U, words, dtrace, {}))
                        kind = f"descriptor ({e.desc_group})"
                        readings.append((e.desc_targets, code, trace, "reading", kind, "@desc", det))
                for targets, code, trace, noun, kind, section, det in readings:
                    found = _triggers(U, words, trace)
                    for obs, u_flag, p_flag, h_flag in targets:
                        c, note = _apply_flags(code, u_flag, p_flag, h_flag, first, noun)
                        call = {
                            "sentence": s_idx + 1,
                            "sentence_text": sentence,
                            "kind": kind,
                            "text": words[p],
                            "phrase": _phrase(e),
                            "rule": _rule(e, section, OBSERVATIONS[obs]),
                            "code": c,
                            "decided_by": _decider(code, found),
                            "note": note,
                            "triggers": found,
                        }
                        if det is not None and c in (POSITIVE, UNCERTAIN):
                            side = det[0] if ref.SIDED[obs] else SIDE_NONE
                            call["side"] = SIDE_NAMES[side] if side else None
                            call["degree"] = DEGREE_NAMES[det[1]] if det[1] else None
                            call.update(det[2] if ref.SIDED[obs] else {**det[2], "side_words": []})
                        calls[OBSERVATIONS[obs]].append(call)
    observations = {}
    for j, obs in enumerate(OBSERVATIONS):
        entry: dict[str, Any] = {
            "code": engine_codes[j],
            "side": SIDE_NAMES[engine_sides[j]] if engine_sides[j] else None,
            "degree": DEGREE_NAMES[engine_degrees[j]] if engine_degrees[j] else None,
            "calls": calls[obs],
        }
        if obs == "No Finding":
            findings = [
                o
                for k, o in enumerate(OBSERVATIONS)
                if k not in (0, OBSERVATIONS.index("Support Devices")) and engine_codes[k] in (POSITIVE, UNCERTAIN)
            ]
            if all(ch in ref.WHITESPACE for ch in text):
                entry["why"] = "empty report: everything blank"
            elif findings:
                entry["why"] = "blank: positive or uncertain " + ", ".join(findings)
            else:
                entry["why"] = "1: no observation other than Support Devices is positive or uncertain"
        elif calls[obs]:
            entry["why"] = "report level: positive > uncertain > negative over the mentions"
            if entry["side"] or entry["degree"]:
                entry["why"] += "; side and degree: those of the mentions with that code (sides add up, highest degree)"
        observations[obs] = entry
    same = engine_codes == ref_codes and engine_sides == ref_sides and engine_degrees == ref_degrees
    return {
        "text": text,
        "engine_codes": engine_codes,
        "engine_sides": engine_sides,
        "engine_degrees": engine_degrees,
        "reference_codes": ref_codes,
        "reference_sides": ref_sides,
        "reference_degrees": ref_degrees,
        "engine_equals_reference": same,
        "observations": observations,
    }


def _detail_line(call: dict[str, Any], kind: str) -> str:
    """One call's side or degree and where it came from."""
    if not call.get(kind):
        return "not stated"
    words = call.get(kind + "_words") or []
    if words:
        return call[kind] + " (" + ", ".join(f'"{w["text"]}" {w["rule"]}' for w in words) + ")"
    src = call.get(kind + "_from")
    if src:
        return f'{call[kind]} (from the finding before it, "{src["text"]}")'
    return call[kind]


def format_explanation(result: dict[str, Any], observations: Collection[str] | None = None) -> str:
    """The explanation as text: observations with a code (or a call), their calls, then No Finding.

    `observations` limits it to those (``mrgfast agree --reference-labels`` shows the disagreeing ones)."""
    lines = [f"text: {result['text']!r}"]
    if not result["engine_equals_reference"]:
        lines.append(
            "WARNING: the Rust engine and the Python reference disagree on this text (a bug; please report it). "
            f"engine {result['engine_codes']} vs reference {result['reference_codes']} (sides "
            f"{result['engine_sides']} vs {result['reference_sides']}, degrees {result['engine_degrees']} vs "
            f"{result['reference_degrees']}); the trail below is the reference's"
        )
    for obs, entry in result["observations"].items():
        if obs == "No Finding" or (observations is not None and obs not in observations):
            continue
        if entry["code"] == BLANK and not entry["calls"]:
            if observations is not None:
                lines.append(f"{obs}: blank (no mention)")
            continue
        detail = "".join(f", {k} {entry[k]}" for k in ("side", "degree") if entry.get(k))
        lines.append(f"{obs}: {CODE_NAMES[entry['code']]}{detail}")
        for c in entry["calls"]:
            code = "not counted" if c["code"] is None else CODE_NAMES[c["code"]]
            lines.append(f'  sentence {c["sentence"]} "{c["sentence_text"]}"')
            lines.append(f'    {c["kind"]} "{c["text"]}" = phrase "{c["phrase"]}" ({c["rule"]}) -> {code}')
            lines.append(f"    decided by: {c['decided_by']}")
            others = [t for t in c["triggers"]]
            if len(others) > 1:
                shown = ", ".join(f'{t.get("role") or t.get("class")} "{t["text"]}" ({t["rule"]})' for t in others)
                lines.append(f"    in scope: {shown}")
            if c["note"]:
                lines.append(f"    {c['note']}")
            if "side" in c:
                lines.append(f"    side: {_detail_line(c, 'side')}; degree: {_detail_line(c, 'degree')}")
    nf = result["observations"]["No Finding"]
    if observations is None or "No Finding" in observations:
        lines.append(f"No Finding: {CODE_NAMES[nf['code']]} ({nf['why']})")
    if observations is not None:
        return "\n".join(lines)
    untouched = [
        o for o, e in result["observations"].items() if e["code"] == BLANK and not e["calls"] and o != "No Finding"
    ]
    if untouched:
        lines.append("not mentioned (blank): " + ", ".join(untouched))
    return "\n".join(lines)
