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

pub mod automaton;
pub mod rules;
pub mod scope;
pub mod sentences;

use crate::observations::{
    aggregate, Labels, BLANK, NEGATIVE, NO_FINDING, N_OBS, POSITIVE, SUPPORT_DEVICES, UNCERTAIN,
};
use rules::{rules, Rules, Target, HEADER_NONE, HEADER_SKIP, NONE};
use scope::{code_at, desc_code, Unit};
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

/// Label one report: one code per observation, report-level aggregation applied.
pub fn label_report(text: &str) -> Labels {
    let mut labels = [BLANK; N_OBS];
    if text.chars().all(char::is_whitespace) {
        return labels;
    }
    let r = rules();
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => label_into(r, text, &mut s, &mut labels),
        // re-entrant call on this thread (cannot happen today): use fresh buffers
        Err(_) => label_into(r, text, &mut Scratch::default(), &mut labels),
    });
    let finding =
        (1..N_OBS).any(|i| i != SUPPORT_DEVICES && matches!(labels[i], POSITIVE | UNCERTAIN));
    if !finding {
        labels[NO_FINDING] = POSITIVE;
    }
    labels
}

fn label_into(r: &Rules, text: &str, s: &mut Scratch, labels: &mut Labels) {
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
                        sentence(r, units, labels);
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
                    sentence(r, units, labels);
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
        sentence(r, units, labels);
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

#[inline]
fn apply(labels: &mut Labels, targets: &[Target], code: i8) {
    for t in targets {
        let mut c = code;
        if t.p && c == NEGATIVE {
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
    for (p, &u) in units.iter().enumerate() {
        let Unit::Entry(id) = u else { continue };
        let e = &r.entries[id as usize];
        if !e.mentions.is_empty() {
            let code = if any_trigger {
                code_at(r, units, p)
            } else {
                POSITIVE
            };
            apply(labels, &e.mentions, code);
        }
        if e.is_desc() {
            if let Some(c) = desc_code(r, units, p, e.desc_group) {
                apply(labels, &e.desc_targets, c);
            }
        }
    }
}

#[cfg(test)]
mod tests;
