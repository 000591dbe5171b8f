//! Rule-based CheXpert labeler: 14 codes per report (1 / 0 / -1 / blank).
//!
//! The rules (mention lexicons, negation / uncertainty / pseudo-negation triggers, terminators,
//! "normal" statements, section headers, abbreviations) live in ONE data file,
//! `mrgfast/reference/rules.txt`, compiled in here and read by the pure-Python reference
//! (`mrgfast/reference/labeler.py`), which implements the same algorithm and is the oracle of the
//! differential tests. Pipeline:
//!
//! 1. `sentences`: tokenise + split sentences (abbreviations, decimals, lists, blank lines);
//! 2. one leftmost-longest Aho-Corasick pass of all rule phrases over the token stream;
//! 3. per sentence, `scope`: each finding mention is uncertain ("cannot exclude"), negated,
//!    uncertain or positive by the triggers whose windows cover it; descriptors ("heart size",
//!    "lungs") take the code of their modifier ("enlarged", "normal", "clear", "stable");
//! 4. report level: positive > uncertain > negative > blank, then the No Finding rule.
//!
//! With details (`label_report_details`), step 3 also reads each present reading's side and
//! degree (`details`), and step 4 keeps those of the mentions that decide each code.

pub mod automaton;
pub mod details;
pub mod rules;
pub mod scope;
pub mod sentences;

use crate::observations::{
    aggregate, priority, Labels, BLANK, DEGREE_NONE, NEGATIVE, NO_FINDING, N_OBS, POSITIVE, SIDED,
    SIDE_NONE, SUPPORT_DEVICES, UNCERTAIN,
};
use rules::{rules, Rules, Target, HEADER_NONE, HEADER_SKIP, NONE};
use scope::{code_at, desc_code, desc_code_mods, Mods, Unit};
use sentences::{tokenize, Tokens, BREAK, PARA, WORD};
use std::cell::RefCell;

/// SHA-256 (hex) of the rule file compiled in, computed by `build.rs` over the same bytes.
pub const RULES_SHA256: &str = env!("MRGFAST_RULES_SHA256");

#[derive(Default)]
struct Scratch {
    tokens: Tokens,
    units: Vec<Unit>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One report's codes with the side and degree of each observation (`observations::SIDE_*`,
/// `DEGREE_*`; both 0 unless the code is positive or uncertain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Details {
    pub labels: Labels,
    pub sides: [i8; N_OBS],
    pub degrees: [i8; N_OBS],
}

impl Default for Details {
    fn default() -> Self {
        Details {
            labels: [BLANK; N_OBS],
            sides: [SIDE_NONE; N_OBS],
            degrees: [DEGREE_NONE; N_OBS],
        }
    }
}

/// Label one report: one code per observation, report-level aggregation applied.
pub fn label_report(text: &str) -> Labels {
    label_with::<false>(text).labels
}

/// Label one report with the details (side and degree) of each finding.
pub fn label_report_details(text: &str) -> Details {
    label_with::<true>(text)
}

fn label_with<const D: bool>(text: &str) -> Details {
    let mut out = Details::default();
    if text.chars().all(char::is_whitespace) {
        return out;
    }
    let r = rules();
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => label_into::<D>(r, text, &mut s, &mut out),
        // re-entrant call on this thread (cannot happen today): use fresh buffers
        Err(_) => label_into::<D>(r, text, &mut Scratch::default(), &mut out),
    });
    let labels = &mut out.labels;
    let finding =
        (1..N_OBS).any(|i| i != SUPPORT_DEVICES && matches!(labels[i], POSITIVE | UNCERTAIN));
    if !finding {
        labels[NO_FINDING] = POSITIVE;
    }
    if D {
        for i in 0..N_OBS {
            if !matches!(out.labels[i], POSITIVE | UNCERTAIN) {
                out.sides[i] = SIDE_NONE;
                out.degrees[i] = DEGREE_NONE;
            }
        }
    }
    out
}

#[inline]
fn flush<const D: bool>(r: &Rules, units: &[Unit], out: &mut Details) {
    if D {
        sentence_details(r, units, out);
    } else {
        sentence(r, units, &mut out.labels);
    }
}

fn label_into<const D: bool>(r: &Rules, text: &str, s: &mut Scratch, out: &mut Details) {
    let Scratch { tokens, units } = s;
    tokenize(text, r, tokens);
    units.clear();
    let toks = &tokens.toks;
    let mut drop = false;
    let mut ti = 0usize;
    while ti < toks.len() {
        {
            let id = match_at(r, tokens, ti);
            if id != NONE {
                let e = &r.entries[id as usize];
                ti += e.tokens.len();
                if e.header != HEADER_NONE {
                    if !units.is_empty() && !drop {
                        flush::<D>(r, units, out);
                    }
                    units.clear();
                    drop = e.header == HEADER_SKIP;
                } else {
                    units.push(Unit::Entry(id));
                }
                continue;
            }
        }
        match toks[ti].kind {
            BREAK | PARA => {
                if !units.is_empty() && !drop {
                    flush::<D>(r, units, out);
                }
                units.clear();
                drop = false;
            }
            WORD => units.push(Unit::Word),
            _ => units.push(Unit::Punct),
        }
        ti += 1;
    }
    if !units.is_empty() && !drop {
        flush::<D>(r, units, out);
    }
}

/// The rule phrase matched at token `i`: the longest (in pattern bytes, `\x01tok\x02` per
/// token) of all phrases whose tokens equal the tokens from `i` — Aho-Corasick leftmost-longest.
pub fn match_at(r: &Rules, t: &Tokens, i: usize) -> u32 {
    let toks = &t.toks;
    let (mut best, mut best_len) = (NONE, 0usize);
    let mut node = 0u32;
    let mut plen = 0usize;
    let mut m = i;
    while m < toks.len() {
        let tok = &toks[m];
        if tok.kind == WORD {
            let prefixes = if node == 0 {
                let w = t.word(tok);
                &r.root_prefixes[w[0] as usize]
            } else {
                &r.nodes[node as usize].prefixes
            };
            if !prefixes.is_empty() {
                let w = t.word(tok);
                for (pref, e) in prefixes {
                    let len = plen + 1 + pref.len();
                    if len > best_len && w.starts_with(pref) {
                        best = *e;
                        best_len = len;
                    }
                }
            }
        }
        if tok.id == NONE {
            break;
        }
        let child = if node == 0 {
            r.root[tok.id as usize]
        } else {
            r.nodes[node as usize]
                .children
                .iter()
                .find(|(k, _)| *k == tok.id)
                .map(|(_, c)| *c)
                .unwrap_or(NONE)
        };
        if child == NONE {
            break;
        }
        node = child;
        plen += r.vocab_len[tok.id as usize] as usize + 2;
        let exact = r.nodes[node as usize].exact;
        if exact != NONE && plen > best_len {
            best = exact;
            best_len = plen;
        }
        m += 1;
    }
    best
}

/// Report-level aggregation of one reading's `code` into each target, after the target's flags
/// (`head`: no finding mention came before this one in its sentence, for flag `h`).
#[inline]
fn apply(labels: &mut Labels, targets: &[Target], code: i8, head: bool) {
    for t in targets {
        let mut c = code;
        if (t.p && c == NEGATIVE) || (t.h && !head) {
            continue;
        }
        if t.u && c == POSITIVE {
            c = UNCERTAIN;
        }
        let slot = &mut labels[t.obs as usize];
        *slot = aggregate(*slot, c);
    }
}

fn sentence(r: &Rules, units: &[Unit], labels: &mut Labels) {
    // without any trigger in the sentence every mention is positive: skip the scope scans
    let any_trigger = units
        .iter()
        .any(|u| matches!(u, Unit::Entry(id) if r.info[*id as usize].triggers != 0));
    // no finding mention before the unit in this sentence (flag `h`)
    let mut head = true;
    for (p, &u) in units.iter().enumerate() {
        let Unit::Entry(id) = u else { continue };
        let e = &r.entries[id as usize];
        let first = head;
        if !e.mentions.is_empty() {
            let code = if any_trigger {
                code_at(r, units, p)
            } else {
                POSITIVE
            };
            apply(labels, &e.mentions, code, first);
            head = false;
        }
        if e.is_desc() {
            if let Some(c) = desc_code(r, units, p, e.desc_group) {
                apply(labels, &e.desc_targets, c, first);
            }
        }
    }
}

/// `apply`, keeping the details of the mentions that decide each report-level code: a reading of
/// higher priority replaces them, one of equal priority adds its sides and degree.
#[inline]
fn apply_details(
    out: &mut Details,
    targets: &[Target],
    code: i8,
    side: i8,
    degree: i8,
    head: bool,
) {
    for t in targets {
        let mut c = code;
        if (t.p && c == NEGATIVE) || (t.h && !head) {
            continue;
        }
        if t.u && c == POSITIVE {
            c = UNCERTAIN;
        }
        let o = t.obs as usize;
        let old = out.labels[o];
        let s = if SIDED[o] { side } else { SIDE_NONE };
        if priority(c) > priority(old) {
            out.labels[o] = c;
            out.sides[o] = s;
            out.degrees[o] = degree;
        } else if c == old {
            out.sides[o] |= s;
            out.degrees[o] = out.degrees[o].max(degree);
        }
    }
}

/// `sentence` with details: each present reading's side and degree; a mention that states no side
/// (or degree) may take the previous finding's (`details::inherits`).
fn sentence_details(r: &Rules, units: &[Unit], out: &mut Details) {
    let any_trigger = units
        .iter()
        .any(|u| matches!(u, Unit::Entry(id) if r.info[*id as usize].triggers != 0));
    // the last mention of a sided finding coded present: (position, side, degree)
    let mut prev: Option<(usize, i8, i8)> = None;
    let mut head = true;
    for (p, &u) in units.iter().enumerate() {
        let Unit::Entry(id) = u else { continue };
        let e = &r.entries[id as usize];
        let first = head;
        if !e.mentions.is_empty() {
            head = false;
            let code = if any_trigger {
                code_at(r, units, p)
            } else {
                POSITIVE
            };
            if code != NEGATIVE {
                let (mut side, mut degree) = details::details_of(r, units, &[p], &[]);
                if let Some((q0, ps, pd)) = prev {
                    let (take_side, take_degree) = details::inherits(r, units, q0, p);
                    if take_side && side == SIDE_NONE {
                        side = ps;
                    }
                    if take_degree && degree == DEGREE_NONE {
                        degree = pd;
                    }
                }
                apply_details(out, &e.mentions, code, side, degree, first);
                prev = if e.mentions.iter().any(|t| SIDED[t.obs as usize]) {
                    Some((p, side, degree))
                } else {
                    None
                };
            } else {
                apply(&mut out.labels, &e.mentions, code, first);
                prev = None;
            }
        }
        if e.is_desc() {
            let mut mods = Mods::default();
            if let Some(c) = desc_code_mods(r, units, p, e.desc_group, &mut mods) {
                if c != NEGATIVE {
                    let (side, degree) = details::details_of(r, units, &[p], mods.as_slice());
                    apply_details(out, &e.desc_targets, c, side, degree, first);
                } else {
                    apply(&mut out.labels, &e.desc_targets, c, first);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
