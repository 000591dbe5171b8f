//! Negation / uncertainty scopes and descriptor modifiers, over one sentence's units.
//! Every scan is bounded by a word window (punctuation units never follow each other, so the
//! number of units visited is bounded too): labelling is linear in the report length.

use super::rules::*;
use crate::observations::{aggregate, BLANK, NEGATIVE, POSITIVE, UNCERTAIN};

/// One unit of a sentence: punctuation, a plain word, or a matched rule phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Punct,
    Word,
    Entry(u32),
}

#[inline]
fn entry(r: &Rules, u: Unit) -> Option<&Info> {
    match u {
        Unit::Entry(id) => Some(&r.info[id as usize]),
        _ => None,
    }
}

/// Code of the mention (or abnormal modifier) at `p` from the triggers around it:
/// "cannot exclude" > negation > uncertainty > positive.
pub fn code_at(r: &Rules, units: &[Unit], p: usize) -> i8 {
    let pr = &r.params;
    let max_w = pr
        .pre_window
        .max(pr.post_window)
        .max(pr.or_window)
        .max(pr.or_window_before)
        .max(pr.near_window);
    let (mut strong, mut neg, mut unc) = (false, false, false);

    // triggers before p
    let mut d = 0usize;
    let mut seen_mention = false;
    // units since a copula between here and p (-1: none): "and <subject> is" starts a clause
    let mut subj: isize = -1;
    let near = pr.near_window as isize;
    let mut q = p;
    while q > 0 && d <= max_w {
        q -= 1;
        let u = units[q];
        if u == Unit::Punct {
            if subj >= 1 && subj <= near {
                break; // "no effusion, heart is enlarged"
            }
            continue;
        }
        let eo = entry(r, u);
        if let Some(e) = eo {
            if e.conj && subj >= 1 && subj <= near {
                break;
            }
        }
        if subj >= 0 {
            subj = if subj < near { subj + 1 } else { -1 };
        }
        if let Some(e) = eo {
            if e.copula {
                subj = 0;
            }
            if e.term || e.clause {
                break;
            }
            let t = e.triggers;
            if t != 0 {
                if t & NEG_PRE != 0 && d <= pr.pre_window {
                    neg = true;
                }
                if t & UNC_PRE != 0 && d <= pr.pre_window {
                    unc = true;
                }
                if t & STRONG_PRE != 0 && d <= pr.pre_window {
                    strong = true;
                }
                if t & STRONG_NEAR != 0 && d <= pr.near_window && !seen_mention {
                    strong = true;
                }
                if t & UNC_OR != 0 && d <= pr.or_window && !seen_mention {
                    unc = true;
                }
            }
            if e.mention {
                seen_mention = true;
            }
        }
        d += 1;
    }

    // triggers after p
    let mut d = 0usize;
    let mut seen_mention = false;
    // a modifier is its own predicate; a mention gets one from a copula after it
    let mut predicate = entry(r, units[p]).map(|e| !e.mention).unwrap_or(false);
    // a comma passed with no list conjunction after it
    let mut comma = false;
    // a bare list item ("atelectasis, effusion, consolidation not seen") crosses commas
    let bare = (p == 0 || units[p - 1] == Unit::Punct)
        && p + 1 < units.len()
        && units[p + 1] == Unit::Punct;
    let mut q = p + 1;
    while q < units.len() && d <= max_w {
        let u = units[q];
        q += 1;
        if u == Unit::Punct {
            comma = !bare;
            continue;
        }
        if let Some(e) = entry(r, u) {
            if e.term || e.clause {
                break;
            }
            if e.conj && predicate {
                break;
            }
            if e.connect {
                comma = false;
            }
            if e.copula {
                predicate = true;
            }
            let mut t = e.triggers;
            if t != 0 && comma && t & (NEG_POST | UNC_POST | STRONG_POST) != 0 {
                break;
            }
            if t & UNC_PRE != 0
                && t & UNC_POST != 0
                && mention_follows(r, units, q - 1, pr.near_window)
            {
                t &= !(UNC_PRE | UNC_POST);
            }
            if t != 0 {
                if t & NEG_POST != 0 && d <= pr.post_window {
                    neg = true;
                }
                if t & UNC_POST != 0 && d <= pr.post_window {
                    unc = true;
                }
                if t & STRONG_POST != 0 && d <= pr.post_window {
                    strong = true;
                }
                if t & UNC_OR != 0 && d <= pr.or_window_before && !seen_mention {
                    unc = true;
                }
                if t & NEG_NEAR_POST != 0 && d <= pr.near_window && !seen_mention {
                    neg = true;
                }
            }
            if e.mention {
                seen_mention = true;
            }
        }
        d += 1;
    }

    if strong {
        UNCERTAIN
    } else if neg {
        NEGATIVE
    } else if unc {
        UNCERTAIN
    } else {
        POSITIVE
    }
}

/// A finding mention within `window` words after the trigger at `q` ("X is likely Y": the
/// two-way trigger then qualifies Y only).
fn mention_follows(r: &Rules, units: &[Unit], q: usize, window: usize) -> bool {
    let mut d = 0usize;
    let mut q = q + 1;
    while q < units.len() && d <= window {
        let u = units[q];
        if u == Unit::Punct {
            return false;
        }
        if let Some(e) = entry(r, u) {
            if e.term || e.clause {
                return false;
            }
            if e.mention {
                return true;
            }
        }
        d += 1;
        q += 1;
    }
    false
}

/// The contrast word at `q` is followed by a modifier of `group` (one skip word allowed
/// between), itself not before a descriptor: "lungs are hyperinflated but clear".
fn bridged(r: &Rules, units: &[Unit], q: usize, group: u8) -> bool {
    let mut q = q + 1;
    if q < units.len() {
        if let Some(e) = entry(r, units[q]) {
            if e.skip && e.mod_class(group) == MOD_NONE {
                q += 1;
            }
        }
    }
    if q >= units.len() {
        return false;
    }
    match entry(r, units[q]) {
        Some(e) if e.mod_class(group) != MOD_NONE => {}
        _ => return false,
    }
    if q + 1 < units.len() {
        if let Some(n) = entry(r, units[q + 1]) {
            if n.is_desc() {
                return false;
            }
        }
    }
    true
}

/// The modifier right before the descriptor at `p` ("enlarged heart", "widening of the
/// mediastinum"), skip words allowed between.
pub fn prenominal(r: &Rules, units: &[Unit], p: usize, group: u8) -> Option<usize> {
    let mut skipped = 0usize;
    let mut q = p;
    while q > 0 {
        q -= 1;
        let e = entry(r, units[q])?;
        if e.mod_class(group) != MOD_NONE {
            return Some(q);
        }
        if e.skip && skipped < r.params.prenominal_skip {
            skipped += 1;
            continue;
        }
        return None;
    }
    None
}

/// Up to this many modifiers are collected for one descriptor (a cluster is short; the window
/// bounds it anyway).
const MAX_MODS: usize = 16;

/// The modifiers a descriptor reading used (their scopes hold its details).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mods {
    pub at: [usize; MAX_MODS],
    pub n: usize,
}

impl Mods {
    #[inline]
    pub fn as_slice(&self) -> &[usize] {
        &self.at[..self.n]
    }
}

/// Code of the descriptor at `p` from its modifiers, or None when it has none.
#[inline]
pub fn desc_code(r: &Rules, units: &[Unit], p: usize, group: u8) -> Option<i8> {
    desc_code_mods(r, units, p, group, &mut Mods::default())
}

/// `desc_code`, and the positions of the modifiers it used in `out`.
pub fn desc_code_mods(
    r: &Rules,
    units: &[Unit],
    p: usize,
    group: u8,
    out: &mut Mods,
) -> Option<i8> {
    let win = r.params.desc_window;
    let Mods { at: mods, n } = out;
    *n = 0;
    if let Some(q) = prenominal(r, units, p, group) {
        mods[0] = q;
        *n = 1;
    } else {
        // forward: the first modifier cluster after the descriptor
        let mut found = false;
        let mut d = 0usize;
        let mut q = p + 1;
        while q < units.len() && d <= win {
            let u = units[q];
            let mut e = entry(r, u);
            if let Some(ee) = e {
                if ee.term && !found && bridged(r, units, q, group) {
                    // the modifier right after the contrast word applies
                    e = None;
                } else if ee.term || ee.mention {
                    break;
                }
            }
            let c = e.map(|e| e.mod_class(group)).unwrap_or(MOD_NONE);
            if c != MOD_NONE {
                if *n < MAX_MODS {
                    mods[*n] = q;
                    *n += 1;
                }
                found = true;
            } else if found {
                if !e.map(|e| e.connect).unwrap_or(false) {
                    break;
                }
            } else if let Some(e) = e {
                if e.is_desc() && prenominal(r, units, q, e.desc_group).is_some() {
                    break;
                }
            }
            if u != Unit::Punct {
                d += 1;
            }
            q += 1;
        }
        if !found {
            // backward fallback: the nearest modifier before it
            let mut d = 0usize;
            let mut q = p;
            while q > 0 && d <= win {
                q -= 1;
                let u = units[q];
                if let Some(e) = entry(r, u) {
                    if e.term || e.mention {
                        break;
                    }
                    if e.mod_class(group) != MOD_NONE {
                        mods[0] = q;
                        *n = 1;
                        break;
                    }
                }
                if u != Unit::Punct {
                    d += 1;
                }
            }
        }
    }
    if *n == 0 {
        return None;
    }
    let mut abnormal = BLANK;
    let mut any_abnormal = false;
    let (mut normal, mut weak) = (false, false);
    for &q in &mods[..*n] {
        let c = entry(r, units[q])
            .map(|e| e.mod_class(group))
            .unwrap_or(MOD_NONE);
        match c {
            MOD_ABNORMAL => {
                any_abnormal = true;
                abnormal = aggregate(abnormal, code_at(r, units, q));
            }
            MOD_NORMAL => normal = true,
            MOD_UNCERTAIN | MOD_STABLE => weak = true,
            _ => {}
        }
    }
    if any_abnormal {
        Some(abnormal)
    } else if normal {
        Some(NEGATIVE)
    } else if weak {
        Some(UNCERTAIN)
    } else {
        None
    }
}
