"""Pure-Python reference of mrgfast's rule-based CheXpert labeler.

It reads the same rule file as the Rust engine (``rules.txt`` next to this module, compiled into
the extension with ``include_str!``) and implements the same algorithm step by step, written for
clarity rather than speed. It is the oracle of the differential tests (Rust == Python on random and
mutated reports) and the baseline of the reward benchmark.

The algorithm, shared with ``rust/src/labeler``:

1. Tokenise (ASCII-lowercased words ``[a-z0-9]+``, commas, colons, sentence breaks, paragraph
   breaks). A period ends a sentence unless it sits between two digits ("1.5 cm") or follows an
   abbreviation ("Dr.", "vs.", "e.g."); ``? ! ;`` end sentences; a blank line is a paragraph
   break; a single newline ends a sentence only before a list item ("-", "*", "•", a digit) or a
   capitalised word ("Mild"). Everything else (other punctuation, non-ASCII, control characters)
   separates words. Runs of commas/colons collapse to the last one.
2. Match the rule phrases leftmost-longest over the token stream (Aho-Corasick in Rust); phrases
   never cross a sentence break. A section header ("INDICATION:") starts a new sentence; the
   sentence after a skip header is ignored.
3. Per sentence, per finding mention: uncertain if a "cannot exclude" trigger covers it; else
   negative if a negation trigger covers it; else uncertain if an uncertainty trigger covers it;
   else positive. A trigger covers mentions up to a window of words after it (``*_pre``) or
   before it (``*_post``), never across a contrast word (``@term``) or clause start (``@clause``).
4. Descriptors ("heart size", "lungs", "costophrenic angles") take the modifier next to them
   ("enlarged heart"), else the first modifier cluster after them, else the nearest one before;
   abnormal modifiers are scoped like mentions, normal ones give 0, borderline/stable give -1.
5. Report level: positive > uncertain > negative > blank; No Finding = 1 when the text is not
   blank and nothing but Support Devices is positive or uncertain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mrgfast.contracts import (
    BLANK,
    DEGREE_NAMES,
    DEGREE_NONE,
    NEGATIVE,
    OBSERVATIONS,
    POSITIVE,
    SIDE_BILATERAL,
    SIDE_NAMES,
    SIDE_NONE,
    SIDED_OBSERVATIONS,
    UNCERTAIN,
)

N_OBS = len(OBSERVATIONS)
NO_FINDING, SUPPORT_DEVICES = OBSERVATIONS.index("No Finding"), OBSERVATIONS.index("Support Devices")

# the words of `@side WORD` / `@degree WORD` and the codes they give (docs/ARCHITECTURE.md, contracts)
SIDE_WORDS = {name: code for code, name in enumerate(SIDE_NAMES) if code != SIDE_NONE}
DEGREE_WORDS = {name: code for code, name in enumerate(DEGREE_NAMES) if code != DEGREE_NONE}
SIDED = tuple(o in SIDED_OBSERVATIONS for o in OBSERVATIONS)
MAX_DETAIL_WINDOW = 16  # rules.rs MAX_DETAIL_WINDOW

RULES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules.txt")

TRIGGER_ROLES = (
    "neg_pre",
    "neg_post",
    "unc_pre",
    "unc_post",
    "strong_pre",
    "strong_post",
    "strong_near",
    "unc_or",
    "neg_near_post",
)
MOD_CLASSES = ("abnormal", "normal", "uncertain", "stable")
# every @ section of the format (``@param`` is read on its own line), as the Rust parser knows them
SECTION_KINDS = (
    "abbrev",
    "mention",
    "desc",
    "mod",
    "trigger",
    "term",
    "clause",
    "pseudo",
    "ignore",
    "header",
    "skipword",
    "connect",
    "copula",
    "conj",
    "side",
    "degree",
    "locus",
    "join",
    "assoc",
    "detailstop",
    "unsided",
)
PARAMS = (
    "pre_window",
    "post_window",
    "or_window",
    "or_window_before",
    "near_window",
    "desc_window",
    "prenominal_skip",
    "detail_window",
)

# token kinds
WORD, COMMA, COLON, BREAK, PARA = 0, 1, 2, 3, 4
_PUNCT_TEXT = {COMMA: ",", COLON: ":", BREAK: "|", PARA: "#"}

# Unicode White_Space (Rust's char::is_whitespace): a report made only of these is empty.
WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_NEWLINE_SPACE = frozenset(" \t\r\n\x0b\x0c")


class Entry:
    """One rule phrase and everything it means (roles add up over sections)."""

    __slots__ = (
        "assoc",
        "clause",
        "conj",
        "connect",
        "copula",
        "degree",
        "desc_group",
        "desc_targets",
        "detail_stop",
        "header",
        "join",
        "lines",
        "locus",
        "mentions",
        "mods",
        "paired",
        "prefix",
        "side",
        "skip",
        "term",
        "tokens",
        "triggers",
        "unsided",
    )

    def __init__(self, tokens: tuple[str, ...], prefix: bool):
        self.tokens = tokens
        self.prefix = prefix
        self.mentions: list[tuple[int, bool, bool, bool]] = []  # (observation, u flag, p flag, h flag)
        self.desc_group: str | None = None
        self.desc_targets: list[tuple[int, bool, bool, bool]] = []
        self.mods: dict[str, str] = {}  # group (or "*") -> class
        self.triggers: set = set()
        self.term = False
        self.clause = False
        self.header: str | None = None  # "keep" | "skip"
        self.skip = False
        self.connect = False
        self.copula = False
        self.conj = False
        self.side = SIDE_NONE  # side bits this phrase states (left 1, right 2, bilateral 3)
        self.paired = False  # names both of a paired structure: bilateral unless a side is stated
        self.degree = DEGREE_NONE  # ordinal degree this phrase states
        self.locus = False
        self.join = False
        self.assoc = False
        self.detail_stop = False
        self.unsided = False
        self.lines: list[tuple[int, str]] = []  # (rules.txt line, section) of every role: for --explain

    def mod_class(self, group: str) -> str | None:
        c = self.mods.get(group)
        return c if c is not None else self.mods.get("*")

    @property
    def pattern_len(self) -> int:
        """Length of this phrase's Aho-Corasick pattern (\\x01tok\\x02 per token, no \\x02 after a prefix)."""
        n = sum(len(t) + 2 for t in self.tokens)
        return n - 1 if self.prefix else n


class Rules:
    def __init__(self, text: str):
        self.entries: dict[tuple[tuple[str, ...], bool], Entry] = {}
        self.params: dict[str, int] = {}
        self.abbrev: set = set()
        section: list[str] | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                section = line[1:].split(None, 1) or [""]
                if section[0] not in SECTION_KINDS and section[0] != "param":
                    raise ValueError(f"rules.txt:{lineno}: unknown section @{section[0]}")
                if section[0] == "param":
                    name, value = section[1].split()
                    if name not in PARAMS:
                        raise ValueError(f"rules.txt:{lineno}: unknown param {name}")
                    self.params[name] = int(value)
                    section = None
                continue
            if section is None:
                raise ValueError(f"rules.txt:{lineno}: phrase outside a section")
            self._add(section, line, lineno)
        missing = [p for p in PARAMS if p not in self.params]
        if missing:
            raise ValueError(f"rules.txt: missing params {missing}")
        if not 1 <= self.params["detail_window"] <= MAX_DETAIL_WINDOW:
            raise ValueError(f"rules.txt: detail_window must be between 1 and {MAX_DETAIL_WINDOW}")
        for e in self.entries.values():
            if (e.term or e.clause) and e.triggers:
                raise ValueError(f"rules.txt: {' '.join(e.tokens)!r} is both a terminator and a trigger")
        # index for the reference matcher: exact first token -> entries; single-token prefixes
        self.by_first: dict[str, list[Entry]] = {}
        self.prefixes: list[Entry] = []
        for e in self.entries.values():
            if e.prefix and len(e.tokens) == 1:
                self.prefixes.append(e)
            else:
                self.by_first.setdefault(e.tokens[0], []).append(e)

    def _entry(self, phrase: str, lineno: int) -> Entry:
        toks = phrase.split(" ")
        prefix = toks[-1].endswith("*")
        if prefix:
            toks[-1] = toks[-1][:-1]
        for t in toks:
            ok = t in (",", ":") or (t != "" and all(("a" <= ch <= "z") or ("0" <= ch <= "9") for ch in t))
            if not ok:
                raise ValueError(f"rules.txt:{lineno}: bad token {t!r} in {phrase!r}")
        if prefix and toks[-1] in (",", ":"):
            raise ValueError(f"rules.txt:{lineno}: prefix on punctuation")
        key = (tuple(toks), prefix)
        if key not in self.entries:
            self.entries[key] = Entry(tuple(toks), prefix)
        return self.entries[key]

    @staticmethod
    def _targets(specs: Sequence[str], lineno: int) -> list[tuple[int, bool, bool, bool]]:
        out = []
        for spec in specs:
            spec = spec.strip()
            name, _, flags = spec.partition(":")
            if name not in OBSERVATIONS or name == "No Finding":
                raise ValueError(f"rules.txt:{lineno}: unknown observation {name!r}")
            if set(flags) - set("uph"):
                raise ValueError(f"rules.txt:{lineno}: unknown flags {flags!r}")
            out.append((OBSERVATIONS.index(name), "u" in flags, "p" in flags, "h" in flags))
        return out

    def _add(self, section: list[str], phrase: str, lineno: int) -> None:
        kind = section[0]
        arg = section[1] if len(section) > 1 else ""
        if kind == "abbrev":
            if not all(("a" <= ch <= "z") or ("0" <= ch <= "9") for ch in phrase):
                raise ValueError(f"rules.txt:{lineno}: an abbreviation is one word")
            self.abbrev.add(phrase)
            return
        e = self._entry(phrase, lineno)
        e.lines.append((lineno, "@" + kind + (" " + arg if arg else "")))
        if kind == "mention":
            e.mentions.extend(self._targets(arg.split(";"), lineno))
        elif kind == "desc":
            parts = arg.split(";")
            group = parts[0].strip()
            if e.desc_group is not None and e.desc_group != group:
                raise ValueError(f"rules.txt:{lineno}: {phrase!r} is a descriptor of two groups")
            e.desc_group = group
            e.desc_targets.extend(self._targets(parts[1:], lineno))
        elif kind == "mod":
            for pair in arg.split():
                group, _, cls = pair.partition("=")
                if cls not in MOD_CLASSES:
                    raise ValueError(f"rules.txt:{lineno}: unknown modifier class {cls!r}")
                if e.mods.get(group, cls) != cls:
                    raise ValueError(f"rules.txt:{lineno}: {phrase!r} has two classes for {group}")
                e.mods[group] = cls
        elif kind == "trigger":
            for role in arg.split():
                if role not in TRIGGER_ROLES:
                    raise ValueError(f"rules.txt:{lineno}: unknown trigger role {role!r}")
                e.triggers.add(role)
        elif kind == "term":
            e.term = True
        elif kind == "clause":
            e.clause = True
        elif kind in ("pseudo", "ignore"):
            pass
        elif kind == "header":
            if arg not in ("keep", "skip"):
                raise ValueError(f"rules.txt:{lineno}: header must be keep or skip")
            e.header = arg
        elif kind == "skipword":
            e.skip = True
        elif kind == "connect":
            e.connect = True
        elif kind == "copula":
            e.copula = True
        elif kind == "conj":
            e.conj = True
        elif kind == "side":
            if arg not in SIDE_WORDS and arg != "paired":
                raise ValueError(f"rules.txt:{lineno}: @side must be one of {[*SIDE_WORDS, 'paired']}, got {arg!r}")
            if arg == "paired":
                e.paired = True
            elif e.side not in (SIDE_NONE, SIDE_WORDS[arg]):
                raise ValueError(f"rules.txt:{lineno}: {phrase!r} has two sides")
            else:
                e.side = SIDE_WORDS[arg]
            if e.paired and e.side:
                raise ValueError(f"rules.txt:{lineno}: {phrase!r} has two sides")
        elif kind == "degree":
            if arg not in DEGREE_WORDS:
                raise ValueError(f"rules.txt:{lineno}: @degree must be one of {list(DEGREE_WORDS)}, got {arg!r}")
            degree = DEGREE_WORDS[arg]
            if e.degree not in (DEGREE_NONE, degree):
                raise ValueError(f"rules.txt:{lineno}: {phrase!r} has two degrees")
            e.degree = degree
        elif kind == "locus":
            e.locus = True
        elif kind == "join":
            e.join = True
        elif kind == "assoc":
            e.assoc = True
        elif kind == "detailstop":
            e.detail_stop = True
        elif kind == "unsided":
            e.unsided = True
        else:
            raise ValueError(f"rules.txt:{lineno}: unknown section @{kind}")


_RULES: Rules | None = None


def rules() -> Rules:
    global _RULES
    if _RULES is None:
        with open(RULES_PATH, encoding="utf-8") as f:
            _RULES = Rules(f.read())
    return _RULES


# ------------------------------------------------------------------------------------ tokenising
def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _is_alnum(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def tokenize(text: str, abbrev: set) -> list[tuple[int, str]]:
    toks: list[tuple[int, str]] = []

    def emit(kind: int, word: str = "") -> None:
        if kind in (COMMA, COLON):
            if toks and toks[-1][0] in (COMMA, COLON):
                toks[-1] = (kind, _PUNCT_TEXT[kind])
                return
            toks.append((kind, _PUNCT_TEXT[kind]))
        elif kind == BREAK:
            if not toks or toks[-1][0] in (BREAK, PARA):
                return
            toks.append((BREAK, "|"))
        elif kind == PARA:
            if not toks or toks[-1][0] == PARA:
                return
            if toks[-1][0] == BREAK:
                toks[-1] = (PARA, "#")
                return
            toks.append((PARA, "#"))
        else:
            toks.append((WORD, word))

    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if _is_alnum(ch):
            j = i + 1
            while j < n and _is_alnum(text[j]):
                j += 1
            emit(WORD, text[i:j].lower())
            i = j
            continue
        if ch == ".":
            prev = text[i - 1] if i > 0 else ""
            nxt = text[i + 1] if i + 1 < n else ""
            if (_is_digit(prev) and _is_digit(nxt)) or (prev and _is_alnum(prev) and toks[-1][1] in abbrev):
                pass
            else:
                emit(BREAK)
        elif ch in "?!;":
            emit(BREAK)
        elif ch == ",":
            emit(COMMA)
        elif ch == ":":
            prev = text[i - 1] if i > 0 else ""
            nxt = text[i + 1] if i + 1 < n else ""
            if not (_is_digit(prev) and _is_digit(nxt)):
                emit(COLON)
        elif ch == "\n":
            j = i + 1
            newlines = 1
            while j < n and text[j] in _NEWLINE_SPACE:
                if text[j] == "\n":
                    newlines += 1
                j += 1
            if newlines >= 2:
                emit(PARA)
            elif j < n:
                c = text[j]
                if c in "-*\u2022" or _is_digit(c) or ("A" <= c <= "Z" and j + 1 < n and "a" <= text[j + 1] <= "z"):
                    emit(BREAK)
            i = j
            continue
        i += 1
    return toks


# ------------------------------------------------------------------------------------ matching
def match_at(r: Rules, toks: list[tuple[int, str]], i: int) -> tuple[Entry, int] | None:
    """The longest rule phrase starting at token i (Aho-Corasick leftmost-longest semantics)."""
    first = toks[i][1]
    best: Entry | None = None
    cands = list(r.by_first.get(first, ()))
    if toks[i][0] == WORD:
        cands.extend(e for e in r.prefixes if first.startswith(e.tokens[0]))
    for e in cands:
        k = len(e.tokens)
        if i + k > len(toks):
            continue
        ok = True
        for m in range(k):
            tk = toks[i + m][1]
            want = e.tokens[m]
            if m == k - 1 and e.prefix:
                if toks[i + m][0] != WORD or not tk.startswith(want):
                    ok = False
                    break
            elif tk != want:
                ok = False
                break
        if ok and (best is None or e.pattern_len > best.pattern_len):
            best = e
    return None if best is None else (best, len(best.tokens))


# units: ("p",) punctuation, ("w",) plain word, ("e", entry)
def sentences(r: Rules, text: str, texts: list | None = None) -> list[list]:
    """The sentences' units: ("e", Entry) for a matched phrase, ("w", None) a word, ("p", None) a comma
    or colon. ``texts`` (for --explain) receives, per sentence, the matched text of every unit."""
    toks = tokenize(text, r.abbrev)
    out: list[list] = []
    units: list = []
    words: list[str] = []

    def close() -> None:
        if units and not drop:
            out.append(units)
            if texts is not None:
                texts.append(words)

    drop = False
    i, n = 0, len(toks)
    while i < n:
        m = match_at(r, toks, i)
        if m is not None:
            e, k = m
            if e.header is not None:
                close()
                units, words = [], []
                drop = e.header == "skip"
                i += k
                continue
            units.append(("e", e))
            words.append(" ".join(t[1] for t in toks[i : i + k]))
            i += k
            continue
        kind = toks[i][0]
        if kind in (BREAK, PARA):
            close()
            units, words = [], []
            drop = False
        elif kind == WORD:
            units.append(("w", None))
            words.append(toks[i][1])
        else:
            units.append(("p", None))
            words.append(toks[i][1])
        i += 1
    close()
    return out


# ------------------------------------------------------------------------------------ scoping
def _entry_of(u) -> Entry | None:
    return u[1] if u[0] == "e" else None


def code_at(r: Rules, U: list, p: int, trace: list | None = None) -> int:
    """Code of the mention (or abnormal modifier) at unit p from the triggers around it.

    ``trace`` (for ``mrgfast label --explain``) receives ``(role, unit index)`` for every trigger that fires."""
    P = r.params
    pre_w, post_w, near_w = P["pre_window"], P["post_window"], P["near_window"]
    or_w, or_wb = P["or_window"], P["or_window_before"]
    max_w = max(pre_w, post_w, or_w, or_wb, near_w)
    strong = neg = unc = False
    # triggers before p
    d = 0
    seen_mention = False
    subj = -1  # units since a copula between here and p (-1: none): "and <subject> is" starts a clause
    q = p - 1
    while q >= 0 and d <= max_w:
        u = U[q]
        if u[0] == "p":
            if 1 <= subj <= near_w:
                break  # "no effusion, heart is enlarged"
            q -= 1
            continue
        e = _entry_of(u)
        if e is not None and e.conj and 1 <= subj <= near_w:
            break
        if subj >= 0:
            subj = subj + 1 if subj < near_w else -1
        if e is not None and e.copula:
            subj = 0
        if e is not None:
            if e.term or e.clause:
                break
            t = e.triggers
            if t:
                fired = []
                if "neg_pre" in t and d <= pre_w:
                    neg = True
                    fired.append("neg_pre")
                if "unc_pre" in t and d <= pre_w:
                    unc = True
                    fired.append("unc_pre")
                if "strong_pre" in t and d <= pre_w:
                    strong = True
                    fired.append("strong_pre")
                if "strong_near" in t and d <= near_w and not seen_mention:
                    strong = True
                    fired.append("strong_near")
                if "unc_or" in t and d <= or_w and not seen_mention:
                    unc = True
                    fired.append("unc_or")
                if trace is not None:
                    trace.extend((role, q) for role in fired)
            if e.mentions:
                seen_mention = True
        d += 1
        q -= 1
    # triggers after p
    d = 0
    seen_mention = False
    pe = _entry_of(U[p])
    predicate = pe is not None and not pe.mentions  # a modifier is its own predicate
    comma = False  # a comma passed with no list conjunction after it
    # a bare list item ("atelectasis, effusion, consolidation not seen") crosses commas
    bare = (p == 0 or U[p - 1][0] == "p") and p + 1 < len(U) and U[p + 1][0] == "p"
    q = p + 1
    while q < len(U) and d <= max_w:
        u = U[q]
        if u[0] == "p":
            comma = not bare
            q += 1
            continue
        e = _entry_of(u)
        if e is not None:
            if e.term or e.clause:
                break
            if e.conj and predicate:
                break
            if e.connect:
                comma = False
            if e.copula:
                predicate = True
            t = e.triggers
            if t and comma and t & _POST_ROLES:
                break
            if t and "unc_pre" in t and "unc_post" in t and _mention_follows(r, U, q, near_w):
                t = t - {"unc_pre", "unc_post"}
            if t:
                fired = []
                if "neg_post" in t and d <= post_w:
                    neg = True
                    fired.append("neg_post")
                if "unc_post" in t and d <= post_w:
                    unc = True
                    fired.append("unc_post")
                if "strong_post" in t and d <= post_w:
                    strong = True
                    fired.append("strong_post")
                if "unc_or" in t and d <= or_wb and not seen_mention:
                    unc = True
                    fired.append("unc_or")
                if "neg_near_post" in t and d <= near_w and not seen_mention:
                    neg = True
                    fired.append("neg_near_post")
                if trace is not None:
                    trace.extend((role, q) for role in fired)
            if e.mentions:
                seen_mention = True
        d += 1
        q += 1
    if strong:
        return UNCERTAIN
    if neg:
        return NEGATIVE
    if unc:
        return UNCERTAIN
    return POSITIVE


_POST_ROLES = frozenset(("neg_post", "unc_post", "strong_post"))


def _mention_follows(r: Rules, U: list, q: int, window: int) -> bool:
    """A finding mention within `window` words after the trigger at q ("X is likely Y": the
    two-way trigger then qualifies Y only)."""
    d = 0
    q += 1
    while q < len(U) and d <= window:
        u = U[q]
        if u[0] == "p":
            return False
        e = _entry_of(u)
        if e is not None:
            if e.term or e.clause:
                return False
            if e.mentions:
                return True
        d += 1
        q += 1
    return False


def prenominal(r: Rules, U: list, p: int, group: str) -> int | None:
    """Index of the modifier right before the descriptor at p (skip words allowed between)."""
    skipped = 0
    q = p - 1
    while q >= 0:
        e = _entry_of(U[q])
        if e is None:
            return None
        if e.mod_class(group) is not None:
            return q
        if e.skip and skipped < r.params["prenominal_skip"]:
            skipped += 1
            q -= 1
            continue
        return None
    return None


def _bridged(r: Rules, U: list, q: int, group: str) -> bool:
    """The contrast word at q is followed by a modifier of `group` (one skip word allowed between),
    itself not before a descriptor."""
    q += 1
    if q < len(U):
        e = _entry_of(U[q])
        if e is not None and e.skip and e.mod_class(group) is None:
            q += 1
    if q >= len(U):
        return False
    e = _entry_of(U[q])
    if e is None or e.mod_class(group) is None:
        return False
    if q + 1 < len(U):
        n = _entry_of(U[q + 1])
        if n is not None and n.desc_group is not None:
            return False
    return True


def desc_code(
    r: Rules, U: list, p: int, group: str, trace: list | None = None, mods_out: list | None = None
) -> int | None:
    """Code of the descriptor at p from its modifiers (None: no modifier). ``trace`` receives
    ``("mod:<class>", unit index)`` per modifier used and the triggers scoping abnormal ones;
    ``mods_out`` the unit indices of the modifiers used (their scopes hold the reading's details)."""
    win = r.params["desc_window"]
    mods: list[int] = []
    q0 = prenominal(r, U, p, group)
    if q0 is not None:
        mods.append(q0)
    else:
        # forward: the first modifier cluster after the descriptor
        found = False
        d = 0
        q = p + 1
        while q < len(U) and d <= win:
            u = U[q]
            e = _entry_of(u)
            if e is not None and e.term and not found and _bridged(r, U, q, group):
                e = None  # "lungs are hyperinflated but clear": the modifier right after applies
            elif e is not None and (e.term or e.mentions):
                break
            c = e.mod_class(group) if e is not None else None
            if c is not None:
                mods.append(q)
                found = True
            elif found:
                if e is None or not e.connect:
                    break
            elif e is not None and e.desc_group is not None and prenominal(r, U, q, e.desc_group) is not None:
                break
            if u[0] != "p":
                d += 1
            q += 1
        if not found:
            # backward fallback: the nearest modifier before it
            d = 0
            q = p - 1
            while q >= 0 and d <= win:
                u = U[q]
                e = _entry_of(u)
                if e is not None:
                    if e.term or e.mentions:
                        break
                    if e.mod_class(group) is not None:
                        mods.append(q)
                        break
                if u[0] != "p":
                    d += 1
                q -= 1
    if not mods:
        return None
    if mods_out is not None:
        mods_out.extend(mods)
    classes = [U[q][1].mod_class(group) for q in mods]
    if trace is not None:
        trace.extend((f"mod:{c}", q) for q, c in zip(mods, classes))
    abnormal = [code_at(r, U, q, trace) for q, c in zip(mods, classes) if c == "abnormal"]
    if abnormal:
        code = BLANK
        for c in abnormal:
            code = aggregate(code, c)
        return code
    if "normal" in classes:
        return NEGATIVE
    if "uncertain" in classes or "stable" in classes:
        return UNCERTAIN
    return None


_PRIORITY = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1}


def aggregate(current: int, new: int) -> int:
    return new if _PRIORITY.get(new, 0) > _PRIORITY.get(current, 0) else current


def _apply(labels: list[int], targets, code: int, head: bool) -> None:
    """Aggregate one reading's ``code`` into each target after its flags (``head``: no finding mention came
    before this one in its sentence, for flag h)."""
    for obs, u_flag, p_flag, h_flag in targets:
        c = code
        if (p_flag and c == NEGATIVE) or (h_flag and not head):
            continue
        if u_flag and c == POSITIVE:
            c = UNCERTAIN
        labels[obs] = aggregate(labels[obs], c)


# ------------------------------------------------------------------------------------ details
def _detail(U: list, q: int) -> tuple[int, bool, int]:
    """(side, paired, degree) the unit at q states; a side word before an @unsided structure
    ("right atrium") states no side."""
    e = _entry_of(U[q])
    if e is None:
        return SIDE_NONE, False, DEGREE_NONE
    side, paired = e.side, e.paired
    if (side or paired) and q + 1 < len(U):
        n = _entry_of(U[q + 1])
        if n is not None and n.unsided:
            side, paired = SIDE_NONE, False
    return side, paired, e.degree


def _is_join(u) -> bool:
    e = _entry_of(u)
    return e is not None and e.join


def detail_scope(r: Rules, U: list, p: int) -> list[int]:
    """Unit indices of the side and degree words that belong to the phrase at p (its own phrase
    first): the words before it up to a sentence break, another finding, a contrast word, a
    clause start, a linking verb or a detail stop (a locus preposition ends the walk and drops
    what lies beyond a "join" word: "left apex and right chest tube" gives the tube right), and
    the words after it up to a sentence break (a comma only when a side or degree word follows:
    "effusions, left greater than right"), a contrast word or a detail stop; words after it that
    premodify a later finding ("left effusion and right pneumothorax") are not its own.
    Both walks cover at most ``detail_window`` words."""
    W = r.params["detail_window"]
    out: list[int] = []
    if any(_detail(U, p)):
        out.append(p)
    # backward; what lies beyond the first join or comma crossed is dropped when the walk ends at a
    # locus ("left apex and right chest tube": the apex's), beyond a comma also at another finding
    # ("left effusion, small ...")
    back: list[int] = []
    mark: int | None = None
    comma = False  # the mark is a comma
    np_only = True  # only skip words ("the", "a") between the unit read and the mention
    d = 0
    q = p - 1
    while q >= 0 and d < W:
        u = U[q]
        if u[0] == "p":
            # a comma between coordinated adjectives ("mild, patchy opacity") is crossed
            if q > 0 and any(_detail(U, q - 1)):
                if mark is None:
                    mark, comma = len(back), True
                np_only = False
                q -= 1
                continue
            break
        e = _entry_of(u)
        if e is not None:
            if (e.mentions and comma) or (e.locus and not np_only):
                if mark is not None:
                    del back[mark:]
                break
            if e.mentions:
                break
            if e.term or e.clause or e.copula or e.detail_stop:
                break
            if e.join and mark is None:
                mark = len(back)
            if any(_detail(U, q)):
                back.append(q)
        if e is None or not e.skip or e.join:
            np_only = np_only and e is not None and e.locus
        d += 1
        q -= 1
    # forward; words found since the last break are pending: a later finding they premodify takes
    # them. Past the window nothing is collected, but a pending chain is followed (up to another
    # window) to see whether it ends in a finding.
    fwd: list[int] = []
    pending = 0
    d = 0
    q = p + 1
    while q < len(U):
        if d >= W and (pending == len(fwd) or d >= 2 * W):
            break
        u = U[q]
        if u[0] == "p":
            if d < W and q + 1 < len(U) and any(_detail(U, q + 1)):
                pending = len(fwd)
                q += 1
                continue
            break
        e = _entry_of(u)
        if e is not None:
            if e.mentions:
                if pending < len(fwd) or not (q == p + 1 or _is_join(U[q - 1])):
                    del fwd[pending:]
                    break
                # a finding right after this one ("masslike opacification") or coordinated with it
                # ("atelectasis or scarring in the left lower lobe") shares what follows: read on
                d += 1
                q += 1
                continue
            if e.term or e.detail_stop:
                break
            if d < W and any(_detail(U, q)):
                fwd.append(q)
            if e.triggers or e.locus or e.join or e.copula or e.clause or e.connect or e.conj:
                pending = len(fwd)
        d += 1
        q += 1
    return out + back + fwd


def details_of(
    r: Rules, U: list, positions: Sequence[int], mods: Sequence[int] = (), trace: list | None = None
) -> tuple[int, int]:
    """(side bits, degree) of a reading from the detail scopes of ``positions`` (a mention; or a
    descriptor) and of its modifiers ``mods``, which state the finding itself ("the heart is large")
    and so never its degree: sides OR-ed ("left ... and right" = bilateral), a paired word ("basilar",
    "effusions") bilateral only when no side word is found, the highest degree ("small to moderate" is
    moderate). ``trace`` receives ``("side"|"degree", unit index)`` per word used."""
    side = SIDE_NONE
    degree = DEGREE_NONE
    paired: list[int] = []
    seen: set[int] = set(mods)
    for p in (*positions, *mods):
        for q in detail_scope(r, U, p):
            if q in seen:
                continue
            seen.add(q)
            s, pair, g = _detail(U, q)
            if s:
                side |= s
                if trace is not None:
                    trace.append(("side", q))
            if pair:
                paired.append(q)
            if g:
                degree = max(degree, g)
                if trace is not None:
                    trace.append(("degree", q))
    if side == SIDE_NONE and paired:
        side = SIDE_BILATERAL
        if trace is not None:
            trace.extend(("side", q) for q in paired)
    return side, degree


def _inherits(U: list, q0: int, p: int, window: int) -> tuple[bool, bool]:
    """Whether the mention at p may take the (side, degree) of the finding at q0 before it in the
    sentence: the side when no contrast word or detail stop (a new subject) lies between, at most
    ``2 * window`` words ("opacity in the left base, likely atelectasis"; "left lower lobe atelectasis,
    infiltrate and effusion"); the degree too unless an @assoc word makes it a finding of its own
    ("large right effusion with adjacent atelectasis")."""
    d = 0
    assoc = False
    for q in range(q0 + 1, p):
        u = U[q]
        if u[0] == "p":
            continue
        e = _entry_of(u)
        if e is not None:
            if e.term or e.detail_stop or e.mentions:
                return False, False
            assoc = assoc or e.assoc
        d += 1
    if d > 2 * window:
        return False, False
    return True, not assoc


def _apply_details(labels, sides, degrees, targets, code: int, side: int, degree: int, head: bool) -> None:
    """`_apply` that also keeps the details of the mentions that decide each report-level code: a
    mention of higher priority replaces them, one of equal priority adds its sides and degree."""
    for obs, u_flag, p_flag, h_flag in targets:
        c = code
        if (p_flag and c == NEGATIVE) or (h_flag and not head):
            continue
        if u_flag and c == POSITIVE:
            c = UNCERTAIN
        old = labels[obs]
        s = side if SIDED[obs] else SIDE_NONE
        if _PRIORITY.get(c, 0) > _PRIORITY.get(old, 0):
            labels[obs], sides[obs], degrees[obs] = c, s, degree
        elif c == old:
            sides[obs] |= s
            degrees[obs] = max(degrees[obs], degree)


def label_report_details(text: str) -> tuple[list[int], list[int], list[int]]:
    """The 14 codes of one report with each observation's side and degree codes (0 unless the
    code is positive or uncertain; see docs/ARCHITECTURE.md, "Details")."""
    return _label(text, True)


def label_report(text: str) -> list[int]:
    """The 14 codes of one report (BLANK = -128 when not mentioned)."""
    return _label(text, False)[0]


def _label(text: str, details: bool) -> tuple[list[int], list[int], list[int]]:
    r = rules()
    labels = [BLANK] * N_OBS
    sides = [SIDE_NONE] * N_OBS
    degrees = [DEGREE_NONE] * N_OBS
    if all(ch in WHITESPACE for ch in text):
        return labels, sides, degrees
    W = r.params["detail_window"]
    for U in sentences(r, text):
        # the last mention of a sided finding coded present, and its side (a mention that states none
        # may take it: "left basilar opacity, likely atelectasis")
        prev: tuple[int, int] | None = None
        head = True  # no finding mention before this unit in the sentence (flag h)
        for p, u in enumerate(U):
            e = _entry_of(u)
            if e is None:
                continue
            first = head
            if e.mentions:
                head = False
                c = code_at(r, U, p)
                if details and c != NEGATIVE:
                    side, degree = details_of(r, U, (p,))
                    if prev is not None:
                        take_side, take_degree = _inherits(U, prev[0], p, W)
                        if take_side and side == SIDE_NONE:
                            side = prev[1]
                        if take_degree and degree == DEGREE_NONE:
                            degree = prev[2]
                    _apply_details(labels, sides, degrees, e.mentions, c, side, degree, first)
                    prev = (p, side, degree) if any(SIDED[t[0]] for t in e.mentions) else None
                else:
                    _apply(labels, e.mentions, c, first)
                    prev = None
            if e.desc_group is not None:
                mods: list[int] = []
                c = desc_code(r, U, p, e.desc_group, mods_out=mods)
                if c is not None:
                    if details and c != NEGATIVE:
                        side, degree = details_of(r, U, (p,), mods)
                        _apply_details(labels, sides, degrees, e.desc_targets, c, side, degree, first)
                    else:
                        _apply(labels, e.desc_targets, c, first)
    finding = any(labels[i] in (POSITIVE, UNCERTAIN) for i in range(1, N_OBS) if i != SUPPORT_DEVICES)
    if not finding:
        labels[NO_FINDING] = POSITIVE
    for i in range(N_OBS):
        if labels[i] not in (POSITIVE, UNCERTAIN):
            sides[i], degrees[i] = SIDE_NONE, DEGREE_NONE
    return labels, sides, degrees
