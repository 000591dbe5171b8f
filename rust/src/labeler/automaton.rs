//! The rule phrases as one Aho-Corasick automaton: the specification the token trie of
//! `rules.rs` implements, cross-checked in the tests (kept out of `rules.rs`, which `build.rs`
//! compiles with `std` only).

use super::rules::Rules;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// The rule phrases as one leftmost-longest Aho-Corasick automaton over `\x01tok\x02` patterns:
/// the specification the token trie implements (cross-checked in the tests).
pub fn automaton(r: &Rules) -> Result<AhoCorasick, String> {
    let entries = &r.entries;
    let patterns: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| {
            let mut p = Vec::new();
            let last = e.tokens.len() - 1;
            for (i, t) in e.tokens.iter().enumerate() {
                p.push(0x01);
                p.extend_from_slice(t.as_bytes());
                if !(i == last && e.prefix) {
                    p.push(0x02);
                }
            }
            p
        })
        .collect();
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .kind(Some(AhoCorasickKind::DFA))
        .prefilter(false)
        .build(&patterns)
        .map_err(|e| format!("automaton: {e}"))?;

    Ok(ac)
}
