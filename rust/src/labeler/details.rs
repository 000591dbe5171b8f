//! Details per finding: the side and degree of each mention, read from its own phrase and its
//! scope (docs/ARCHITECTURE.md, "Details per finding"). The same algorithm as
//! `mrgfast/reference/labeler.py` (`detail_scope`, `details_of`, `_inherits`), held equal by the
//! differential tests; the word lists are the detail sections of `rules.txt`.
//!
//! Every scan is bounded by `detail_window` words (twice that for a pending chain and for
//! inheritance), so details keep labelling linear in the report length.

use super::rules::*;
use super::scope::Unit;
use crate::observations::{SIDE_BILATERAL, SIDE_NONE};

#[inline]
fn entry(r: &Rules, u: Unit) -> Option<&Info> {
    match u {
        Unit::Entry(id) => Some(&r.info[id as usize]),
        _ => None,
    }
}

/// What one unit states: side bits, "paired" (bilateral unless a side is named), degree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Said {
    side: u8,
    paired: bool,
    degree: u8,
}

impl Said {
    #[inline]
    fn any(&self) -> bool {
        self.side != 0 || self.paired || self.degree != 0
    }
    #[inline]
    fn add(&mut self, o: Said) {
        self.side |= o.side;
        self.paired |= o.paired;
        self.degree = self.degree.max(o.degree);
    }
}

/// What the unit at `q` states; a side word before an @unsided structure ("right atrium") states
/// no side.
#[inline]
fn said(r: &Rules, units: &[Unit], q: usize) -> Said {
    let Some(e) = entry(r, units[q]) else {
        return Said::default();
    };
    let (mut side, mut paired) = (e.side, e.dflags & D_PAIRED != 0);
    if (side != 0 || paired) && q + 1 < units.len() {
        if let Some(n) = entry(r, units[q + 1]) {
            if n.dflags & D_UNSIDED != 0 {
                side = 0;
                paired = false;
            }
        }
    }
    Said {
        side,
        paired,
        degree: e.degree,
    }
}

#[inline]
fn is_join(r: &Rules, u: Unit) -> bool {
    entry(r, u).is_some_and(|e| e.dflags & D_JOIN != 0)
}

/// Add to `acc` what the detail scope of the unit at `p` states; units in `skip` (a descriptor
/// reading's modifiers) state nothing. See `detail_scope` in the Python reference for the rules.
fn scope(r: &Rules, units: &[Unit], p: usize, skip: &[usize], acc: &mut Said) {
    let w = r.params.detail_window;
    if !skip.contains(&p) {
        acc.add(said(r, units, p));
    }

    // backward: what lies beyond the first join or comma crossed (`after`) is dropped when the walk
    // ends at a locus, beyond a comma also at another finding
    let (mut before, mut after) = (Said::default(), Said::default());
    let (mut marked, mut comma) = (false, false);
    let mut np_only = true;
    let mut d = 0usize;
    let mut q = p;
    while q > 0 && d < w {
        q -= 1;
        let u = units[q];
        if u == Unit::Punct {
            if q > 0 && said(r, units, q - 1).any() {
                if !marked {
                    marked = true;
                    comma = true;
                }
                np_only = false;
                continue;
            }
            break;
        }
        let e = entry(r, u);
        if let Some(e) = e {
            let locus = e.dflags & D_LOCUS != 0;
            if (e.mention && comma) || (locus && !np_only) {
                if marked {
                    after = Said::default();
                }
                break;
            }
            if e.mention || e.term || e.clause || e.copula || e.dflags & D_STOP != 0 {
                break;
            }
            if e.dflags & D_JOIN != 0 && !marked {
                marked = true;
            }
            if !skip.contains(&q) {
                let s = said(r, units, q);
                if marked {
                    after.add(s);
                } else {
                    before.add(s);
                }
            }
        }
        match e {
            None => np_only = false,
            Some(e) => {
                if !e.skip || e.dflags & D_JOIN != 0 {
                    np_only = np_only && e.dflags & D_LOCUS != 0;
                }
            }
        }
        d += 1;
    }
    acc.add(before);
    acc.add(after);

    // forward: what was found since the last break is pending; a later finding it premodifies
    // takes it. Past the window nothing is collected, but a pending chain is followed (up to
    // another window) to see whether it ends in a finding.
    let (mut committed, mut pending) = (Said::default(), Said::default());
    let mut pending_n = 0usize;
    let mut d = 0usize;
    let mut q = p + 1;
    while q < units.len() {
        if d >= w && (pending_n == 0 || d >= 2 * w) {
            break;
        }
        let u = units[q];
        if u == Unit::Punct {
            if d < w && q + 1 < units.len() && said(r, units, q + 1).any() {
                committed.add(pending);
                pending = Said::default();
                pending_n = 0;
                q += 1;
                continue;
            }
            break;
        }
        if let Some(e) = entry(r, u) {
            if e.mention {
                if pending_n > 0 || !(q == p + 1 || is_join(r, units[q - 1])) {
                    pending = Said::default();
                    break;
                }
                // a finding right after this one ("masslike opacification") or coordinated with
                // it ("atelectasis or scarring in the left lower lobe") shares what follows
                d += 1;
                q += 1;
                continue;
            }
            if e.term || e.dflags & D_STOP != 0 {
                break;
            }
            if d < w {
                let s = said(r, units, q);
                if s.any() {
                    pending_n += 1;
                    if !skip.contains(&q) {
                        pending.add(s);
                    }
                }
            }
            if e.triggers != 0
                || e.dflags & (D_LOCUS | D_JOIN) != 0
                || e.copula
                || e.clause
                || e.connect
                || e.conj
            {
                committed.add(pending);
                pending = Said::default();
                pending_n = 0;
            }
        }
        d += 1;
        q += 1;
    }
    committed.add(pending);
    acc.add(committed);
}

/// (side bits, degree) of a reading: the scopes of `positions` (a mention, or a descriptor) and of
/// its modifiers `mods`, which state the finding itself and so never its details. Sides OR-ed, a
/// paired word bilateral only when no side word is found, the highest degree.
pub fn details_of(r: &Rules, units: &[Unit], positions: &[usize], mods: &[usize]) -> (i8, i8) {
    let mut acc = Said::default();
    for &p in positions.iter().chain(mods) {
        scope(r, units, p, mods, &mut acc);
    }
    let side = if acc.side != 0 {
        acc.side as i8
    } else if acc.paired {
        SIDE_BILATERAL
    } else {
        SIDE_NONE
    };
    (side, acc.degree as i8)
}

/// Whether the mention at `p` may take the (side, degree) of the finding at `q0` before it in the
/// sentence: the side when no contrast word, detail stop or other finding lies between, at most
/// `2 * detail_window` words; the degree too unless an @assoc word lies between.
pub fn inherits(r: &Rules, units: &[Unit], q0: usize, p: usize) -> (bool, bool) {
    let mut d = 0usize;
    let mut assoc = false;
    for &u in &units[q0 + 1..p] {
        if u == Unit::Punct {
            continue;
        }
        if let Some(e) = entry(r, u) {
            if e.term || e.mention || e.dflags & D_STOP != 0 {
                return (false, false);
            }
            assoc |= e.dflags & D_ASSOC != 0;
        }
        d += 1;
    }
    if d > 2 * r.params.detail_window {
        return (false, false);
    }
    (true, !assoc)
}
